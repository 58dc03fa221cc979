//! Contract cases of atomicity under real overlap: many tasks on the multi-threaded runtime
//! released together by one barrier ([`race`]) against one plan, one key or one
//! subscription. Each case checks every result against the only outcomes the contract
//! allows, counts what must be counted exactly, and ends with the store invariants.
//!
//! Sizes stay in the hundreds of store calls per case so that database-backed stores run
//! them in seconds.

use std::collections::{BTreeMap, BTreeSet};

use seatkeeper_domain::{
    ports::{
        CancelError, Cancellation, ChargeResult, CompleteError, Completion, NewKeyReservation,
        Reservation, ReserveError, StoreError, UpdatePlanError,
    },
    AuditAction, Capacity, Claim, PlanPatch, PlanStatus, PurchaseOutcome, RecoveryPoint,
    SubscriptionId, SubscriptionStatus,
};

use crate::{
    support::{
        admin, all, assert_invariants, assert_key_in_use, create_plan, customer, finished_outcome,
        now, plan_now, race, secs, stats_now, subscription_now, task, whole_audit, Purchase, Task,
    },
    StoreFactory,
};

pub async fn two_hundred_simultaneous_reservations_of_fifty_seats_reserve_exactly_fifty(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 50).await;
    let at = now();
    let purchases: Vec<Purchase> = (0..200)
        .map(|i| Purchase::new(plan.id(), &format!("cus_{}", i % 4), &format!("k{i}"), at))
        .collect();
    // The odd ones claim their keys first and reserve with `reserve_seat`; the even ones
    // reserve with new keys.
    all(purchases
        .iter()
        .skip(1)
        .step_by(2)
        .map(|p| {
            let (store, p) = (store.clone(), p.clone());
            task(async move {
                p.claim(&*store).await;
            })
        })
        .collect())
    .await;
    let results = race(
        purchases
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let store = store.clone();
                if i % 2 == 0 {
                    let cmd = p.with_new_key();
                    task(async move {
                        match store.reserve_with_new_key(&cmd).await {
                            Ok(NewKeyReservation::Claimed(r)) => Ok(r),
                            other => Err(format!("{other:?}")),
                        }
                    })
                } else {
                    let cmd = p.reserve.clone();
                    task(
                        async move { store.reserve_seat(&cmd).await.map_err(|e| format!("{e:?}")) },
                    )
                }
            })
            .collect(),
    )
    .await;
    let mut reserved = BTreeSet::new();
    let mut sold_out = Vec::new();
    for (p, result) in purchases.iter().zip(results) {
        match result {
            Ok(Reservation::Reserved(sub))
                if sub.id() == p.subscription_id()
                    && sub.status() == SubscriptionStatus::Incomplete =>
            {
                reserved.insert(sub.id());
            }
            Ok(Reservation::Rejected(PurchaseOutcome::SoldOut { plan_id }))
                if plan_id == plan.id() =>
            {
                sold_out.push(p.clone());
            }
            other => panic!("a reservation may only be Reserved or SoldOut here, got {other:?}"),
        }
    }
    assert_eq!(
        (reserved.len(), sold_out.len()),
        (50, 150),
        "exactly 50 of 200 simultaneous reservations get one of the 50 seats"
    );
    let after = plan_now(&*store, plan.id()).await;
    assert_eq!(after.seats_left(), 0);
    let stats = stats_now(&*store, plan.id()).await;
    assert_eq!((stats.incomplete, stats.sold_out), (50, true));

    // Exactly the winners have subscriptions.
    let mut listed = BTreeSet::new();
    for c in 0..4 {
        let mut after = None;
        loop {
            let page = store
                .customer_subscriptions(&customer(&format!("cus_{c}")), after, 100)
                .await
                .expect("customer_subscriptions failed");
            let Some(last) = page.last() else { break };
            after = Some(last.id());
            listed.extend(page.iter().map(|s| s.id()));
        }
    }
    assert_eq!(
        listed, reserved,
        "the stored subscriptions are the winners'"
    );
    // Every loser's key is finished as sold out, under its own request.
    let replays = all(sold_out
        .iter()
        .map(|p| {
            let (store, p) = (store.clone(), p.clone());
            task(async move {
                let got = finished_outcome(&*store, &p, at).await;
                (got, p.reserve.request_id.clone())
            })
        })
        .collect())
    .await;
    for ((outcome, request_id), expected_request) in replays {
        assert_eq!(outcome, PurchaseOutcome::SoldOut { plan_id: plan.id() });
        assert_eq!(request_id, expected_request);
    }
    let audit = whole_audit(&*store, plan.id()).await;
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.action == AuditAction::SeatReserved)
            .count(),
        50
    );
    assert_invariants(&*store, plan.id()).await;
}

pub async fn a_hundred_simultaneous_claims_of_one_new_key_acquire_it_exactly_once(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 5).await;
    let at = now();
    let base = Purchase::new(plan.id(), "cus_1", "k", at);
    let claims: Vec<_> = (0..100).map(|_| base.reclaim(at)).collect();
    let results = race(
        claims
            .iter()
            .map(|c| {
                let (store, c) = (store.clone(), c.clone());
                task(async move { store.claim_key(&c).await })
            })
            .collect(),
    )
    .await;
    let winner = one_acquired(&results, "one new key");
    assert_eq!(
        results[winner].as_ref().ok(),
        Some(&Claim::Acquired(claims[winner].fresh_record()))
    );

    let holder = base.taken_over_by(&claims[winner]);
    assert!(matches!(
        holder.reserve(&*store).await,
        Reservation::Reserved(_)
    ));
    let loser = base
        .taken_over_by(&claims[(winner + 1) % claims.len()])
        .with_subscription_id(SubscriptionId::generate());
    assert!(
        matches!(
            store.reserve_seat(&loser.reserve).await,
            Err(ReserveError::LockLost)
        ),
        "a claim that answered InUse holds nothing"
    );
    assert_eq!(stats_now(&*store, plan.id()).await.incomplete, 1);
    assert_invariants(&*store, plan.id()).await;
}

pub async fn a_hundred_simultaneous_claims_of_one_abandoned_key_take_it_over_exactly_once(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 5).await;
    let t = now();
    // Its lease ended 30 s ago.
    let abandoned = Purchase::new(plan.id(), "cus_1", "k", t - secs(60));
    let sub = abandoned.reserved(&*store).await;
    let claims: Vec<_> = (0..100).map(|_| abandoned.reclaim(t)).collect();
    let results = race(
        claims
            .iter()
            .map(|c| {
                let (store, c) = (store.clone(), c.clone());
                task(async move { store.claim_key(&c).await })
            })
            .collect(),
    )
    .await;
    let winner = one_acquired(&results, "one abandoned key");
    match &results[winner] {
        Ok(Claim::Acquired(record)) => {
            assert!(record.is_locked_by(claims[winner].owner));
            assert_eq!(
                *record.recovery(),
                RecoveryPoint::Reserved {
                    subscription_id: sub.id()
                }
            );
            assert_eq!(record.created_at(), abandoned.claim.now);
        }
        other => panic!("the winner acquired, got {other:?}"),
    }
    assert!(!store
        .release_key(
            abandoned.customer(),
            &abandoned.claim.key,
            abandoned.claim.owner
        )
        .await
        .expect("release_key failed"));
    assert_key_in_use(&*store, &abandoned, t + secs(1)).await;
    assert_invariants(&*store, plan.id()).await;
}

pub async fn a_hundred_simultaneous_claims_of_a_key_past_its_retention_start_it_afresh_exactly_once(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 5).await;
    let t = now();
    let old = Purchase::new(plan.id(), "cus_1", "k", t - secs(2 * 86_400));
    old.reserved(&*store).await;
    old.charged(&*store, "pi_old", old.claim.now).await;
    let claims: Vec<_> = (0..100).map(|_| old.reclaim(t)).collect();
    let results = race(
        claims
            .iter()
            .map(|c| {
                let (store, c) = (store.clone(), c.clone());
                task(async move { store.claim_key(&c).await })
            })
            .collect(),
    )
    .await;
    let winner = one_acquired(&results, "one key past its retention");
    assert_eq!(
        results[winner].as_ref().ok(),
        Some(&Claim::Acquired(claims[winner].fresh_record())),
        "the winner starts a new purchase at Started"
    );
    assert_key_in_use(&*store, &old, t + secs(1)).await;
    assert_invariants(&*store, plan.id()).await;
}

/// What one task of a mixed race did.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a few hundred short-lived values per case
enum Step {
    Reserve(Result<Reservation, ReserveError>),
    Claim(Result<Claim, StoreError>),
    Cancel(Result<Cancellation, CancelError>),
    Complete(Result<Completion, CompleteError>),
    Update(u32, Result<seatkeeper_domain::Plan, UpdatePlanError>),
    Purge(Result<u64, StoreError>),
}

pub async fn reservations_racing_cancellations_and_capacity_changes_keep_every_invariant(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 20).await;
    let plan_id = plan.id();
    let at = now();
    let seeded: Vec<Purchase> = (0..10)
        .map(|i| Purchase::new(plan.id(), "cus_seed", &format!("k{i}"), at))
        .collect();
    let buyers: Vec<Purchase> = (0..40)
        .map(|i| Purchase::new(plan.id(), &format!("cus_{i}"), "k", at))
        .collect();
    let mut setup: Vec<Task<()>> = Vec::new();
    for p in &seeded {
        let (store, p) = (store.clone(), p.clone());
        setup.push(task(async move {
            p.active(&*store).await;
        }));
    }
    for p in &buyers {
        let (store, p) = (store.clone(), p.clone());
        setup.push(task(async move {
            p.claim(&*store).await;
        }));
    }
    all(setup).await;

    let mut tasks: Vec<Task<Step>> = Vec::new();
    for p in &buyers {
        let (store, cmd) = (store.clone(), p.reserve.clone());
        tasks.push(task(async move {
            Step::Reserve(store.reserve_seat(&cmd).await)
        }));
    }
    for p in &seeded {
        let (store, id) = (store.clone(), p.subscription_id());
        tasks.push(task(async move {
            Step::Cancel(store.cancel_subscription(id, &admin("race"), at).await)
        }));
    }
    for n in 0..10u32 {
        let store = store.clone();
        let patch = PlanPatch {
            capacity: Some(Capacity::new(i64::from(15 + n)).expect("a valid capacity")),
            ..Default::default()
        };
        tasks.push(task(async move {
            Step::Update(
                15 + n,
                store.update_plan(plan_id, &patch, &admin("race"), at).await,
            )
        }));
    }
    for status in [PlanStatus::Archived, PlanStatus::Active] {
        let store = store.clone();
        let patch = PlanPatch {
            status: Some(status),
            ..Default::default()
        };
        tasks.push(task(async move {
            Step::Update(
                0,
                store.update_plan(plan_id, &patch, &admin("race"), at).await,
            )
        }));
    }

    let mut reserved = 0u64;
    for step in race(tasks).await {
        match step {
            Step::Reserve(Ok(Reservation::Reserved(_))) => reserved += 1,
            Step::Reserve(Ok(Reservation::Rejected(
                PurchaseOutcome::SoldOut { .. } | PurchaseOutcome::PlanInactive { .. },
            ))) => {}
            Step::Cancel(Ok(Cancellation {
                already_canceled: false,
                ..
            })) => {}
            Step::Update(_, Ok(_)) => {}
            Step::Update(
                requested,
                Err(UpdatePlanError::CapacityBelowHeld { held, requested: r }),
            ) if r == requested && held > requested => {}
            other => panic!("a result the contract does not allow in this race: {other:?}"),
        }
    }
    let after = plan_now(&*store, plan.id()).await;
    let stats = stats_now(&*store, plan.id()).await;
    assert_eq!(
        (stats.incomplete, stats.active, stats.canceled),
        (reserved, 0, 10),
        "every reservation and every cancellation counted once"
    );
    assert_eq!(
        u64::from(after.capacity().get() - after.seats_left()),
        reserved,
        "the held seats are the reservations made in the race"
    );
    let audit = whole_audit(&*store, plan.id()).await;
    let count = |action| audit.iter().filter(|e| e.action == action).count() as u64;
    assert_eq!(count(AuditAction::SeatReserved), 10 + reserved);
    assert_eq!(count(AuditAction::SubscriptionCanceled), 10);
    assert_invariants(&*store, plan.id()).await;
}

pub async fn reservations_racing_takeovers_of_their_keys_either_land_first_or_are_lock_lost(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 20).await;
    let t = now();
    // Claimed 31 s ago: the leases ended 1 s ago, but their owners still try to reserve.
    let purchases: Vec<Purchase> = (0..20)
        .map(|i| Purchase::new(plan.id(), &format!("cus_{i}"), "k", t - secs(31)))
        .collect();
    all(purchases
        .iter()
        .map(|p| {
            let (store, p) = (store.clone(), p.clone());
            task(async move {
                p.claim(&*store).await;
            })
        })
        .collect())
    .await;
    let mut tasks: Vec<Task<Step>> = Vec::new();
    for p in &purchases {
        let (reserver, claimer) = (store.clone(), store.clone());
        let (cmd, takeover) = (p.reserve.clone(), p.reclaim(t));
        tasks.push(task(async move {
            Step::Reserve(reserver.reserve_seat(&cmd).await)
        }));
        tasks.push(task(async move {
            Step::Claim(claimer.claim_key(&takeover).await)
        }));
    }
    let steps = race(tasks).await;
    let mut reserved = 0u64;
    for (p, pair) in purchases.iter().zip(steps.chunks(2)) {
        let record = match &pair[1] {
            Step::Claim(Ok(Claim::Acquired(record))) => record,
            other => panic!("a claim of a key whose lease ended must acquire it, got {other:?}"),
        };
        match &pair[0] {
            Step::Reserve(Ok(Reservation::Reserved(sub))) => {
                reserved += 1;
                assert_eq!(
                    *record.recovery(),
                    RecoveryPoint::Reserved {
                        subscription_id: sub.id()
                    },
                    "a reservation that landed before the takeover is the takeover's recovery point"
                );
            }
            Step::Reserve(Err(ReserveError::LockLost)) => {
                assert_eq!(
                    *record.recovery(),
                    RecoveryPoint::Started,
                    "a reservation refused as LockLost came after the takeover and did nothing"
                );
                assert_eq!(
                    store
                        .get_subscription(p.subscription_id())
                        .await
                        .expect("get_subscription failed"),
                    None
                );
            }
            other => {
                panic!("the old owner's reservation must be Reserved or LockLost, got {other:?}")
            }
        }
    }
    let after = plan_now(&*store, plan.id()).await;
    assert_eq!(u64::from(20 - after.seats_left()), reserved);
    assert_invariants(&*store, plan.id()).await;
}

pub async fn completing_one_purchase_many_times_at_once_completes_it_exactly_once(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 10).await;
    let at = now();
    let purchases: Vec<Purchase> = (0..5)
        .map(|i| Purchase::new(plan.id(), "cus_1", &format!("k{i}"), at))
        .collect();
    for p in &purchases {
        p.reserved(&*store).await;
    }
    let mut tasks: Vec<Task<Step>> = Vec::new();
    for (i, p) in purchases.iter().enumerate() {
        for j in 0..10 {
            let result = if (i + j) % 2 == 0 {
                ChargeResult::Charged {
                    payment_id: format!("pi_{i}_{j}"),
                }
            } else {
                ChargeResult::Declined {
                    reason: format!("declined {i} {j}"),
                }
            };
            let cmd = p.completion(result, &format!("req-{i}-{j}"), at + secs(1));
            let store = store.clone();
            tasks.push(task(async move {
                Step::Complete(store.complete_purchase(&cmd).await)
            }));
        }
    }
    let steps = race(tasks).await;
    let mut active = 0u32;
    for (i, (p, attempts)) in purchases.iter().zip(steps.chunks(10)).enumerate() {
        let current = subscription_now(&*store, p.subscription_id()).await;
        let mut winners = Vec::new();
        for (j, step) in attempts.iter().enumerate() {
            match step {
                Step::Complete(Ok(done)) => winners.push((j, done.clone())),
                Step::Complete(Err(CompleteError::NotIncomplete(s))) => assert_eq!(
                    **s, current,
                    "a losing completion reports the subscription as the winner left it"
                ),
                other => panic!("a completion must succeed or be NotIncomplete, got {other:?}"),
            }
        }
        assert_eq!(
            winners.len(),
            1,
            "purchase {i} completed {} times",
            winners.len()
        );
        let (j, done) = winners.remove(0);
        assert_eq!(*done.subscription(), current);
        if (i + j) % 2 == 0 {
            assert_eq!(current.status(), SubscriptionStatus::Active);
            assert_eq!(current.payment_id(), Some(format!("pi_{i}_{j}").as_str()));
            active += 1;
        } else {
            assert_eq!(current.status(), SubscriptionStatus::IncompleteExpired);
            assert_eq!(
                current.failure_reason(),
                Some(format!("declined {i} {j}").as_str())
            );
        }
        assert_eq!(
            finished_outcome(&*store, p, at + secs(2)).await,
            (done.outcome, format!("req-{i}-{j}")),
            "the key holds the winner's outcome"
        );
    }
    let audit = whole_audit(&*store, plan.id()).await;
    let mut completions: BTreeMap<SubscriptionId, usize> = BTreeMap::new();
    for e in &audit {
        if matches!(
            e.action,
            AuditAction::PurchaseActivated | AuditAction::SeatReleased
        ) {
            *completions
                .entry(
                    e.subscription_id
                        .expect("a completion entry names its subscription"),
                )
                .or_default() += 1;
        }
    }
    assert_eq!(completions.len(), 5);
    assert!(
        completions.values().all(|n| *n == 1),
        "one completion entry per subscription: {completions:?}"
    );
    assert_eq!(plan_now(&*store, plan.id()).await.seats_left(), 10 - active);
    assert_invariants(&*store, plan.id()).await;
}

pub async fn cancelling_one_subscription_many_times_at_once_releases_its_seat_once(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 5).await;
    let at = now();
    let purchases: Vec<Purchase> = (0..3)
        .map(|i| Purchase::new(plan.id(), "cus_1", &format!("k{i}"), at))
        .collect();
    for p in &purchases {
        p.active(&*store).await;
    }
    let mut tasks: Vec<Task<Step>> = Vec::new();
    for p in &purchases {
        for j in 0..20 {
            let (store, id) = (store.clone(), p.subscription_id());
            tasks.push(task(async move {
                Step::Cancel(
                    store
                        .cancel_subscription(id, &admin(&format!("cancel-{j}")), at + secs(j))
                        .await,
                )
            }));
        }
    }
    let steps = race(tasks).await;
    for (p, attempts) in purchases.iter().zip(steps.chunks(20)) {
        let current = subscription_now(&*store, p.subscription_id()).await;
        assert_eq!(current.status(), SubscriptionStatus::Canceled);
        let mut first = 0;
        for step in attempts {
            match step {
                Step::Cancel(Ok(c)) => {
                    assert_eq!(
                        c.subscription, current,
                        "every cancellation returns the subscription as the first one left it"
                    );
                    if !c.already_canceled {
                        first += 1;
                    }
                }
                other => panic!("cancelling an active subscription must succeed, got {other:?}"),
            }
        }
        assert_eq!(first, 1, "exactly one cancellation did it");
    }
    let audit = whole_audit(&*store, plan.id()).await;
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.action == AuditAction::SubscriptionCanceled)
            .count(),
        3
    );
    let stats = stats_now(&*store, plan.id()).await;
    assert_eq!((stats.seats_left, stats.active, stats.canceled), (5, 0, 3));
    assert_invariants(&*store, plan.id()).await;
}

pub async fn completions_racing_cancellations_of_the_same_subscriptions_keep_every_invariant(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 20).await;
    let at = now();
    let purchases: Vec<Purchase> = (0..20)
        .map(|i| Purchase::new(plan.id(), &format!("cus_{i}"), "k", at))
        .collect();
    all(purchases
        .iter()
        .map(|p| {
            let (store, p) = (store.clone(), p.clone());
            task(async move {
                p.reserved(&*store).await;
            })
        })
        .collect())
    .await;
    let mut tasks: Vec<Task<Step>> = Vec::new();
    for p in &purchases {
        let cmd = p.completion(
            ChargeResult::Charged {
                payment_id: format!("pi_{}", p.subscription_id()),
            },
            "req-complete",
            at + secs(1),
        );
        let store2 = store.clone();
        tasks.push(task(async move {
            Step::Complete(store2.complete_purchase(&cmd).await)
        }));
        for _ in 0..2 {
            let (store, id) = (store.clone(), p.subscription_id());
            tasks.push(task(async move {
                Step::Cancel(
                    store
                        .cancel_subscription(id, &admin("race"), at + secs(2))
                        .await,
                )
            }));
        }
    }
    let steps = race(tasks).await;
    let mut canceled = 0u64;
    for (p, group) in purchases.iter().zip(steps.chunks(3)) {
        assert!(
            matches!(&group[0], Step::Complete(Ok(_))),
            "a cancellation cannot stop a completion (it refuses incomplete subscriptions), got {:?}",
            group[0]
        );
        let mut did_cancel = 0;
        let mut saw_canceled = 0;
        for step in &group[1..] {
            match step {
                Step::Cancel(Ok(Cancellation {
                    already_canceled: false,
                    ..
                })) => did_cancel += 1,
                Step::Cancel(Ok(Cancellation {
                    already_canceled: true,
                    ..
                })) => saw_canceled += 1,
                Step::Cancel(Err(CancelError::NotActive(SubscriptionStatus::Incomplete))) => {}
                other => panic!("a cancellation racing a completion got {other:?}"),
            }
        }
        assert!(did_cancel <= 1, "a subscription was cancelled twice");
        assert!(
            saw_canceled <= did_cancel,
            "already cancelled without anyone cancelling"
        );
        let current = subscription_now(&*store, p.subscription_id()).await;
        let expected = if did_cancel == 1 {
            canceled += 1;
            SubscriptionStatus::Canceled
        } else {
            SubscriptionStatus::Active
        };
        assert_eq!(current.status(), expected);
    }
    let stats = stats_now(&*store, plan.id()).await;
    assert_eq!(
        (
            stats.incomplete,
            stats.active + stats.canceled,
            stats.canceled
        ),
        (0, 20, canceled)
    );
    assert_eq!(u64::from(stats.seats_left), canceled);
    assert_invariants(&*store, plan.id()).await;
}

pub async fn purging_expired_keys_while_they_are_reclaimed_never_removes_a_live_record(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let t = now();
    let long_ago = t - secs(2 * 86_400);
    let make = |who: &str, at| -> Vec<Purchase> {
        (0..40)
            .map(|i| Purchase::new(plan.id(), &format!("{who}_{i}"), "k", at))
            .collect()
    };
    // Expired and left alone; expired and claimed again during the purge; brand new.
    let (gone, back, fresh) = (
        make("cus_gone", long_ago),
        make("cus_back", long_ago),
        make("cus_new", t),
    );
    all(gone
        .iter()
        .chain(&back)
        .map(|p| {
            let (store, p) = (store.clone(), p.clone());
            task(async move {
                p.claim(&*store).await;
            })
        })
        .collect())
    .await;

    // New claims interleaved with reclaims, and the purge spawned last: the task that trips
    // the barrier tends to be the last one and runs at once while the others are being
    // woken, so the sweep overlaps the claims more often than not.
    let mut tasks: Vec<Task<Step>> = Vec::new();
    for (b, f) in back.iter().zip(&fresh) {
        for claim in [b.reclaim(t), f.claim.clone()] {
            let store = store.clone();
            tasks.push(task(
                async move { Step::Claim(store.claim_key(&claim).await) },
            ));
        }
    }
    let purger = store.clone();
    tasks.push(task(async move {
        Step::Purge(purger.purge_expired_keys(t).await)
    }));
    let steps = race(tasks).await;
    let (purge, claims) = steps.split_last().expect("the race ran");
    match purge {
        Step::Purge(Ok(n)) => assert!(
            (40..=80).contains(n),
            "the purge removed {n} records: it must count the 40 expired ones nobody touched, \
             and at most the 40 that were being claimed again"
        ),
        other => panic!("purge_expired_keys failed: {other:?}"),
    }
    for step in claims {
        assert!(
            matches!(step, Step::Claim(Ok(Claim::Acquired(_)))),
            "a claim of an expired or new key must acquire it, got {step:?}"
        );
    }
    assert_eq!(
        store.purge_expired_keys(t).await.expect("purge failed"),
        0,
        "nothing expired is left"
    );
    let checks = all(back
        .iter()
        .chain(&fresh)
        .map(|p| {
            let (store, p) = (store.clone(), p.clone());
            task(async move { assert_key_in_use(&*store, &p, t + secs(1)).await })
        })
        .collect())
    .await;
    assert_eq!(
        checks.len(),
        80,
        "every record claimed during the purge survived it"
    );
    let probes = all(gone
        .iter()
        .map(|p| {
            let (store, probe) = (store.clone(), p.misuse(p.claim.now));
            task(async move { store.claim_key(&probe).await })
        })
        .collect())
    .await;
    for got in probes {
        assert!(
            matches!(got, Ok(Claim::Acquired(_))),
            "an expired key nobody claimed should have been purged, got {got:?}"
        );
    }
    assert_invariants(&*store, plan.id()).await;
}

/// The index of the only `Acquired` claim; fails unless every other one is `InUse`.
pub async fn a_hundred_simultaneous_new_key_reservations_of_one_key_claim_it_exactly_once(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 5).await;
    let at = now();
    let base = Purchase::new(plan.id(), "cus_1", "k", at);
    let attempts: Vec<Purchase> = (0..100)
        .map(|_| {
            base.taken_over_by(&base.reclaim(at))
                .with_subscription_id(SubscriptionId::generate())
        })
        .collect();
    let results = race(
        attempts
            .iter()
            .map(|p| {
                let (store, cmd) = (store.clone(), p.with_new_key());
                task(async move { store.reserve_with_new_key(&cmd).await })
            })
            .collect(),
    )
    .await;
    let mut winners = Vec::new();
    for (i, (p, result)) in attempts.iter().zip(&results).enumerate() {
        match result {
            Ok(NewKeyReservation::Claimed(Reservation::Reserved(sub)))
                if sub.id() == p.subscription_id() =>
            {
                winners.push(i)
            }
            Ok(NewKeyReservation::KeyExists) => {}
            other => panic!(
                "a simultaneous new-key reservation of one key must be Reserved or KeyExists, got {other:?}"
            ),
        }
    }
    assert_eq!(winners.len(), 1, "one key claimed {} times", winners.len());
    let winner = &attempts[winners[0]];
    for p in &attempts {
        let stored = store
            .get_subscription(p.subscription_id())
            .await
            .expect("get_subscription failed");
        assert_eq!(
            stored.is_some(),
            p.subscription_id() == winner.subscription_id(),
            "only the winner stored a subscription"
        );
    }
    assert_key_in_use(&*store, winner, at + secs(1)).await;
    assert!(store
        .release_key(winner.customer(), &winner.claim.key, winner.claim.owner)
        .await
        .expect("release_key failed"));
    let stats = stats_now(&*store, plan.id()).await;
    assert_eq!((stats.seats_left, stats.incomplete), (4, 1));
    assert_invariants(&*store, plan.id()).await;
}

pub async fn new_key_reservations_racing_claims_of_the_same_keys_give_each_key_one_holder(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 100).await;
    let at = now();
    let keys = 50;
    let reservers: Vec<Purchase> = (0..keys)
        .map(|i| Purchase::new(plan.id(), &format!("cus_{}", i % 5), &format!("k{i}"), at))
        .collect();
    let claimers: Vec<Purchase> = reservers
        .iter()
        .map(|p| {
            p.taken_over_by(&p.reclaim(at))
                .with_subscription_id(SubscriptionId::generate())
        })
        .collect();
    let mut tasks = Vec::new();
    for (r, c) in reservers.iter().zip(&claimers) {
        let (reserving, cmd) = (store.clone(), r.with_new_key());
        tasks.push(task(async move {
            (Some(reserving.reserve_with_new_key(&cmd).await), None)
        }));
        let (claiming, claim) = (store.clone(), c.claim.clone());
        tasks.push(task(async move {
            (None, Some(claiming.claim_key(&claim).await))
        }));
    }
    let results = race(tasks).await;
    let mut reserved = 0u32;
    for (i, pair) in results.chunks(2).enumerate() {
        let (Some(reservation), Some(claim)) = (&pair[0].0, &pair[1].1) else {
            unreachable!("each key has a reservation and a claim, in that order");
        };
        match (reservation, claim) {
            (Ok(NewKeyReservation::Claimed(Reservation::Reserved(_))), Ok(Claim::InUse)) => {
                reserved += 1;
            }
            (Ok(NewKeyReservation::KeyExists), Ok(Claim::Acquired(record)))
                if *record.recovery() == RecoveryPoint::Started =>
            {
                // The claim holds the key: its own reservation goes through.
                assert!(matches!(
                    claimers[i].reserve(&*store).await,
                    Reservation::Reserved(_)
                ));
                reserved += 1;
            }
            other => panic!(
                "key k{i}: exactly one of a new-key reservation and a claim may take a new key, got {other:?}"
            ),
        }
    }
    assert_eq!(reserved, keys as u32);
    let stats = stats_now(&*store, plan.id()).await;
    assert_eq!((stats.seats_left, stats.incomplete), (50, 50));
    assert_invariants(&*store, plan.id()).await;
}

fn one_acquired(results: &[Result<Claim, StoreError>], what: &str) -> usize {
    let mut winners = Vec::new();
    for (i, r) in results.iter().enumerate() {
        match r {
            Ok(Claim::Acquired(_)) => winners.push(i),
            Ok(Claim::InUse) => {}
            other => {
                panic!("a simultaneous claim of {what} must be Acquired or InUse, got {other:?}")
            }
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "{} of {} simultaneous claims of {what} acquired it",
        winners.len(),
        results.len()
    );
    winners[0]
}
