#!/usr/bin/env bash
# The main job on embedded data: `go4align demo` (benchmarks + reports) in a virtual environment
# ($GO4ALIGN_VENV, default ./.venv) that holds exactly go4align[demo]. Arguments go to the demo:
#   bash scripts/demo.sh              the full demo (about 5 minutes on 2 cores)
#   bash scripts/demo.sh --quick      a smoke test of the same methods (about 2 minutes)
EXTRAS=demo
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec "$VENV/bin/go4align" demo "$@"
