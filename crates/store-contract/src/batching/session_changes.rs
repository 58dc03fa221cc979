//! Checkout changes that write their session only (an intent attached, a failed payment)
//! run in batches of their own, which take no plan: they answer while a hot plan's
//! batch waits.

use std::time::Duration;

use seatkeeper_domain::{ports::Opened, CheckoutChange, CheckoutStatus, PaymentIntentRef};

use super::{first_batch_started, BatchProbe, Steps};
use crate::{
    checkout_support::{change, changed, open, opening},
    support::{assert_invariants, create_plan, now},
};

/// With the plan held and an opening waiting for it, intents are attached to three of
/// its sessions and a payment of one fails: each answers at once, in the session
/// changes' batches, and the opening still waits.
pub async fn changes_that_write_only_their_session_do_not_wait_for_a_held_plan(
    probe: &dyn BatchProbe,
) {
    let store = probe.store();
    let plan = create_plan(&*store, 10).await;
    let mut sessions = Vec::new();
    for i in 0..3 {
        let cmd = opening(plan.id(), &format!("cus_{i}"), "k", now());
        sessions.push(open(&*store, &cmd).await);
    }
    let blocker = probe.hold_plan(plan.id()).await;
    let base = probe.counts(Steps::Checkouts);
    let waiting = {
        let (store, cmd) = (store.clone(), opening(plan.id(), "cus_late", "k", now()));
        tokio::spawn(async move { store.open_checkout(&cmd).await })
    };
    first_batch_started(probe, Steps::Checkouts, base).await;

    let lane = probe.counts(Steps::SessionChanges);
    let answered = async {
        for (i, session) in sessions.iter().enumerate() {
            let intent = PaymentIntentRef {
                id: format!("pi_lane_{i}"),
                client_secret: format!("pi_lane_{i}_secret"),
            };
            let cmd = change(session.id(), CheckoutChange::AttachIntent(intent), now());
            let attached = changed(&*store, cmd).await.session;
            assert_eq!(
                attached.payment_intent().unwrap().id,
                format!("pi_lane_{i}")
            );
        }
        let reason = "card_declined: Your card was declined.".to_owned();
        let cmd = change(
            sessions[0].id(),
            CheckoutChange::PaymentFailed {
                reason: reason.clone(),
            },
            now(),
        );
        let failed = changed(&*store, cmd).await.session;
        assert_eq!(
            (failed.status(), failed.payment_error()),
            (CheckoutStatus::Open, Some(reason.as_str()))
        );
    };
    tokio::time::timeout(Duration::from_secs(10), answered)
        .await
        .expect("session changes answered while the plan was held");
    let after = probe.counts(Steps::SessionChanges);
    assert_eq!(after.requests - lane.requests, 4);
    assert!(!waiting.is_finished(), "the opening waits for the plan");

    blocker.release().await;
    assert!(matches!(waiting.await.unwrap(), Ok(Opened::New(_))));
    assert_invariants(&*store, plan.id()).await;
}
