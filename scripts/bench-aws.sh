#!/usr/bin/env bash
# AWS-backend benchmarks against moto (see docs/bench-aws.md for results).
#
#   cargo build -p amiwarden            # the debug binary is what was measured
#   scripts/bench-aws.sh [PORT] [plan|apply|all]
#
# plan:  2,000 images in us-east-1 + eu-west-1; `amiwarden plan --aws` with a policy
#        that needs launch permissions (builtin:sharing) and one that does not; prints
#        the `API calls:` line and the wall time of each.
# apply: 503 images of one family in us-east-1; retention keeps the newest 3 and
#        deregisters 500 (snapshots kept); `amiwarden apply --plan` with every stderr
#        line timestamped; prints the wall time, the span of the 500 DeregisterImage
#        calls, the bound the EC2 bucket sets, and how many calls EC2's bucket would
#        have throttled given the observed call times.
# Needs moto_server (pip install 'moto[server]') and boto3. Starts and stops its own
# moto on 127.0.0.1:PORT (default 5731).
set -euo pipefail
cd "$(dirname "$0")/.."
PORT=${1:-5731}
WHAT=${2:-all}
BIN=${AMIWARDEN:-$PWD/target/debug/amiwarden}
URL=http://127.0.0.1:$PORT
WORK=$(mktemp -d /tmp/amiwarden-bench.XXXXXX)
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent
MOTO=""

start_moto() {
  MOTO_EC2_LOAD_DEFAULT_AMIS=false moto_server -H 127.0.0.1 -p "$PORT" >"$WORK/moto.log" 2>&1 &
  MOTO=$!
  for _ in $(seq 100); do
    curl -s -o /dev/null "$URL/" && return 0
    sleep 0.2
  done
  echo "moto did not start on $PORT" >&2
  exit 1
}
stop_moto() {
  if [ -n "$MOTO" ]; then
    kill "$MOTO" 2>/dev/null || true
    wait "$MOTO" 2>/dev/null || true
    MOTO=""
  fi
}
trap stop_moto EXIT

policy() { # policy NAME: retention, sharing (retention + sharing), dereg
  cat <<'EOF'
[scope]
accounts = ["123456789012"]
regions = ["us-east-1", "eu-west-1"]

[guardrails]
allowed_principals = ["123456789012", "222222222222"]
max_destructive = 100000
max_destructive_percent = 100.0

[[plugin]]
name = "retention"
source = "builtin:retention"
grants = ["deprecate", "disable", "deregister", "delete-snapshots", "retain"]
# The debug build on a busy 2-core machine can take longer than the default 100 ms for
# the one review call over ~2,000 proposals.
[plugin.limits]
time_ms = 2000
[plugin.config]
family = { tag = "family" }
keep_newest = 3
EOF
  case $1 in
    dereg) printf 'deregister_after_days = 1\ndelete_snapshots = false\n' ;;
    *) printf 'deprecate_after_days = 30\nderegister_after_days = 180\ndelete_snapshots = true\n' ;;
  esac
  if [ "$1" = sharing ]; then
    cat <<'EOF'

[[plugin]]
name = "sharing"
source = "builtin:sharing"
grants = ["share", "unshare"]
[plugin.limits]
time_ms = 2000
[plugin.config]
share_tag = "share-with"
allowed = []
[plugin.config.groups]
prod = ["222222222222"]
EOF
  fi
}

AW=("$BIN" --cache-dir "$WORK/cache")

bench_plan() {
  start_moto
  python3 scripts/seed-moto.py --endpoint "$URL" --regions us-east-1,eu-west-1 --per-region 1000
  "${AW[@]}" inspect builtin:retention >/dev/null # warm the compile cache
  "${AW[@]}" inspect builtin:sharing >/dev/null
  for p in retention sharing; do
    policy $p >"$WORK/$p.toml"
    local t0 t1
    t0=$(date +%s.%N)
    "${AW[@]}" plan --policy "$WORK/$p.toml" --aws --endpoint-url "$URL" --max-attempts 1 --format json \
      >"$WORK/plan-$p.json" 2>"$WORK/plan-$p.err"
    t1=$(date +%s.%N)
    echo "== plan, policy $p: wall $(echo "$t1 - $t0" | bc) s"
    grep -E '^(API calls|[0-9]+ action)' "$WORK/plan-$p.err"
    python3 -c "import json,collections,sys; p=json.load(open(sys.argv[1])); print('  ops', dict(collections.Counter(a['op'] for a in p['actions'])), 'plugin errors', len(p['errors']))" "$WORK/plan-$p.json"
  done
  stop_moto
}

bench_apply() {
  start_moto
  python3 scripts/seed-moto.py --endpoint "$URL" --regions us-east-1 --per-region 503 --families 1 --share-every 0 --prefix old
  policy dereg >"$WORK/dereg.toml"
  sed -i 's/regions = \["us-east-1", "eu-west-1"\]/regions = ["us-east-1"]/' "$WORK/dereg.toml"
  "${AW[@]}" plan --policy "$WORK/dereg.toml" --aws --endpoint-url "$URL" --max-attempts 1 --as-of 2027-06-01 \
    --out "$WORK/dereg-plan.json" 2>"$WORK/dereg-plan.err"
  grep -E '^(API calls|[0-9]+ action)' "$WORK/dereg-plan.err"
  local t0 t1
  t0=$(date +%s.%N)
  "${AW[@]}" apply --policy "$WORK/dereg.toml" --aws --endpoint-url "$URL" --max-attempts 1 --as-of 2027-06-01 \
    --plan "$WORK/dereg-plan.json" --yes --journal "$WORK/dereg.jsonl" 2>&1 |
    python3 -u -c 'import sys,time
t0=time.monotonic()
for l in sys.stdin: sys.stdout.write(f"{time.monotonic()-t0:9.3f} {l}")' >"$WORK/dereg-apply.log"
  t1=$(date +%s.%N)
  echo "== apply of 500 deregistrations: wall $(echo "$t1 - $t0" | bc) s (log: $WORK/dereg-apply.log)"
  grep -E 'applied:|API calls' "$WORK/dereg-apply.log"
  python3 - "$WORK/dereg-apply.log" <<'EOF'
import sys
times = [float(l.split()[0]) for l in open(sys.argv[1]) if "deregister: Done" in l]
n = len(times)
span = times[-1] - times[0] if n else 0.0
bound = max(0, n - 100) / 5.0
# Replay the observed completion times through EC2's DeregisterImage bucket (100, 5/s,
# full at the first call): how many calls would EC2 have throttled?
tokens, last, throttled = 100.0, times[0] if n else 0.0, 0
for t in times:
    tokens = min(100.0, tokens + (t - last) * 5.0)
    last = t
    if tokens < 1.0:
        throttled += 1
    else:
        tokens -= 1.0
first_100 = times[99] - times[0] if n >= 100 else 0.0
print(f"  {n} DeregisterImage done; first..last {span:.1f} s; bound (n-100)/5 = {bound:.1f} s; "
      f"ratio {span / bound if bound else 0:.2f}; first 100 took {first_100:.1f} s; "
      f"EC2's bucket would have throttled {throttled}")
EOF
  stop_moto
}

case $WHAT in
  plan) bench_plan ;;
  apply) bench_apply ;;
  all) bench_plan; bench_apply ;;
esac
echo "work files: $WORK"
