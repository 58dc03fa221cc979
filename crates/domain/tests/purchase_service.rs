//! The purchase service run against the in-memory store: the state machine of
//! purchase-flow.md, the idempotency rows of idempotency.md, and concurrency that really
//! overlaps (a multi-threaded runtime, a barrier, many tasks). `mockall` mocks of the
//! payment gateway drive the declined and unknown outcomes.

use std::{sync::Arc, time::Duration};

use seatkeeper_domain::{
    ports::{AuditLog, Charge, ChargeError, Clock, IdempotencyRepository, PurchaseRepository},
    service::{IdempotencySettings, PurchaseError},
    AuditAction, AuditContext, Capacity, Claim, ClaimKey, Fingerprint, LockToken, PlanId,
    PlanPatch, PlanStatus, PurchaseOutcome, SubscriptionStatus,
};
use seatkeeper_payments::SimulatedGateway;
use tokio::sync::{Barrier, Semaphore};

mod common;

use common::{cmd, world, world_with, ManualClock, MockGateway};

#[tokio::test]
async fn a_purchase_reserves_a_seat_charges_once_and_activates_the_subscription() {
    let gateway = Arc::new(SimulatedGateway::new());
    let w = world(gateway.clone());
    let plan = w.plan(10).await;
    let receipt = w
        .purchases
        .purchase(&cmd(plan.id(), "cus_1", "k1", "pm_card_visa"))
        .await
        .unwrap();
    let PurchaseOutcome::Created { subscription } = receipt.outcome else {
        panic!("expected a subscription, got {:?}", receipt.outcome)
    };
    assert!(!receipt.replayed);
    assert_eq!(subscription.status(), SubscriptionStatus::Active);
    assert!(subscription.current_period_end() > subscription.current_period_start());
    assert_eq!(
        subscription.payment_id(),
        Some(gateway.succeeded_charges()[0].payment_id.as_str())
    );
    assert_eq!(
        gateway.succeeded_charges()[0].provider_key,
        subscription.provider_key()
    );
    assert_eq!(w.seats_left(plan.id()).await, 9);
    w.assert_invariants(plan.id()).await;
}

#[tokio::test]
async fn a_purchases_two_audit_entries_share_one_actor_and_one_trace_id() {
    // Each purchase keeps two audit entries for the life of the plan: one copy of their
    // strings, not two (the in-memory store keeps the context's `Arc`s as they come).
    let w = world(Arc::new(SimulatedGateway::new()));
    let plan = w.plan(10).await;
    w.purchases
        .purchase(&cmd(plan.id(), "cus_1", "k1", "pm_card_visa"))
        .await
        .unwrap();
    let audit = w
        .store
        .plan_audit(plan.id(), None, 10)
        .await
        .unwrap()
        .unwrap();
    let [reserved, activated] = &audit[1..] else {
        panic!("expected two entries after the creation, got {audit:#?}")
    };
    assert_eq!(
        (reserved.action, activated.action),
        (AuditAction::SeatReserved, AuditAction::PurchaseActivated)
    );
    assert_eq!(&*reserved.actor, "customer:cus_1");
    assert!(Arc::ptr_eq(&reserved.actor, &activated.actor));
    assert!(Arc::ptr_eq(&reserved.trace_id, &activated.trace_id));
}

#[tokio::test]
async fn a_retry_with_the_same_key_replays_the_outcome_without_charging_again() {
    let gateway = Arc::new(SimulatedGateway::new());
    let w = world(gateway.clone());
    let plan = w.plan(10).await;
    let first = w
        .purchases
        .purchase(&cmd(plan.id(), "cus_1", "k1", "pm_card_visa"))
        .await
        .unwrap();
    let mut retry = cmd(plan.id(), "cus_1", "k1", "pm_card_visa");
    retry.request_id = "another-request".into();
    let second = w.purchases.purchase(&retry).await.unwrap();
    assert!(second.replayed);
    assert_eq!(second.outcome, first.outcome);
    assert_eq!(second.request_id, first.request_id);
    assert_eq!(gateway.charge_calls(), 1);
    assert_eq!(w.seats_left(plan.id()).await, 9);
}

#[tokio::test]
async fn the_same_key_with_a_different_request_is_refused_as_reused() {
    let w = world(Arc::new(SimulatedGateway::new()));
    let plan = w.plan(10).await;
    w.purchases
        .purchase(&cmd(plan.id(), "cus_1", "k1", "pm_card_visa"))
        .await
        .unwrap();
    let err = w
        .purchases
        .purchase(&cmd(plan.id(), "cus_1", "k1", "pm_card_mastercard"))
        .await
        .unwrap_err();
    assert!(matches!(err, PurchaseError::KeyReused), "{err:?}");
    assert_eq!(w.seats_left(plan.id()).await, 9);
}

#[tokio::test]
async fn the_same_key_from_two_customers_makes_two_independent_purchases() {
    let gateway = Arc::new(SimulatedGateway::new());
    let w = world(gateway.clone());
    let plan = w.plan(10).await;
    for customer in ["cus_a", "cus_b"] {
        let r = w
            .purchases
            .purchase(&cmd(plan.id(), customer, "shared-key", "pm_card_visa"))
            .await
            .unwrap();
        assert!(!r.replayed);
    }
    assert_eq!(gateway.succeeded_charges().len(), 2);
    assert_eq!(w.seats_left(plan.id()).await, 8);
}

#[tokio::test]
async fn a_declined_charge_expires_the_subscription_and_gives_the_seat_back() {
    let mut mock = MockGateway::new();
    mock.expect_charge().times(1).returning(|_| {
        Err(ChargeError::Declined {
            code: "card_declined".into(),
            message: "Your card was declined.".into(),
        })
    });
    let w = world(Arc::new(mock));
    let plan = w.plan(1).await;
    let receipt = w
        .purchases
        .purchase(&cmd(plan.id(), "cus_1", "k1", "pm_card_visa"))
        .await
        .unwrap();
    let PurchaseOutcome::Declined {
        subscription,
        reason,
    } = receipt.outcome
    else {
        panic!("expected a decline, got {:?}", receipt.outcome)
    };
    assert_eq!(subscription.status(), SubscriptionStatus::IncompleteExpired);
    assert!(reason.contains("card_declined"));
    assert_eq!(w.seats_left(plan.id()).await, 1);
    let audit = w
        .store
        .plan_audit(plan.id(), None, 100)
        .await
        .unwrap()
        .unwrap();
    let last = audit.last().unwrap();
    assert_eq!(last.action, AuditAction::SeatReleased);
    assert!(last.reason.as_deref().unwrap().contains("card_declined"));
    w.assert_invariants(plan.id()).await;
}

#[tokio::test]
async fn an_unknown_payment_outcome_keeps_the_seat_releases_the_key_and_a_retry_resumes_with_the_same_provider_key(
) {
    let provider_keys = Arc::new(parking_lot_free::Keys::default());
    let mut mock = MockGateway::new();
    let mut calls = 0;
    let seen = provider_keys.clone();
    mock.expect_charge().times(2).returning(move |req| {
        seen.push(req.provider_key.clone());
        calls += 1;
        if calls == 1 {
            Err(ChargeError::Unknown("timeout".into()))
        } else {
            Ok(Charge {
                payment_id: "pi_after_retry".into(),
            })
        }
    });
    let w = world(Arc::new(mock));
    let plan = w.plan(3).await;
    let err = w
        .purchases
        .purchase(&cmd(plan.id(), "cus_1", "k1", "pm_card_visa"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PurchaseError::PaymentUnavailable(_)),
        "{err:?}"
    );
    // The seat stays reserved by the incomplete subscription meanwhile.
    assert_eq!(w.seats_left(plan.id()).await, 2);
    let stats = w.plans.stats(plan.id()).await.unwrap();
    assert_eq!(stats.incomplete, 1);

    let retried = w
        .purchases
        .purchase(&cmd(plan.id(), "cus_1", "k1", "pm_card_visa"))
        .await
        .unwrap();
    let PurchaseOutcome::Created { subscription } = retried.outcome else {
        panic!("expected the retry to complete, got {:?}", retried.outcome)
    };
    assert!(!retried.replayed);
    assert_eq!(subscription.payment_id(), Some("pi_after_retry"));
    let keys = provider_keys.all();
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0], keys[1], "the retry must reuse the provider key");
    assert_eq!(keys[0], subscription.provider_key());
    assert_eq!(w.seats_left(plan.id()).await, 2);
    assert_eq!(w.plans.stats(plan.id()).await.unwrap().incomplete, 0);
    w.assert_invariants(plan.id()).await;
}

#[tokio::test]
async fn a_charged_but_lost_answer_is_charged_only_once_when_retried() {
    let gateway = Arc::new(SimulatedGateway::new());
    let w = world(gateway.clone());
    let plan = w.plan(3).await;
    let err = w
        .purchases
        .purchase(&cmd(plan.id(), "cus_1", "k1", "pm_card_timeout"))
        .await
        .unwrap_err();
    assert!(matches!(err, PurchaseError::PaymentUnavailable(_)));
    let retried = w
        .purchases
        .purchase(&cmd(plan.id(), "cus_1", "k1", "pm_card_timeout"))
        .await
        .unwrap();
    assert!(matches!(retried.outcome, PurchaseOutcome::Created { .. }));
    assert_eq!(gateway.succeeded_charges().len(), 1);
    assert_eq!(gateway.charge_calls(), 2);
    w.assert_invariants(plan.id()).await;
}

#[tokio::test]
async fn a_key_held_by_a_running_request_answers_in_use_and_changes_nothing() {
    let w = world(Arc::new(SimulatedGateway::new()));
    let plan = w.plan(3).await;
    let c = cmd(plan.id(), "cus_1", "k1", "pm_card_visa");
    let claim = ClaimKey {
        scope: c.customer_id.clone(),
        key: c.key.clone(),
        fingerprint: Fingerprint::of_purchase(plan.id(), &c.customer_id, &c.payment_method),
        owner: LockToken::generate(),
        now: chrono::Utc::now(),
        lease: Duration::from_secs(30),
        retention: Duration::from_secs(3600),
    };
    assert!(matches!(
        w.store.claim_key(&claim).await.unwrap(),
        Claim::Acquired(_)
    ));
    let err = w.purchases.purchase(&c).await.unwrap_err();
    assert!(matches!(err, PurchaseError::KeyInUse), "{err:?}");
    assert_eq!(w.seats_left(plan.id()).await, 3);
}

#[tokio::test]
async fn an_abandoned_key_is_taken_over_after_its_lease_and_the_stale_owner_cannot_reserve() {
    let clock = Arc::new(ManualClock::default());
    let gateway = Arc::new(SimulatedGateway::new());
    let w = world_with(gateway.clone(), clock.clone());
    let plan = w.plan(3).await;
    let c = cmd(plan.id(), "cus_1", "k1", "pm_card_visa");
    let crashed_owner = LockToken::generate();
    let claim = ClaimKey {
        scope: c.customer_id.clone(),
        key: c.key.clone(),
        fingerprint: Fingerprint::of_purchase(plan.id(), &c.customer_id, &c.payment_method),
        owner: crashed_owner,
        now: clock.now(),
        lease: IdempotencySettings::default().lock_lease,
        retention: IdempotencySettings::default().retention,
    };
    w.store.claim_key(&claim).await.unwrap();
    clock.advance(IdempotencySettings::default().lock_lease + Duration::from_secs(1));

    let receipt = w.purchases.purchase(&c).await.unwrap();
    assert!(matches!(receipt.outcome, PurchaseOutcome::Created { .. }));

    // The process that crashed wakes up: its lock is gone, it can change nothing.
    let stale = seatkeeper_domain::ports::ReserveSeat {
        customer_id: c.customer_id.clone(),
        key: c.key.clone(),
        owner: crashed_owner,
        plan_id: plan.id(),
        subscription_id: seatkeeper_domain::SubscriptionId::generate(),
        payment_method: c.payment_method.clone(),
        request_id: "stale".into(),
        ctx: AuditContext::admin("stale"),
        now: clock.now(),
    };
    assert!(matches!(
        w.store.reserve_seat(&stale).await,
        Err(seatkeeper_domain::ports::ReserveError::LockLost)
    ));
    assert!(!w
        .store
        .release_key(&c.customer_id, &c.key, crashed_owner)
        .await
        .unwrap());
    assert_eq!(gateway.succeeded_charges().len(), 1);
    assert_eq!(w.seats_left(plan.id()).await, 2);
    w.assert_invariants(plan.id()).await;
}

#[tokio::test]
async fn a_key_past_its_retention_is_forgotten_and_starts_a_new_purchase() {
    let clock = Arc::new(ManualClock::default());
    let gateway = Arc::new(SimulatedGateway::new());
    let w = world_with(gateway.clone(), clock.clone());
    let plan = w.plan(3).await;
    let c = cmd(plan.id(), "cus_1", "k1", "pm_card_visa");
    w.purchases.purchase(&c).await.unwrap();
    clock.advance(Duration::from_secs(25 * 3600));
    assert_eq!(w.store.purge_expired_keys(clock.now()).await.unwrap(), 1);
    assert_eq!(w.store.key_count(), 0);
    let again = w.purchases.purchase(&c).await.unwrap();
    assert!(!again.replayed);
    assert_eq!(gateway.succeeded_charges().len(), 2);
    assert_eq!(w.seats_left(plan.id()).await, 1);
}

#[tokio::test]
async fn sold_out_unknown_and_archived_plans_are_definitive_outcomes_that_replay() {
    let w = world(Arc::new(SimulatedGateway::new()));
    let plan = w.plan(1).await;
    w.purchases
        .purchase(&cmd(plan.id(), "cus_1", "k1", "pm_card_visa"))
        .await
        .unwrap();
    let sold_out = w
        .purchases
        .purchase(&cmd(plan.id(), "cus_2", "k1", "pm_card_visa"))
        .await
        .unwrap();
    assert_eq!(
        sold_out.outcome,
        PurchaseOutcome::SoldOut { plan_id: plan.id() }
    );
    let replay = w
        .purchases
        .purchase(&cmd(plan.id(), "cus_2", "k1", "pm_card_visa"))
        .await
        .unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.outcome, sold_out.outcome);

    let missing = PlanId::generate();
    let r = w
        .purchases
        .purchase(&cmd(missing, "cus_3", "k1", "pm_card_visa"))
        .await
        .unwrap();
    assert_eq!(
        r.outcome,
        PurchaseOutcome::PlanNotFound { plan_id: missing }
    );

    let other = w.plan(5).await;
    w.plans
        .update(
            other.id(),
            &PlanPatch {
                status: Some(PlanStatus::Archived),
                ..Default::default()
            },
            &AuditContext::admin("t"),
        )
        .await
        .unwrap();
    let r = w
        .purchases
        .purchase(&cmd(other.id(), "cus_4", "k1", "pm_card_visa"))
        .await
        .unwrap();
    assert_eq!(
        r.outcome,
        PurchaseOutcome::PlanInactive {
            plan_id: other.id()
        }
    );
    assert_eq!(w.seats_left(other.id()).await, 5);
    w.assert_invariants(plan.id()).await;
    w.assert_invariants(other.id()).await;
}

#[tokio::test]
async fn cancelling_releases_the_seat_once_and_refuses_subscriptions_that_are_not_active() {
    let w = world(Arc::new(SimulatedGateway::new()));
    let plan = w.plan(2).await;
    let PurchaseOutcome::Created { subscription } = w
        .purchases
        .purchase(&cmd(plan.id(), "cus_1", "k1", "pm_card_visa"))
        .await
        .unwrap()
        .outcome
    else {
        panic!("purchase failed")
    };
    let ctx = AuditContext::customer(subscription.customer_id(), "t");
    let first = w
        .subscriptions
        .cancel(subscription.id(), &ctx)
        .await
        .unwrap();
    assert!(!first.already_canceled);
    assert_eq!(first.subscription.status(), SubscriptionStatus::Canceled);
    let again = w
        .subscriptions
        .cancel(subscription.id(), &ctx)
        .await
        .unwrap();
    assert!(again.already_canceled);
    assert_eq!(again.subscription, first.subscription);
    assert_eq!(w.seats_left(plan.id()).await, 2);

    let PurchaseOutcome::Declined { subscription, .. } = w
        .purchases
        .purchase(&cmd(plan.id(), "cus_1", "k2", "pm_card_chargeDeclined"))
        .await
        .unwrap()
        .outcome
    else {
        panic!("expected a decline")
    };
    let err = w
        .subscriptions
        .cancel(subscription.id(), &ctx)
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        seatkeeper_domain::ports::CancelError::NotActive(SubscriptionStatus::IncompleteExpired)
    ));
    w.assert_invariants(plan.id()).await;
}

#[tokio::test]
async fn capacity_cannot_drop_below_the_held_seats_and_a_valid_change_moves_seats_left() {
    let w = world(Arc::new(SimulatedGateway::new()));
    let plan = w.plan(5).await;
    for i in 0..3 {
        w.purchases
            .purchase(&cmd(plan.id(), "cus_1", &format!("k{i}"), "pm_card_visa"))
            .await
            .unwrap();
    }
    let patch = |n| PlanPatch {
        capacity: Some(Capacity::new(n).unwrap()),
        ..Default::default()
    };
    let err = w
        .plans
        .update(plan.id(), &patch(2), &AuditContext::admin("t"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        seatkeeper_domain::ports::UpdatePlanError::CapacityBelowHeld {
            held: 3,
            requested: 2
        }
    ));
    let updated = w
        .plans
        .update(plan.id(), &patch(3), &AuditContext::admin("t"))
        .await
        .unwrap();
    assert_eq!(updated.seats_left(), 0);
    let updated = w
        .plans
        .update(plan.id(), &patch(8), &AuditContext::admin("t"))
        .await
        .unwrap();
    assert_eq!(updated.seats_left(), 5);
    w.assert_invariants(plan.id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_simultaneous_purchases_of_a_ten_seat_plan_sell_exactly_ten() {
    let gateway = Arc::new(SimulatedGateway::with_latency(Duration::from_millis(5)));
    let w = Arc::new(world(gateway.clone()));
    let plan = w.plan(10).await;
    let plan_id = plan.id();
    let barrier = Arc::new(Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let (w, barrier) = (w.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                w.purchases
                    .purchase(&cmd(plan_id, &format!("cus_{i}"), "k", "pm_card_visa"))
                    .await
                    .unwrap()
                    .outcome
            })
        })
        .collect();
    let mut created = 0;
    let mut sold_out = 0;
    for t in tasks {
        match t.await.unwrap() {
            PurchaseOutcome::Created { .. } => created += 1,
            PurchaseOutcome::SoldOut { .. } => sold_out += 1,
            other => panic!("unexpected outcome {other:?}"),
        }
    }
    assert_eq!((created, sold_out), (10, 40));
    assert_eq!(w.seats_left(plan_id).await, 0);
    assert_eq!(gateway.succeeded_charges().len(), 10);
    let stats = w.plans.stats(plan_id).await.unwrap();
    assert_eq!((stats.active, stats.incomplete), (10, 0));
    w.assert_invariants(plan_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_simultaneous_requests_with_one_key_charge_once_and_create_one_subscription() {
    let gateway = Arc::new(SimulatedGateway::new());
    let w = Arc::new(world(gateway.clone()));
    let plan = w.plan(10).await;
    let plan_id = plan.id();
    // Whichever request wins the key is held inside its charge until the other 99 have
    // their answers, so they overlap it for certain.
    gateway.hold_charges();
    let answered = Arc::new(Semaphore::new(0));
    let releaser = {
        let (gateway, answered) = (gateway.clone(), answered.clone());
        tokio::spawn(async move {
            let all_but_one = answered.acquire_many(99);
            let waited = tokio::time::timeout(Duration::from_secs(60), all_but_one).await;
            gateway.release_charges();
            waited.is_ok()
        })
    };
    let barrier = Arc::new(Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let (w, barrier, answered) = (w.clone(), barrier.clone(), answered.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let result = w
                    .purchases
                    .purchase(&cmd(plan_id, "cus_1", "the-key", "pm_card_visa"))
                    .await;
                answered.add_permits(1);
                result
            })
        })
        .collect();
    let (mut created, mut in_use) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(r) => {
                assert!(!r.replayed && matches!(r.outcome, PurchaseOutcome::Created { .. }));
                created += 1
            }
            Err(PurchaseError::KeyInUse) => in_use += 1,
            Err(e) => panic!("unexpected error {e:?}"),
        }
    }
    assert!(
        releaser.await.unwrap(),
        "the others were not answered during the charge"
    );
    assert_eq!((created, in_use), (1, 99));
    let replay = w
        .purchases
        .purchase(&cmd(plan_id, "cus_1", "the-key", "pm_card_visa"))
        .await
        .unwrap();
    assert!(replay.replayed);
    assert_eq!(gateway.charge_calls(), 1);
    assert_eq!(w.seats_left(plan_id).await, 9);
    w.assert_invariants(plan_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purchases_racing_cancellations_and_capacity_changes_keep_every_invariant() {
    let w = Arc::new(world(Arc::new(SimulatedGateway::new())));
    let plan = w.plan(20).await;
    let plan_id = plan.id();
    let mut bought = Vec::new();
    for i in 0..10 {
        if let PurchaseOutcome::Created { subscription } = w
            .purchases
            .purchase(&cmd(
                plan_id,
                "cus_seed",
                &format!("seed{i}"),
                "pm_card_visa",
            ))
            .await
            .unwrap()
            .outcome
        {
            bought.push(subscription.id());
        }
    }
    let barrier = Arc::new(Barrier::new(60));
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (w, barrier) = (w.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let pm = if i % 4 == 0 {
                "pm_card_chargeDeclined"
            } else {
                "pm_card_visa"
            };
            w.purchases
                .purchase(&cmd(plan_id, &format!("cus_{i}"), "k", pm))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }));
    }
    for id in bought {
        let (w, barrier) = (w.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            w.subscriptions
                .cancel(id, &AuditContext::admin("race"))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }));
    }
    for n in 0..10 {
        let (w, barrier) = (w.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let patch = PlanPatch {
                capacity: Some(Capacity::new(15 + n).unwrap()),
                ..Default::default()
            };
            // Refusals (capacity below held) are expected under this race.
            let _ = w
                .plans
                .update(plan_id, &patch, &AuditContext::admin("race"))
                .await;
            Ok(())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    w.assert_invariants(plan_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_thousand_purchases_over_four_plans_sell_each_plan_exactly_out() {
    let gateway = Arc::new(SimulatedGateway::new());
    let w = Arc::new(world(gateway.clone()));
    let mut plans = Vec::new();
    for _ in 0..4 {
        plans.push(w.plan(100).await.id());
    }
    let barrier = Arc::new(Barrier::new(2000));
    let tasks: Vec<_> = (0..2000)
        .map(|i| {
            let (w, barrier, plan) = (w.clone(), barrier.clone(), plans[i % 4]);
            tokio::spawn(async move {
                barrier.wait().await;
                w.purchases
                    .purchase(&cmd(plan, &format!("cus_{i}"), "k", "pm_card_visa"))
                    .await
                    .unwrap()
                    .outcome
            })
        })
        .collect();
    let mut created = 0;
    for t in tasks {
        if let PurchaseOutcome::Created { .. } = t.await.unwrap() {
            created += 1;
        }
    }
    assert_eq!(created, 400);
    assert_eq!(gateway.succeeded_charges().len(), 400);
    for plan in plans {
        assert_eq!(w.seats_left(plan).await, 0);
        w.assert_invariants(plan).await;
    }
}

/// A tiny thread-safe list for recording what a mock saw.
mod parking_lot_free {
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct Keys(Mutex<Vec<String>>);

    impl Keys {
        pub fn push(&self, k: String) {
            self.0.lock().unwrap().push(k);
        }

        pub fn all(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
    }
}
