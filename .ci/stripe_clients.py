"""Stripe's official Python library (`stripe` on PyPI) against seatkeeper-paysim.

Run by .ci/stripe-clients.sh, which starts paysim with --secret-key and a --webhook-url
pointing at this script's receiver. Every check runs (a failure does not stop the others);
the exit status is 1 if any failed.

Environment: PAYSIM_URL, PAYSIM_SECRET_KEY, RECEIVER_PORT (where paysim's --webhook-url
points, path /cli), CLI_WEBHOOK_SECRET (its --webhook-secret).
"""

import http.server
import os
import sys
import threading
import time
import traceback
import urllib.parse
import urllib.request
import uuid

import stripe

BASE = os.environ["PAYSIM_URL"]
KEY = os.environ["PAYSIM_SECRET_KEY"]
RECEIVER_PORT = int(os.environ["RECEIVER_PORT"])
CLI_SECRET = os.environ["CLI_WEBHOOK_SECRET"]
RUN = uuid.uuid4().hex[:12]
EVENTS = [
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
    "payment_intent.requires_action",
]

stripe.api_key = KEY
stripe.api_base = BASE
stripe.max_network_retries = 0

received = []  # (path, Stripe-Signature header, raw body)
received_lock = threading.Lock()
failures = []
made = {}  # what the checks made, by name, for the webhook checks at the end


class Hooks(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with received_lock:
            received.append((self.path, self.headers.get("Stripe-Signature"), body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def check(name):
    """Runs a check now, recording its failure instead of stopping."""

    def run(f):
        try:
            f()
            print(f"ok    {name}")
        except Exception:
            failures.append(name)
            print(f"FAIL  {name}")
            traceback.print_exc()
        return f

    return run


def new_intent(**extra):
    return stripe.PaymentIntent.create(
        amount=1500,
        currency="usd",
        payment_method_types=["card"],
        metadata={"checkout_session_id": f"cs_{RUN}", "run": RUN},
        **extra,
    )


def authenticate(intent, result):
    url = intent.next_action.redirect_to_url.url
    req = urllib.request.Request(
        url, data=urllib.parse.urlencode({"result": result}).encode(), method="POST"
    )
    with urllib.request.urlopen(req, timeout=10) as res:
        assert res.status == 200, res.status


server = http.server.ThreadingHTTPServer(("127.0.0.1", RECEIVER_PORT), Hooks)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(f"stripe-python {stripe.VERSION} against {BASE}, run {RUN}")


@check("a wrong secret key is an AuthenticationError (401)")
def _():
    try:
        stripe.PaymentIntent.list(limit=1, api_key="sk_test_not_the_right_one")
    except stripe.AuthenticationError as e:
        assert e.http_status == 401
        return
    raise AssertionError("no error")


@check("a webhook endpoint is registered with a whsec_ secret and listed")
def _():
    ep = stripe.WebhookEndpoint.create(
        url=f"http://127.0.0.1:{RECEIVER_PORT}/hooks", enabled_events=EVENTS
    )
    assert ep.object == "webhook_endpoint" and ep.secret.startswith("whsec_"), ep
    assert list(ep.enabled_events) == EVENTS, ep.enabled_events
    listed = stripe.WebhookEndpoint.list(limit=100)
    assert ep.id in [e.id for e in listed.data], listed
    assert stripe.WebhookEndpoint.retrieve(ep.id).url == ep.url
    made["endpoint"] = ep


@check("an intent is created unconfirmed, once per idempotency key")
def _():
    key = f"ci-{RUN}-create"
    pi = new_intent(idempotency_key=key)
    assert pi.status == "requires_payment_method", pi.status
    assert pi.client_secret.startswith(pi.id + "_secret_"), pi.client_secret
    assert new_intent(idempotency_key=key).id == pi.id
    made["open"] = pi


@check("confirming with pm_card_visa succeeds")
def _():
    pi = stripe.PaymentIntent.confirm(new_intent().id, payment_method="pm_card_visa")
    assert pi.status == "succeeded" and pi.payment_method == "pm_card_visa", pi
    assert pi.amount_received == 1500
    made["visa"] = pi


@check("a declined card is a CardError; the intent waits; visa then pays it")
def _():
    pi = new_intent()
    try:
        stripe.PaymentIntent.confirm(pi.id, payment_method="pm_card_chargeDeclined")
        raise AssertionError("no CardError")
    except stripe.CardError as e:
        assert e.http_status == 402 and e.code == "card_declined", e
        assert e.error.decline_code == "generic_decline", e.error
        assert e.error.payment_intent.status == "requires_payment_method"
    waiting = stripe.PaymentIntent.retrieve(pi.id)
    assert waiting.status == "requires_payment_method"
    assert waiting.last_payment_error.decline_code == "generic_decline"
    paid = stripe.PaymentIntent.confirm(pi.id, payment_method="pm_card_visa")
    assert paid.status == "succeeded", paid.status
    made["declined"] = pi


@check("3-D Secure: requires_action, passed at the redirect URL, succeeds")
def _():
    pi = stripe.PaymentIntent.confirm(
        new_intent().id, payment_method="pm_card_authenticationRequired"
    )
    assert pi.status == "requires_action", pi.status
    assert pi.next_action.type == "redirect_to_url"
    assert pi.next_action.redirect_to_url.url.startswith(BASE)
    authenticate(pi, "pass")
    assert stripe.PaymentIntent.retrieve(pi.id).status == "succeeded"
    made["3ds_pass"] = pi


@check("3-D Secure failed: requires_payment_method with the authentication error")
def _():
    pi = new_intent()
    pi = pi.confirm(payment_method="pm_card_threeDSecure2Required")
    assert pi.status == "requires_action", pi.status
    authenticate(pi, "fail")
    failed = stripe.PaymentIntent.retrieve(pi.id)
    assert failed.status == "requires_payment_method", failed.status
    assert failed.last_payment_error.code == "payment_intent_authentication_failure"
    made["3ds_fail"] = pi


@check("cancelling an open intent; a succeeded one cannot be cancelled")
def _():
    pi = stripe.PaymentIntent.cancel(
        new_intent().id, cancellation_reason="requested_by_customer"
    )
    assert pi.status == "canceled" and pi.cancellation_reason == "requested_by_customer"
    made["canceled"] = pi
    try:
        stripe.PaymentIntent.cancel(made["visa"].id)
        raise AssertionError("no error")
    except stripe.InvalidRequestError as e:
        assert e.code == "payment_intent_unexpected_state", e
        assert e.error.payment_intent.status == "succeeded"


@check("retrieve, list (paging) and search by metadata")
def _():
    assert stripe.PaymentIntent.retrieve(made["open"].id).id == made["open"].id
    ids = {pi.id for pi in stripe.PaymentIntent.list(limit=2).auto_paging_iter()}
    assert {made[k].id for k in ("open", "visa", "canceled")} <= ids
    found = stripe.PaymentIntent.search(query=f"metadata['run']:'{RUN}'", limit=100)
    assert found.object == "search_result"
    assert {pi.id for pi in found.data} >= {made["visa"].id, made["declined"].id}
    try:
        stripe.PaymentIntent.retrieve("pi_does_not_exist")
        raise AssertionError("no error")
    except stripe.InvalidRequestError as e:
        assert e.http_status == 404 and e.code == "resource_missing"


@check("one-call charge (confirm=True) and its refund, once")
def _():
    pi = stripe.PaymentIntent.create(
        amount=900,
        currency="eur",
        payment_method="pm_card_mastercard",
        confirm=True,
        error_on_requires_action=True,
        metadata={"run": RUN},
    )
    assert pi.status == "succeeded", pi.status
    refund = stripe.Refund.create(payment_intent=pi.id)
    assert refund.status == "succeeded" and refund.amount == 900
    try:
        stripe.Refund.create(payment_intent=pi.id)
        raise AssertionError("refunded twice")
    except stripe.InvalidRequestError as e:
        assert e.code == "charge_already_refunded", e
    assert [r.id for r in stripe.Refund.list(payment_intent=pi.id).data] == [refund.id]
    made["charge"] = pi


def events(path, secret, want):
    """The events received at `path`, verified with `secret`, once `want` are there."""
    deadline = time.time() + 20
    while True:
        with received_lock:
            got = [(s, b) for p, s, b in received if p == path]
        verified = [stripe.Webhook.construct_event(b.decode(), s, secret) for s, b in got]
        seen = {(e.type, e.data.object.id) for e in verified}
        if want <= seen or time.time() > deadline:
            assert want <= seen, f"missing {want - seen}"
            return got, verified
        time.sleep(0.1)


def expected():
    return {
        ("payment_intent.succeeded", made["visa"].id),
        ("payment_intent.payment_failed", made["declined"].id),
        ("payment_intent.succeeded", made["declined"].id),
        ("payment_intent.requires_action", made["3ds_pass"].id),
        ("payment_intent.succeeded", made["3ds_pass"].id),
        ("payment_intent.payment_failed", made["3ds_fail"].id),
        ("payment_intent.canceled", made["canceled"].id),
        ("payment_intent.succeeded", made["charge"].id),
    }


@check("webhooks to the API endpoint verify with stripe.Webhook.construct_event")
def _():
    got, verified = events("/hooks", made["endpoint"].secret, expected())
    e = next(e for e in verified if e.data.object.id == made["visa"].id)
    assert e.object == "event" and e.api_version == "2024-06-20" and e.livemode is False
    assert e.data.object.metadata["run"] == RUN
    sig, body = got[0]
    try:
        stripe.Webhook.construct_event(body.decode() + " ", sig, made["endpoint"].secret)
        raise AssertionError("a changed body verified")
    except stripe.SignatureVerificationError:
        pass


@check("webhooks to the --webhook-url endpoint verify with its --webhook-secret")
def _():
    events("/cli", CLI_SECRET, expected())


@check("deleting the webhook endpoint")
def _():
    deleted = stripe.WebhookEndpoint.delete(made["endpoint"].id)
    assert deleted.deleted is True
    ids = [e.id for e in stripe.WebhookEndpoint.list().data]
    assert made["endpoint"].id not in ids


server.shutdown()
if failures:
    print(f"{len(failures)} check(s) failed: {failures}", file=sys.stderr)
    sys.exit(1)
print("all checks passed")
