#!/usr/bin/env bash
# amiwarden beside Cloud Custodian (c7n) on the moto EC2 emulator, side by side.
# Results and the reading of them: docs/bench-custodian.md.
#
#   scripts/bench/vs-custodian.sh [--images N] [--runs K] [--apply-runs K] [--scenario a|b|c|all]
#                                 [--c7n-public set-permissions|remove-launch-permissions|matched]
#                                 [--out DIR]
#
#   --images N     images in the estate (default 1000); one region, us-east-1
#   --runs K       repetitions of every measured run (default 3); tables show medians
#   --apply-runs K repetitions of the applies only (default: --runs; 0: dry runs only, no
#                  end-state comparison); an amiwarden apply that deletes ~500 snapshots
#                  takes 20+ minutes on moto (see the doc)
#   --scenario S   a: deregister AMIs older than 90 days that nothing uses, with snapshots
#                  b: remove public launch permissions
#                  c: both (one amiwarden policy with both plugins, one c7n file with both policies)
#                  all (default): a, b and c
#   --c7n-public V the c7n policy used for "remove public" (default set-permissions):
#                  set-permissions             filter Public: true, set-permissions remove: [all]
#                  remove-launch-permissions   filter cross-account (whitelist 222222222222),
#                                              remove-launch-permissions accounts: matched (deprecated in c7n)
#                  matched                     filter cross-account (whitelist 222222222222),
#                                              set-permissions remove: matched
#   --aw-paced     pace amiwarden's calls by EC2's token buckets, as on real EC2 (default: not
#                  paced, `--no-pacing`, since moto does not throttle and c7n does not pace;
#                  the report's "EC2 floor" column says what the buckets would impose)
#   --out DIR      where runs, logs, end states and report.md go (default: a new /tmp/vs-custodian.XXXXXX)
#
# Environment:
#   AMIWARDEN   the amiwarden binary (default target/release/amiwarden; build it with
#               `cargo build --release -p amiwarden`). Figures for BENCHMARKS.md must come
#               from a release build.
#   BENCH_VENV  the virtualenv for c7n (default ~/.cache/amiwarden/bench-venv); created and
#               filled from scripts/bench/custodian-requirements.txt (c7n 0.9.53, c7n-org
#               0.6.52, all pinned) when missing or out of date, silent when current.
#
# Needs python3 (3.11), moto_server (`pip install 'moto[server]'`, 5.2.x) and curl. Starts
# two moto servers (one per tool, MOTO_EC2_LOAD_DEFAULT_AMIS=false) and one counting proxy
# in front of each (scripts/bench/count_proxy.py), all on free 127.0.0.1 ports, and stops
# them on exit. Each tool only ever talks to its own proxy. Nothing leaves loopback.
#
# For every scenario: both emulators are seeded with the same estate
# (scripts/bench/vs_custodian.py); each tool runs a dry run K times (amiwarden `plan`,
# custodian `run --dryrun`); then, K times, its emulator is restarted and reseeded and the
# tool applies (amiwarden `apply --yes`, custodian `run`). Per run: wall time, client CPU
# (user + sys of the tool's process tree), API calls by operation as the proxy saw them.
# After the last apply both emulators' images are dumped by name and compared.
set -euo pipefail
SELF=$(realpath "$0")
cd "$(dirname "$0")/../.."
ROOT=$PWD

IMAGES=1000
RUNS=3
APPLY_RUNS=""
SCENARIOS="a b c"
C7N_PUBLIC=set-permissions
OUT=""
AW_PACING=(--no-pacing)
while [ $# -gt 0 ]; do
  case $1 in
    --images) IMAGES=$2; shift 2 ;;
    --runs) RUNS=$2; shift 2 ;;
    --apply-runs) APPLY_RUNS=$2; shift 2 ;;
    --scenario) case $2 in all) SCENARIOS="a b c" ;; a|b|c) SCENARIOS=$2 ;; *) echo "--scenario a|b|c|all" >&2; exit 2 ;; esac; shift 2 ;;
    --c7n-public) C7N_PUBLIC=$2; shift 2 ;;
    --out) OUT=$2; shift 2 ;;
    --aw-paced) AW_PACING=(); shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
APPLY_RUNS=${APPLY_RUNS:-$RUNS}
case $C7N_PUBLIC in set-permissions|remove-launch-permissions|matched) ;; *) echo "bad --c7n-public $C7N_PUBLIC" >&2; exit 2 ;; esac

AW_BIN=${AMIWARDEN:-target/release/amiwarden}
[ -x "$AW_BIN" ] || { echo "no amiwarden binary at $AW_BIN (set AMIWARDEN, or cargo build --release -p amiwarden)" >&2; exit 2; }
AW_BIN=$(cd "$(dirname "$AW_BIN")" && pwd)/$(basename "$AW_BIN")
command -v moto_server >/dev/null || { echo "moto_server not found: pip install 'moto[server]'" >&2; exit 2; }

# --- Cloud Custodian, pinned, in its own virtualenv ----------------------------------
VENV=${BENCH_VENV:-$HOME/.cache/amiwarden/bench-venv}
REQS=$ROOT/scripts/bench/custodian-requirements.txt
STAMP=$VENV/.requirements.sha256
want=$(sha256sum "$REQS" | cut -d' ' -f1)
if [ ! -x "$VENV/bin/custodian" ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "installing c7n into $VENV (pinned in $REQS)" >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQS"
  echo "$want" >"$STAMP"
fi
PY=$VENV/bin/python
CUSTODIAN=$VENV/bin/custodian
HELPER=$ROOT/scripts/bench/vs_custodian.py

# --- work directory, credentials ------------------------------------------------------
if [ -z "$OUT" ]; then OUT=$(mktemp -d /tmp/vs-custodian.XXXXXX); else mkdir -p "$OUT"; fi
OUT=$(cd "$OUT" && pwd)
RESULTS=$OUT/results.jsonl
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_DEFAULT_REGION=us-east-1
export AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent
export XDG_STATE_HOME=$OUT/state XDG_CACHE_HOME=$OUT/xdg-cache
unset AWS_ENDPOINT_URL AWS_PROFILE || true
TODAY=$(date -u +%F)

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- emulators: moto + counting proxy per tool ------------------------------------------
declare -A MOTO_PORT PROXY_PORT MOTO_PID PROXY_PID
for tool in amiwarden custodian; do
  MOTO_PORT[$tool]=$(free_port)
  PROXY_PORT[$tool]=$(free_port)
  MOTO_PID[$tool]=""
  PROXY_PID[$tool]=""
done

stop_pid() { # stop_pid PID: a process this script started
  if [ -n "$1" ]; then
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
  fi
}
cleanup() {
  for tool in amiwarden custodian; do
    stop_pid "${MOTO_PID[$tool]:-}"
    stop_pid "${PROXY_PID[$tool]:-}"
  done
}
trap cleanup EXIT

wait_http() { # wait_http URL
  for _ in $(seq 150); do
    curl -s -o /dev/null "$1" && return 0
    sleep 0.2
  done
  echo "nothing answers at $1" >&2
  exit 1
}

# Fresh emulator for TOOL: (re)start its moto with the estate loaded, then seed.
fresh() {
  local tool=$1
  stop_pid "${MOTO_PID[$tool]}"
  MOTO_AMIS_PATH=$OUT/amis.json MOTO_EC2_LOAD_DEFAULT_AMIS=false \
    moto_server -H 127.0.0.1 -p "${MOTO_PORT[$tool]}" >>"$OUT/moto-$tool.log" 2>&1 &
  MOTO_PID[$tool]=$!
  wait_http "http://127.0.0.1:${MOTO_PORT[$tool]}/"
  "$PY" "$HELPER" seed --endpoint "http://127.0.0.1:${MOTO_PORT[$tool]}" --layout "$OUT/layout.json" \
    --map "$OUT/map-$tool.json"
}

for tool in amiwarden custodian; do
  python3 "$ROOT/scripts/bench/count_proxy.py" --listen "${PROXY_PORT[$tool]}" --upstream "${MOTO_PORT[$tool]}" \
    >"$OUT/proxy-$tool.log" 2>&1 &
  PROXY_PID[$tool]=$!
  wait_http "http://127.0.0.1:${PROXY_PORT[$tool]}/__bench/counts"
done

"$PY" "$HELPER" amis --images "$IMAGES" --out "$OUT/amis.json" --layout "$OUT/layout.json"

# --- policies -----------------------------------------------------------------------------
aw_policy() { # aw_policy SCENARIO
  cat <<'EOF'
[scope]
accounts = ["123456789012"]
regions = ["us-east-1"]

[guardrails]
allowed_principals = ["222222222222"]
max_destructive = 1000000
max_destructive_percent = 100.0
EOF
  if [ "$1" != b ]; then
    cat <<'EOF'

# Deregister (with snapshots) every image older than 90 days that nothing uses:
# keep_newest = 0 ages images out by age alone; every image is in family "bench".
[[plugin]]
name = "retention"
source = "builtin:retention"
grants = ["deregister", "delete-snapshots", "retain"]
[plugin.limits]
time_ms = 10000    # a debug build on a busy 2-core machine; the default is 100
[plugin.config]
family = { name_regex = '^(bench)-\d+$' }
keep_newest = 0
deregister_after_days = 90
delete_snapshots = true
EOF
  fi
  if [ "$1" != a ]; then
    cat <<'EOF'

# Revoke public launch permissions; 222222222222 is a legitimate share and stays. The
# sharing plugin reads no launch permissions (needs = []): it judges the public flag
# DescribeImages returns, as c7n's Public filter does.
[[plugin]]
name = "sharing"
source = "builtin:sharing"
grants = ["unshare"]
needs = []
[plugin.limits]
time_ms = 10000
[plugin.config]
allowed = ["222222222222"]
EOF
  fi
}

c7n_policy() { # c7n_policy SCENARIO
  echo "policies:"
  if [ "$1" != b ]; then
    cat <<'EOF'
  - name: ami-old-unused
    resource: ami
    filters:
      - type: image-age
        days: 90
      - type: unused
        value: true
    actions:
      - type: deregister
        delete-snapshots: true
EOF
  fi
  if [ "$1" != a ]; then
    case $C7N_PUBLIC in
      set-permissions) cat <<'EOF'
  - name: ami-public
    resource: ami
    filters:
      - Public: true
    actions:
      - type: set-permissions
        remove: [all]
EOF
      ;;
      remove-launch-permissions) cat <<'EOF'
  - name: ami-public
    resource: ami
    filters:
      - type: cross-account
        whitelist: ['222222222222']
    actions:
      - type: remove-launch-permissions
        accounts: matched
EOF
      ;;
      matched) cat <<'EOF'
  - name: ami-public
    resource: ami
    filters:
      - type: cross-account
        whitelist: ['222222222222']
    actions:
      - type: set-permissions
        remove: matched
EOF
      ;;
    esac
  fi
}

# Compile the plugins once, outside the measured runs (a scheduled run finds them cached).
"$AW_BIN" --cache-dir "$OUT/aw-cache" inspect builtin:retention >/dev/null
"$AW_BIN" --cache-dir "$OUT/aw-cache" inspect builtin:sharing >/dev/null

# measure TOOL MODE SCENARIO RUN: one measured run against TOOL's proxy.
measure() {
  local tool=$1 mode=$2 sc=$3 run=$4
  local dir=$OUT/runs/$IMAGES-$sc-$tool-$mode-$run
  local proxy=http://127.0.0.1:${PROXY_PORT[$tool]}
  mkdir -p "$dir"
  local meta
  meta=$(printf '{"images":%d,"scenario":"%s","tool":"%s","mode":"%s","run":%d}' "$IMAGES" "$sc" "$tool" "$mode" "$run")
  if [ "$tool" = amiwarden ]; then
    local aw=("$AW_BIN" --cache-dir "$OUT/aw-cache")
    if [ "$mode" = dry-run ]; then
      "$PY" "$HELPER" measure --proxy "$proxy" --out "$RESULTS" --meta "$meta" --stdout "$dir/plan.json" \
        --stderr "$dir/stderr.log" --select "$dir/plan.json" -- \
        "${aw[@]}" plan --policy "$OUT/aw-$sc.toml" --aws --endpoint-url "$proxy" --max-attempts 1 \
        --as-of "$TODAY" --format json
    else
      "$PY" "$HELPER" measure --proxy "$proxy" --out "$RESULTS" --meta "$meta" --stdout "$dir/stdout.log" \
        --stderr "$dir/stderr.log" -- \
        "${aw[@]}" apply --policy "$OUT/aw-$sc.toml" --aws --endpoint-url "$proxy" --max-attempts 1 \
        --yes --journal "$dir/journal.jsonl" ${AW_PACING[@]+"${AW_PACING[@]}"}
    fi
  else
    local dry=()
    [ "$mode" = dry-run ] && dry=(--dryrun)
    AWS_ENDPOINT_URL=$proxy "$PY" "$HELPER" measure --proxy "$proxy" --out "$RESULTS" --meta "$meta" \
      --stdout "$dir/stdout.log" --stderr "$dir/stderr.log" --select "$dir/c7n-out" -- \
      "$CUSTODIAN" run -r us-east-1 -s "$dir/c7n-out" --cache-period 0 "${dry[@]}" "$OUT/c7n-$sc.yml"
  fi
}

echo "== $IMAGES images, scenarios: $SCENARIOS, $RUNS dry runs and $APPLY_RUNS applies each; amiwarden: $AW_BIN; c7n public policy: $C7N_PUBLIC" >&2
echo "   work dir: $OUT" >&2
for sc in $SCENARIOS; do
  aw_policy "$sc" >"$OUT/aw-$sc.toml"
  c7n_policy "$sc" >"$OUT/c7n-$sc.yml"
  echo "== scenario $sc: dry runs" >&2
  fresh amiwarden
  fresh custodian
  for run in $(seq "$RUNS"); do
    measure amiwarden dry-run "$sc" "$run"
    measure custodian dry-run "$sc" "$run"
  done
  echo "== scenario $sc: applies (a freshly seeded emulator before each)" >&2
  for run in $(seq "$APPLY_RUNS"); do
    fresh amiwarden
    measure amiwarden apply "$sc" "$run"
    fresh custodian
    measure custodian apply "$sc" "$run"
  done
  [ "$APPLY_RUNS" -gt 0 ] || continue # --apply-runs 0: dry runs only, no end states
  for tool in amiwarden custodian; do
    "$PY" "$HELPER" dump --endpoint "http://127.0.0.1:${MOTO_PORT[$tool]}" --layout "$OUT/layout.json" \
      --map "$OUT/map-$tool.json" --out "$OUT/end-$IMAGES-$sc-$tool.json"
  done
  "$PY" "$HELPER" compare --layout "$OUT/layout.json" --scenario "$sc" --aw "$OUT/end-$IMAGES-$sc-amiwarden.json" \
    --c7n "$OUT/end-$IMAGES-$sc-custodian.json" --out "$OUT/compare-$IMAGES-$sc.json"
done

"$PY" "$HELPER" report --results "$RESULTS" --compare-glob "$OUT/compare-*.json" --out "$OUT/report.md"
echo "work files and report: $OUT" >&2
