#!/usr/bin/env bash
# The whole test suite in a local virtual environment, with every optional extra and data package
# the tests use (Fashion-MNIST comes from Debian's dataset-fashion-mnist when we may install it).
EXTRAS=test
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
if [ ! -d /usr/share/datasets/fashion-mnist ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null) \
      || echo "warning: could not install dataset-fashion-mnist; its tests will be skipped"
  else
    echo "note: run 'sudo apt-get install dataset-fashion-mnist' to run the Multi-Fashion tests"
  fi
fi
exec "$VENV/bin/python" -m pytest -q "$@"
