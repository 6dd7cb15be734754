#!/usr/bin/env bash
# An apply on the simulated EC2 with EC2's pace modelled (`--sim-latency-ms`: a latency
# per call and EC2's token buckets), against the least time those buckets allow for the
# plan's calls. A deregistration sweep of one family: IMAGES images, each with its own
# snapshot, all but the newest deregistered with their snapshots.
#
#   scripts/bench/sim-pace.sh [IMAGES] [LATENCY_MS]        (250, 50)
#
# AMIWARDEN names the binary (default target/release/amiwarden). Prints one line per
# concurrency: wall time, the buckets' bound, and their ratio.
set -euo pipefail
images=${1:-250}
latency=${2:-50}
cd "$(dirname "$0")/../.."
bin=$(realpath "${AMIWARDEN:-target/release/amiwarden}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$images" >"$work/state.json" <<'PY'
import json, sys
n = int(sys.argv[1])
images, snapshots = [], []
for i in range(n):
    snap = f"snap-{i + 1:017x}"
    images.append({"id": f"ami-{i + 1:017x}", "name": f"sweep-{i:05d}",
                   "creation_time": f"2025-{1 + i % 12:02d}-{1 + i % 28:02d}T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
                   "tags": {"family": "sweep"},
                   "block_devices": [{"device_name": "/dev/xvda", "snapshot_id": snap, "size_gib": 8}]})
    snapshots.append({"id": snap, "size_gib": 8})
print(json.dumps({"version": 1, "accounts": {"123456789012": {"regions": {
    "us-east-1": {"images": images, "snapshots": snapshots}}}}}))
PY
cat >"$work/policy.toml" <<'TOML'
[scope]
accounts = ["123456789012"]
regions = ["us-east-1"]

[guardrails]
max_destructive = 1000000
max_destructive_percent = 100.0

[[plugin]]
name = "retention"
source = "builtin:retention"
grants = ["deregister", "delete-snapshots", "retain"]
[plugin.config]
family = { tag = "family" }
keep_newest = 1
deregister_after_days = 30
delete_snapshots = true
TOML

common=(--policy "$work/policy.toml" --as-of 2026-11-24 --cache-dir "$work/cache")
cp "$work/state.json" "$work/plan-state.json"
"$bin" plan "${common[@]}" --sim "$work/plan-state.json" --format json >"$work/plan.json" 2>/dev/null

# The bound: phases run one after another (every deregistration before any snapshot
# deletion); inside a phase each (location, bucket) starts full (the phases use
# different buckets) and refills at its rate: max(0, calls - size) / refill seconds.
bound=$(python3 - "$work/plan.json" <<'PY'
import json, sys, collections
buckets = {"deregister": (100, 5), "delete_snapshot": (100, 5), "unshare": (100, 5), "share": (100, 5),
           "copy": (100, 1), "tag": (100, 10), "untag": (100, 10)}
plan = json.load(open(sys.argv[1]))
phases = collections.defaultdict(collections.Counter)
for a in plan["actions"]:
    phases[a["op"]][(a["account"], a["region"])] += 1
total = 0.0
for op, per_location in phases.items():
    size, refill = buckets.get(op, (50, 5))
    total += max(max(0, n - size) / refill for n in per_location.values())
print(f"{total:.1f}")
PY
)
ops=$(python3 -c "import json,sys,collections; print(dict(collections.Counter(a['op'] for a in json.load(open(sys.argv[1]))['actions'])))" "$work/plan.json")
echo "images $images, latency ${latency} ms, plan: $ops, bound set by EC2's buckets: ${bound} s"
for concurrency in 16 1; do
  cp "$work/state.json" "$work/run.json"
  start=$(date +%s.%N)
  "$bin" apply "${common[@]}" --sim "$work/run.json" --sim-latency-ms "$latency" --concurrency "$concurrency" \
    --yes --journal "$work/journal-$concurrency" >/dev/null 2>"$work/apply.err" || { cat "$work/apply.err"; exit 1; }
  end=$(date +%s.%N)
  python3 -c "import sys; w=float(sys.argv[2])-float(sys.argv[1]); b=float(sys.argv[3]); print(f'concurrency {sys.argv[4]:>2}: wall {w:.1f} s, bound {b:.1f} s, ratio {w/b:.3f}')" \
    "$start" "$end" "$bound" "$concurrency"
done
