#!/bin/sh
# Builds {{name}}.wasm with jco (npm install, then npm run build).
set -eu
cd "$(dirname "$0")"
[ -x node_modules/.bin/jco ] || npm install --no-audit --no-fund
npm run --silent build
echo "built {{name}}.wasm; test it with: amiwarden test {{name}}.wasm cases"
