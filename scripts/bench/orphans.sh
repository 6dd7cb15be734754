#!/usr/bin/env bash
# Replicas whose source is gone, at scale: a synthetic org in which a fifth of every
# account's eu-west-1 images are copies of us-east-1 images that no longer exist, planned
# by two amiwarden builds in turn (default limits, a warmed plugin cache), ROUNDS times;
# prints wall time, peak RSS and replication's propose seconds (from the run record) for
# each, and whether the plans are the same but for their fingerprints.
#
#   scripts/bench/orphans.sh OLD_BIN NEW_BIN [IMAGES] [ROUNDS]   (100000, 3)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
two_builds 2,8 "$@"
default_limits_policy "$work/policy.toml"
"$new" synth --images "$images" --out "$work/org.json"
python3 - "$work/org.json" <<'PY'
import json, sys
path = sys.argv[1]
state = json.load(open(path))
orphans = 0
for account in state["accounts"].values():
    for k, image in enumerate(account["regions"]["eu-west-1"]["images"]):
        if k % 5 == 0:
            image["source_image_id"] = "ami-0f%015x" % k
            image["source_region"] = "us-east-1"
            orphans += 1
json.dump(state, open(path, "w"))
print(f"{orphans} replicas of gone sources in eu-west-1")
PY
for which in old new; do
  "${!which}" plan --policy "$work/policy.toml" --sim "$work/org.json" --as-of 2026-11-24 --format json \
    --cache-dir "$work/cache-$which" >/dev/null 2>&1 || true
done
for round in $(seq "$rounds"); do
  for which in old new; do
    rm -rf "$work/record-$which"
    /usr/bin/time -f "$which round $round: wall %e s, peak RSS %M KiB" "${!which}" plan \
      --policy "$work/policy.toml" --sim "$work/org.json" --as-of 2026-11-24 --format json \
      --cache-dir "$work/cache-$which" --record "$work/record-$which" \
      >"$work/plan-$which.json" 2>"$work/stderr-$which" || true
    tail -1 "$work/stderr-$which"
    python3 -c "import glob, json, sys; m = json.load(open(glob.glob(sys.argv[1] + '/*/metadata.json')[0])); print('  replication propose:', m['plugins']['replication']['propose'], 's of plugin CPU')" "$work/record-$which"
  done
  if cmp -s <(grep -v fingerprint "$work/plan-old.json") <(grep -v fingerprint "$work/plan-new.json"); then
    echo "round $round: plans identical but for their fingerprints"
  else
    echo "round $round: plans DIFFER"
  fi
done
