//! Contract cases of [`CheckoutRepository`] under real concurrency, each ending with the
//! invariants (`capacity == seats_left + held + incomplete + active`, audit replay):
//! many customers for the last seats, one key opened many times at once, a payment, an
//! expiry, a failure and a cancellation of one session at once, and one webhook event
//! claimed by many deliveries at once.
//!
//! [`CheckoutRepository`]: seatkeeper_domain::ports::CheckoutRepository

use std::sync::Arc;

use seatkeeper_domain::{
    ports::{ChangeCheckoutError, Opened, Store},
    AuditAction, CheckoutChange, CheckoutRefusal, CheckoutStatus, Effect, OpenRefusal, SeatRefusal,
};

use crate::{
    checkout_support::*,
    support::{assert_invariants, create_plan, now, race, stats_now, task, whole_audit},
    StoreFactory,
};

pub async fn sixty_customers_opening_sessions_for_ten_seats_hold_exactly_ten(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 10).await;
    let results = race(
        (0..60)
            .map(|i| {
                let store = store.clone();
                let cmd = opening(plan.id(), &format!("c{i}"), "k", now());
                task(async move { store.open_checkout(&cmd).await })
            })
            .collect(),
    )
    .await;
    let mut held = 0;
    for r in results {
        match r {
            Ok(Opened::New(_)) => held += 1,
            Err(seatkeeper_domain::ports::OpenCheckoutError::Refused(OpenRefusal::Seat(
                SeatRefusal::SoldOut,
            ))) => {}
            other => panic!("each opening should hold a seat or be sold out, got {other:?}"),
        }
    }
    assert_eq!(held, 10);
    let stats = stats_now(&*store, plan.id()).await;
    assert_eq!((stats.seats_left, stats.held), (0, 10));
    assert_invariants(&*store, plan.id()).await;
}

pub async fn one_key_opened_thirty_times_at_once_holds_one_seat(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 5).await;
    let results = race(
        (0..30)
            .map(|_| {
                let store = store.clone();
                let cmd = opening(plan.id(), "alice", "same", now());
                task(async move {
                    store
                        .open_checkout(&cmd)
                        .await
                        .expect("open_checkout failed")
                })
            })
            .collect(),
    )
    .await;
    let new: Vec<_> = results
        .iter()
        .filter(|r| matches!(r, Opened::New(_)))
        .collect();
    assert_eq!(new.len(), 1, "exactly one opening holds a seat");
    let id = new[0].session().id();
    assert!(results.iter().all(|r| r.session().id() == id));
    assert_eq!(stats_now(&*store, plan.id()).await.held, 1);
    assert_invariants(&*store, plan.id()).await;
}

pub async fn payment_expiry_failure_and_cancellation_of_one_session_at_once_settle_it_once(
    factory: &dyn StoreFactory,
) {
    for round in 0..8 {
        let store = factory.fresh().await;
        let plan = create_plan(&*store, 2).await;
        let session = open(&*store, &opening(plan.id(), "alice", "k", now())).await;
        let session = with_intent(&*store, &session).await;
        let changes = [
            paid(&session),
            paid(&session),
            expire_on_request(),
            expire_on_request(),
            CheckoutChange::PaymentFailed {
                reason: "card_declined".into(),
            },
            CheckoutChange::IntentClosed,
        ];
        let results = race(
            changes
                .iter()
                .cycle()
                .take(12)
                .map(|c| {
                    let store = store.clone();
                    let cmd = change(session.id(), c.clone(), now());
                    task(async move { store.change_checkout(&cmd).await })
                })
                .collect(),
        )
        .await;
        let mut completed = 0;
        for r in &results {
            match r {
                Ok(c) if c.applied.effect == Effect::Completed => completed += 1,
                Ok(_) => {}
                Err(ChangeCheckoutError::Refused(CheckoutRefusal::NotOpen { .. })) => {}
                Err(e) => panic!("round {round}: unexpected error {e:?}"),
            }
        }
        // Paid while open, or paid after the expiry with the seat still free: either way
        // exactly one completion, one subscription, and the seat is the subscription's.
        let last = session_now(&*store, session.id()).await;
        assert_eq!(last.status(), CheckoutStatus::Complete, "round {round}");
        assert_eq!(completed, 1, "round {round}");
        let sub = store
            .get_subscription(session.subscription_id())
            .await
            .unwrap()
            .expect("the completion's subscription");
        assert_eq!(sub.payment_id(), Some(intent_of(&session).id.as_str()));
        let stats = stats_now(&*store, plan.id()).await;
        assert_eq!((stats.seats_left, stats.held, stats.active), (1, 0, 1));
        let completions = whole_audit(&*store, plan.id())
            .await
            .iter()
            .filter(|e| e.action == AuditAction::CheckoutCompleted)
            .count();
        assert_eq!(completions, 1, "round {round}");
        assert_invariants(&*store, plan.id()).await;
    }
}

pub async fn twenty_sessions_paid_and_expired_at_once_keep_the_invariants(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 20).await;
    let mut sessions = Vec::new();
    for i in 0..20 {
        let s = open(&*store, &opening(plan.id(), &format!("c{i}"), "k", now())).await;
        sessions.push(with_intent(&*store, &s).await);
    }
    // Even sessions are paid, odd ones expired, and a latecomer tries for a seat of each
    // expiring one.
    let mut tasks = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        let c = if i % 2 == 0 {
            paid(s)
        } else {
            expire_on_request()
        };
        let cmd = change(s.id(), c, now());
        let shared: Arc<dyn Store> = store.clone();
        tasks.push(task(async move {
            let store = shared;
            store.change_checkout(&cmd).await.expect("change failed");
        }));
        if i % 2 == 1 {
            let store = store.clone();
            let cmd = opening(plan.id(), &format!("late{i}"), "k", now());
            tasks.push(task(async move {
                let _ = store.open_checkout(&cmd).await;
            }));
        }
    }
    race(tasks).await;
    let stats = stats_now(&*store, plan.id()).await;
    assert_eq!(stats.active, 10);
    assert_eq!(u64::from(stats.seats_left) + stats.held, 10);
    assert_invariants(&*store, plan.id()).await;
}

pub async fn one_webhook_event_delivered_forty_times_at_once_is_claimed_once(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let at = now();
    let results = race(
        (0..40)
            .map(|_| {
                let store = store.clone();
                task(async move {
                    store
                        .claim_webhook_event(&event("evt_race", at))
                        .await
                        .expect("claim_webhook_event failed")
                })
            })
            .collect(),
    )
    .await;
    assert_eq!(results.iter().filter(|new| **new).count(), 1);
}

pub async fn one_key_opened_on_several_plans_at_once_opens_one_session(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    for round in 0..3 {
        let mut plans = Vec::new();
        for _ in 0..6 {
            plans.push(create_plan(&*store, 2).await.id());
        }
        let key = format!("same-{round}");
        let results = race(
            plans
                .iter()
                .map(|plan| {
                    let store = store.clone();
                    let cmd = opening(*plan, "alice", &key, now());
                    task(async move { store.open_checkout(&cmd).await })
                })
                .collect(),
        )
        .await;
        let mut new = Vec::new();
        for r in &results {
            match r {
                Ok(Opened::New(s)) => new.push(s.id()),
                Ok(Opened::Existing(_))
                | Err(seatkeeper_domain::ports::OpenCheckoutError::Refused(
                    OpenRefusal::KeyReused,
                )) => {}
                other => panic!("round {round}: unexpected answer {other:?}"),
            }
        }
        assert_eq!(new.len(), 1, "round {round}: exactly one plan holds a seat");
        let mut held = 0;
        for plan in &plans {
            held += stats_now(&*store, *plan).await.held;
            assert_invariants(&*store, *plan).await;
        }
        assert_eq!(held, 1, "round {round}");
    }
}
