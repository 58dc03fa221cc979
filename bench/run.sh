#!/usr/bin/env bash
# The main benchmark table of docs/benchmarks.md, in one run: release builds of the server,
# seatkeeper-loadgen and seatkeeper-mongobench, then
#   - memory store: the echo baseline (POST /bench/echo) at each connection count, the
#     same echo waiting as long as each non-zero payment latency (the control), then
#     purchases for one hot plan / 16 plans x payment latency 0 / 50 ms x connections,
#     each row on a freshly started server;
#   - PostgreSQL (a fresh scratch database per server start — one per plan count ×
#     payment latency — dropped at the end): the pgbench ceiling (bench/pgbench.sh) for 1
#     and 16 plans, then the same purchase grid;
#   - MongoDB (a fresh database per server start — one per plan count × payment latency —
#     dropped after it): the ceiling (seatkeeper-mongobench, the store's minimal reservation
#     transaction through the driver) for each plan count at each connection count, then the
#     same purchase grid.
# Every row's JSON report, the server logs and `table.md` (markdown rows with the ratio of
# each row to its ceiling measured in this run) land in $BENCH_OUT.
#
# Settings (environment):
#   BENCH_DURATION=10          seconds per row (each row is also capped by the loadgen)
#   BENCH_CONNECTIONS="16 64 256"
#   BENCH_LATENCIES="0 50"     simulated payment latency, ms
#   BENCH_PLANS="1 16"
#   BENCH_STORES="memory postgres mongo"
#   BENCH_PORT=3900            loopback port of the server
#   BENCH_OUT=target/bench/<date>
#   BENCH_LOG_LEVEL=warn       the server's log level (info logs one line per purchase)
#   BENCH_SKIP_BUILD=1         use the release binaries already in target/release
#   BENCH_PIN=1                memory rows (echo included): the server on CPU 0 and the
#                              loadgen on CPU 1 (taskset), as if on two machines; 0 = unpinned
#   SEATKEEPER_BENCH_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres
#   SEATKEEPER_BENCH_MONGODB_URL=mongodb://127.0.0.1:27017/?directConnection=true
#                              a replica set (`bash deploy/mongodb.sh start` runs this one);
#                              the path, if any, is replaced by each scratch database's name
set -euo pipefail
cd "$(dirname "$0")/.."

duration=${BENCH_DURATION:-10}
connections=${BENCH_CONNECTIONS:-"16 64 256"}
latencies=${BENCH_LATENCIES:-"0 50"}
plan_counts=${BENCH_PLANS:-"1 16"}
stores=${BENCH_STORES:-"memory postgres mongo"}
port=${BENCH_PORT:-3900}
out=${BENCH_OUT:-target/bench/$(date +%Y%m%d-%H%M%S)}
log_level=${BENCH_LOG_LEVEL:-warn}
pin=${BENCH_PIN:-1}
if [ "$pin" = 1 ] && { ! command -v taskset >/dev/null || [ "$(nproc)" -lt 2 ]; }; then
  echo "BENCH_PIN=1 needs taskset and 2 CPUs; running unpinned" >&2
  pin=0
fi
server_cpu=""
loadgen_cpu=""
pg_admin_url=${SEATKEEPER_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
mongo_url=${SEATKEEPER_BENCH_MONGODB_URL:-mongodb://127.0.0.1:27017/?directConnection=true}
token=bench-admin-token-0123456789
base_url="http://127.0.0.1:$port"
server=target/release/seatkeeper-server
loadgen=target/release/seatkeeper-loadgen
mongobench=target/release/seatkeeper-mongobench

mkdir -p "$out"
table="$out/table.md"
: >"$table"

if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
  echo "== building (release)" >&2
  cargo build --release -p seatkeeper-server -p seatkeeper-loadgen -p seatkeeper-mongobench >&2
fi

server_pid=""
scratch_db=""
scratch_url=""
mongo_db=""
mongo_db_url=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  if [ -n "$scratch_db" ]; then
    psql -q "$pg_admin_url" -c "DROP DATABASE IF EXISTS $scratch_db WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  if [ -n "$mongo_db" ]; then
    "$mongobench" --url "$mongo_url" --drop-database "$mongo_db" >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

# start_server TAG STORE_URL LATENCY_MS [VAR=VALUE ...]
start_server() {
  local tag=$1 url=$2 latency=$3
  shift 3
  env SEATKEEPER_HTTP__ADDR="127.0.0.1:$port" \
    SEATKEEPER_STORE__URL="$url" \
    SEATKEEPER_PAYMENTS__LATENCY_MS="$latency" \
    SEATKEEPER_AUTH__ADMIN_TOKEN="$token" SEATKEEPER_RATE_LIMIT__ENABLED=false \
    SEATKEEPER_DEMO__SEED=false \
    SEATKEEPER_BENCH__ECHO=true \
    SEATKEEPER_LOG__LEVEL="$log_level" \
    "$@" $server_cpu "$server" >"$out/server-$tag.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do
    if curl -fsS "$base_url/health" >/dev/null 2>&1; then
      return
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
      cat "$out/server-$tag.log" >&2
      echo "the server did not start" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "the server did not answer /health within 10 s" >&2
  exit 1
}

stop_server() {
  kill -TERM "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
}

# Drops the previous scratch database and creates a new one; its URL in $scratch_url.
# (Not called as $(…): the names must reach `cleanup` in this shell.)
new_scratch_db() {
  if [ -n "$scratch_db" ]; then
    psql -q "$pg_admin_url" -c "DROP DATABASE IF EXISTS $scratch_db WITH (FORCE)" >/dev/null
  fi
  scratch_db="seatkeeper_bench_$$_$(date +%s%N)"
  psql -q -v ON_ERROR_STOP=1 "$pg_admin_url" -c "CREATE DATABASE $scratch_db" >/dev/null
  scratch_url="${pg_admin_url%/*}/$scratch_db"
}

# Drops the previous MongoDB scratch database (if any) and names a new one, which the server
# creates; its URL — $mongo_url with the database as its path — in $mongo_db_url.
new_mongo_db() {
  if [ -n "$mongo_db" ]; then
    "$mongobench" --url "$mongo_url" --drop-database "$mongo_db"
  fi
  mongo_db="seatkeeper_bench_$$_$(date +%s%N)"
  local hosts query
  hosts=$(sed -E 's#^(mongodb(\+srv)?://[^/?]*).*#\1#' <<<"$mongo_url")
  query=$(sed -n -E 's#^[^?]*(\?.*)$#\1#p' <<<"$mongo_url")
  mongo_db_url="$hosts/$mongo_db$query"
}

# loadgen NAME ARGS...: one run, JSON in $out/NAME.json; a failed verification is
# reported and kept, not fatal (the table says so).
loadgen() {
  local name=$1
  shift
  echo "== $name" >&2
  $loadgen_cpu "$loadgen" --base-url "$base_url" --admin-token "$token" --progress 0 \
    --duration "$duration" --json "$out/$name.json" "$@" >"$out/$name.txt" || {
    echo "   (exit $?: see $out/$name.txt)" >&2
  }
  sed -n '2,4p' "$out/$name.txt" >&2
}

# row STORE PLANS LATENCY CONNECTIONS JSON CEILING: one markdown row.
row() {
  local store=$1 plans=$2 latency=$3 conns=$4 json=$5 ceiling=$6
  jq -r --arg store "$store" --arg plans "$plans" --arg latency "$latency" \
    --arg conns "$conns" --argjson ceiling "$ceiling" '
    "| \($store) | \(if $plans == "1" then "hot plan" else "\($plans) plans" end) | \($latency) ms | \($conns) | \(.throughput_rps | floor) | \(.latency.p50_ms * 100 | round / 100) | \(.latency.p99_ms * 100 | round / 100) | \($ceiling | floor) | \((.throughput_rps / $ceiling) * 100 | round / 100) | \(if .verification.passed then "pass" else "FAIL" end) |"' \
    "$json" >>"$table"
}

# ceiling_row PLANS CONNECTIONS JSON BEST: a mongobench row, against the best of its plan count.
ceiling_row() {
  local plans=$1 conns=$2 json=$3 best=$4
  jq -r --arg plans "$plans" --arg conns "$conns" --argjson best "$best" '
    "| mongobench (ceiling) | \(if $plans == "1" then "hot plan" else "\($plans) plans" end) | — | \($conns) | \(.throughput_tps | floor) | \(.latency.p50_ms * 100 | round / 100) | \(.latency.p99_ms * 100 | round / 100) | \($best | floor) | \((.throughput_tps / $best) * 100 | round / 100) | \(if .check.passed and .errors == 0 then "pass" else "FAIL" end) |"' \
    "$json" >>"$table"
}

# echo_row WAIT CONNECTIONS JSON CEILING: the echo control, against the plain echo.
echo_row() {
  local wait=$1 conns=$2 json=$3 ceiling=$4
  jq -r --arg wait "$wait" --arg conns "$conns" --argjson ceiling "$ceiling" '
    "| memory | echo (control) | \($wait) ms wait | \($conns) | \(.throughput_rps | floor) | \(.latency.p50_ms * 100 | round / 100) | \(.latency.p99_ms * 100 | round / 100) | \($ceiling | floor) | \((.throughput_rps / $ceiling) * 100 | round / 100) | — |"' \
    "$json" >>"$table"
}

{
  echo "| store | plans | payment latency | connections | purchases/s | p50 ms | p99 ms | ceiling/s | ratio | invariants |"
  echo "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"
} >>"$table"

for store in $stores; do
  case "$store" in
  memory)
    if [ "$pin" = 1 ]; then
      server_cpu="taskset -c 0"
      loadgen_cpu="taskset -c 1"
    fi
    # The ceiling: a trivial JSON POST on the same build, per connection count.
    start_server memory-echo memory:// 0
    declare -A echo_rps=()
    for c in $connections; do
      loadgen "echo-c$c" --target echo --connections "$c"
      echo_rps[$c]=$(jq '.throughput_rps' "$out/echo-c$c.json")
    done
    stop_server
    # The control of the payment-latency rows: the same echo, waiting on a timer as long
    # as a payment before answering (`bench.echo_wait_ms`); its ratio to the plain echo is
    # the framework's own cost of holding that many requests mid-flight.
    for latency in $latencies; do
      [ "$latency" = 0 ] && continue
      start_server "memory-echo-w$latency" memory:// 0 SEATKEEPER_BENCH__ECHO_WAIT_MS="$latency"
      for c in $connections; do
        name="echo-w$latency-c$c"
        loadgen "$name" --target echo --connections "$c"
        echo_row "$latency" "$c" "$out/$name.json" "${echo_rps[$c]}"
      done
      stop_server
    done
    # A fresh server per row: the in-memory store keeps every subscription, so a server
    # that had served the rows before would start each row holding millions of them.
    for latency in $latencies; do
      for plans in $plan_counts; do
        for c in $connections; do
          name="memory-p$plans-l$latency-c$c"
          start_server "$name" memory:// "$latency"
          loadgen "$name" --connections "$c" --plans "$plans" --seats 1000000
          stop_server
          row memory "$plans" "$latency" "$c" "$out/$name.json" "${echo_rps[$c]}"
        done
      done
    done
    ;;
  postgres)
    # PostgreSQL needs the cores too: nothing is pinned.
    server_cpu=""
    loadgen_cpu=""
    # The ceiling: pgbench, for the same plan counts, the best of 16 and 64 clients.
    declare -A pg_tps=()
    for plans in $plan_counts; do
      best=0
      for clients in 16 64; do
        line=$(bench/pgbench.sh --clients "$clients" --duration "$duration" --plans "$plans")
        echo "$line" | tee -a "$out/pgbench.txt" >&2
        tps=$(sed -E 's/.* tps=([0-9.]+).*/\1/' <<<"$line")
        best=$(jq -n --argjson a "$best" --argjson b "$tps" '[$a, $b] | max')
      done
      pg_tps[$plans]=$best
    done
    # A fresh database and server per plan count × payment latency: the rows of one
    # block share their database (as a server's traffic would), but no block starts on
    # the tables another one grew.
    for latency in $latencies; do
      for plans in $plan_counts; do
        new_scratch_db
        start_server "postgres-p$plans-l$latency" "$scratch_url" "$latency"
        for c in $connections; do
          name="postgres-p$plans-l$latency-c$c"
          loadgen "$name" --connections "$c" --plans "$plans" --seats 1000000
          row postgres "$plans" "$latency" "$c" "$out/$name.json" "${pg_tps[$plans]}"
        done
        stop_server
      done
    done
    ;;
  mongo)
    # MongoDB needs the cores too: nothing is pinned.
    server_cpu=""
    loadgen_cpu=""
    # The ceiling: seatkeeper-mongobench for each plan count at each connection count (one
    # client, session and connection each); the server rows' ceiling is the best of their
    # plan count, as for pgbench (the server holds at most store.pool_size = 16 connections
    # to MongoDB, whatever the HTTP connections).
    declare -A mongo_tps=()
    for plans in $plan_counts; do
      best=0
      for c in $connections; do
        name="mongobench-p$plans-c$c"
        echo "== $name" >&2
        rc=0
        "$mongobench" --url "$mongo_url" --clients "$c" --plans "$plans" --seconds "$duration" \
          --json "$out/$name.json" >"$out/$name.txt" || rc=$?
        if [ "$rc" = 2 ]; then
          cat "$out/$name.txt" >&2
          echo "seatkeeper-mongobench could not run (is a replica set at $mongo_url? bash deploy/mongodb.sh start)" >&2
          exit 1
        fi
        [ "$rc" = 0 ] || echo "   (exit $rc: see $out/$name.txt)" >&2
        head -n 1 "$out/$name.txt" | tee -a "$out/mongobench.txt" >&2
        tps=$(jq '.throughput_tps' "$out/$name.json")
        best=$(jq -n --argjson a "$best" --argjson b "$tps" '[$a, $b] | max')
      done
      mongo_tps[$plans]=$best
      for c in $connections; do
        ceiling_row "$plans" "$c" "$out/mongobench-p$plans-c$c.json" "$best"
      done
    done
    # A fresh database and server per plan count × payment latency, as for PostgreSQL.
    for latency in $latencies; do
      for plans in $plan_counts; do
        new_mongo_db
        start_server "mongo-p$plans-l$latency" "$mongo_db_url" "$latency"
        for c in $connections; do
          name="mongo-p$plans-l$latency-c$c"
          loadgen "$name" --connections "$c" --plans "$plans" --seats 1000000
          row mongo "$plans" "$latency" "$c" "$out/$name.json" "${mongo_tps[$plans]}"
        done
        stop_server
      done
    done
    "$mongobench" --url "$mongo_url" --drop-database "$mongo_db"
    mongo_db=""
    ;;
  *)
    echo "unknown store '$store' (memory, postgres, mongo)" >&2
    exit 2
    ;;
  esac
done

{
  echo
  echo "Ceilings: echo (memory rows) per connection count; pgbench (PostgreSQL rows) per plan count, best of 16/64 clients; seatkeeper-mongobench (MongoDB rows) per plan count, best of the connection counts."
  echo "Memory rows pinned (server CPU 0, loadgen CPU 1): $([ "$pin" = 1 ] && echo yes || echo no)."
  [ -f "$out/pgbench.txt" ] && sed 's/^/    /' "$out/pgbench.txt"
  [ -f "$out/mongobench.txt" ] && sed 's/^/    /' "$out/mongobench.txt"
  for f in "$out"/echo-c*.json; do
    [ -f "$f" ] && jq -r '"    echo connections=\(.connections) rps=\(.throughput_rps | floor) p50_ms=\(.latency.p50_ms) p99_ms=\(.latency.p99_ms)"' "$f"
  done
} >>"$table"
echo "== results in $out" >&2
cat "$table"
