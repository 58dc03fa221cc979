//! A provider's report about a session that can no longer change
//! ([`CheckoutSession::is_final`]) is decided on the session as read, without a step of the
//! batches: the checkout service's webhook handling, on the store.
//!
//! [`CheckoutSession::is_final`]: seatkeeper_domain::CheckoutSession::is_final

use std::sync::Arc;

use async_trait::async_trait;
use seatkeeper_domain::{
    ports::{
        Charge, ChargeError, ChargeRequest, ChargeStatus, GatewayError, IntentGateway,
        IntentRequest, PaymentGateway, PaymentIntent, SystemClock,
    },
    service::{CheckoutService, CheckoutSettings, EventOutcome, PaymentEvent, PaymentEventKind},
    CheckoutSession, CheckoutStatus, Effect,
};

use super::{BatchProbe, Steps};
use crate::{
    checkout_support::{change, changed, event, open, opening, paid, session_now, with_intent},
    support::{assert_invariants, create_plan, now, visa},
};

/// A provider nothing may call: a webhook's handling never does.
struct NoProvider;

#[async_trait]
impl IntentGateway for NoProvider {
    fn provider(&self) -> &'static str {
        "none"
    }
    async fn create_intent(&self, _: &IntentRequest) -> Result<PaymentIntent, GatewayError> {
        unreachable!("a webhook's handling creates no intent")
    }
    async fn confirm_intent(
        &self,
        _: &str,
        _: &seatkeeper_domain::PaymentMethod,
    ) -> Result<PaymentIntent, ChargeError> {
        unreachable!("a webhook's handling confirms no intent")
    }
    async fn retrieve_intent(&self, _: &str) -> Result<PaymentIntent, GatewayError> {
        unreachable!("a webhook's handling retrieves no intent")
    }
    async fn cancel_intent(&self, _: &str) -> Result<PaymentIntent, GatewayError> {
        unreachable!("a webhook's handling cancels no intent")
    }
}

#[async_trait]
impl PaymentGateway for NoProvider {
    async fn charge(&self, _: &ChargeRequest) -> Result<Charge, ChargeError> {
        unreachable!("a webhook's handling charges nothing")
    }
    async fn lookup(&self, _: &str) -> Result<ChargeStatus, GatewayError> {
        unreachable!("a webhook's handling looks nothing up")
    }
    async fn refund(&self, _: &str) -> Result<(), GatewayError> {
        unreachable!("a webhook's handling refunds nothing")
    }
}

fn succeeded(id: &str, session: &CheckoutSession, intent_id: &str) -> PaymentEvent {
    PaymentEvent {
        event: event(id, now()),
        session_id: session.id(),
        intent_id: intent_id.to_owned(),
        kind: PaymentEventKind::Succeeded {
            payment_method: visa(),
        },
    }
}

/// A report of the payment that completed a session, one of another intent, a failure and
/// a redelivery are answered from the session as read — unchanged, ignored, unchanged,
/// unchanged — with no checkout step and no claim of their ids; the report that completes
/// an open session claims its id and takes one step, as before.
pub async fn reports_about_a_complete_session_take_no_checkout_step(probe: &dyn BatchProbe) {
    let store = probe.store();
    let plan = create_plan(&*store, 10).await;
    let service = CheckoutService::new(
        store.clone(),
        Arc::new(NoProvider),
        Arc::new(NoProvider),
        Arc::new(SystemClock),
        CheckoutSettings::default(),
    );
    let open_one = |customer: &'static str| {
        let store = store.clone();
        let cmd = opening(plan.id(), customer, "k", now());
        async move { with_intent(&*store, &open(&*store, &cmd).await).await }
    };
    let done = open_one("cus_done").await;
    changed(&*store, change(done.id(), paid(&done), now())).await;
    let intent = done.payment_intent().expect("an intent").id.clone();
    let complete = session_now(&*store, done.id()).await;
    let base = probe.counts(Steps::Checkouts);

    let outcome = service.on_event(&succeeded("evt_1", &done, &intent)).await;
    assert_eq!(outcome.unwrap(), EventOutcome::Handled(Effect::Unchanged));
    let outcome = service
        .on_event(&succeeded("evt_2", &done, "pi_other"))
        .await;
    assert_eq!(outcome.unwrap(), EventOutcome::Ignored);
    let mut failed = succeeded("evt_3", &done, &intent);
    failed.kind = PaymentEventKind::Failed {
        reason: "card_declined".into(),
    };
    let outcome = service.on_event(&failed).await;
    assert_eq!(outcome.unwrap(), EventOutcome::Handled(Effect::Unchanged));
    let outcome = service.on_event(&succeeded("evt_1", &done, &intent)).await;
    assert_eq!(outcome.unwrap(), EventOutcome::Handled(Effect::Unchanged));
    assert_eq!(probe.counts(Steps::Checkouts), base, "no checkout step");
    for id in ["evt_1", "evt_2", "evt_3"] {
        let unclaimed = store.claim_webhook_event(&event(id, now())).await.unwrap();
        assert!(unclaimed, "{id} was claimed");
    }
    assert_eq!(session_now(&*store, done.id()).await, complete);

    let pending = open_one("cus_pending").await;
    let intent = pending.payment_intent().expect("an intent").id.clone();
    let base = probe.counts(Steps::Checkouts);
    let outcome = service
        .on_event(&succeeded("evt_4", &pending, &intent))
        .await;
    assert_eq!(outcome.unwrap(), EventOutcome::Handled(Effect::Completed));
    assert_eq!(
        session_now(&*store, pending.id()).await.status(),
        CheckoutStatus::Complete
    );
    assert_eq!(probe.counts(Steps::Checkouts).requests, base.requests + 1);
    let claimed_again = store.claim_webhook_event(&event("evt_4", now())).await;
    assert!(
        !claimed_again.unwrap(),
        "the completing report claimed its id"
    );
    assert_invariants(&*store, plan.id()).await;
}
