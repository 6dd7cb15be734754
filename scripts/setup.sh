#!/usr/bin/env bash
# Installs (or checks) what the tests need, once: the wasm32-wasip2 target, moto's EC2/SQS
# emulator, componentize-py for the Python plugin and jco for the JavaScript one (from its
# lock file). Idempotent and quiet when everything is already there; `scripts/test.sh`
# and `.ci/run` call it, so a fresh clone needs nothing else.
set -euo pipefail
cd "$(dirname "$0")/.."

MOTO='moto[server]==5.2.*'
COMPONENTIZE_PY='componentize-py==0.25.1'

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  echo "setup: adding the wasm32-wasip2 target" >&2
  rustup target add wasm32-wasip2
fi

need_pip=()
if ! python3 -c 'import moto, flask' 2>/dev/null || ! command -v moto_server >/dev/null \
  || ! python3 -c 'import moto, sys; sys.exit(0 if moto.__version__.startswith("5.2.") else 1)' 2>/dev/null; then
  need_pip+=("$MOTO")
fi
if ! command -v componentize-py >/dev/null || [ "$(componentize-py --version 2>/dev/null | awk '{print $2}')" != "0.25.1" ]; then
  need_pip+=("$COMPONENTIZE_PY")
fi
if [ ${#need_pip[@]} -gt 0 ]; then
  echo "setup: pip install ${need_pip[*]}" >&2
  python3 -m pip install --quiet --disable-pip-version-check "${need_pip[@]}"
fi

if [ ! -x plugins/required-tags-js/node_modules/.bin/jco ]; then
  # `npm ci` refuses jco's platform-specific optional packages; `npm install` follows the lock.
  echo "setup: npm install in plugins/required-tags-js (jco and componentize-js, pinned)" >&2
  npm install --prefix plugins/required-tags-js --no-audit --no-fund
fi
