#!/usr/bin/env bash
# Plan time and memory against inventory size: scripts/bench/plan.sh's measurement (a
# warmed plugin cache, then timed `plan`s of the stock plugins at their default limits)
# at each size, ROUNDS times, medians to CSV (with the plan's actions, plugin errors and
# the worst exit code), then a PNG plot of time and memory.
#
#   scripts/bench/scale.sh [ROUNDS] [SIZES...]     (3; 10000 100000 1000000)
#
# Writes docs/bench/scale.csv and docs/bench/scale.png (matplotlib, installed with pip
# into a virtualenv under target/ when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
shift || true
sizes=("${@:-10000 100000 1000000}")
read -r -a sizes <<<"${sizes[*]}"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/bench}
cargo build --release --quiet --locked -p amiwarden --bin amiwarden
bin=$CARGO_TARGET_DIR/release/amiwarden
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
source scripts/bench/lib.sh
default_limits_policy "$work/policy.toml"
mkdir -p docs/bench
csv=docs/bench/scale.csv
echo "images,round,wall_s,cpu_s,peak_rss_mib,actions,plugin_errors,exit" > "$work/raw.csv"
warmed=
for images in "${sizes[@]}"; do
  "$bin" synth --images "$images" --out "$work/org.json"
  args=(plan --policy "$work/policy.toml" --sim "$work/org.json" --as-of 2026-11-24 --format json
    --cache-dir "$work/cache")
  # One plan warms the compiled-plugin cache (shared by every size): the figures are
  # scheduled runs, not a first start.
  [ -n "$warmed" ] || { "$bin" "${args[@]}" > /dev/null 2>&1 || true; warmed=1; }
  for round in $(seq "$rounds"); do
    status=0
    /usr/bin/time -f "%e %U %S %M" -o "$work/time" "$bin" "${args[@]}" > "$work/plan.json" 2>/dev/null || status=$?
    # GNU time puts "Command exited with non-zero status N" first on a failure.
    read -r wall user sys rss < <(tail -1 "$work/time")
    read -r actions errors < <(python3 -c "import json,sys; p=json.load(open(sys.argv[1])); print(len(p['actions']), len(p['errors']))" "$work/plan.json")
    cpu=$(python3 -c "print(round($user + $sys, 2))")
    echo "$images,$round,$wall,$cpu,$((rss / 1024)),$actions,$errors,$status" | tee -a "$work/raw.csv"
  done
done
python3 - "$work/raw.csv" "$csv" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
out = open(sys.argv[2], "w", newline="")
w = csv.writer(out)
w.writerow(["images", "rounds", "wall_s", "cpu_s", "peak_rss_mib", "actions", "plugin_errors", "exit"])
for images in sorted({int(r["images"]) for r in rows}):
    mine = [r for r in rows if int(r["images"]) == images]
    med = lambda k: statistics.median(float(r[k]) for r in mine)
    w.writerow([images, len(mine), med("wall_s"), med("cpu_s"), int(med("peak_rss_mib")), mine[0]["actions"],
                mine[0]["plugin_errors"], max(int(r["exit"]) for r in mine)])
PY
cat "$csv"
venv=$CARGO_TARGET_DIR/plot-venv
if ! "$venv/bin/python" -c "import matplotlib" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet "matplotlib==3.11.2"
fi
"$venv/bin/python" scripts/bench/plot_scale.py "$csv" docs/bench/scale.png
echo "wrote $csv and docs/bench/scale.png"
