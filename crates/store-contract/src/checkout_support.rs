//! Fixtures of the checkout cases: opening a session, changing it, and the webhook
//! events of the deduplication cases. Panics say what failed: it is test support.

use seatkeeper_domain::{
    ports::{ChangeCheckoutError, Changed, OpenCheckoutError, Opened, Store, WebhookEvent},
    AuditContext, ChangeCheckout, CheckoutChange, CheckoutSession, CheckoutSessionId, ExpiryCause,
    Fingerprint, OpenCheckout, OpenRefusal, PaymentIntentRef, PlanId, SubscriptionId, Timestamp,
};

use crate::support::{customer, idem_key, now, secs, visa};

/// How long an open session with an intent waits for the worker, in every case.
pub fn recheck() -> chrono::Duration {
    secs(60)
}

/// The opening of a 30-minute session of `plan_id` by `customer_id` with `key`.
pub fn opening(plan_id: PlanId, customer_id: &str, key: &str, at: Timestamp) -> OpenCheckout {
    let customer_id = customer(customer_id);
    OpenCheckout {
        session_id: CheckoutSessionId::generate(),
        subscription_id: SubscriptionId::generate(),
        fingerprint: Fingerprint::of_checkout(plan_id, &customer_id, None),
        ctx: AuditContext::customer(&customer_id, format!("open-{key}")),
        key: idem_key(key),
        customer_id,
        plan_id,
        expires_in: secs(1800),
        max_open: 1,
        now: at,
    }
}

/// Opens a session; fails unless a new one holds a seat.
pub async fn open(store: &dyn Store, cmd: &OpenCheckout) -> CheckoutSession {
    match store.open_checkout(cmd).await {
        Ok(Opened::New(session)) => session,
        other => panic!("opening a session should hold a seat, got {other:?}"),
    }
}

/// Opens a session; fails unless it is refused, and returns the refusal.
pub async fn refused(store: &dyn Store, cmd: &OpenCheckout) -> OpenRefusal {
    match store.open_checkout(cmd).await {
        Err(OpenCheckoutError::Refused(r)) => r,
        other => panic!("opening should be refused, got {other:?}"),
    }
}

/// The change of `session_id` at `at`.
pub fn change(
    session_id: CheckoutSessionId,
    change: CheckoutChange,
    at: Timestamp,
) -> ChangeCheckout {
    ChangeCheckout {
        session_id,
        change,
        ctx: AuditContext::admin("change"),
        now: at,
        recheck_after: recheck(),
    }
}

/// Applies a change; fails on an error.
pub async fn changed(store: &dyn Store, cmd: ChangeCheckout) -> Changed {
    store
        .change_checkout(&cmd)
        .await
        .unwrap_or_else(|e| panic!("{} should succeed: {e:?}", cmd.change.kind()))
}

/// Applies a change; fails unless it errs, and returns the error.
pub async fn change_fails(store: &dyn Store, cmd: ChangeCheckout) -> ChangeCheckoutError {
    match store.change_checkout(&cmd).await {
        Err(e) => e,
        Ok(c) => panic!("{} should fail, got {c:?}", cmd.change.kind()),
    }
}

/// The intent a case attaches to `session`.
pub fn intent_of(session: &CheckoutSession) -> PaymentIntentRef {
    PaymentIntentRef {
        id: format!("pi_{}", session.id().as_uuid().simple()),
        client_secret: format!("pi_{}_secret_x", session.id().as_uuid().simple()),
    }
}

/// Attaches [`intent_of`] to an open session.
pub async fn with_intent(store: &dyn Store, session: &CheckoutSession) -> CheckoutSession {
    let cmd = change(
        session.id(),
        CheckoutChange::AttachIntent(intent_of(session)),
        now(),
    );
    changed(store, cmd).await.session
}

/// The success of `session`'s intent.
pub fn paid(session: &CheckoutSession) -> CheckoutChange {
    CheckoutChange::PaymentSucceeded {
        payment_id: intent_of(session).id,
        payment_method: visa(),
    }
}

pub fn expire_on_request() -> CheckoutChange {
    CheckoutChange::Expire(ExpiryCause::Request)
}

/// The session as the store has it now.
pub async fn session_now(store: &dyn Store, id: CheckoutSessionId) -> CheckoutSession {
    store
        .get_checkout(id)
        .await
        .expect("get_checkout failed")
        .unwrap_or_else(|| panic!("session {id} is gone"))
}

pub fn event(id: &str, at: Timestamp) -> WebhookEvent {
    WebhookEvent {
        id: id.to_owned(),
        kind: "payment_intent.succeeded".to_owned(),
        received_at: at,
    }
}
