# Sourced by demo.sh and test.sh: create the virtual environment $GO4ALIGN_VENV (default ./.venv)
# once and install go4align with the extras in $EXTRAS. Another GO4ALIGN_VENV gives a separate,
# clean environment (CI checks the demo in one that holds only what demo.sh installs).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
VENV=${GO4ALIGN_VENV:-.venv}
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build; 2.13.0 is the CPU
# wheel these machines keep on disk (and a normal PyPI release elsewhere).
"$VENV/bin/python" -m pip install -q --disable-pip-version-check "torch==${TORCH_VERSION:-2.13.0}"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[${EXTRAS}]"
