#!/usr/bin/env bash
# The README's demo: preview what the stock policies would do to a small simulated org.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo run --quiet --bin amiwarden -- plan --policy examples/policy.toml --sim examples/sim/demo.json --as-of 2026-11-24 "$@"
