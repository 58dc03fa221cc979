//! Contract cases of [`IdempotencyRepository`]: claiming a key (fresh, in use, reused with
//! another request, finished, abandoned, past retention), releasing it, purging old ones.
//!
//! There is no port to read a key record, so the cases read one through `claim_key` in ways
//! that change nothing: a claim under a live lock answers `InUse`, a claim of a finished
//! key answers `Finished`, a claim with another request answers `FingerprintMismatch`.
//!
//! [`IdempotencyRepository`]: seatkeeper_domain::ports::IdempotencyRepository

use std::time::Duration;

use seatkeeper_domain::{
    ports::{Reservation, ReserveError},
    Claim, KeyLock, KeyState, LockToken, PlanId, PurchaseOutcome, RecoveryPoint,
};

use crate::{
    support::{
        altered, assert_invariants, assert_key_in_use, create_plan, customer, finished_outcome,
        idem_key, now, secs, snapshot, span, Purchase, LEASE,
    },
    StoreFactory,
};

pub async fn claiming_a_new_key_acquires_a_fresh_record_at_started(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let at = now();
    let long_key = "x".repeat(255);
    let purchases = [
        Purchase::new(plan.id(), "cus_1", "order 42 / retry #1", at),
        // The same key under another customer is another key.
        Purchase::new(plan.id(), "cus_2", "order 42 / retry #1", at),
        Purchase::new(plan.id(), "cus_1", "another", at),
        Purchase::new(plan.id(), "cus_1", &long_key, at),
    ];
    for p in &purchases {
        let got = store.claim_key(&p.claim).await.expect("claim_key failed");
        assert_eq!(
            got,
            Claim::Acquired(p.claim.fresh_record()),
            "a first claim stores and returns ClaimKey::fresh_record"
        );
    }
    for p in &purchases {
        assert_key_in_use(&*store, p, at + secs(1)).await;
    }
}

pub async fn claiming_a_key_under_a_live_lock_is_in_use_and_changes_nothing(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let at = now();
    let first = Purchase::new(plan.id(), "cus_1", "k", at);
    first.claim(&*store).await;
    let last_live_instant = at + span(LEASE) - chrono::Duration::milliseconds(1);
    for when in [at, at + secs(1), last_live_instant] {
        assert_key_in_use(&*store, &first, when).await;
    }
    // The holder was not disturbed: it still reserves, and still holds the key after.
    match first.reserve(&*store).await {
        Reservation::Reserved(_) => {}
        other => panic!("the holder of the key should still reserve, got {other:?}"),
    }
    assert_key_in_use(&*store, &first, at + secs(2)).await;
    assert_invariants(&*store, plan.id()).await;
}

pub async fn claiming_a_key_with_a_different_request_is_a_fingerprint_mismatch(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let at = now();
    let first = Purchase::new(plan.id(), "cus_1", "k", at);
    first.claim(&*store).await;
    for when in [at + secs(1), at + span(LEASE) + secs(1)] {
        let got = store
            .claim_key(&first.misuse(when))
            .await
            .expect("claim_key failed");
        assert_eq!(
            got,
            Claim::FingerprintMismatch,
            "another request under the same key is a mismatch, whether the lock is live or not"
        );
    }
    // The mismatching claims neither took the lock nor released it.
    assert_key_in_use(&*store, &first, at + secs(2)).await;
    first.reserve(&*store).await;
    first.charged(&*store, "pi_mismatch", at + secs(3)).await;
    let got = store
        .claim_key(&first.misuse(at + secs(4)))
        .await
        .expect("claim_key failed");
    assert_eq!(got, Claim::FingerprintMismatch, "also once finished");
    let (outcome, _) = finished_outcome(&*store, &first, at + secs(5)).await;
    assert_eq!(outcome.kind(), "created");
    assert_invariants(&*store, plan.id()).await;
}

pub async fn claiming_a_finished_key_replays_its_outcome_and_request_id(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let at = now();
    let unknown = PlanId::generate();
    let first = Purchase::new(unknown, "cus_1", "k", at);
    first.claim(&*store).await;
    assert_eq!(
        first.reserve(&*store).await,
        Reservation::Rejected(PurchaseOutcome::PlanNotFound { plan_id: unknown })
    );
    for when in [
        at,
        at + secs(1),
        at + span(LEASE) + secs(1),
        at + chrono::Duration::hours(1),
    ] {
        assert_eq!(
            finished_outcome(&*store, &first, when).await,
            (
                PurchaseOutcome::PlanNotFound { plan_id: unknown },
                first.reserve.request_id.clone()
            ),
            "a finished key replays its outcome and the request that produced it"
        );
    }
    let released = store
        .release_key(first.customer(), &first.claim.key, first.claim.owner)
        .await
        .expect("release_key failed");
    assert!(!released, "a finished key has no lock to release");
    assert!(
        matches!(
            store.reserve_seat(&first.reserve).await,
            Err(ReserveError::LockLost)
        ),
        "a finished key is held by nobody"
    );
}

pub async fn an_abandoned_lease_is_taken_over_keeping_the_recovery_point(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let at = now();
    let first = Purchase::new(plan.id(), "cus_1", "k", at);
    let sub = first.reserved(&*store).await;

    // At the very instant the lease ends, another claim takes the key over.
    let takeover = first.reclaim(at + span(LEASE));
    let expected = altered(&first.claim.fresh_record(), |r| {
        r.recovery = RecoveryPoint::Reserved {
            subscription_id: sub.id(),
        };
        r.state = KeyState::Open {
            lock: Some(KeyLock {
                owner: takeover.owner,
                until: takeover.now + span(LEASE),
            }),
        };
    });
    assert_eq!(
        store.claim_key(&takeover).await.expect("claim_key failed"),
        Claim::Acquired(expected),
        "a takeover keeps the record (fingerprint, recovery point, dates) and replaces the lock"
    );
    assert_key_in_use(&*store, &first, takeover.now + secs(1)).await;

    // The first owner lost the key: it can neither reserve nor release.
    let before = snapshot(&*store, plan.id()).await;
    let stale = first
        .clone()
        .with_subscription_id(seatkeeper_domain::SubscriptionId::generate());
    assert!(
        matches!(
            store.reserve_seat(&stale.reserve).await,
            Err(ReserveError::LockLost)
        ),
        "the owner of a lock that was taken over must get LockLost"
    );
    assert_eq!(snapshot(&*store, plan.id()).await, before);
    let released = store
        .release_key(first.customer(), &first.claim.key, first.claim.owner)
        .await
        .expect("release_key failed");
    assert!(
        !released,
        "a stale owner must not release the new owner's lock"
    );
    assert_key_in_use(&*store, &first, takeover.now + secs(2)).await;
    let released = store
        .release_key(first.customer(), &first.claim.key, takeover.owner)
        .await
        .expect("release_key failed");
    assert!(released, "the new owner holds the lock");
    assert_invariants(&*store, plan.id()).await;
}

pub async fn a_released_key_is_acquired_again_at_once_keeping_its_recovery_point(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let at = now();
    let first = Purchase::new(plan.id(), "cus_1", "k", at);
    let sub = first.reserved(&*store).await;
    let released = store
        .release_key(first.customer(), &first.claim.key, first.claim.owner)
        .await
        .expect("release_key failed");
    assert!(released, "the owner releases its lock");

    // Well within the first lease: a released lock does not wait for its lease.
    let retry = first.reclaim(at + secs(1));
    let expected = altered(&first.claim.fresh_record(), |r| {
        r.recovery = RecoveryPoint::Reserved {
            subscription_id: sub.id(),
        };
        r.state = KeyState::Open {
            lock: Some(KeyLock {
                owner: retry.owner,
                until: retry.now + span(LEASE),
            }),
        };
    });
    assert_eq!(
        store.claim_key(&retry).await.expect("claim_key failed"),
        Claim::Acquired(expected)
    );
    assert_key_in_use(&*store, &first, at + secs(2)).await;
    assert_invariants(&*store, plan.id()).await;
}

pub async fn a_record_past_its_retention_is_forgotten_and_the_key_starts_afresh(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let t = now();
    let retention = Duration::from_secs(60);

    // A finished record, kept 60 s: remembered until the instant it expires.
    let mut finished = Purchase::new(PlanId::generate(), "cus_1", "k", t - secs(120));
    finished.claim.retention = retention;
    finished.claim(&*store).await;
    finished.reserve(&*store).await;
    finished_outcome(&*store, &finished, t - secs(61)).await;
    // At `expires_at` (t - 60 s), even another request starts a new purchase.
    let fresh = finished.misuse(t - secs(60));
    assert_eq!(
        store.claim_key(&fresh).await.expect("claim_key failed"),
        Claim::Acquired(fresh.fresh_record()),
        "a record whose expires_at is at or before now is replaced by a fresh one"
    );

    // An open record at `Reserved`, released, past its retention: the key starts again at
    // `Started`, with a new record.
    let mut open = Purchase::new(plan.id(), "cus_2", "k", t - secs(120));
    open.claim.retention = retention;
    open.reserved(&*store).await;
    let released = store
        .release_key(open.customer(), &open.claim.key, open.claim.owner)
        .await
        .expect("release_key failed");
    assert!(released);
    let again = open.reclaim(t);
    assert_eq!(
        store.claim_key(&again).await.expect("claim_key failed"),
        Claim::Acquired(again.fresh_record())
    );
    assert_invariants(&*store, plan.id()).await;
}

pub async fn releasing_a_key_lets_go_only_for_its_current_owner(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let at = now();
    let release = |p: &Purchase, owner: LockToken| {
        let (store, scope, key) = (store.clone(), p.customer().clone(), p.claim.key.clone());
        async move {
            store
                .release_key(&scope, &key, owner)
                .await
                .expect("release_key failed")
        }
    };
    assert!(
        !store
            .release_key(
                &customer("cus_1"),
                &idem_key("never-claimed"),
                LockToken::generate()
            )
            .await
            .expect("release_key failed"),
        "there is nothing to release under an unknown key"
    );

    let first = Purchase::new(plan.id(), "cus_1", "k", at);
    first.claim(&*store).await;
    assert!(
        !release(&first, LockToken::generate()).await,
        "a stranger releases nothing"
    );
    assert_key_in_use(&*store, &first, at + secs(1)).await;
    // The same key of another customer is another key.
    let other = Purchase::new(plan.id(), "cus_2", "k", at);
    assert!(!release(&other, first.claim.owner).await);
    assert_key_in_use(&*store, &first, at + secs(1)).await;

    assert!(
        release(&first, first.claim.owner).await,
        "the owner releases"
    );
    assert!(
        !release(&first, first.claim.owner).await,
        "a released lock cannot be released again"
    );

    let second_claim = first.reclaim(at + secs(2));
    let second = first.taken_over_by(&second_claim);
    second.claim(&*store).await;
    assert!(
        !release(&first, first.claim.owner).await,
        "a stale owner never touches a newer owner's lock"
    );
    assert_key_in_use(&*store, &first, at + secs(3)).await;

    // Once finished, there is no lock to release, and the outcome stays.
    assert!(matches!(
        second.reserve(&*store).await,
        Reservation::Reserved(_)
    ));
    second.charged(&*store, "pi_release", at + secs(4)).await;
    assert!(!release(&second, second.claim.owner).await);
    let (outcome, request_id) = finished_outcome(&*store, &first, at + secs(5)).await;
    assert_eq!(
        (outcome.kind(), request_id),
        ("created", second.reserve.request_id.clone())
    );
    assert_invariants(&*store, plan.id()).await;
}

pub async fn purging_removes_exactly_the_records_expired_at_that_moment(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let t = now();
    let with_retention = |plan_id: PlanId, who: &str, key: &str, at, retention: Duration| {
        let mut p = Purchase::new(plan_id, who, key, at);
        p.claim.retention = retention;
        p
    };
    let day = Duration::from_secs(24 * 3600);
    let minute = Duration::from_secs(60);
    let unknown = PlanId::generate();
    // (purchase, finish it with a rejection?, expected to be purged at t?)
    let records = [
        (
            with_retention(plan.id(), "cus_1", "k1", t - secs(2 * 86_400), day),
            false,
            true,
        ),
        (
            with_retention(plan.id(), "cus_1", "k2", t - secs(60), minute),
            false,
            true,
        ),
        (
            with_retention(
                plan.id(),
                "cus_1",
                "k3",
                t - secs(60),
                Duration::from_secs(61),
            ),
            false,
            false,
        ),
        (
            with_retention(plan.id(), "cus_1", "k4", t, day),
            false,
            false,
        ),
        (
            with_retention(unknown, "cus_2", "k1", t - secs(2 * 86_400), day),
            true,
            true,
        ),
        (
            with_retention(unknown, "cus_2", "k2", t - secs(2 * 86_400), 3 * day),
            true,
            false,
        ),
    ];
    for (p, finish, _) in &records {
        p.claim(&*store).await;
        if *finish {
            p.reserve(&*store).await;
        }
    }
    let purged = store.purge_expired_keys(t).await.expect("purge failed");
    assert_eq!(
        purged, 3,
        "purge deletes the records whose expires_at is at or before now, and counts them"
    );
    assert_eq!(
        store.purge_expired_keys(t).await.expect("purge failed"),
        0,
        "nothing is left to purge"
    );
    // Probe each key with another request at the time it was claimed: a record that is
    // still there answers a mismatch, a purged one lets a new purchase start.
    for (p, _, gone) in &records {
        let got = store
            .claim_key(&p.misuse(p.claim.now))
            .await
            .expect("claim_key failed");
        if *gone {
            assert!(
                matches!(got, Claim::Acquired(_)),
                "key {} of {} should have been purged, got {got:?}",
                p.claim.key,
                p.claim.scope
            );
        } else {
            assert_eq!(
                got,
                Claim::FingerprintMismatch,
                "key {} of {} should have been kept",
                p.claim.key,
                p.claim.scope
            );
        }
    }
}
