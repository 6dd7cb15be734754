#!/usr/bin/env bash
# Two amiwarden builds on one synthetic org, alternated: the measurement of
# scripts/bench/plan.sh (a warmed plugin cache, then one timed `plan` of the stock
# plugins) for OLD and NEW in turn, ROUNDS times, so both see the same machine.
#
#   scripts/bench/compare-plan.sh OLD_BIN NEW_BIN [IMAGES] [ROUNDS]   (100000, 3)
#
# Build the old binary from a worktree, e.g.
#   git worktree add /tmp/old ae31834 && (cd /tmp/old && cargo build --release -p amiwarden)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
two_builds 2,9 "$@"
"$new" synth --images "$images" --out "$work/org.json"
for round in $(seq "$rounds"); do
  for which in old new; do
    bin=${!which}
    args=(plan --policy scripts/bench/policy.toml --sim "$work/org.json" --as-of 2026-11-24 --format json
      --cache-dir "$work/cache-$which")
    "$bin" "${args[@]}" >/dev/null 2>&1 || true
    /usr/bin/time -f "$which round $round: wall %e s, peak RSS %M KiB, user %U s, sys %S s" \
      "$bin" "${args[@]}" >"$work/plan-$which.json" 2>"$work/stderr-$which" || true
    tail -1 "$work/stderr-$which"
    python3 -c "import json,sys; print('  totals:', json.load(open(sys.argv[1]))['totals'])" "$work/plan-$which.json"
  done
done
