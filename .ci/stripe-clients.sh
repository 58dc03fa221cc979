#!/usr/bin/env bash
# Stripe's official Python library against seatkeeper-paysim: everything paysim serves
# (intents created unconfirmed and confirmed with visa, a declined card and 3-D Secure
# passed and failed; cancel, retrieve, list, search by metadata; one-call charges and
# refunds; a wrong API key; webhook endpoints, and webhooks verified with
# stripe.Webhook.construct_event) must work through it. The checks are in
# .ci/stripe_clients.py; any failure fails the script.
#
# stripe is installed, pinned, into a virtualenv outside the source tree:
# $SEATKEEPER_STRIPE_VENV, default ${XDG_CACHE_HOME:-$HOME/.cache}/seatkeeper/stripe-python-<version>.
#
# Settings (environment):
#   STRIPE_CLIENTS_OUT=${CARGO_TARGET_DIR:-target}/stripe-clients   paysim's log
#   STRIPE_CLIENTS_SKIP_BUILD=1   use the debug binary already built
set -euo pipefail
cd "$(dirname "$0")/.."

version=16.1.0
venv=${SEATKEEPER_STRIPE_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/seatkeeper/stripe-python-$version}
target_dir=${CARGO_TARGET_DIR:-target}
out=${STRIPE_CLIENTS_OUT:-$target_dir/stripe-clients}
paysim=$target_dir/debug/seatkeeper-paysim
secret_key=sk_test_stripe_clients_0123456789
webhook_secret=whsec_stripe_clients_cli_0123456789

if ! "$venv/bin/python" -c "import stripe, sys; sys.exit(stripe.VERSION != '$version')" 2>/dev/null; then
  echo "== installing stripe $version into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "stripe==$version"
fi

if [ -z "${STRIPE_CLIENTS_SKIP_BUILD:-}" ]; then
  echo "== cargo build -p seatkeeper-paysim"
  cargo build -p seatkeeper-paysim
fi

rm -rf "$out"
mkdir -p "$out"
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port=$(free_port)
receiver_port=$(free_port)
base_url="http://127.0.0.1:$port"

paysim_pid=""
cleanup() {
  if [ -n "$paysim_pid" ]; then
    kill -TERM "$paysim_pid" 2>/dev/null || true
    wait "$paysim_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT

echo "== starting seatkeeper-paysim on $base_url (webhooks to port $receiver_port)"
"$paysim" --addr "127.0.0.1:$port" --ledger "$out/ledger.jsonl" \
  --secret-key "$secret_key" \
  --webhook-url "http://127.0.0.1:$receiver_port/cli" --webhook-secret "$webhook_secret" \
  --webhook-retry-scale 0.1 \
  >"$out/paysim.log" 2>&1 &
paysim_pid=$!
up=""
for _ in $(seq 1 100); do
  if curl -s -o /dev/null "$base_url/v1/payment_intents"; then
    up=1
    break
  fi
  if ! kill -0 "$paysim_pid" 2>/dev/null; then
    break
  fi
  sleep 0.1
done
if [ -z "$up" ]; then
  echo "seatkeeper-paysim did not start; its log:" >&2
  cat "$out/paysim.log" >&2
  exit 1
fi

echo "== .ci/stripe_clients.py"
status=0
PAYSIM_URL="$base_url" PAYSIM_SECRET_KEY="$secret_key" RECEIVER_PORT="$receiver_port" \
  CLI_WEBHOOK_SECRET="$webhook_secret" PYTHONDONTWRITEBYTECODE=1 \
  "$venv/bin/python" .ci/stripe_clients.py || status=$?
if [ "$status" -ne 0 ]; then
  echo "stripe client checks failed (exit $status); paysim's log is $out/paysim.log" >&2
  tail -n 30 "$out/paysim.log" >&2
  exit "$status"
fi
