//! Contract cases of [`RecoveryRepository`]: stale purchases handed out under leases and
//! never twice at once, late-charge checks scheduled by a declining completion, refunds
//! audited once, and the backlog the admin API shows.
//!
//! [`RecoveryRepository`]: seatkeeper_domain::ports::RecoveryRepository

use std::collections::HashSet;

use seatkeeper_domain::{
    ports::{ChargeResult, ClaimRecovery, RecoveryPhase, Store},
    AuditAction, LockToken, Subscription, Timestamp,
};

use crate::{
    support::{
        admin, assert_invariants, create_plan, now, race, secs, task, whole_audit, Purchase,
    },
    StoreFactory,
};

fn claim_at(
    owner: LockToken,
    now: Timestamp,
    stale_before: Timestamp,
    limit: u32,
) -> ClaimRecovery {
    ClaimRecovery {
        owner,
        now,
        stale_before,
        lease_until: now + secs(30),
        limit,
    }
}

async fn stale_purchase(
    store: &dyn Store,
    plan: seatkeeper_domain::PlanId,
    n: usize,
    at: Timestamp,
) -> (Purchase, Subscription) {
    let p = Purchase::new(plan, &format!("cus_{n}"), "k", at);
    let sub = p.reserved(store).await;
    (p, sub)
}

pub async fn stale_incomplete_purchases_are_leased_once_until_their_lease_ends(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let t0 = now();
    let (purchase, sub) = stale_purchase(&*store, plan.id(), 1, t0).await;

    let fresh = store
        .claim_recovery(&claim_at(
            LockToken::generate(),
            t0 + secs(1),
            t0 - secs(1),
            10,
        ))
        .await
        .expect("claim_recovery failed");
    assert!(
        fresh.is_empty(),
        "a purchase changed after stale_before is not stale: {fresh:?}"
    );

    let a = LockToken::generate();
    let got = store
        .claim_recovery(&claim_at(a, t0 + secs(2), t0 + secs(1), 10))
        .await
        .expect("claim_recovery failed");
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].phase, RecoveryPhase::Complete);
    assert_eq!(got[0].subscription, sub);

    let again = store
        .claim_recovery(&claim_at(
            LockToken::generate(),
            t0 + secs(3),
            t0 + secs(1),
            10,
        ))
        .await
        .expect("claim_recovery failed");
    assert!(
        again.is_empty(),
        "a leased task was handed out twice: {again:?}"
    );

    let after_lease = store
        .claim_recovery(&claim_at(
            LockToken::generate(),
            t0 + secs(33),
            t0 + secs(1),
            10,
        ))
        .await
        .expect("claim_recovery failed");
    assert_eq!(
        after_lease.len(),
        1,
        "a task whose lease ended is handed out again"
    );

    purchase.charged(&*store, "pi_1", t0 + secs(34)).await;
    let done = store
        .claim_recovery(&claim_at(
            LockToken::generate(),
            t0 + secs(100),
            t0 + secs(90),
            10,
        ))
        .await
        .expect("claim_recovery failed");
    assert!(
        done.is_empty(),
        "a completed purchase is no recovery task: {done:?}"
    );
    let backlog = store
        .recovery_backlog(t0 + secs(90))
        .await
        .expect("recovery_backlog failed");
    assert_eq!(
        (backlog.stale_incomplete, backlog.pending_verifications),
        (0, 0)
    );
}

pub async fn a_released_recovery_task_goes_to_the_next_reconciler_at_once(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let t0 = now();
    let (_, sub) = stale_purchase(&*store, plan.id(), 1, t0).await;
    let a = LockToken::generate();
    let b = LockToken::generate();
    let got = store
        .claim_recovery(&claim_at(a, t0 + secs(2), t0 + secs(1), 10))
        .await
        .expect("claim_recovery failed");
    assert_eq!(got.len(), 1);
    assert!(
        !store
            .release_recovery(sub.id(), b)
            .await
            .expect("release_recovery failed"),
        "only the lease holder may release a task"
    );
    assert!(store
        .release_recovery(sub.id(), a)
        .await
        .expect("release_recovery failed"));
    let got = store
        .claim_recovery(&claim_at(b, t0 + secs(3), t0 + secs(1), 10))
        .await
        .expect("claim_recovery failed");
    assert_eq!(got.len(), 1, "a released task is free at once");
    assert_eq!(got[0].subscription.id(), sub.id());
}

pub async fn declining_with_verify_after_schedules_a_late_charge_check_when_it_is_due(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let t0 = now();
    let (purchase, sub) = stale_purchase(&*store, plan.id(), 1, t0).await;
    let mut cmd = purchase.completion(
        ChargeResult::Declined {
            reason: "recovery: never charged".into(),
        },
        "reconcile-1",
        t0 + secs(2),
    );
    cmd.verify_after = Some(t0 + secs(10));
    store
        .complete_purchase(&cmd)
        .await
        .expect("complete_purchase failed");
    let backlog = store
        .recovery_backlog(t0 + secs(5))
        .await
        .expect("recovery_backlog failed");
    assert_eq!(
        (backlog.stale_incomplete, backlog.pending_verifications),
        (0, 1)
    );

    let early = store
        .claim_recovery(&claim_at(
            LockToken::generate(),
            t0 + secs(5),
            t0 + secs(4),
            10,
        ))
        .await
        .expect("claim_recovery failed");
    assert!(
        early.is_empty(),
        "a check is not handed out before it is due: {early:?}"
    );

    let owner = LockToken::generate();
    let due = store
        .claim_recovery(&claim_at(owner, t0 + secs(11), t0 + secs(10), 10))
        .await
        .expect("claim_recovery failed");
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].phase, RecoveryPhase::Verify);
    assert_eq!(due[0].subscription.id(), sub.id());

    let audit_before = whole_audit(&*store, plan.id()).await;
    assert!(
        !store
            .finish_verification(
                sub.id(),
                LockToken::generate(),
                None,
                &admin("x"),
                t0 + secs(12)
            )
            .await
            .expect("finish_verification failed"),
        "only the lease holder may finish a check"
    );
    assert!(store
        .finish_verification(sub.id(), owner, None, &admin("x"), t0 + secs(12))
        .await
        .expect("finish_verification failed"));
    assert_eq!(
        whole_audit(&*store, plan.id()).await,
        audit_before,
        "a check that found nothing records nothing"
    );
    let backlog = store
        .recovery_backlog(t0 + secs(12))
        .await
        .expect("recovery_backlog failed");
    assert_eq!(backlog.pending_verifications, 0);
    let later = store
        .claim_recovery(&claim_at(
            LockToken::generate(),
            t0 + secs(100),
            t0 + secs(90),
            10,
        ))
        .await
        .expect("claim_recovery failed");
    assert!(
        later.is_empty(),
        "a finished check never comes back: {later:?}"
    );
}

pub async fn a_late_charge_refund_is_audited_once_and_moves_no_seat(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let t0 = now();
    let (purchase, sub) = stale_purchase(&*store, plan.id(), 1, t0).await;
    let mut cmd = purchase.completion(
        ChargeResult::Declined {
            reason: "recovery: never charged".into(),
        },
        "reconcile-1",
        t0 + secs(2),
    );
    cmd.verify_after = Some(t0 + secs(3));
    store
        .complete_purchase(&cmd)
        .await
        .expect("complete_purchase failed");
    let owner = LockToken::generate();
    let due = store
        .claim_recovery(&claim_at(owner, t0 + secs(4), t0 + secs(3), 10))
        .await
        .expect("claim_recovery failed");
    assert_eq!(due.len(), 1);
    let seats = crate::support::plan_now(&*store, plan.id())
        .await
        .seats_left();
    assert!(store
        .finish_verification(
            sub.id(),
            owner,
            Some("pi_late"),
            &admin("reconcile-2"),
            t0 + secs(5)
        )
        .await
        .expect("finish_verification failed"));
    let audit = whole_audit(&*store, plan.id()).await;
    let last = audit.last().expect("an audit entry");
    assert_eq!(last.action, AuditAction::PaymentRefunded);
    assert_eq!(last.subscription_id, Some(sub.id()));
    assert_eq!(
        (last.seats_left_before, last.seats_left_after),
        (seats, seats)
    );
    assert!(last
        .reason
        .as_deref()
        .is_some_and(|r| r.contains("pi_late")));
    assert!(
        !store
            .record_refund(sub.id(), "pi_late", &admin("again"), t0 + secs(6))
            .await
            .expect("record_refund failed"),
        "a refund is audited once"
    );
    assert_eq!(whole_audit(&*store, plan.id()).await.len(), audit.len());
    assert_invariants(&*store, plan.id()).await;
}

pub async fn a_refund_recorded_outside_a_check_is_audited_once(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let t0 = now();
    let (purchase, sub) = stale_purchase(&*store, plan.id(), 1, t0).await;
    purchase
        .declined(&*store, "never charged", t0 + secs(1))
        .await;
    assert!(store
        .record_refund(sub.id(), "pi_x", &admin("r"), t0 + secs(2))
        .await
        .expect("record_refund failed"));
    assert!(!store
        .record_refund(sub.id(), "pi_x", &admin("r"), t0 + secs(3))
        .await
        .expect("record_refund failed"));
    let refunds = whole_audit(&*store, plan.id())
        .await
        .into_iter()
        .filter(|e| e.action == AuditAction::PaymentRefunded)
        .count();
    assert_eq!(refunds, 1);
    assert_invariants(&*store, plan.id()).await;
}

pub async fn many_reconcilers_claiming_at_once_never_get_the_same_task(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 30).await;
    let t0 = now();
    for n in 0..20 {
        stale_purchase(&*store, plan.id(), n, t0).await;
    }
    let backlog = store
        .recovery_backlog(t0 + secs(1))
        .await
        .expect("recovery_backlog failed");
    assert_eq!(backlog.stale_incomplete, 20);
    let claims = (0..10)
        .map(|_| {
            let store = store.clone();
            task(async move {
                store
                    .claim_recovery(&claim_at(
                        LockToken::generate(),
                        t0 + secs(2),
                        t0 + secs(1),
                        5,
                    ))
                    .await
                    .expect("claim_recovery failed")
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut total = 0;
    for tasks in race(claims).await {
        assert!(tasks.len() <= 5, "a claim returned more than its limit");
        for t in tasks {
            total += 1;
            assert!(
                seen.insert(t.subscription.id()),
                "task {} handed out twice",
                t.subscription.id()
            );
        }
    }
    assert_eq!(total, 20, "every stale purchase is handed out exactly once");
}
