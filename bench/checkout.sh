#!/usr/bin/env bash
# Completed checkouts per second against direct purchases per second, in the same run:
# for each store, plan count and round, two loadgen runs take turns (the order alternates
# from round to round, so that the shared machine's drift hits both alike), each on a
# freshly started server and a fresh database (PostgreSQL: a scratch database, dropped
# after; MongoDB: a database named in the URL, dropped after; memory: a new process):
#   - purchases: `seatkeeper-loadgen` (POST /api/subscriptions/purchase);
#   - checkouts: `seatkeeper-loadgen --target checkout`, one iteration a completed
#     checkout (open, confirm, the signed payment_intent.succeeded webhook).
# Both with the in-process simulated gateway (0 ms payments), 64 connections, plans of
# 1,000,000 seats, rate limits off. The ratio is checkouts/s over purchases/s of the same
# round; the table has p99s (a checkout's is the whole checkout, with each step's), every
# run's verdict, the load average before each run, and per store and plan count the
# median ratio. After each checkout run the server's /metrics are saved
# (metrics-*.txt: http_request_duration_seconds per route, the store's step timings).
#
#   bash bench/checkout.sh
#
# Settings (environment):
#   CHECKOUT_STORES="memory postgres mongo"
#   CHECKOUT_PLANS="1 16"          1: the hot plan
#   CHECKOUT_ROUNDS=3              pairs per store and plan count
#   CHECKOUT_CONNECTIONS=64
#   CHECKOUT_DURATION=10           seconds per run
#   BENCH_PIN=1                    in memory: server on CPU 0, loadgen on CPU 1
#   BENCH_PORT=3904
#   BENCH_OUT=target/bench/checkout-<date>   every run's JSON, server logs, `table.md`
#   CARGO_TARGET_DIR=target        the release binaries are $CARGO_TARGET_DIR/release/
#                                  seatkeeper-{server,loadgen,mongobench} (built here
#                                  unless BENCH_SKIP_BUILD=1)
#   SEATKEEPER_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres
#   SEATKEEPER_BENCH_MONGODB_URL=mongodb://127.0.0.1:27017/?directConnection=true
#                                  a replica set (`bash deploy/mongodb.sh start`)
set -euo pipefail
cd "$(dirname "$0")/.."

stores=${CHECKOUT_STORES:-"memory postgres mongo"}
plan_counts=${CHECKOUT_PLANS:-"1 16"}
rounds=${CHECKOUT_ROUNDS:-3}
conns=${CHECKOUT_CONNECTIONS:-64}
duration=${CHECKOUT_DURATION:-10}
pin=${BENCH_PIN:-1}
port=${BENCH_PORT:-3904}
out=${BENCH_OUT:-target/bench/checkout-$(date +%Y%m%d-%H%M%S)}
bin=${CARGO_TARGET_DIR:-target}/release
server=$bin/seatkeeper-server
loadgen=$bin/seatkeeper-loadgen
mongobench=$bin/seatkeeper-mongobench
pg_admin_url=${SEATKEEPER_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
mongo_url=${SEATKEEPER_BENCH_MONGODB_URL:-mongodb://127.0.0.1:27017/?directConnection=true}
token=bench-admin-token-0123456789
webhook_secret=whsec_bench_0123456789abcdef
base_url="http://127.0.0.1:$port"
# shellcheck source=bench/stores.sh
source bench/stores.sh
if [ "$pin" = 1 ] && { ! command -v taskset >/dev/null || [ "$(nproc)" -lt 2 ]; }; then
  echo "BENCH_PIN=1 needs taskset and 2 CPUs; running unpinned" >&2
  pin=0
fi
mkdir -p "$out"

if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
  echo "== building (release) into $bin" >&2
  cargo build --release -p seatkeeper-server -p seatkeeper-loadgen -p seatkeeper-mongobench >&2
fi

server_pid=""
db_store=""
db_name=""
stop_server() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  server_pid=""
}
drop_db() {
  drop_store "$db_store" "$db_name"
  db_store=""
}
cleanup() {
  stop_server
  drop_db
}
trap cleanup EXIT


# run STORE PLANS TARGET ROUND: one run on a fresh server and database; its JSON is
# $out/STORE-pPLANS-TARGET-ROUND.json.
run() {
  local store=$1 plans=$2 target=$3 round=$4
  local name="$store-p$plans-$target-$round"
  local server_cpu="" loadgen_cpu="" url
  if [ "$pin" = 1 ] && [ "$store" = memory ]; then
    server_cpu="taskset -c 0"
    loadgen_cpu="taskset -c 1"
  fi
  db_name="seatkeeper_checkout_${target}_${round}_$$_$(date +%s%N)"
  url=$(store_url "$store" "$db_name")
  db_store=$store
  env SEATKEEPER_HTTP__ADDR="127.0.0.1:$port" SEATKEEPER_STORE__URL="$url" \
    SEATKEEPER_PAYMENTS__LATENCY_MS=0 SEATKEEPER_PAYMENTS__WEBHOOK_SECRETS="$webhook_secret" \
    SEATKEEPER_AUTH__ADMIN_TOKEN="$token" SEATKEEPER_RATE_LIMIT__ENABLED=false \
    SEATKEEPER_DEMO__SEED=false SEATKEEPER_LOG__LEVEL=warn \
    $server_cpu "$server" >"$out/server-$name.log" 2>&1 &
  server_pid=$!
  local ready=""
  for _ in $(seq 1 200); do
    if curl -fsS "$base_url/health/ready" >/dev/null 2>&1; then
      ready=1
      break
    fi
    sleep 0.1
  done
  if [ -z "$ready" ]; then
    cat "$out/server-$name.log" >&2
    echo "the server did not become ready within 20 s" >&2
    exit 1
  fi
  local extra=()
  [ "$target" = checkout ] && extra=(--target checkout --webhook-secret "$webhook_secret")
  cut -d' ' -f1-3 /proc/loadavg >"$out/$name.loadavg"
  echo "== $name (load $(cat "$out/$name.loadavg"))" >&2
  $loadgen_cpu "$loadgen" --base-url "$base_url" --admin-token "$token" --progress 0 \
    --duration "$duration" --connections "$conns" --plans "$plans" --seats 1000000 \
    --json "$out/$name.json" "${extra[@]}" >"$out/$name.txt" 2>&1 || {
    echo "   (exit $?: see $out/$name.txt)" >&2
  }
  sed -n '3p' "$out/$name.txt" >&2
  if [ "$target" = checkout ]; then
    curl -fsS -H "Authorization: Bearer $token" "$base_url/metrics" >"$out/metrics-$name.txt" 2>/dev/null || true
  fi
  stop_server
  drop_db
}

# field JSON FILTER: a number from a run's JSON, rounded for the table.
field() { jq -r "$2" "$1"; }

table="$out/table.md"
{
  echo "| store | plans | round | purchases/s | checkouts/s | ratio | purchase p99 ms | checkout p99 ms | open / confirm / webhook p99 ms | load avg | invariants |"
  echo "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- | --- |"
} >"$table"
summary="$out/summary.md"
{
  echo "| store | plans | median checkouts/s ÷ purchases/s (min–max) | rounds |"
  echo "| --- | --- | --- | --- |"
} >"$summary"

for store in $stores; do
  for plans in $plan_counts; do
    ratios=()
    for round in $(seq 1 "$rounds"); do
      if [ $((round % 2)) = 1 ]; then
        run "$store" "$plans" purchase "$round"
        run "$store" "$plans" checkout "$round"
      else
        run "$store" "$plans" checkout "$round"
        run "$store" "$plans" purchase "$round"
      fi
      p="$out/$store-p$plans-purchase-$round.json"
      c="$out/$store-p$plans-checkout-$round.json"
      if [ ! -s "$p" ] || [ ! -s "$c" ]; then
        echo "| $store | $plans | $round | (no report: see the .txt files) | | | | | | | FAIL |" | tee -a "$table" >&2
        continue
      fi
      rp=$(field "$p" '.created_per_sec')
      rc=$(field "$c" '.created_per_sec')
      ratio=$(jq -n --argjson a "$rp" --argjson b "$rc" 'if $a > 0 then ($b / $a * 1000 | round / 1000) else 0 end')
      ratios+=("$ratio")
      steps=$(field "$c" '[.steps.open.p99_ms, .steps.confirm.p99_ms, .steps.webhook.p99_ms] | map(. * 100 | round / 100 | tostring) | join(" / ")')
      verdict=$(jq -rn --slurpfile p "$p" --slurpfile c "$c" \
        'if $p[0].verification.passed and $c[0].verification.passed then "pass" else "FAIL" end')
      load="$(cat "$out/$store-p$plans-purchase-$round.loadavg") → $(cat "$out/$store-p$plans-checkout-$round.loadavg")"
      printf '| %s | %s | %s | %.0f | %.0f | %s | %.2f | %.2f | %s | %s | %s |\n' \
        "$store" "$([ "$plans" = 1 ] && echo "hot plan" || echo "$plans plans")" "$round" \
        "$rp" "$rc" "$ratio" "$(field "$p" '.latency.p99_ms')" "$(field "$c" '.latency.p99_ms')" \
        "$steps" "$load" "$verdict" | tee -a "$table" >&2
    done
    if [ "${#ratios[@]}" -gt 0 ]; then
      stats=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR]=$1} END {m = (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2; printf "**%.3f** (%s–%s)", m, v[1], v[NR]}')
      echo "| $store | $([ "$plans" = 1 ] && echo "hot plan" || echo "$plans plans") | $stats | ${#ratios[@]} |" >>"$summary"
    fi
  done
done

{
  echo
  echo "Pinned in memory (server CPU 0, loadgen CPU 1): $([ "$pin" = 1 ] && echo yes || echo no). $conns connections, ${duration} s per run, 0 ms payments."
  echo
  cat "$summary"
} >>"$table"
echo "== results in $out" >&2
cat "$table"
