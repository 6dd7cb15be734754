#!/bin/sh
# Builds required-tags.wasm from app.py with componentize-py (pinned: pip install componentize-py==0.25.1).
# Usage: ./build.sh [OUTPUT.wasm]   (run from any directory)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/required-tags.wasm"}
cd "$here"
# Optional: `componentize-py -d ../../wit -w policy bindings .` writes the generated
# wit_world/ package for your editor; componentize does not need it.
PYTHONDONTWRITEBYTECODE=1 componentize-py -d ../../wit -w policy componentize -p . app -o "$out"
