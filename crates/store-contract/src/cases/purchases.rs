//! Contract cases of [`PurchaseRepository`]: the two atomic phases around the charge.
//! Reserving (lock checks, the three rejections that finish the key, the seat, the
//! `incomplete` subscription, its audit entry and the recovery point), reserving with a
//! new key (the same, with the key's fresh record, and `KeyExists` for any key that has
//! a record) and completing (charged, declined, at most once, and the key finished with
//! the outcome).
//!
//! [`PurchaseRepository`]: seatkeeper_domain::ports::PurchaseRepository

use std::time::Duration;

use seatkeeper_domain::{
    ports::{
        ChargeResult, CompleteError, CompletePurchase, Completion, NewKeyReservation, Reservation,
        ReserveError, Store,
    },
    AuditAction, AuditEntry, Claim, IdempotencyRecord, LockToken, Plan, PlanId, PlanPatch,
    PlanStatus, PurchaseOutcome, RecoveryPoint, Subscription, SubscriptionId, Timestamp,
};

use crate::{
    support::{
        admin, altered, assert_invariants, assert_key_in_use, assert_same_entry, create_plan,
        finished_outcome, now, plan_now, secs, snapshot, span, stats_now, stats_of,
        subscription_now, whole_audit, PlanSnapshot, Purchase, LEASE,
    },
    StoreFactory,
};

pub async fn reserving_a_seat_takes_it_and_records_the_recovery_point(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let at = now() + secs(1);
    let purchase = Purchase::new(plan.id(), "cus_1", "k1", at);
    purchase.claim(&*store).await;
    let got = purchase.reserve(&*store).await;
    let expected = assert_first_seat_reserved(&*store, &plan, &purchase, got, at).await;
    assert_eq!(
        store
            .customer_subscriptions(purchase.customer(), None, 10)
            .await
            .expect("customer_subscriptions failed"),
        vec![expected.clone()]
    );

    // The key is still held by the purchase, and now records where a retry resumes.
    let record = released_and_reclaimed(&*store, &purchase, at).await;
    assert_eq!(
        *record.recovery(),
        RecoveryPoint::Reserved {
            subscription_id: expected.id()
        },
        "the reservation sets the key's recovery point in the same step"
    );
    assert_invariants(&*store, plan.id()).await;
}

pub async fn reserving_without_holding_the_key_is_lock_lost_and_changes_nothing(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let at = now();

    // Never claimed.
    let never = Purchase::new(plan.id(), "cus_1", "never", at);
    // Held by another request.
    let held = Purchase::new(plan.id(), "cus_1", "held", at);
    held.claim(&*store).await;
    let mut intruder = held
        .clone()
        .with_subscription_id(SubscriptionId::generate());
    intruder.reserve.owner = LockToken::generate();
    // Released by its owner.
    let released = Purchase::new(plan.id(), "cus_1", "released", at);
    released.claim(&*store).await;
    assert!(store
        .release_key(
            released.customer(),
            &released.claim.key,
            released.claim.owner
        )
        .await
        .expect("release_key failed"));
    // Finished (a rejection on an unknown plan), then tried on the real plan.
    let finished = Purchase::new(PlanId::generate(), "cus_1", "finished", at);
    finished.claim(&*store).await;
    finished.reserve(&*store).await;
    let mut finished_retry = finished
        .clone()
        .with_subscription_id(SubscriptionId::generate());
    finished_retry.reserve.plan_id = plan.id();
    // Held by the same owner token, but as another customer's key.
    let shared = Purchase::new(plan.id(), "cus_1", "shared", at);
    shared.claim(&*store).await;
    let mut other_customer = Purchase::new(plan.id(), "cus_2", "shared", at);
    other_customer.reserve.owner = shared.claim.owner;
    // Held by its owner, but already holding a seat: one key never holds two.
    let reserved = Purchase::new(plan.id(), "cus_1", "reserved", at);
    reserved.claim(&*store).await;
    reserved.reserve(&*store).await;
    let twice = reserved
        .clone()
        .with_subscription_id(SubscriptionId::generate());

    for (what, attempt) in [
        ("a key never claimed", &never),
        ("a key held by another request", &intruder),
        ("a released key", &released),
        ("a finished key", &finished_retry),
        ("another customer's key", &other_customer),
        ("a key that already reserved a seat", &twice),
    ] {
        let before = snapshot(&*store, plan.id()).await;
        match store.reserve_seat(&attempt.reserve).await {
            Err(ReserveError::LockLost) => {}
            other => panic!("reserving with {what} must be LockLost, got {other:?}"),
        }
        assert_nothing_reserved(&*store, &before, attempt, what).await;
    }
    // The refused attempts left the keys as they were.
    assert_key_in_use(&*store, &held, at + secs(1)).await;
    assert_key_in_use(&*store, &shared, at + secs(1)).await;
    assert!(matches!(
        held.reserve(&*store).await,
        Reservation::Reserved(_)
    ));
    assert_eq!(
        finished_outcome(&*store, &finished, at + secs(1)).await.0,
        PurchaseOutcome::PlanNotFound {
            plan_id: finished.reserve.plan_id
        }
    );
    assert_invariants(&*store, plan.id()).await;
}

pub async fn reserving_a_seat_of_an_unknown_plan_finishes_the_key_as_plan_not_found(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let other = create_plan(&*store, 3).await;
    let before = snapshot(&*store, other.id()).await;
    let unknown = PlanId::generate();
    let at = now();
    let purchase = Purchase::new(unknown, "cus_1", "k", at);
    purchase.claim(&*store).await;
    let outcome = PurchaseOutcome::PlanNotFound { plan_id: unknown };
    assert_eq!(
        purchase.reserve(&*store).await,
        Reservation::Rejected(outcome.clone())
    );
    assert_eq!(
        store
            .get_subscription(purchase.subscription_id())
            .await
            .expect("get_subscription failed"),
        None
    );
    assert_eq!(
        store.get_plan(unknown).await.expect("get_plan failed"),
        None
    );
    assert_eq!(snapshot(&*store, other.id()).await, before);
    assert_eq!(
        finished_outcome(&*store, &purchase, at + secs(1)).await,
        (outcome, purchase.reserve.request_id.clone()),
        "the rejection finishes the key with its outcome under the request id"
    );
    assert!(matches!(
        store.reserve_seat(&purchase.reserve).await,
        Err(ReserveError::LockLost)
    ));
}

pub async fn reserving_a_seat_of_an_archived_plan_finishes_the_key_as_plan_inactive(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let at = now();
    let archive = PlanPatch {
        status: Some(PlanStatus::Archived),
        ..Default::default()
    };
    // A plan with seats left, and one sold out: archived wins over sold out.
    for (capacity, held) in [(2, 1), (1, 1)] {
        let plan = create_plan(&*store, capacity).await;
        for i in 0..held {
            Purchase::new(
                plan.id(),
                &format!("cus_held_{capacity}"),
                &format!("k{i}"),
                at,
            )
            .reserved(&*store)
            .await;
        }
        store
            .update_plan(plan.id(), &archive, &admin("archive"), at)
            .await
            .expect("update_plan failed");
        let before = snapshot(&*store, plan.id()).await;
        let purchase = Purchase::new(plan.id(), &format!("cus_{capacity}"), "k", at);
        purchase.claim(&*store).await;
        let outcome = PurchaseOutcome::PlanInactive { plan_id: plan.id() };
        assert_eq!(
            purchase.reserve(&*store).await,
            Reservation::Rejected(outcome.clone()),
            "an archived plan of {capacity} seats with {held} held"
        );
        assert_eq!(snapshot(&*store, plan.id()).await, before);
        assert_eq!(
            store
                .get_subscription(purchase.subscription_id())
                .await
                .expect("get_subscription failed"),
            None
        );
        assert_eq!(
            finished_outcome(&*store, &purchase, at + secs(1)).await,
            (outcome, purchase.reserve.request_id.clone())
        );
        assert_invariants(&*store, plan.id()).await;
    }
}

pub async fn reserving_the_last_seat_then_one_more_is_sold_out(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 1).await;
    let at = now();
    let first = Purchase::new(plan.id(), "cus_1", "k", at);
    first.reserved(&*store).await;
    let before = snapshot(&*store, plan.id()).await;
    assert!(before.stats.sold_out && before.plan.seats_left() == 0);

    let second = Purchase::new(plan.id(), "cus_2", "k", at);
    second.claim(&*store).await;
    let outcome = PurchaseOutcome::SoldOut { plan_id: plan.id() };
    assert_eq!(
        second.reserve(&*store).await,
        Reservation::Rejected(outcome.clone())
    );
    assert_eq!(
        snapshot(&*store, plan.id()).await,
        before,
        "a sold-out rejection changes nothing of the plan"
    );
    assert_eq!(
        store
            .get_subscription(second.subscription_id())
            .await
            .expect("get_subscription failed"),
        None
    );
    assert_eq!(
        finished_outcome(&*store, &second, at + secs(1)).await,
        (outcome, second.reserve.request_id.clone())
    );
    assert_key_in_use(&*store, &first, at + secs(1)).await;
    assert_invariants(&*store, plan.id()).await;
}

pub async fn a_charged_purchase_activates_the_subscription_and_finishes_its_key_as_created(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 2).await;
    let at = now();
    let purchase = Purchase::new(plan.id(), "cus_1", "k", at);
    let reserved = purchase.reserved(&*store).await;
    let before = plan_now(&*store, plan.id()).await;

    let later = at + secs(5);
    let cmd = purchase.completion(
        ChargeResult::Charged {
            payment_id: "pi_3MtwBwLkdIwHu7ix28a3tqPa".into(),
        },
        "req-finish",
        later,
    );
    let done = store
        .complete_purchase(&cmd)
        .await
        .expect("complete_purchase failed");
    let mut expected = reserved.clone();
    expected.activate("pi_3MtwBwLkdIwHu7ix28a3tqPa".into(), later);
    let outcome = PurchaseOutcome::Created {
        subscription: expected.clone(),
    };
    assert_eq!(
        done,
        Completion {
            outcome: outcome.clone()
        }
    );
    assert_eq!(subscription_now(&*store, expected.id()).await, expected);
    let expected_plan = altered(&before, |p| p.seq += 1);
    assert_eq!(
        plan_now(&*store, plan.id()).await,
        expected_plan,
        "activation moves no seat"
    );
    let audit = whole_audit(&*store, plan.id()).await;
    assert_same_entry(
        audit.last().expect("an audit entry"),
        &AuditEntry::record(
            &expected_plan,
            AuditAction::PurchaseActivated,
            before.seats_left(),
            Some(expected.id()),
            None,
            &cmd.ctx,
            later,
        ),
    );
    assert_eq!(
        stats_now(&*store, plan.id()).await,
        stats_of(&expected_plan, [0, 1, 0, 0])
    );
    assert_eq!(
        finished_outcome(&*store, &purchase, later + secs(1)).await,
        (outcome, "req-finish".to_owned()),
        "the key is finished with the outcome under the completion's request id"
    );
    assert_invariants(&*store, plan.id()).await;
}

pub async fn a_declined_purchase_expires_the_subscription_releases_the_seat_and_finishes_its_key(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 2).await;
    let at = now();
    let purchase = Purchase::new(plan.id(), "cus_1", "k", at);
    let reserved = purchase.reserved(&*store).await;
    let before = plan_now(&*store, plan.id()).await;

    let later = at + secs(5);
    let reason = "card_declined: Your card was declined.";
    let cmd = purchase.completion(
        ChargeResult::Declined {
            reason: reason.into(),
        },
        "req-finish",
        later,
    );
    let done = store
        .complete_purchase(&cmd)
        .await
        .expect("complete_purchase failed");
    let mut expected = reserved.clone();
    expected.expire(reason.into(), later);
    let outcome = PurchaseOutcome::Declined {
        subscription: expected.clone(),
        reason: reason.into(),
    };
    assert_eq!(
        done,
        Completion {
            outcome: outcome.clone()
        }
    );
    assert_eq!(subscription_now(&*store, expected.id()).await, expected);
    let expected_plan = altered(&before, |p| {
        p.seq += 1;
        p.seats_left += 1;
    });
    assert_eq!(
        plan_now(&*store, plan.id()).await,
        expected_plan,
        "a decline gives the seat back"
    );
    let audit = whole_audit(&*store, plan.id()).await;
    assert_same_entry(
        audit.last().expect("an audit entry"),
        &AuditEntry::record(
            &expected_plan,
            AuditAction::SeatReleased,
            before.seats_left(),
            Some(expected.id()),
            Some(reason.into()),
            &cmd.ctx,
            later,
        ),
    );
    assert_eq!(
        stats_now(&*store, plan.id()).await,
        stats_of(&expected_plan, [0, 0, 0, 1])
    );
    assert_eq!(
        finished_outcome(&*store, &purchase, later + secs(1)).await,
        (outcome, "req-finish".to_owned())
    );
    assert_invariants(&*store, plan.id()).await;
}

pub async fn completing_a_purchase_twice_is_not_incomplete_and_changes_nothing(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let at = now();
    let charged = Purchase::new(plan.id(), "cus_1", "charged", at);
    charged.reserved(&*store).await;
    charged.charged(&*store, "pi_first", at).await;
    let declined = Purchase::new(plan.id(), "cus_1", "declined", at);
    declined.reserved(&*store).await;
    declined.declined(&*store, "card_declined", at).await;
    let canceled = Purchase::new(plan.id(), "cus_1", "canceled", at);
    canceled.active(&*store).await;
    store
        .cancel_subscription(canceled.subscription_id(), &admin("cancel"), at)
        .await
        .expect("cancel_subscription failed");

    for purchase in [&charged, &declined, &canceled] {
        let sub_before = subscription_now(&*store, purchase.subscription_id()).await;
        let key_before = finished_outcome(&*store, purchase, at + secs(1)).await;
        for result in [
            ChargeResult::Charged {
                payment_id: "pi_second".into(),
            },
            ChargeResult::Declined {
                reason: "late decline".into(),
            },
        ] {
            let before = snapshot(&*store, plan.id()).await;
            let cmd = purchase.completion(result, "req-second", at + secs(2));
            match store.complete_purchase(&cmd).await {
                Err(CompleteError::NotIncomplete(current)) => assert_eq!(
                    *current, sub_before,
                    "NotIncomplete carries the subscription as it is"
                ),
                other => panic!(
                    "completing a {} subscription must be NotIncomplete, got {other:?}",
                    sub_before.status().as_str()
                ),
            }
            assert_eq!(snapshot(&*store, plan.id()).await, before);
            assert_eq!(
                subscription_now(&*store, purchase.subscription_id()).await,
                sub_before
            );
            assert_eq!(
                finished_outcome(&*store, purchase, at + secs(3)).await,
                key_before,
                "a refused completion leaves the key's outcome alone"
            );
        }
    }
    assert_invariants(&*store, plan.id()).await;
}

pub async fn completing_an_unknown_subscription_is_not_found(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let before = snapshot(&*store, plan.id()).await;
    let unknown = SubscriptionId::generate();
    let cmd = CompletePurchase {
        subscription_id: unknown,
        result: ChargeResult::Charged {
            payment_id: "pi_ghost".into(),
        },
        request_id: "req-ghost".into(),
        ctx: admin("ghost"),
        now: now(),
        verify_after: None,
    };
    match store.complete_purchase(&cmd).await {
        Err(CompleteError::NotFound(id)) => assert_eq!(id, unknown),
        other => panic!("completing an unknown subscription must be NotFound, got {other:?}"),
    }
    assert_eq!(snapshot(&*store, plan.id()).await, before);
}

pub async fn completing_a_purchase_finishes_its_key_even_after_a_release_or_a_takeover(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let at = now();

    // Released after an unknown payment outcome; the reconciler completes it.
    let released = Purchase::new(plan.id(), "cus_1", "released", at);
    released.reserved(&*store).await;
    assert!(store
        .release_key(
            released.customer(),
            &released.claim.key,
            released.claim.owner
        )
        .await
        .expect("release_key failed"));
    let cmd = released.completion(
        ChargeResult::Charged {
            payment_id: "pi_reconciled".into(),
        },
        "reconciler-1",
        at + secs(60),
    );
    let done = store
        .complete_purchase(&cmd)
        .await
        .expect("complete_purchase failed");
    assert_eq!(
        finished_outcome(&*store, &released, at + secs(61)).await,
        (done.outcome, "reconciler-1".to_owned())
    );

    // Taken over by a retry, then completed by the reconciler.
    let abandoned = Purchase::new(plan.id(), "cus_1", "abandoned", at);
    abandoned.reserved(&*store).await;
    let takeover = abandoned.reclaim(at + span(LEASE) + secs(1));
    assert!(matches!(
        store.claim_key(&takeover).await.expect("claim_key failed"),
        Claim::Acquired(_)
    ));
    let cmd = abandoned.completion(
        ChargeResult::Declined {
            reason: "never charged".into(),
        },
        "reconciler-2",
        takeover.now + secs(1),
    );
    let done = store
        .complete_purchase(&cmd)
        .await
        .expect("complete_purchase failed");
    assert_eq!(
        finished_outcome(&*store, &abandoned, takeover.now + secs(2)).await,
        (done.outcome, "reconciler-2".to_owned())
    );
    assert!(
        !store
            .release_key(abandoned.customer(), &abandoned.claim.key, takeover.owner)
            .await
            .expect("release_key failed"),
        "a finished key has no lock left to release"
    );
    assert_invariants(&*store, plan.id()).await;
}

/// A record past its retention is replaced by a new purchase's record under the same key
/// (see `ClaimKey::decide`); the old purchase's subscription may still be `incomplete` (the
/// reconciler was down). Completing it later finishes *its* key, which no longer exists: it
/// must not finish the newer purchase's record, which belongs to a purchase still running.
pub async fn completing_an_old_purchase_leaves_a_newer_purchase_under_the_same_key_alone(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let t = now();
    let old = Purchase::new(plan.id(), "cus_1", "k", t - secs(2 * 86_400));
    old.reserved(&*store).await;

    let newer = Purchase::new(plan.id(), "cus_1", "k", t);
    assert_eq!(
        store
            .claim_key(&newer.claim)
            .await
            .expect("claim_key failed"),
        Claim::Acquired(newer.claim.fresh_record()),
        "a key past its retention starts a new purchase"
    );
    let cmd = old.completion(
        ChargeResult::Declined {
            reason: "never charged".into(),
        },
        "reconciler",
        t + secs(1),
    );
    store
        .complete_purchase(&cmd)
        .await
        .expect("complete_purchase failed");

    assert_key_in_use(&*store, &newer, t + secs(2)).await;
    let sub = match newer.reserve(&*store).await {
        Reservation::Reserved(sub) => sub,
        other => panic!("the newer purchase should still hold its key and reserve, got {other:?}"),
    };
    let done = newer.charged(&*store, "pi_newer", t + secs(3)).await;
    assert_eq!(done.subscription().id(), sub.id());
    assert_eq!(
        finished_outcome(&*store, &newer, t + secs(4)).await,
        (done.outcome, newer.reserve.request_id.clone())
    );
    assert_invariants(&*store, plan.id()).await;
}

pub async fn reserving_with_a_new_key_claims_it_and_takes_the_seat_in_one_step(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let at = now() + secs(1);
    let purchase = Purchase::new(plan.id(), "cus_1", "k1", at);
    let got = purchase.reserve_with_new_key(&*store).await;
    let expected = assert_first_seat_reserved(&*store, &plan, &purchase, got, at).await;

    // The key is the claim's fresh record, held by the purchase, at `Reserved`.
    let record = released_and_reclaimed(&*store, &purchase, at).await;
    assert_eq!(
        *record.recovery(),
        RecoveryPoint::Reserved {
            subscription_id: expected.id()
        },
        "the key records the reservation made with it"
    );
    let fresh = purchase.claim.fresh_record();
    assert_eq!(
        (
            record.fingerprint(),
            record.created_at(),
            record.expires_at()
        ),
        (fresh.fingerprint(), fresh.created_at(), fresh.expires_at()),
        "the key was stored as the claim's fresh record"
    );
    // The same key of another customer is another, new key.
    let other = Purchase::new(plan.id(), "cus_2", "k1", at);
    assert!(matches!(
        other.reserve_with_new_key(&*store).await,
        Reservation::Reserved(_)
    ));
    assert_invariants(&*store, plan.id()).await;
}

pub async fn reserving_with_a_key_that_has_a_record_is_key_exists_and_changes_nothing(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let t = now();

    // Held by another request, and by the very owner that claimed it: either way the
    // key is not new.
    let held = Purchase::new(plan.id(), "cus_1", "held", t);
    held.claim(&*store).await;
    let other_owner = held
        .taken_over_by(&held.reclaim(t))
        .with_subscription_id(SubscriptionId::generate());
    let same_owner = held
        .clone()
        .with_subscription_id(SubscriptionId::generate());
    // Finished (a rejection on an unknown plan), then tried on the real plan.
    let finished = Purchase::new(PlanId::generate(), "cus_1", "finished", t);
    finished.claim(&*store).await;
    finished.reserve(&*store).await;
    let mut finished_retry = finished
        .taken_over_by(&finished.reclaim(t))
        .with_subscription_id(SubscriptionId::generate());
    finished_retry.reserve.plan_id = plan.id();
    // Open at `Reserved`, released by its owner.
    let released = Purchase::new(plan.id(), "cus_1", "released", t);
    released.reserved(&*store).await;
    assert!(store
        .release_key(
            released.customer(),
            &released.claim.key,
            released.claim.owner
        )
        .await
        .expect("release_key failed"));
    let released_retry = released
        .taken_over_by(&released.reclaim(t))
        .with_subscription_id(SubscriptionId::generate());
    // Past its retention and not purged yet: `claim_key` decides it starts afresh.
    let mut expired = Purchase::new(PlanId::generate(), "cus_1", "expired", t - secs(120));
    expired.claim.retention = Duration::from_secs(60);
    expired.claim(&*store).await;
    expired.reserve(&*store).await;
    let mut expired_retry = expired
        .taken_over_by(&expired.reclaim(t))
        .with_subscription_id(SubscriptionId::generate());
    expired_retry.reserve.plan_id = plan.id();

    for (what, attempt) in [
        ("a key held by another request", &other_owner),
        ("a key its owner claimed", &same_owner),
        ("a finished key", &finished_retry),
        ("a released key at Reserved", &released_retry),
        ("a key past its retention", &expired_retry),
    ] {
        let before = snapshot(&*store, plan.id()).await;
        match store.reserve_with_new_key(&attempt.with_new_key()).await {
            Ok(NewKeyReservation::KeyExists) => {}
            other => panic!("reserving with {what} as a new key must be KeyExists, got {other:?}"),
        }
        assert_nothing_reserved(&*store, &before, attempt, what).await;
    }
    // The keys are as they were: the held one is still its owner's, the finished one
    // replays, the expired one starts afresh for `claim_key`.
    assert_key_in_use(&*store, &held, t + secs(1)).await;
    assert!(matches!(
        held.reserve(&*store).await,
        Reservation::Reserved(_)
    ));
    assert_eq!(
        finished_outcome(&*store, &finished, t + secs(1)).await.0,
        PurchaseOutcome::PlanNotFound {
            plan_id: finished.reserve.plan_id
        }
    );
    match store
        .claim_key(&released.reclaim(t + secs(1)))
        .await
        .expect("claim_key failed")
    {
        Claim::Acquired(record) => assert_eq!(
            *record.recovery(),
            RecoveryPoint::Reserved {
                subscription_id: released.subscription_id()
            }
        ),
        other => panic!("a released key should be acquired again, got {other:?}"),
    }
    let again = expired.reclaim(t);
    assert_eq!(
        store.claim_key(&again).await.expect("claim_key failed"),
        Claim::Acquired(again.fresh_record())
    );
    assert_invariants(&*store, plan.id()).await;
}

pub async fn reserving_with_a_new_key_where_no_seat_can_be_had_finishes_the_new_key(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let at = now();
    // Sold out: one seat, taken by the first purchase.
    let sold = create_plan(&*store, 1).await;
    Purchase::new(sold.id(), "cus_first", "k", at)
        .reserve_with_new_key(&*store)
        .await;
    // Archived, with seats left.
    let archived = create_plan(&*store, 2).await;
    let archive = PlanPatch {
        status: Some(PlanStatus::Archived),
        ..Default::default()
    };
    store
        .update_plan(archived.id(), &archive, &admin("archive"), at)
        .await
        .expect("update_plan failed");
    let unknown = PlanId::generate();

    for (plan_id, outcome) in [
        (sold.id(), PurchaseOutcome::SoldOut { plan_id: sold.id() }),
        (
            archived.id(),
            PurchaseOutcome::PlanInactive {
                plan_id: archived.id(),
            },
        ),
        (unknown, PurchaseOutcome::PlanNotFound { plan_id: unknown }),
    ] {
        let purchase = Purchase::new(plan_id, "cus_2", &format!("k-{plan_id}"), at);
        let before = if plan_id == unknown {
            None
        } else {
            Some(snapshot(&*store, plan_id).await)
        };
        assert_eq!(
            purchase.reserve_with_new_key(&*store).await,
            Reservation::Rejected(outcome.clone())
        );
        if let Some(before) = before {
            assert_eq!(
                snapshot(&*store, plan_id).await,
                before,
                "a rejection changes nothing of the plan"
            );
        }
        assert_eq!(
            store
                .get_subscription(purchase.subscription_id())
                .await
                .expect("get_subscription failed"),
            None
        );
        assert_eq!(
            finished_outcome(&*store, &purchase, at + secs(1)).await,
            (outcome, purchase.reserve.request_id.clone()),
            "the new key is stored finished with the rejection"
        );
    }
    assert_invariants(&*store, sold.id()).await;
    assert_invariants(&*store, archived.id()).await;
}

/// Fails unless `got`, the first reservation of `plan` (3 seats, untouched), by `purchase`
/// at `at`, is the subscription `Subscription::reserve` builds, stored, with the seat taken,
/// its `seat_reserved` entry and the stats to match; returns the subscription.
async fn assert_first_seat_reserved(
    store: &dyn Store,
    plan: &Plan,
    purchase: &Purchase,
    got: Reservation,
    at: Timestamp,
) -> Subscription {
    let expected = Subscription::reserve(
        purchase.subscription_id(),
        plan,
        purchase.customer().clone(),
        purchase.reserve.payment_method.clone(),
        Some(purchase.claim.key.clone()),
        at,
    );
    assert_eq!(
        got,
        Reservation::Reserved(expected.clone()),
        "the reservation is the subscription built by Subscription::reserve"
    );
    assert_eq!(subscription_now(store, expected.id()).await, expected);
    let expected_plan = altered(plan, |p| {
        p.seats_left = 2;
        p.seq = 2;
    });
    assert_eq!(plan_now(store, plan.id()).await, expected_plan);
    let audit = whole_audit(store, plan.id()).await;
    assert_eq!(audit.len(), 2);
    assert_same_entry(
        &audit[1],
        &AuditEntry::record(
            &expected_plan,
            AuditAction::SeatReserved,
            3,
            Some(expected.id()),
            None,
            &purchase.reserve.ctx,
            at,
        ),
    );
    assert_eq!(
        stats_now(store, plan.id()).await,
        stats_of(&expected_plan, [1, 0, 0, 0])
    );
    expected
}

/// Fails unless the refused reservation of `attempt` (described by `what`) left the plan as
/// `before` and stored no subscription.
async fn assert_nothing_reserved(
    store: &dyn Store,
    before: &PlanSnapshot,
    attempt: &Purchase,
    what: &str,
) {
    assert_eq!(
        &snapshot(store, before.plan.id()).await,
        before,
        "reserving with {what} changed the plan"
    );
    assert_eq!(
        store
            .get_subscription(attempt.subscription_id())
            .await
            .expect("get_subscription failed"),
        None,
        "reserving with {what} stored a subscription"
    );
}

/// Fails unless `purchase`, which reserved at `at`, still holds its key and can let it go;
/// returns the record a claim by another owner then acquires.
async fn released_and_reclaimed(
    store: &dyn Store,
    purchase: &Purchase,
    at: Timestamp,
) -> IdempotencyRecord {
    assert_key_in_use(store, purchase, at + secs(1)).await;
    let released = store
        .release_key(
            purchase.customer(),
            &purchase.claim.key,
            purchase.claim.owner,
        )
        .await
        .expect("release_key failed");
    assert!(released, "the purchase holds its key after reserving");
    match store
        .claim_key(&purchase.reclaim(at + secs(2)))
        .await
        .expect("claim_key failed")
    {
        Claim::Acquired(record) => record,
        other => panic!("a released key should be acquired again, got {other:?}"),
    }
}
