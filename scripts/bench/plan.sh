#!/usr/bin/env bash
# Plan time and peak RSS over a synthetic org with the stock plugins (release build).
# Usage: scripts/bench/plan.sh [IMAGES] [--default-limits]   (default 100000)
#   --default-limits drops the policy's [plugin.limits] tables, so every plugin runs with
#   the default limits (cost-guard's 64 MiB then cannot hold a review of a large plan).
set -euo pipefail
cd "$(dirname "$0")/../.."
images=${1:-100000}
policy=scripts/bench/policy.toml
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/bench}
cargo build --release --quiet -p amiwarden --bin amiwarden
bin=$CARGO_TARGET_DIR/release/amiwarden
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ "${2:-}" = "--default-limits" ]; then
  source scripts/bench/lib.sh
  default_limits_policy "$work/policy.toml"
  policy=$work/policy.toml
fi
"$bin" synth --images "$images" --out "$work/org.json"
# Warm the compiled-plugin cache first: the figure is a scheduled run, not a first start.
"$bin" plan --policy "$policy" --sim "$work/org.json" --as-of 2026-11-24 --format json --cache-dir "$work/cache" > /dev/null
/usr/bin/time -f "wall %e s, peak RSS %M KiB, user %U s, sys %S s" \
  "$bin" plan --policy "$policy" --sim "$work/org.json" --as-of 2026-11-24 --format json \
  --cache-dir "$work/cache" > "$work/plan.json"
python3 -c "import json,sys; t=json.load(open(sys.argv[1]))['totals']; print('totals:', t)" "$work/plan.json"
