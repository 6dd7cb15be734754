#!/usr/bin/env bash
# The test command from the README: installs or checks what the tests need
# (scripts/setup.sh), then runs every unit test, the end-to-end suite (which builds the
# plugins to wasm32-wasip2 from source) and every stock plugin's cases.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo test --workspace --locked "$@"
