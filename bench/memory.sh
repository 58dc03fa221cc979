#!/usr/bin/env bash
# Resident memory of the server after 1,000,000 purchases on the in-memory store, with the
# default 24 h key retention and with a short one (5 s, swept every second). Samples VmRSS
# (/proc/PID/status) every 2 s while the load runs; writes $BENCH_OUT/memory-*.tsv and a
# summary. Takes a few minutes per retention.
#
#   bench/memory.sh [24h|5s|sold-out|both|all|abandon|abandon-24h|abandon-paysim]
#
# `sold-out` sends the same number of purchases, each with a new key and 5 s retention,
# to one plan of 1,000 seats: after the first 1,000 every answer is 409 plan_sold_out,
# so no subscription or audit entry is added and what stays is only the per-request state
# (key records, within the retention) — the part that must stay flat. `both` is 24h + 5s,
# `all` adds sold-out.
#
# `abandon` opens checkout sessions that are never confirmed (`seatkeeper-loadgen --target
# checkout-abandon --expires-in 2 --rate BENCH_ABANDON_RATE`, a new customer each, 16 plans
# of 1,000,000 seats so that none is refused) for BENCH_ABANDON_SECS, against a server whose
# worker expires them (every 100 ms) and whose purge deletes them 5 s after
# (checkout.retention_secs, swept every second). The rate is a steady state: no faster than
# the worker, one session after the other, expires them with the provider out of the
# process (the summary's `expired` and `held_at_end` show that it kept up). `abandon-24h`
# is the same with the default 24 h retention: nothing is purged, the control.
# `abandon-paysim` is `abandon` with the provider out of the process (`seatkeeper-paysim`,
# spoken to as Stripe): the in-process simulator keeps every intent it made, as Stripe does
# on its side, which is not the server's to purge. Their summary adds the sessions opened
# and the RSS growth per session after the warm-up (BENCH_WARMUP_SECS), by a least-squares
# fit of the samples. BENCH_MEMORY_STORE=postgres or mongo runs the `abandon*` modes on a
# fresh database of that store (dropped after; SEATKEEPER_BENCH_POSTGRES_URL,
# SEATKEEPER_BENCH_MONGODB_URL): the sessions and their audit entries then live in the
# database, and the server's RSS is what must stay flat.
#
# Settings (environment): BENCH_PURCHASES=1000000, BENCH_MEMORY_CONNECTIONS=64,
# BENCH_ABANDON_SECS=180, BENCH_ABANDON_RATE=2000, BENCH_WARMUP_SECS=30, BENCH_PORT=3900,
# BENCH_MEMORY_STORE=memory,
# BENCH_OUT=target/bench/<date>,
# CARGO_TARGET_DIR=target (the release binaries are $CARGO_TARGET_DIR/release/…).
set -euo pipefail
cd "$(dirname "$0")/.."

purchases=${BENCH_PURCHASES:-1000000}
conns=${BENCH_MEMORY_CONNECTIONS:-64}
port=${BENCH_PORT:-3900}
out=${BENCH_OUT:-target/bench/$(date +%Y%m%d-%H%M%S)}
token=bench-admin-token-0123456789
base_url="http://127.0.0.1:$port"
abandon_secs=${BENCH_ABANDON_SECS:-180}
abandon_rate=${BENCH_ABANDON_RATE:-2000}
warmup=${BENCH_WARMUP_SECS:-30}
store=${BENCH_MEMORY_STORE:-memory}
pg_admin_url=${SEATKEEPER_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
mongo_url=${SEATKEEPER_BENCH_MONGODB_URL:-mongodb://127.0.0.1:27017/?directConnection=true}
db="seatkeeper_memory_$$"
mongobench=${CARGO_TARGET_DIR:-target}/release/seatkeeper-mongobench
# shellcheck source=bench/stores.sh
source bench/stores.sh
server=${CARGO_TARGET_DIR:-target}/release/seatkeeper-server
loadgen=${CARGO_TARGET_DIR:-target}/release/seatkeeper-loadgen
paysim=${CARGO_TARGET_DIR:-target}/release/seatkeeper-paysim
# Plans of the largest capacity (1,000,000 seats) so that no purchase is refused.
plans=$(((purchases + 999999) / 1000000 + 1))

mkdir -p "$out"
if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
  packages=(-p seatkeeper-server -p seatkeeper-loadgen)
  [ "$store" = mongo ] && packages+=(-p seatkeeper-mongobench)
  [ "${1:-}" = abandon-paysim ] && packages+=(-p seatkeeper-paysim)
  cargo build --release "${packages[@]}" >&2
fi

server_pid=""
sampler_pid=""
paysim_pid=""

cleanup() {
  [ -n "$sampler_pid" ] && kill "$sampler_pid" 2>/dev/null || true
  [ -n "$paysim_pid" ] && kill "$paysim_pid" 2>/dev/null || true
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
  fi
  drop_store "$store" "$db"
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

# measure_abandon TAG CHECKOUT_RETENTION_SECS [paysim]: abandoned checkout sessions (see
# the top).
measure_abandon() {
  local tag=$1 retention=$2 provider=${3:-simulated} expires_in=2 plans=16
  local provider_env=()
  if [ "$provider" = paysim ]; then
    "$paysim" --addr "127.0.0.1:$((port + 1))" --secret-key sk_test_bench >"$out/paysim-$tag.log" 2>&1 &
    paysim_pid=$!
    for _ in $(seq 1 100); do
      curl -fsS "http://127.0.0.1:$((port + 1))/v1/payment_intents" -H "Authorization: Bearer sk_test_bench" >/dev/null 2>&1 && break
      sleep 0.1
    done
    provider_env=(SEATKEEPER_PAYMENTS__PROVIDER=stripe SEATKEEPER_PAYMENTS__BASE_URL="http://127.0.0.1:$((port + 1))"
      SEATKEEPER_PAYMENTS__SECRET_KEY=sk_test_bench)
  fi
  local url
  url=$(store_url "$store" "$db")
  env SEATKEEPER_HTTP__ADDR="127.0.0.1:$port" SEATKEEPER_STORE__URL="$url" "${provider_env[@]}" \
    SEATKEEPER_AUTH__ADMIN_TOKEN="$token" SEATKEEPER_RATE_LIMIT__ENABLED=false SEATKEEPER_DEMO__SEED=false SEATKEEPER_LOG__LEVEL=warn \
    SEATKEEPER_PAYMENTS__LATENCY_MS=0 \
    SEATKEEPER_CHECKOUT__MIN_EXPIRES_IN_SECS=1 \
    SEATKEEPER_CHECKOUT__RETENTION_SECS="$retention" \
    SEATKEEPER_CHECKOUT__WORKER_INTERVAL_MS=100 \
    SEATKEEPER_CHECKOUT__BATCH=1000 \
    SEATKEEPER_IDEMPOTENCY__SWEEP_INTERVAL_SECS=1 \
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
  echo "== memory, abandoned checkouts (expires_in ${expires_in}s) on $store, retention ${retention}s, $provider payments: ${abandon_secs}s over $plans plans" >&2
  "$loadgen" --base-url "$base_url" --admin-token "$token" --connections "$conns" --rate "$abandon_rate" \
    --target checkout-abandon --expires-in "$expires_in" --duration "$abandon_secs" \
    --plans "$plans" --seats 1000000 --progress 10 \
    --json "$out/memory-$tag.json" >"$out/memory-$tag.txt" || true
  sed -n '2,5p;/verification/p' "$out/memory-$tag.txt" >&2
  local end_kib
  end_kib=$(rss_kib "$server_pid")
  # Past the last expiry and the retention, and a few sweeps.
  sleep $((expires_in + (retention < 30 ? retention : 0) + 5))
  local after_kib
  after_kib=$(rss_kib "$server_pid")
  curl -fsS -H "Authorization: Bearer $token" "$base_url/metrics" >"$out/metrics-memory-$tag.txt" 2>/dev/null || true
  kill "$sampler_pid" 2>/dev/null || true
  sampler_pid=""
  kill -TERM "$server_pid"
  wait "$server_pid" 2>/dev/null || true
  server_pid=""
  local provider_mib="in the server"
  if [ -n "$paysim_pid" ]; then
    provider_mib="$(($(rss_kib "$paysim_pid") / 1024)) MiB in paysim"
    kill "$paysim_pid" 2>/dev/null || true
    wait "$paysim_pid" 2>/dev/null || true
    paysim_pid=""
  fi
  local opened held expired
  opened=$(jq '.created' "$out/memory-$tag.json")
  held=$(jq '[.plans_after[].stats.held] | add' "$out/memory-$tag.json")
  expired=$(awk '/^seatkeeper_checkout_worker_total\{action="expired"\}/ { print $2 }' "$out/metrics-memory-$tag.txt")
  # RSS growth per session opened after the warm-up: the least-squares slope of the
  # samples from the warm-up to the end of the load, over the opening rate.
  local fit
  fit=$(awk -F'\t' -v from="$warmup" -v to="$abandon_secs" -v rate="$(jq '.created_per_sec' "$out/memory-$tag.json")" '
    NR > 1 && $1 >= from && $1 <= to { n++; sx += $1; sy += $2; sxx += $1 * $1; sxy += $1 * $2 }
    NR > 1 && $1 <= from { warm = $2 }
    END {
      slope = (n * sxy - sx * sy) / (n * sxx - sx * sx)   # KiB per second
      printf "warm_mib=%d\tslope_kib_per_min=%.0f\tbytes_per_session=%.0f", warm / 1024, slope * 60, slope * 1024 / rate
    }' "$series")
  printf '%s\tstore=%s\tcheckout_retention=%ss\tsessions_opened=%s\theld_at_end=%s\texpired=%s\tstart_mib=%s\t%s\tend_mib=%s\tsettled_mib=%s\tprovider=%s\n' \
    "$tag" "$store" "$retention" "$opened" "$held" "${expired:-?}" "$((start_kib / 1024))" "$fit" "$((end_kib / 1024))" "$((after_kib / 1024))" "$provider_mib" \
    | tee -a "$out/memory.txt"
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
  abandon) measure_abandon abandon-5s 5 ;;
  abandon-24h) measure_abandon abandon-24h 86400 ;;
  abandon-paysim) measure_abandon abandon-paysim-5s 5 paysim ;;
  *) echo "usage: $0 [24h|5s|sold-out|both|all|abandon|abandon-24h|abandon-paysim]" >&2; exit 2 ;;
esac
