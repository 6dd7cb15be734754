#!/bin/sh
# Builds {{name}}.wasm (needs `rustup target add wasm32-wasip2`).
set -eu
cd "$(dirname "$0")"
cargo build --release --target wasm32-wasip2 --lib
cp target/wasm32-wasip2/release/{{crate}}.wasm {{name}}.wasm
echo "built {{name}}.wasm; test it with: amiwarden test {{name}}.wasm cases"
