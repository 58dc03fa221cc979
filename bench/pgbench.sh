#!/usr/bin/env bash
# The raw ceiling: pgbench runs bench/pgbench/reserve.sql (guarded decrement of a plan
# row + subscription insert + audit insert, one transaction) against the same PostgreSQL
# the server uses, on a scratch database with the server's schema that it creates and
# drops. Prints one line: `pgbench plans=P clients=C duration=S tps=X latency_avg_ms=Y`.
#
#   bench/pgbench.sh [--clients N] [--duration SECS] [--plans N]
#
# SEATKEEPER_BENCH_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres)
# names the server and a database to connect to for CREATE/DROP DATABASE.
set -euo pipefail
cd "$(dirname "$0")/.."

clients=16
duration=10
plans=1
while [ $# -gt 0 ]; do
  case "$1" in
    --clients) clients=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --plans) plans=$2; shift 2 ;;
    *) echo "usage: $0 [--clients N] [--duration SECS] [--plans N]" >&2; exit 2 ;;
  esac
done

admin_url=${SEATKEEPER_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
db="seatkeeper_pgbench_$$_$(date +%s)"
db_url="${admin_url%/*}/$db"

cleanup() {
  psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

psql -q -v ON_ERROR_STOP=1 "$admin_url" -c "CREATE DATABASE $db" >/dev/null
for migration in crates/store-postgres/migrations/*.sql; do
  psql -q -v ON_ERROR_STOP=1 "$db_url" -f "$migration" >/dev/null
done
# Plans with the largest capacity the API allows, far more than a run can sell.
psql -q -v ON_ERROR_STOP=1 "$db_url" >/dev/null <<SQL
INSERT INTO plans (id, name, capacity, seats_left, unit_amount, currency, "interval", status, created_at, seq)
SELECT ('00000000-0000-0000-0000-' || lpad(n::text, 12, '0'))::uuid, 'pgbench ' || n, 1000000, 1000000,
       1500, 'usd', 'month', 'active', now(), 1
FROM generate_series(1, $plans) AS n;
VACUUM ANALYZE;
SQL

out=$(pgbench -n -M prepared -c "$clients" -j 2 -T "$duration" -D plans="$plans" \
  -f bench/pgbench/reserve.sql "$db_url" 2>&1) || { echo "$out" >&2; exit 1; }
tps=$(sed -n -E 's/^tps = ([0-9.]+).*/\1/p' <<<"$out" | head -n 1)
lat=$(sed -n -E 's/^latency average = ([0-9.]+) ms.*/\1/p' <<<"$out" | head -n 1)
failed=$(sed -n -E 's/^number of failed transactions: ([0-9]+).*/\1/p' <<<"$out" | head -n 1)
if [ -z "$tps" ]; then
  echo "$out" >&2
  exit 1
fi
echo "pgbench plans=$plans clients=$clients duration=$duration tps=$tps latency_avg_ms=${lat:-?} failed=${failed:-0}"
