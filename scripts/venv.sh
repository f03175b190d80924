# shellcheck shell=bash
# Shared by scripts/demo and scripts/test: make ./.venv with Python 3.11+ and install the
# project into it (editable), with the extras named in $1, e.g. "[test]".

find_python() {
  for candidate in "${PYTHON:-}" python3.13 python3.12 python3.11 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"
      return 0
    fi
  done
  echo "MNIST Live needs Python 3.11 or newer; install it or set PYTHON=/path/to/python3.11" >&2
  return 1
}

ensure_venv() {
  local extras="$1"
  local stamp=".venv/.installed${extras}"
  if [ ! -x .venv/bin/python ]; then
    echo "creating .venv ..." >&2
    "$(find_python)" -m venv .venv
  fi
  if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "installing mnist-live${extras} into .venv ..." >&2
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".${extras}"
    touch "$stamp"
  fi
}
