#!/usr/bin/env bash
# The simulated EC2's apply cost against the size of its state: an org of IMAGES images
# of which SWEEP (one family, old and unused) are deregistered with their snapshots
# (2 × SWEEP actions); the other images are recent and untouched. Time linear in the
# actions means the per-action figure stays flat as IMAGES grows.
#
#   scripts/bench/sim-apply.sh [IMAGES] [SWEEP]        (100000, 2000)
#
# AMIWARDEN names the binary (default target/release/amiwarden). Prints the plan's wall
# time (inventory and plugins), the apply's, and (apply − plan) per action.
set -euo pipefail
images=${1:-100000}
sweep=${2:-2000}
cd "$(dirname "$0")/../.."
bin=$(realpath "${AMIWARDEN:-target/release/amiwarden}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

python3 - "$images" "$sweep" >"$work/state.json" <<'PY'
import json, sys
n, sweep = int(sys.argv[1]), int(sys.argv[2])
images, snapshots = [], []
for i in range(n):
    snap = f"snap-{i + 1:017x}"
    old = i < sweep
    images.append({"id": f"ami-{i + 1:017x}", "name": f"{'sweep' if old else 'keep'}-{i:06d}",
                   "creation_time": f"{2024 if old else 2026}-{1 + i % 10:02d}-{1 + i % 28:02d}T00:{i // 60 % 60:02d}:{i % 60:02d}Z",
                   "tags": {"family": "sweep" if old else f"keep-{i}"},
                   "block_devices": [{"device_name": "/dev/xvda", "snapshot_id": snap, "size_gib": 8}]})
    snapshots.append({"id": snap, "size_gib": 8})
print(json.dumps({"version": 1, "accounts": {"123456789012": {"regions": {
    "us-east-1": {"images": images, "snapshots": snapshots}}}}}, indent=1))
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
keep_newest = 0
deregister_after_days = 365
delete_snapshots = true
TOML

run() { # prints the wall seconds of "$@"
  local start end
  start=$(date +%s.%N)
  "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  end=$(date +%s.%N)
  python3 -c "print(f'{$end - $start:.2f}')"
}
common=(--policy "$work/policy.toml" --sim "$work/state.json" --as-of 2026-11-24 --cache-dir "$work/cache")
"$bin" plan "${common[@]}" --format json >"$work/plan.json" 2>/dev/null
actions=$(python3 -c "import json,sys; print(len(json.load(open(sys.argv[1]))['actions']))" "$work/plan.json")
plan=$(run "$bin" plan "${common[@]}" --format json)
apply=$(run "$bin" apply "${common[@]}" --yes --journal "$work/journal.jsonl")
left=$(python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(len(s['accounts']['123456789012']['regions']['us-east-1']['images']))" "$work/state.json")
python3 - "$images" "$actions" "$plan" "$apply" "$left" <<'PY'
import sys
images, actions, plan, apply, left = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
per = (apply - plan) / actions * 1000 if actions else 0.0
print(f"images {images}  actions {actions}  plan {plan:.2f} s  apply {apply:.2f} s  "
      f"(apply - plan) per action {per:.2f} ms  images left {left}")
PY
