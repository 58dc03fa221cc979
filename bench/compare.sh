#!/usr/bin/env bash
# What a change costs, as interleaved pairs: two server binaries (A, the build before the
# change, and B, the build after) take turns on the same load, each on a freshly started
# server and a fresh database, so that the shared machine's drift hits both alike. Prints
# every run and, per store, the median of B's purchases/s over A's in the same round.
# After each run the server's /metrics are saved (metrics-*.txt: the store's batch sizes
# and timings).
#
#   bash bench/compare.sh A_SERVER B_SERVER
#
# Settings (environment):
#   COMPARE_STORES="memory postgres mongo"
#   COMPARE_ROUNDS=5             pairs per store (the order within a pair alternates)
#   COMPARE_CONNECTIONS=64
#   COMPARE_DURATION=10          seconds per run
#   COMPARE_PLANS=1              1: the hot plan
#   COMPARE_TARGET=purchase      or `checkout`: completed checkouts/s (open, confirm, the
#                                signed webhook; 0 ms payments), as bench/checkout.sh runs them
#   BENCH_PIN=1                  in memory: server on CPU 0, loadgen on CPU 1
#   BENCH_PORT=3902
#   BENCH_OUT=target/bench/compare-<date>   every run's JSON and `pairs.md`
#   COMPARE_B_ENV="K=V …"        extra settings of B's server only (say, the rate limits on)
# The loadgen is target/release/seatkeeper-loadgen (LOADGEN=... for another; LOADGEN_A=...
# for A alone, when A's API differs, say a build from before API keys), and MongoDB
# databases are dropped with target/release/seatkeeper-mongobench (MONGOBENCH=...).
set -euo pipefail
cd "$(dirname "$0")/.."

a=${1:?the server binary before the change}
b=${2:?the server binary after the change}
stores=${COMPARE_STORES:-"memory postgres mongo"}
rounds=${COMPARE_ROUNDS:-5}
conns=${COMPARE_CONNECTIONS:-64}
duration=${COMPARE_DURATION:-10}
plans=${COMPARE_PLANS:-1}
target=${COMPARE_TARGET:-purchase}
webhook_secret=whsec_bench_0123456789abcdef
target_args=()
target_env=""
if [ "$target" = checkout ]; then
  target_args=(--target checkout --webhook-secret "$webhook_secret")
  target_env="SEATKEEPER_PAYMENTS__LATENCY_MS=0 SEATKEEPER_PAYMENTS__WEBHOOK_SECRETS=$webhook_secret"
fi
pin=${BENCH_PIN:-1}
port=${BENCH_PORT:-3902}
out=${BENCH_OUT:-target/bench/compare-$(date +%Y%m%d-%H%M%S)}
loadgen=${LOADGEN:-target/release/seatkeeper-loadgen}
loadgen_a=${LOADGEN_A:-$loadgen}
b_env=${COMPARE_B_ENV:-}
mongobench=${MONGOBENCH:-target/release/seatkeeper-mongobench}
pg_admin_url=${SEATKEEPER_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
mongo_url=${SEATKEEPER_BENCH_MONGODB_URL:-mongodb://127.0.0.1:27017/?directConnection=true}
token=bench-admin-token-0123456789
base_url="http://127.0.0.1:$port"
# shellcheck source=bench/stores.sh
source bench/stores.sh
mkdir -p "$out"

server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
trap cleanup EXIT


# run STORE TAG BINARY ROUND: one run; prints purchases/s and p99.
run() {
  local store=$1 tag=$2 binary=$3 round=$4
  local db="seatkeeper_compare_${tag,,}_${round}_$$"
  local url server_cpu="" loadgen_cpu="" driver=$loadgen extra=""
  url=$(store_url "$store" "$db")
  if [ "$tag" = A ]; then
    driver=$loadgen_a
  else
    extra=$b_env
  fi
  if [ "$pin" = 1 ] && [ "$store" = memory ]; then
    server_cpu="taskset -c 0"
    loadgen_cpu="taskset -c 1"
  fi
  env SEATKEEPER_HTTP__ADDR="127.0.0.1:$port" SEATKEEPER_STORE__URL="$url" \
    SEATKEEPER_AUTH__ADMIN_TOKEN="$token" SEATKEEPER_RATE_LIMIT__ENABLED=false SEATKEEPER_DEMO__SEED=false \
    SEATKEEPER_LOG__LEVEL=warn $target_env $extra $server_cpu "$binary" >"$out/server-$store-$tag-$round.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 200); do
    curl -fsS "$base_url/health/ready" >/dev/null 2>&1 && break
    sleep 0.1
  done
  local json="$out/$store-$tag-$round.json"
  $loadgen_cpu "$driver" --base-url "$base_url" --admin-token "$token" --progress 0 \
    --duration "$duration" --connections "$conns" --plans "$plans" --seats 1000000 \
    --json "$json" "${target_args[@]}" >"$out/loadgen-$store-$tag-$round.log" 2>&1
  curl -fsS -H "Authorization: Bearer $token" "$base_url/metrics" \
    >"$out/metrics-$store-$tag-$round.txt" 2>/dev/null || true
  cleanup
  drop_store "$store" "$db"
  python3 - "$json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
def find(o, key):
    if isinstance(o, dict):
        if key in o:
            return o[key]
        for v in o.values():
            r = find(v, key)
            if r is not None:
                return r
    return None
print(f"{find(d, 'created_per_sec'):.0f} {find(d, 'p99_ms'):.2f}")
EOF
}

pairs="$out/pairs.md"
echo "| store | round | A ${target}s/s | B ${target}s/s | B / A | A p99 ms | B p99 ms |" >"$pairs"
echo "| --- | --- | --- | --- | --- | --- | --- |" >>"$pairs"
for store in $stores; do
  ratios=()
  for round in $(seq 1 "$rounds"); do
    if [ $((round % 2)) = 1 ]; then
      read -r ra pa < <(run "$store" A "$a" "$round")
      read -r rb pb < <(run "$store" B "$b" "$round")
    else
      read -r rb pb < <(run "$store" B "$b" "$round")
      read -r ra pa < <(run "$store" A "$a" "$round")
    fi
    ratio=$(python3 -c "print(f'{$rb / $ra:.3f}')")
    ratios+=("$ratio")
    echo "| $store | $round | $ra | $rb | $ratio | $pa | $pb |" | tee -a "$pairs"
  done
  median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}')
  echo "| $store | median | | | **$median** | | |" | tee -a "$pairs"
done
echo "pairs: $pairs"
