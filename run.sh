#!/usr/bin/env bash
# azsim's entry points on a fresh machine (Python 3.11 + a C++ compiler). Each command
# creates ./.venv on first use and installs what it needs there (torch==2.13.0 CPU for
# training and its tests); later runs only rebuild the C++ core when csrc/ changed.
#
#   ./run.sh demo    the main job on the bundled defaults (shipped model, default chip)
#   ./run.sh test    the default test suite (what CI runs)
#   ./run.sh bench   the benchmarks (pytest-benchmark, peers), long
#   ./run.sh azsim ARGS...   any azsim command inside the venv
set -euo pipefail
cd "$(dirname "$0")"
VENV=${AZSIM_VENV:-.venv}

pick_python() {
  for py in python3.11 python3; do
    if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      echo "$py"; return
    fi
  done
  echo "run.sh: Python >= 3.11 is required" >&2; exit 1
}

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    "$(pick_python)" -m venv "$VENV"
  fi
  local stamp="$VENV/.azsim-installed"
  if [ ! -f "$stamp" ] || [ -n "$(find setup.py pyproject.toml csrc -newer "$stamp" -print -quit)" ]; then
    echo "run.sh: installing azsim and its dependencies into $VENV (first run: a few minutes)" >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip setuptools wheel "pybind11==3.1.0" >&2
    "$VENV/bin/python" -m pip install -q -e ".[train,test]" >&2
    touch "$stamp"
  fi
}

cmd=${1:-}
shift || true
case "$cmd" in
  demo)
    setup
    exec "$VENV/bin/azsim" demo "$@"
    ;;
  test)
    setup
    # numba's default OpenMP layer slows torch ~14x once used (FACTS.md)
    export NUMBA_THREADING_LAYER=workqueue
    exec "$VENV/bin/python" -m pytest -q "$@"
    ;;
  bench)
    setup
    export NUMBA_THREADING_LAYER=workqueue
    exec "$VENV/bin/python" -m pytest -q benchmarks "$@"
    ;;
  azsim)
    setup
    exec "$VENV/bin/azsim" "$@"
    ;;
  *)
    sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
