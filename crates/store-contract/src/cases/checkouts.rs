//! Contract cases of [`CheckoutRepository`], one step at a time: opening holds a seat
//! once per key, refusals change nothing, a payment completes a session once, an expiry
//! gives the seat back once, late payments are honoured or refunded as the domain
//! decides, sessions are due by `check_at`, webhook events are claimed once, and purges
//! delete only what ended.
//!
//! [`CheckoutRepository`]: seatkeeper_domain::ports::CheckoutRepository

use seatkeeper_domain::{
    ports::{ChangeCheckoutError, Opened},
    AuditAction, CheckoutChange, CheckoutRefusal, CheckoutSessionId, CheckoutStatus, Effect,
    ExpiryCause, PlanId, PlanPatch, PlanStatus, SeatRefusal, SubscriptionStatus,
};

use crate::{
    checkout_support::*,
    support::{
        admin, assert_invariants, create_plan, customer, now, plan_now, secs, snapshot, stats_now,
        subscription_now, whole_audit, Purchase,
    },
    StoreFactory,
};

pub async fn opening_a_checkout_holds_a_seat_audits_it_and_reads_back_exactly(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let cmd = opening(plan.id(), "alice", "k1", now());
    let session = open(&*store, &cmd).await;
    assert_eq!(session.status(), CheckoutStatus::Open);
    assert_eq!(session.expires_at(), cmd.now + cmd.expires_in);
    assert_eq!(session.check_at(), Some(session.expires_at()));
    assert_eq!(session_now(&*store, session.id()).await, session);
    assert_eq!(plan_now(&*store, plan.id()).await.seats_left(), 2);
    let stats = stats_now(&*store, plan.id()).await;
    assert_eq!((stats.held, stats.incomplete, stats.active), (1, 0, 0));
    let last = whole_audit(&*store, plan.id()).await.pop().unwrap();
    assert_eq!(last.action, AuditAction::SeatHeld);
    assert_eq!(last.subscription_id, Some(session.subscription_id()));
    assert_eq!(
        store
            .get_checkout(CheckoutSessionId::generate())
            .await
            .unwrap(),
        None
    );
    assert_invariants(&*store, plan.id()).await;
}

pub async fn opening_again_with_the_same_key_answers_the_same_session_and_changes_nothing(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let cmd = opening(plan.id(), "alice", "k1", now());
    let session = open(&*store, &cmd).await;
    let before = snapshot(&*store, plan.id()).await;
    // A retry makes new ids; the key decides.
    let retry = opening(plan.id(), "alice", "k1", now() + secs(1));
    match store.open_checkout(&retry).await {
        Ok(Opened::Existing(s)) => assert_eq!(s, session),
        other => panic!("a retry should answer the first session, got {other:?}"),
    }
    let other_plan = create_plan(&*store, 3).await;
    let reused = opening(other_plan.id(), "alice", "k1", now());
    assert_eq!(
        refused(&*store, &reused).await,
        seatkeeper_domain::OpenRefusal::KeyReused
    );
    assert_eq!(snapshot(&*store, plan.id()).await, before);
    assert_eq!(plan_now(&*store, other_plan.id()).await.seats_left(), 3);
    // Another customer's key of the same name is theirs.
    open(&*store, &opening(plan.id(), "bob", "k1", now())).await;
    assert_invariants(&*store, plan.id()).await;
}

pub async fn a_customer_holds_one_open_session_per_plan_and_refusals_change_nothing(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 2).await;
    let first = open(&*store, &opening(plan.id(), "alice", "k1", now())).await;
    let before = snapshot(&*store, plan.id()).await;
    let second = opening(plan.id(), "alice", "k2", now());
    assert_eq!(
        refused(&*store, &second).await,
        seatkeeper_domain::OpenRefusal::TooManyOpen { open: first.id() }
    );
    let mut two = second.clone();
    two.max_open = 2;
    two.key = crate::support::idem_key("k3");
    open(&*store, &two).await;
    let sold_out = opening(plan.id(), "bob", "k1", now());
    let snap = snapshot(&*store, plan.id()).await;
    assert_eq!(
        refused(&*store, &sold_out).await,
        seatkeeper_domain::OpenRefusal::Seat(SeatRefusal::SoldOut)
    );
    assert_eq!(snapshot(&*store, plan.id()).await, snap);
    let missing = opening(seatkeeper_domain::PlanId::generate(), "bob", "k2", now());
    assert_eq!(
        refused(&*store, &missing).await,
        seatkeeper_domain::OpenRefusal::Seat(SeatRefusal::PlanNotFound)
    );
    let archived = create_plan(&*store, 2).await;
    let patch = PlanPatch {
        status: Some(PlanStatus::Archived),
        ..PlanPatch::default()
    };
    store
        .update_plan(archived.id(), &patch, &admin("archive"), now())
        .await
        .unwrap();
    let frozen = snapshot(&*store, archived.id()).await;
    assert_eq!(
        refused(&*store, &opening(archived.id(), "bob", "k3", now())).await,
        seatkeeper_domain::OpenRefusal::Seat(SeatRefusal::PlanInactive)
    );
    assert_eq!(snapshot(&*store, archived.id()).await, frozen);
    assert_ne!(before, snap, "the second session of max_open 2 held a seat");
    // The refused keys opened nothing: used again properly, they open.
    let plan2 = create_plan(&*store, 1).await;
    open(&*store, &opening(plan2.id(), "bob", "k1", now())).await;
    assert_invariants(&*store, plan.id()).await;
}

pub async fn paying_a_session_makes_its_seat_an_active_subscription_once(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 2).await;
    let session = open(&*store, &opening(plan.id(), "alice", "k1", now())).await;
    let session = with_intent(&*store, &session).await;
    assert_eq!(session.payment_intent(), Some(&intent_of(&session)));
    assert_eq!(
        session.check_at(),
        Some(session.stored().updated_at + recheck())
    );
    let at = now() + secs(5);
    let done = changed(&*store, change(session.id(), paid(&session), at)).await;
    assert_eq!(done.applied.effect, Effect::Completed);
    assert_eq!(done.session.status(), CheckoutStatus::Complete);
    assert_eq!(
        (done.session.ended_at(), done.session.check_at()),
        (Some(at), None)
    );
    let sub = subscription_now(&*store, session.subscription_id()).await;
    assert_eq!(Some(&sub), done.applied.subscription.as_ref());
    assert_eq!(sub.status(), SubscriptionStatus::Active);
    assert_eq!(sub.payment_id(), Some(intent_of(&session).id.as_str()));
    let listed = store
        .customer_subscriptions(&customer("alice"), None, 10)
        .await
        .unwrap();
    assert_eq!(listed, vec![sub.clone()]);
    let stats = stats_now(&*store, plan.id()).await;
    assert_eq!((stats.seats_left, stats.held, stats.active), (1, 0, 1));
    let last = whole_audit(&*store, plan.id()).await.pop().unwrap();
    assert_eq!(last.action, AuditAction::CheckoutCompleted);
    let before = snapshot(&*store, plan.id()).await;
    let again = changed(&*store, change(session.id(), paid(&session), at + secs(1))).await;
    assert_eq!(again.applied.effect, Effect::Unchanged);
    assert_eq!(again.session, done.session);
    // A failure or an expiry reported after the payment changes nothing either.
    let failed = CheckoutChange::PaymentFailed {
        reason: "card_declined".into(),
    };
    let stale = changed(&*store, change(session.id(), failed, at + secs(2))).await;
    assert_eq!(stale.applied.effect, Effect::Unchanged);
    match change_fails(&*store, change(session.id(), expire_on_request(), at)).await {
        ChangeCheckoutError::Refused(CheckoutRefusal::NotOpen {
            status: CheckoutStatus::Complete,
        }) => {}
        other => panic!("expiring a complete session should be refused, got {other:?}"),
    }
    assert_eq!(snapshot(&*store, plan.id()).await, before);
    assert_eq!(session_now(&*store, session.id()).await, done.session);
    assert_invariants(&*store, plan.id()).await;
}

pub async fn a_failed_payment_keeps_the_session_open_for_another_card(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 1).await;
    let session = open(&*store, &opening(plan.id(), "alice", "k1", now())).await;
    let session = with_intent(&*store, &session).await;
    let before = snapshot(&*store, plan.id()).await;
    let failed = CheckoutChange::PaymentFailed {
        reason: "card_declined: Your card was declined.".into(),
    };
    let done = changed(&*store, change(session.id(), failed, now())).await;
    assert_eq!(done.session.status(), CheckoutStatus::Open);
    assert_eq!(
        done.session.payment_error(),
        Some("card_declined: Your card was declined.")
    );
    assert_eq!(session_now(&*store, session.id()).await, done.session);
    assert_eq!(snapshot(&*store, plan.id()).await, before);
    let paid_now = changed(&*store, change(session.id(), paid(&session), now())).await;
    assert_eq!(paid_now.session.status(), CheckoutStatus::Complete);
    assert_eq!(paid_now.session.payment_error(), None);
    assert_invariants(&*store, plan.id()).await;
}

pub async fn expiring_a_session_gives_its_seat_back_once_and_not_before_its_time(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 1).await;
    let cmd = opening(plan.id(), "alice", "k1", now());
    let session = with_intent(&*store, &open(&*store, &cmd).await).await;
    let before = snapshot(&*store, plan.id()).await;
    let early = change(
        session.id(),
        CheckoutChange::Expire(ExpiryCause::Timeout),
        session.expires_at() - secs(1),
    );
    match change_fails(&*store, early).await {
        ChangeCheckoutError::Refused(CheckoutRefusal::NotDue) => {}
        other => panic!("an expiry before expires_at should be NotDue, got {other:?}"),
    }
    assert_eq!(snapshot(&*store, plan.id()).await, before);
    let at = session.expires_at();
    let timeout = CheckoutChange::Expire(ExpiryCause::Timeout);
    let done = changed(&*store, change(session.id(), timeout.clone(), at)).await;
    assert_eq!(done.session.status(), CheckoutStatus::Expired);
    assert_eq!(done.session.expiry(), Some(ExpiryCause::Timeout));
    // Its intent may still charge: the worker must cancel it, now.
    assert_eq!(done.session.check_at(), Some(at));
    let stats = stats_now(&*store, plan.id()).await;
    assert_eq!((stats.seats_left, stats.held), (1, 0));
    let last = whole_audit(&*store, plan.id()).await.pop().unwrap();
    assert_eq!(last.action, AuditAction::HoldExpired);
    let after = snapshot(&*store, plan.id()).await;
    match change_fails(&*store, change(session.id(), timeout, at)).await {
        ChangeCheckoutError::Refused(CheckoutRefusal::NotOpen {
            status: CheckoutStatus::Expired,
        }) => {}
        other => panic!("expiring twice should be NotOpen, got {other:?}"),
    }
    let closed = changed(
        &*store,
        change(session.id(), CheckoutChange::IntentClosed, at),
    )
    .await;
    assert_eq!(closed.session.check_at(), None);
    assert_eq!(snapshot(&*store, plan.id()).await, after);
    match change_fails(
        &*store,
        change(CheckoutSessionId::generate(), expire_on_request(), at),
    )
    .await
    {
        ChangeCheckoutError::NotFound => {}
        other => panic!("a missing session should be NotFound, got {other:?}"),
    }
    assert_invariants(&*store, plan.id()).await;
}

pub async fn a_late_payment_takes_a_free_seat_or_is_due_a_refund_recorded_once(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 1).await;
    // Honoured: expired, and its seat is still free.
    let a = with_intent(
        &*store,
        &open(&*store, &opening(plan.id(), "a", "k", now())).await,
    )
    .await;
    changed(&*store, change(a.id(), expire_on_request(), now())).await;
    let late = changed(&*store, change(a.id(), paid(&a), now())).await;
    assert_eq!(late.applied.effect, Effect::Completed);
    assert_eq!(late.session.status(), CheckoutStatus::Complete);
    let tail: Vec<AuditAction> = whole_audit(&*store, plan.id())
        .await
        .iter()
        .rev()
        .take(3)
        .map(|e| e.action)
        .collect();
    assert_eq!(
        tail,
        [
            AuditAction::CheckoutCompleted,
            AuditAction::SeatHeld,
            AuditAction::HoldExpired
        ]
    );
    assert_invariants(&*store, plan.id()).await;
    // Refunded: expired, and the last seat went to someone else meanwhile.
    let plan = create_plan(&*store, 1).await;
    let b = with_intent(
        &*store,
        &open(&*store, &opening(plan.id(), "b", "k", now())).await,
    )
    .await;
    changed(&*store, change(b.id(), expire_on_request(), now())).await;
    open(&*store, &opening(plan.id(), "c", "k", now())).await;
    let before = snapshot(&*store, plan.id()).await;
    let at = now();
    let due = changed(&*store, change(b.id(), paid(&b), at)).await;
    assert_eq!(due.applied.effect, Effect::RefundDue);
    assert_eq!(due.session.status(), CheckoutStatus::Expired);
    let late = due
        .session
        .late_payment()
        .expect("a late payment is recorded");
    assert_eq!(
        (late.payment_id.as_str(), late.refunded),
        (intent_of(&b).id.as_str(), false)
    );
    assert_eq!(due.session.check_at(), Some(at));
    assert_eq!(snapshot(&*store, plan.id()).await, before);
    let again = changed(&*store, change(b.id(), paid(&b), at)).await;
    assert_eq!(again.applied.effect, Effect::Unchanged);
    let refunded = changed(&*store, change(b.id(), CheckoutChange::RefundRecorded, at)).await;
    assert!(refunded.session.late_payment().unwrap().refunded);
    assert_eq!(refunded.session.check_at(), None);
    let twice = changed(&*store, change(b.id(), CheckoutChange::RefundRecorded, at)).await;
    assert_eq!(twice.applied.effect, Effect::Unchanged);
    let refunds = whole_audit(&*store, plan.id())
        .await
        .iter()
        .filter(|e| e.action == AuditAction::PaymentRefunded)
        .count();
    assert_eq!(refunds, 1);
    assert_eq!(stats_now(&*store, plan.id()).await.held, 1);
    assert_invariants(&*store, plan.id()).await;
}

pub async fn a_payment_of_another_intent_is_refused_and_changes_nothing(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 1).await;
    let session = open(&*store, &opening(plan.id(), "alice", "k1", now())).await;
    let stranger = seatkeeper_domain::CheckoutChange::PaymentSucceeded {
        payment_id: "pi_someone_else".into(),
        payment_method: crate::support::visa(),
    };
    match change_fails(&*store, change(session.id(), stranger.clone(), now())).await {
        ChangeCheckoutError::Refused(CheckoutRefusal::IntentMismatch) => {}
        other => panic!("a payment before any intent should be IntentMismatch, got {other:?}"),
    }
    let session = with_intent(&*store, &session).await;
    let before = snapshot(&*store, plan.id()).await;
    match change_fails(&*store, change(session.id(), stranger, now())).await {
        ChangeCheckoutError::Refused(CheckoutRefusal::IntentMismatch) => {}
        other => panic!("a payment of another intent should be IntentMismatch, got {other:?}"),
    }
    let other = CheckoutChange::AttachIntent(seatkeeper_domain::PaymentIntentRef {
        id: "pi_other".into(),
        client_secret: "pi_other_secret".into(),
    });
    match change_fails(&*store, change(session.id(), other, now())).await {
        ChangeCheckoutError::Refused(CheckoutRefusal::IntentMismatch) => {}
        other => panic!("a second intent should be IntentMismatch, got {other:?}"),
    }
    assert_eq!(snapshot(&*store, plan.id()).await, before);
    assert_eq!(session_now(&*store, session.id()).await, session);
}

pub async fn sessions_are_due_by_check_at_earliest_first_until_nothing_is_left(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 5).await;
    let t0 = now();
    let mut ids = Vec::new();
    for (i, life) in [300i64, 100, 200].into_iter().enumerate() {
        let mut cmd = opening(plan.id(), &format!("c{i}"), "k", t0);
        cmd.expires_in = secs(life);
        ids.push(open(&*store, &cmd).await.id());
    }
    let due = |at, limit| {
        let store = store.clone();
        async move {
            store
                .checkouts_due(at, limit)
                .await
                .expect("checkouts_due failed")
                .iter()
                .map(|s| s.id())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(due(t0 + secs(99), 10).await, vec![]);
    assert_eq!(due(t0 + secs(100), 10).await, vec![ids[1]]);
    assert_eq!(due(t0 + secs(1000), 10).await, vec![ids[1], ids[2], ids[0]]);
    assert_eq!(due(t0 + secs(1000), 2).await, vec![ids[1], ids[2]]);
    let expire = CheckoutChange::Expire(ExpiryCause::Timeout);
    let expired = changed(&*store, change(ids[1], expire, t0 + secs(100))).await;
    // Expired with no intent recorded: due until the provider is asked for one.
    assert_eq!(expired.session.check_at(), Some(t0 + secs(100)));
    assert_eq!(due(t0 + secs(250), 10).await, vec![ids[1], ids[2]]);
    let found = CheckoutChange::AttachIntent(intent_of(&expired.session));
    changed(&*store, change(ids[1], found, t0 + secs(101))).await;
    let closed = changed(
        &*store,
        change(ids[1], CheckoutChange::IntentClosed, t0 + secs(102)),
    )
    .await;
    assert_eq!(closed.session.check_at(), None);
    assert_eq!(due(t0 + secs(250), 10).await, vec![ids[2]]);
    assert_invariants(&*store, plan.id()).await;
}

pub async fn webhook_events_are_claimed_once_and_claimable_again_once_released(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let t = now();
    assert!(store.claim_webhook_event(&event("evt_1", t)).await.unwrap());
    assert!(!store
        .claim_webhook_event(&event("evt_1", t + secs(5)))
        .await
        .unwrap());
    assert!(store.claim_webhook_event(&event("evt_2", t)).await.unwrap());
    store.release_webhook_event("evt_1").await.unwrap();
    assert!(store.claim_webhook_event(&event("evt_1", t)).await.unwrap());
    // Releasing an unknown id is harmless.
    store.release_webhook_event("evt_unknown").await.unwrap();
}

pub async fn purging_deletes_only_sessions_that_ended_and_events_that_are_old(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 5).await;
    let t0 = now();
    let open_one = open(&*store, &opening(plan.id(), "a", "k", t0)).await;
    let paid_one = with_intent(
        &*store,
        &open(&*store, &opening(plan.id(), "b", "k", t0)).await,
    )
    .await;
    changed(&*store, change(paid_one.id(), paid(&paid_one), t0)).await;
    let gone = open(&*store, &opening(plan.id(), "c", "k", t0)).await;
    changed(&*store, change(gone.id(), expire_on_request(), t0)).await;
    let found = CheckoutChange::AttachIntent(intent_of(&gone));
    changed(&*store, change(gone.id(), found, t0)).await;
    changed(&*store, change(gone.id(), CheckoutChange::IntentClosed, t0)).await;
    // Expired with no intent looked for yet: the worker's, so kept.
    let unasked = open(&*store, &opening(plan.id(), "e", "k", t0)).await;
    changed(&*store, change(unasked.id(), expire_on_request(), t0)).await;
    // Expired with an intent not yet cancelled: still the worker's, so kept.
    let pending = with_intent(
        &*store,
        &open(&*store, &opening(plan.id(), "d", "k", t0)).await,
    )
    .await;
    changed(&*store, change(pending.id(), expire_on_request(), t0)).await;
    store
        .claim_webhook_event(&event("evt_old", t0))
        .await
        .unwrap();
    store
        .claim_webhook_event(&event("evt_new", t0 + secs(10)))
        .await
        .unwrap();
    let purged = store
        .purge_checkouts(t0 + secs(1), t0 + secs(5))
        .await
        .expect("purge_checkouts failed");
    assert_eq!((purged.sessions, purged.events), (2, 1));
    assert!(store.get_checkout(paid_one.id()).await.unwrap().is_none());
    assert!(store.get_checkout(gone.id()).await.unwrap().is_none());
    assert_eq!(session_now(&*store, open_one.id()).await, open_one);
    session_now(&*store, pending.id()).await;
    session_now(&*store, unasked.id()).await;
    // The subscription stays; the key of a purged session opens afresh.
    subscription_now(&*store, paid_one.subscription_id()).await;
    open(&*store, &opening(plan.id(), "c", "k", now())).await;
    assert!(store
        .claim_webhook_event(&event("evt_old", t0))
        .await
        .unwrap());
    assert!(!store
        .claim_webhook_event(&event("evt_new", t0))
        .await
        .unwrap());
    assert_invariants(&*store, plan.id()).await;
}

pub async fn availability_is_the_plan_and_the_seats_its_open_sessions_hold(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 5).await;
    let other = create_plan(&*store, 5).await;
    // Agrees with the plan and with the stats' held seats, from whichever snapshot.
    async fn check(store: &dyn seatkeeper_domain::ports::Store, id: PlanId, held: u64) {
        let a = store
            .plan_availability(id)
            .await
            .expect("plan_availability failed")
            .expect("the plan");
        assert_eq!(a.plan, plan_now(store, id).await);
        assert_eq!(a.held, held);
        assert_eq!(stats_now(store, id).await.held, held);
    }
    check(&*store, plan.id(), 0).await;
    let alice = open(&*store, &opening(plan.id(), "alice", "k1", now())).await;
    let bob = open(&*store, &opening(plan.id(), "bob", "k2", now())).await;
    open(&*store, &opening(other.id(), "carol", "k3", now())).await;
    // A purchase's reserved seat is not held by a session.
    Purchase::new(plan.id(), "dave", "k4", now())
        .reserved(&*store)
        .await;
    check(&*store, plan.id(), 2).await;
    assert_eq!(plan_now(&*store, plan.id()).await.seats_left(), 2);
    let alice = with_intent(&*store, &alice).await;
    changed(&*store, change(alice.id(), paid(&alice), now() + secs(1))).await;
    check(&*store, plan.id(), 1).await;
    changed(
        &*store,
        change(bob.id(), expire_on_request(), now() + secs(2)),
    )
    .await;
    check(&*store, plan.id(), 0).await;
    check(&*store, other.id(), 1).await;
    assert_eq!(
        store.plan_availability(PlanId::generate()).await.unwrap(),
        None
    );
    assert_invariants(&*store, plan.id()).await;
}
