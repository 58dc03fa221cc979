//! The reconciler against the in-memory store: purchases nobody will finish are finished
//! (charged → active, never charged → expired with the seat back), a charge that lands
//! after its purchase was given up is refunded, a gateway that cannot answer leaves the
//! purchase in doubt for the next run, and two reconcilers never work on one purchase.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use seatkeeper_domain::{
    ports::{
        AuditLog, Charge, ChargeError, ChargeRequest, ChargeStatus, GatewayError, PaymentGateway,
    },
    service::{PurchaseError, RecoverySettings},
    AuditAction, PurchaseOutcome,
};
use seatkeeper_payments::SimulatedGateway;

mod common;

use common::{cmd, world_with, ManualClock, MockGateway};

fn past_the_lease() -> Duration {
    RecoverySettings::default().lease + Duration::from_secs(1)
}

fn past_the_verify_delay() -> Duration {
    RecoverySettings::default().verify_delay + Duration::from_secs(1)
}

#[tokio::test]
async fn a_purchase_charged_but_never_answered_is_activated_and_its_key_replays_it() {
    let clock = Arc::new(ManualClock::default());
    let gateway = Arc::new(SimulatedGateway::new());
    let w = world_with(gateway.clone(), clock.clone());
    let plan = w.plan(3).await;
    let c = cmd(plan.id(), "cus_1", "k1", "pm_card_timeout");
    assert!(matches!(
        w.purchases.purchase(&c).await,
        Err(PurchaseError::PaymentUnavailable(_))
    ));

    let early = w.reconciler.run_once().await.unwrap();
    assert_eq!(
        early.found, 0,
        "a purchase younger than the lease is left alone"
    );

    clock.advance(past_the_lease());
    let report = w.reconciler.run_once().await.unwrap();
    assert_eq!((report.found, report.activated), (1, 1), "{report:?}");
    let stats = w.plans.stats(plan.id()).await.unwrap();
    assert_eq!((stats.active, stats.incomplete), (1, 0));

    let retry = w.purchases.purchase(&c).await.unwrap();
    assert!(retry.replayed);
    assert!(matches!(retry.outcome, PurchaseOutcome::Created { .. }));
    assert_eq!(gateway.succeeded_charges().len(), 1);
    w.assert_invariants(plan.id()).await;
}

#[tokio::test]
async fn a_purchase_never_charged_is_expired_its_seat_released_and_checked_again_later() {
    let clock = Arc::new(ManualClock::default());
    let mut mock = MockGateway::new();
    mock.expect_charge().times(1).returning(|_| {
        Err(ChargeError::Unknown(
            "connection reset before sending".into(),
        ))
    });
    mock.expect_lookup()
        .times(2)
        .returning(|_| Ok(ChargeStatus::NotFound));
    mock.expect_refund().never();
    let w = world_with(Arc::new(mock), clock.clone());
    let plan = w.plan(1).await;
    let c = cmd(plan.id(), "cus_1", "k1", "pm_card_visa");
    assert!(w.purchases.purchase(&c).await.is_err());
    assert_eq!(w.seats_left(plan.id()).await, 0);

    clock.advance(past_the_lease());
    let report = w.reconciler.run_once().await.unwrap();
    assert_eq!((report.found, report.expired), (1, 1), "{report:?}");
    assert_eq!(w.seats_left(plan.id()).await, 1, "the seat is back on sale");
    let backlog = w.reconciler.backlog().await.unwrap();
    assert_eq!(
        (backlog.stale_incomplete, backlog.pending_verifications),
        (0, 1)
    );

    let replay = w.purchases.purchase(&c).await.unwrap();
    assert!(replay.replayed);
    assert!(matches!(replay.outcome, PurchaseOutcome::Declined { .. }));

    clock.advance(past_the_verify_delay());
    let report = w.reconciler.run_once().await.unwrap();
    assert_eq!((report.found, report.verified), (1, 1), "{report:?}");
    assert_eq!(
        w.reconciler.backlog().await.unwrap().pending_verifications,
        0
    );
    w.assert_invariants(plan.id()).await;
}

#[tokio::test]
async fn a_charge_that_lands_after_its_purchase_was_given_up_is_refunded_and_audited() {
    let clock = Arc::new(ManualClock::default());
    let lookups = Arc::new(AtomicUsize::new(0));
    let seen = lookups.clone();
    let mut mock = MockGateway::new();
    mock.expect_charge()
        .times(1)
        .returning(|_| Err(ChargeError::Unknown("timeout".into())));
    mock.expect_lookup().times(2).returning(move |_| {
        // The provider was still processing when the reconciler first asked.
        Ok(if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            ChargeStatus::NotFound
        } else {
            ChargeStatus::Succeeded {
                payment_id: "pi_late".into(),
            }
        })
    });
    mock.expect_refund()
        .withf(|p| p == "pi_late")
        .times(1)
        .returning(|_| Ok(()));
    let w = world_with(Arc::new(mock), clock.clone());
    let plan = w.plan(2).await;
    assert!(w
        .purchases
        .purchase(&cmd(plan.id(), "cus_1", "k1", "pm_card_visa"))
        .await
        .is_err());

    clock.advance(past_the_lease());
    assert_eq!(w.reconciler.run_once().await.unwrap().expired, 1);
    clock.advance(past_the_verify_delay());
    let report = w.reconciler.run_once().await.unwrap();
    assert_eq!(report.refunded, 1, "{report:?}");
    let audit = w
        .store
        .plan_audit(plan.id(), None, 100)
        .await
        .unwrap()
        .unwrap();
    let last = audit.last().unwrap();
    assert_eq!(last.action, AuditAction::PaymentRefunded);
    assert_eq!(&*last.actor, "reconciler");
    assert_eq!(lookups.load(Ordering::SeqCst), 2);
    w.assert_invariants(plan.id()).await;
}

#[tokio::test]
async fn a_gateway_that_cannot_answer_leaves_the_purchase_in_doubt_for_the_next_run() {
    let clock = Arc::new(ManualClock::default());
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let mut mock = MockGateway::new();
    mock.expect_charge()
        .times(1)
        .returning(|_| Err(ChargeError::Unknown("timeout".into())));
    mock.expect_lookup().times(2).returning(move |_| {
        if seen.fetch_add(1, Ordering::SeqCst) == 0 {
            Err(GatewayError::Unavailable("the provider is down".into()))
        } else {
            Ok(ChargeStatus::Succeeded {
                payment_id: "pi_1".into(),
            })
        }
    });
    let w = world_with(Arc::new(mock), clock.clone());
    let plan = w.plan(2).await;
    assert!(w
        .purchases
        .purchase(&cmd(plan.id(), "cus_1", "k1", "pm_card_visa"))
        .await
        .is_err());
    clock.advance(past_the_lease());
    let report = w.reconciler.run_once().await.unwrap();
    assert_eq!((report.found, report.in_doubt), (1, 1), "{report:?}");
    assert_eq!(w.reconciler.backlog().await.unwrap().stale_incomplete, 1);
    let report = w.reconciler.run_once().await.unwrap();
    assert_eq!(
        report.activated, 1,
        "released at once, so the next run takes it: {report:?}"
    );
    assert_eq!(w.plans.stats(plan.id()).await.unwrap().active, 1);
    w.assert_invariants(plan.id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_reconcilers_at_once_finish_each_purchase_exactly_once() {
    let clock = Arc::new(ManualClock::default());
    let gateway = Arc::new(SimulatedGateway::with_latency(Duration::from_millis(2)));
    let w = Arc::new(world_with(gateway.clone(), clock.clone()));
    let plan = w.plan(40).await;
    for i in 0..30 {
        let r = w
            .purchases
            .purchase(&cmd(plan.id(), &format!("cus_{i}"), "k", "pm_card_timeout"))
            .await;
        assert!(r.is_err());
    }
    clock.advance(past_the_lease());
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let w = w.clone();
            tokio::spawn(async move {
                let mut activated = 0;
                loop {
                    let r = w.reconciler.run_once().await.unwrap();
                    activated += r.activated;
                    assert_eq!(r.expired + r.in_doubt, 0, "{r:?}");
                    if r.found == 0 {
                        return activated;
                    }
                }
            })
        })
        .collect();
    let mut total = 0;
    for r in runs {
        total += r.await.unwrap();
    }
    assert_eq!(total, 30);
    assert_eq!(gateway.succeeded_charges().len(), 30);
    let stats = w.plans.stats(plan.id()).await.unwrap();
    assert_eq!((stats.active, stats.incomplete), (30, 0));
    w.assert_invariants(plan.id()).await;
}

/// A gateway whose first charge is lost before reaching the provider and whose second
/// waits for the test's signal, so the test can give the purchase up in between.
struct GatedGateway {
    charges: AtomicUsize,
    started: tokio::sync::Notify,
    go: tokio::sync::Notify,
    refunds: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl PaymentGateway for GatedGateway {
    async fn charge(&self, _: &ChargeRequest) -> Result<Charge, ChargeError> {
        if self.charges.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(ChargeError::Unknown(
                "lost before it reached the provider".into(),
            ));
        }
        self.started.notify_one();
        self.go.notified().await;
        Ok(Charge {
            payment_id: "pi_raced".into(),
        })
    }

    async fn lookup(&self, _: &str) -> Result<ChargeStatus, GatewayError> {
        Ok(ChargeStatus::NotFound)
    }

    async fn refund(&self, payment_id: &str) -> Result<(), GatewayError> {
        self.refunds.lock().unwrap().push(payment_id.to_owned());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_whose_charge_lands_after_the_purchase_was_given_up_refunds_it_at_once() {
    let clock = Arc::new(ManualClock::default());
    let gateway = Arc::new(GatedGateway {
        charges: AtomicUsize::new(0),
        started: tokio::sync::Notify::new(),
        go: tokio::sync::Notify::new(),
        refunds: Default::default(),
    });
    let w = Arc::new(world_with(gateway.clone(), clock.clone()));
    let plan = w.plan(2).await;
    let c = cmd(plan.id(), "cus_1", "k1", "pm_card_visa");
    assert!(w.purchases.purchase(&c).await.is_err());
    clock.advance(past_the_lease());

    let retry = {
        let (w, c) = (w.clone(), c.clone());
        tokio::spawn(async move { w.purchases.purchase(&c).await })
    };
    gateway.started.notified().await;
    // While the retry's charge is in flight, the reconciler finds nothing charged.
    assert_eq!(w.reconciler.run_once().await.unwrap().expired, 1);
    gateway.go.notify_one();
    let receipt = retry.await.unwrap().unwrap();

    assert!(
        matches!(receipt.outcome, PurchaseOutcome::Declined { .. }),
        "{receipt:?}"
    );
    assert_eq!(*gateway.refunds.lock().unwrap(), ["pi_raced"]);
    let audit = w
        .store
        .plan_audit(plan.id(), None, 100)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(audit.last().unwrap().action, AuditAction::PaymentRefunded);
    assert_eq!(w.seats_left(plan.id()).await, 2);
    w.assert_invariants(plan.id()).await;
}
