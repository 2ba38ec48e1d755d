#!/usr/bin/env bash
# The main job on embedded data: `go4align demo` (benchmarks + report), in a local virtual environment.
EXTRAS=demo
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec .venv/bin/go4align demo "$@"
