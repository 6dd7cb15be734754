#!/bin/sh
# Builds {{name}}.wasm with componentize-py (pip install componentize-py==0.25.1).
set -eu
cd "$(dirname "$0")"
PYTHONDONTWRITEBYTECODE=1 componentize-py -d wit -w policy componentize -p . app -o {{name}}.wasm
echo "built {{name}}.wasm; test it with: amiwarden test {{name}}.wasm cases"
