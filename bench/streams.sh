#!/usr/bin/env bash
# Live availability at scale: a release server on the in-memory store, STREAMS open
# Server-Sent Events streams of one plan (bench/streams.py, plain asyncio sockets), the
# server's resident memory (VmRSS) before and after they open, and how long one purchase's
# change takes to reach every stream (from the purchase's request to each stream's event:
# p50 / p99 / max over the streams), ROUNDS times. Writes $BENCH_OUT/streams.json.
#
# Settings (environment): BENCH_STREAMS=10000, BENCH_ROUNDS=5, BENCH_PORT=3900,
# BENCH_OUT=target/bench/<date>, BENCH_SKIP_BUILD=1 (use the release binary already built;
# CARGO_TARGET_DIR is honoured).
set -euo pipefail
cd "$(dirname "$0")/.."

streams=${BENCH_STREAMS:-10000}
rounds=${BENCH_ROUNDS:-5}
port=${BENCH_PORT:-3900}
target=${CARGO_TARGET_DIR:-target}
out=${BENCH_OUT:-$target/bench/$(date +%Y%m%d-%H%M%S)}
token=bench-admin-token-0123456789
base_url="http://127.0.0.1:$port"
server=$target/release/seatkeeper-server
mkdir -p "$out"

if [ -z "${BENCH_SKIP_BUILD:-}" ]; then
  cargo build --release -p seatkeeper-server
fi
# Each stream is a socket in the server and one in the client (separate processes).
need=$((streams + 1024))
if [ "$(ulimit -Hn)" != unlimited ] && [ "$(ulimit -Hn)" -lt "$need" ]; then
  echo "needs $need open files per process; the hard limit is $(ulimit -Hn)" >&2
  exit 2
fi
ulimit -n "$need"

rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

SEATKEEPER_HTTP__ADDR="127.0.0.1:$port" SEATKEEPER_STORE__URL=memory:// \
  SEATKEEPER_AUTH__ADMIN_TOKEN=$token SEATKEEPER_RATE_LIMIT__ENABLED=false \
  SEATKEEPER_DEMO__SEED=false SEATKEEPER_LOG__LEVEL=warn \
  "$server" >"$out/server-streams.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  curl -fsS "$base_url/health/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
plan=$(curl -fsS -X POST "$base_url/api/plans" -H "Authorization: Bearer $token" \
  -H 'Content-Type: application/json' \
  -d '{"name":"Streams","capacity":1000,"unit_amount":900,"currency":"usd","interval":"month"}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
idle=$(rss $pid)
python3 bench/streams.py "$base_url" "$plan" "$token" "$streams" "$rounds" >"$out/streams.lines" &
client=$!
# The client prints the `open` line once every stream has its first event.
until grep -q '"phase": "open"' "$out/streams.lines" 2>/dev/null; do
  kill -0 $client 2>/dev/null || { echo "the client failed" >&2; exit 1; }
  sleep 0.5
done
open_rss=$(rss $pid)
wait $client
after_rss=$(rss $pid)
python3 - "$out" "$idle" "$open_rss" "$after_rss" "$streams" <<'PY'
import json, sys
out, idle, open_rss, after, n = sys.argv[1], *map(int, sys.argv[2:6])
lines = [json.loads(l) for l in open(f"{out}/streams.lines")]
report = {
    "streams": n,
    "opened_in_s": lines[0]["seconds"],
    "rss_idle_kib": idle, "rss_open_kib": open_rss, "rss_after_kib": after,
    "per_stream_bytes": round((open_rss - idle) * 1024 / n),
    "fan_out": lines[1]["rounds"],
}
json.dump(report, open(f"{out}/streams.json", "w"), indent=2)
print(json.dumps(report, indent=2))
PY
