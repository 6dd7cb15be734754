#!/usr/bin/env bash
# Plan time and peak RSS over a synthetic org with the stock plugins (release build).
# Usage: scripts/bench/plan.sh [IMAGES]   (default 100000)
set -euo pipefail
cd "$(dirname "$0")/../.."
images=${1:-100000}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/bench}
cargo build --release --quiet -p amiwarden --bin amiwarden
bin=$CARGO_TARGET_DIR/release/amiwarden
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$bin" synth --images "$images" --out "$work/org.json"
# Warm the compiled-plugin cache first: the figure is a scheduled run, not a first start.
"$bin" plan --policy scripts/bench/policy.toml --sim "$work/org.json" --as-of 2026-11-24 --format json --cache-dir "$work/cache" > /dev/null
/usr/bin/time -f "wall %e s, peak RSS %M KiB, user %U s, sys %S s" \
  "$bin" plan --policy scripts/bench/policy.toml --sim "$work/org.json" --as-of 2026-11-24 --format json \
  --cache-dir "$work/cache" > "$work/plan.json"
python3 -c "import json,sys; t=json.load(open(sys.argv[1]))['totals']; print('totals:', t)" "$work/plan.json"
