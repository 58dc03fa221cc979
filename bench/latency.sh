#!/usr/bin/env bash
# The payment-latency target of docs/benchmarks.md, in memory, measured as interleaved
# pairs: this machine is shared and its speed drifts by ±30 % from minute to minute, so
# one 0 ms row and one 50 ms row taken minutes apart say little. Each round runs, each on
# a freshly started server and for the same duration:
#   purchases, 0 ms payments        purchases, $LATENCY_MS ms payments
#   echo                            echo waiting $LATENCY_MS ms on a timer (the control)
# and prints the round's change (50 ms against 0 ms) for both; the end prints the median
# change of each over the rounds. The control is the framework's own cost of a handler
# that waits as long as a payment with that many requests in flight.
#
# Settings (environment):
#   LATENCY_ROUNDS=7            rounds
#   LATENCY_CONNECTIONS=4096    connections (the loadgen's maximum)
#   LATENCY_MS=50               payment latency / echo wait, ms
#   LATENCY_DURATION=8          seconds per run
#   BENCH_PIN=1                 server on CPU 0, loadgen on CPU 1 (taskset); 0 = unpinned
#   BENCH_PORT=3901
#   BENCH_OUT=target/bench/latency-<date>   every run's JSON and `pairs.md`
#   BENCH_SKIP_BUILD=1          use the release binaries already in target/release
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${LATENCY_ROUNDS:-7}
conns=${LATENCY_CONNECTIONS:-4096}
latency=${LATENCY_MS:-50}
duration=${LATENCY_DURATION:-8}
pin=${BENCH_PIN:-1}
port=${BENCH_PORT:-3901}
out=${BENCH_OUT:-target/bench/latency-$(date +%Y%m%d-%H%M%S)}
token=bench-admin-token-0123456789
base_url="http://127.0.0.1:$port"
server=target/release/seatkeeper-server
loadgen=target/release/seatkeeper-loadgen
server_cpu=""
loadgen_cpu=""
if [ "$pin" = 1 ]; then
  if command -v taskset >/dev/null && [ "$(nproc)" -ge 2 ]; then
    server_cpu="taskset -c 0"
    loadgen_cpu="taskset -c 1"
  else
    echo "BENCH_PIN=1 needs taskset and 2 CPUs; running unpinned" >&2
    pin=0
  fi
fi

mkdir -p "$out"
if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
  echo "== building (release)" >&2
  cargo build --release -p seatkeeper-server -p seatkeeper-loadgen >&2
fi

server_pid=""
cleanup() {
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

# run NAME PAYMENT_LATENCY ECHO_WAIT LOADGEN_ARGS...: one run on a fresh server; prints
# its throughput.
run() {
  local name=$1 payment=$2 wait=$3
  shift 3
  env SEATKEEPER_HTTP__ADDR="127.0.0.1:$port" \
    SEATKEEPER_STORE__URL=memory:// \
    SEATKEEPER_PAYMENTS__LATENCY_MS="$payment" \
    SEATKEEPER_AUTH__ADMIN_TOKEN="$token" SEATKEEPER_RATE_LIMIT__ENABLED=false \
    SEATKEEPER_DEMO__SEED=false \
    SEATKEEPER_BENCH__ECHO=true \
    SEATKEEPER_BENCH__ECHO_WAIT_MS="$wait" \
    SEATKEEPER_LOG__LEVEL=warn \
    $server_cpu "$server" >"$out/server-$name.log" 2>&1 &
  server_pid=$!
  local up=""
  for _ in $(seq 1 100); do
    if curl -fsS "$base_url/health" >/dev/null 2>&1; then
      up=1
      break
    fi
    sleep 0.1
  done
  if [ -z "$up" ]; then
    cat "$out/server-$name.log" >&2
    echo "the server did not answer /health within 10 s" >&2
    exit 1
  fi
  if ! $loadgen_cpu "$loadgen" --base-url "$base_url" --admin-token "$token" --progress 0 \
    --duration "$duration" --connections "$conns" --json "$out/$name.json" "$@" \
    >"$out/$name.txt"; then
    echo "$name failed (see $out/$name.txt)" >&2
    exit 1
  fi
  kill -TERM "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  jq '.throughput_rps | floor' "$out/$name.json"
}

pairs="$out/pairs.md"
{
  echo "| round | purchases 0 ms | purchases $latency ms | change | echo | echo, $latency ms wait | change |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
} >"$pairs"
purchase_changes=()
echo_changes=()
for round in $(seq 1 "$rounds"); do
  p0=$(run "r$round-purchase-0" 0 0 --plans 1)
  p1=$(run "r$round-purchase-$latency" "$latency" 0 --plans 1)
  e0=$(run "r$round-echo-0" 0 0 --target echo)
  e1=$(run "r$round-echo-$latency" 0 "$latency" --target echo)
  pc=$(jq -n "($p1 / $p0 - 1) * 100 | round")
  ec=$(jq -n "($e1 / $e0 - 1) * 100 | round")
  purchase_changes+=("$pc")
  echo_changes+=("$ec")
  echo "| $round | $p0 | $p1 | $pc % | $e0 | $e1 | $ec % |" | tee -a "$pairs" >&2
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
summary="median over $rounds rounds, $conns connections, $([ "$pin" = 1 ] && echo pinned || echo unpinned): purchases $(median "${purchase_changes[@]}") %, echo control $(median "${echo_changes[@]}") %"
echo "$summary" | tee -a "$pairs"
