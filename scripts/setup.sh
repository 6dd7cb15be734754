#!/usr/bin/env bash
# Installs (or checks) what the tests need, once: the wasm32-wasip2 target, moto's EC2/SQS
# emulator, componentize-py for the Python plugin, jco for the JavaScript one (from its
# lock file) and headless Chromium for the HTML plan. Idempotent and quiet when
# everything is already there; `scripts/test.sh` and `.ci/run` call it, so a fresh clone
# needs nothing else.
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

# `script` (util-linux) gives the colour test a terminal; Debian and macOS ship it.
if ! command -v script >/dev/null; then
  echo "setup: the colour test needs \`script\` (util-linux): install it" >&2
  exit 1
fi

# Headless Chromium renders the HTML plan in host/tests/cli.rs. Debian's package without
# its recommends: 25 packages, 112 MB to fetch, 389 MB on disk, ~15 s.
if ! command -v chromium >/dev/null && ! command -v chromium-browser >/dev/null; then
  if command -v apt-get >/dev/null; then
    echo "setup: apt-get install chromium (headless, for the HTML plan test)" >&2
    sudo=""
    [ "$(id -u)" -ne 0 ] && sudo=sudo
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium \
      || { $sudo apt-get update && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium; }
  else
    echo "setup: the HTML plan test needs headless Chromium: install chromium (or chromium-browser) on PATH" >&2
    exit 1
  fi
fi
