#!/usr/bin/env bash
# Resident memory of the server after 1,000,000 purchases on the in-memory store, with the
# default 24 h key retention and with a short one (5 s, swept every second). Samples VmRSS
# (/proc/PID/status) every 2 s while the load runs; writes $BENCH_OUT/memory-*.tsv and a
# summary. Takes a few minutes per retention.
#
#   bench/memory.sh [24h|5s|sold-out|both|all]
#
# `sold-out` sends the same number of purchases, each with a new key and 5 s retention,
# to one plan of 1,000 seats: after the first 1,000 every answer is 409 plan_sold_out,
# so no subscription or audit entry is added and what stays is only the per-request state
# (key records, within the retention) — the part that must stay flat. `both` is 24h + 5s,
# `all` adds sold-out.
#
# Settings (environment): BENCH_PURCHASES=1000000, BENCH_MEMORY_CONNECTIONS=64,
# BENCH_PORT=3900, BENCH_OUT=target/bench/<date>.
set -euo pipefail
cd "$(dirname "$0")/.."

purchases=${BENCH_PURCHASES:-1000000}
conns=${BENCH_MEMORY_CONNECTIONS:-64}
port=${BENCH_PORT:-3900}
out=${BENCH_OUT:-target/bench/$(date +%Y%m%d-%H%M%S)}
token=bench-admin-token-0123456789
base_url="http://127.0.0.1:$port"
server=target/release/seatkeeper-server
loadgen=target/release/seatkeeper-loadgen
# Plans of the largest capacity (1,000,000 seats) so that no purchase is refused.
plans=$(((purchases + 999999) / 1000000 + 1))

mkdir -p "$out"
[ -n "${BENCH_SKIP_BUILD:-}" ] || cargo build --release -p seatkeeper-server -p seatkeeper-loadgen >&2

server_pid=""
sampler_pid=""
cleanup() {
  [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null || true
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

# measure TAG RETENTION_SECS SWEEP_SECS LOCK_LEASE_MS [PLANS SEATS]
measure() {
  local tag=$1 retention=$2 sweep=$3 lease=$4 plans=${5:-$plans} seats=${6:-1000000}
  env SEATKEEPER_HTTP__ADDR="127.0.0.1:$port" SEATKEEPER_STORE__URL=memory:// \
    SEATKEEPER_AUTH__ADMIN_TOKEN="$token" SEATKEEPER_RATE_LIMIT__ENABLED=false SEATKEEPER_DEMO__SEED=false SEATKEEPER_LOG__LEVEL=warn \
    SEATKEEPER_IDEMPOTENCY__RETENTION_SECS="$retention" \
    SEATKEEPER_IDEMPOTENCY__SWEEP_INTERVAL_SECS="$sweep" \
    SEATKEEPER_IDEMPOTENCY__LOCK_LEASE_MS="$lease" \
    "$server" >"$out/server-memory-$tag.log" 2>&1 &
  server_pid=$!
  for _ in $(seq 1 100); do
    curl -fsS "$base_url/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
  local start_kib
  start_kib=$(rss_kib "$server_pid")
  local series="$out/memory-$tag.tsv"
  printf 'seconds\trss_kib\n' >"$series"
  (
    t=0
    while kill -0 "$server_pid" 2>/dev/null; do
      printf '%s\t%s\n' "$t" "$(rss_kib "$server_pid")" >>"$series"
      sleep 2
      t=$((t + 2))
    done
  ) &
  sampler_pid=$!
  echo "== memory, retention ${retention}s: $purchases purchases over $plans plans of $seats seats" >&2
  "$loadgen" --base-url "$base_url" --admin-token "$token" --connections "$conns" \
    --requests "$purchases" --plans "$plans" --seats "$seats" --progress 10 \
    --max-duration 1800 --json "$out/memory-$tag.json" >"$out/memory-$tag.txt" || true
  sed -n '2,4p;/verification/p' "$out/memory-$tag.txt" >&2
  local end_kib
  end_kib=$(rss_kib "$server_pid")
  # Past the retention (and a sweep), for the short one.
  sleep $((retention < 30 ? retention + 3 * sweep : 0))
  local after_kib
  after_kib=$(rss_kib "$server_pid")
  kill "$sampler_pid" 2>/dev/null || true
  sampler_pid=""
  kill -TERM "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  local created
  created=$(jq '.created' "$out/memory-$tag.json")
  printf '%s\tretention=%ss\trequests=%s\tcreated=%s\tstart_mib=%s\tend_mib=%s\tsettled_mib=%s\tbytes_per_request=%s\n' \
    "$tag" "$retention" "$purchases" "$created" "$((start_kib / 1024))" "$((end_kib / 1024))" "$((after_kib / 1024))" \
    "$(((after_kib - start_kib) * 1024 / purchases))" | tee -a "$out/memory.txt"
}

# The retention must outlast the key lock lease (30 s by default): 2 s for the short one.
case "${1:-both}" in
  24h) measure retention-24h 86400 60 30000 ;;
  5s) measure retention-5s 5 1 2000 ;;
  sold-out) measure sold-out-5s 5 1 2000 1 1000 ;;
  both)
    measure retention-24h 86400 60 30000
    measure retention-5s 5 1 2000
    ;;
  all)
    measure retention-24h 86400 60 30000
    measure retention-5s 5 1 2000
    measure sold-out-5s 5 1 2000 1 1000
    ;;
  *) echo "usage: $0 [24h|5s|sold-out|both|all]" >&2; exit 2 ;;
esac
