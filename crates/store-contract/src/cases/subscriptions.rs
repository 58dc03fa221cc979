//! Contract cases of [`SubscriptionRepository`]: reading one subscription, listing a
//! customer's, and cancelling (seat released once, documented errors changing nothing).
//!
//! [`SubscriptionRepository`]: seatkeeper_domain::ports::SubscriptionRepository

use seatkeeper_domain::{
    ports::{CancelError, Cancellation},
    AuditAction, AuditEntry, CustomerId, PurchaseOutcome, SubscriptionId, SubscriptionStatus,
};
use uuid::Uuid;

use crate::{
    support::{
        admin, altered, assert_invariants, assert_same_entry, create_plan, customer,
        finished_outcome, now, plan_now, secs, snapshot, stats_now, stats_of, subscription_now,
        whole_audit, Purchase,
    },
    StoreFactory,
};

pub async fn a_subscription_reads_back_exactly_and_an_unknown_one_is_none(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 5).await;
    let at = now();
    let incomplete = Purchase::new(plan.id(), "cus_1", "k1", at);
    let reserved = incomplete.reserved(&*store).await;
    assert_eq!(subscription_now(&*store, reserved.id()).await, reserved);

    let charged = Purchase::new(plan.id(), "cus_1", "k2", at);
    charged.reserved(&*store).await;
    let active = charged
        .charged(&*store, "pi_read_back", at + secs(2))
        .await
        .subscription()
        .clone();
    assert_eq!(subscription_now(&*store, active.id()).await, active);

    let declined = Purchase::new(plan.id(), "cus_1", "k3", at);
    declined.reserved(&*store).await;
    let expired = declined
        .declined(
            &*store,
            "card_declined: Your card was declined.",
            at + secs(3),
        )
        .await
        .subscription()
        .clone();
    assert_eq!(subscription_now(&*store, expired.id()).await, expired);

    assert_eq!(
        store
            .get_subscription(SubscriptionId::generate())
            .await
            .expect("get_subscription failed"),
        None
    );
    assert_invariants(&*store, plan.id()).await;
}

pub async fn a_customers_subscriptions_are_listed_in_id_order_without_anyone_elses(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plans = [
        create_plan(&*store, 10).await,
        create_plan(&*store, 10).await,
    ];
    let at = now();
    // Random subscription ids, reserved in an order unrelated to their sort order, over
    // two plans and in every status.
    let mut mine = Vec::new();
    for i in 0..5 {
        let p = Purchase::new(plans[i % 2].id(), "cus_a", &format!("k{i}"), at)
            .with_subscription_id(SubscriptionId::from_uuid(Uuid::new_v4()));
        p.reserved(&*store).await;
        match i {
            0 => {
                p.charged(&*store, "pi_a0", at).await;
            }
            2 => {
                p.charged(&*store, "pi_a2", at).await;
                store
                    .cancel_subscription(p.subscription_id(), &admin("cancel"), at)
                    .await
                    .expect("cancel_subscription failed");
            }
            3 => {
                p.declined(&*store, "card_declined", at).await;
            }
            _ => {}
        }
        mine.push(subscription_now(&*store, p.subscription_id()).await);
    }
    mine.sort_by_key(|s| s.id());
    // Other customers, including look-alike ids.
    for (who, key) in [
        ("cus_b", "k0"),
        ("cus_b", "k1"),
        ("cus_a2", "k0"),
        ("CUS_A", "k0"),
        ("cus_", "k0"),
    ] {
        Purchase::new(plans[0].id(), who, key, at)
            .reserved(&*store)
            .await;
    }

    let cus_a = customer("cus_a");
    let list = |after: Option<SubscriptionId>, limit: u32| {
        let (store, cus_a) = (store.clone(), cus_a.clone());
        async move {
            store
                .customer_subscriptions(&cus_a, after, limit)
                .await
                .expect("customer_subscriptions failed")
        }
    };
    assert_eq!(
        list(None, 100).await,
        mine,
        "every subscription of the customer, in any status, ordered by id, and no one else's"
    );
    assert_eq!(list(None, 2).await, mine[0..2]);
    assert_eq!(list(Some(mine[1].id()), 2).await, mine[2..4]);
    assert_eq!(list(Some(mine[3].id()), 2).await, mine[4..5]);
    assert_eq!(list(Some(mine[4].id()), 2).await, vec![]);
    let nil = SubscriptionId::from_uuid(Uuid::nil());
    let max = SubscriptionId::from_uuid(Uuid::max());
    assert_eq!(list(Some(nil), 100).await, mine);
    assert_eq!(list(Some(max), 100).await, vec![]);
    let between = SubscriptionId::from_uuid(Uuid::from_u128(mine[0].id().as_uuid().as_u128() + 1));
    assert_eq!(
        list(Some(between), 100).await,
        mine[1..],
        "after an id that is not stored"
    );

    let nobody: CustomerId = customer("cus_nobody");
    assert_eq!(
        store
            .customer_subscriptions(&nobody, None, 100)
            .await
            .expect("customer_subscriptions failed"),
        vec![]
    );
    let b = store
        .customer_subscriptions(&customer("cus_b"), None, 100)
        .await
        .expect("customer_subscriptions failed");
    assert_eq!(b.len(), 2);
    assert!(b.iter().all(|s| s.customer_id().as_str() == "cus_b"));
    for plan in &plans {
        assert_invariants(&*store, plan.id()).await;
    }
}

pub async fn cancelling_an_active_subscription_releases_its_seat_once(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let purchase = Purchase::new(plan.id(), "cus_1", "k1", now());
    let active = purchase.active(&*store).await;
    let before = plan_now(&*store, plan.id()).await;

    let ctx = admin("trace-cancel");
    let at = now() + secs(5);
    let mut expected = active.clone();
    expected.cancel(at);
    let done = store
        .cancel_subscription(active.id(), &ctx, at)
        .await
        .expect("cancelling an active subscription failed");
    assert_eq!(
        done,
        Cancellation {
            subscription: expected.clone(),
            already_canceled: false
        }
    );
    assert_eq!(subscription_now(&*store, active.id()).await, expected);
    let expected_plan = altered(&before, |p| {
        p.seats_left += 1;
        p.seq += 1;
    });
    assert_eq!(plan_now(&*store, plan.id()).await, expected_plan);
    let audit = whole_audit(&*store, plan.id()).await;
    assert_eq!(audit.len() as u64, expected_plan.seq());
    assert_same_entry(
        audit.last().expect("an audit entry"),
        &AuditEntry::record(
            &expected_plan,
            AuditAction::SubscriptionCanceled,
            before.seats_left(),
            Some(active.id()),
            None,
            &ctx,
            at,
        ),
    );
    assert_eq!(
        stats_now(&*store, plan.id()).await,
        stats_of(&expected_plan, [0, 0, 1, 0])
    );

    // Again: nothing changes, and the subscription comes back as it was cancelled.
    let after_first = snapshot(&*store, plan.id()).await;
    let again = store
        .cancel_subscription(active.id(), &admin("trace-cancel-again"), at + secs(5))
        .await
        .expect("cancelling a cancelled subscription failed");
    assert_eq!(
        again,
        Cancellation {
            subscription: expected.clone(),
            already_canceled: true
        }
    );
    assert_eq!(snapshot(&*store, plan.id()).await, after_first);
    assert_eq!(subscription_now(&*store, active.id()).await, expected);
    assert_invariants(&*store, plan.id()).await;
}

/// A finished key replays the answer its purchase gave, not the subscription as it is now.
pub async fn a_cancelled_purchase_still_replays_the_subscription_as_it_was_sold(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let purchase = Purchase::new(plan.id(), "cus_1", "k1", now());
    let active = purchase.active(&*store).await;
    let sold = PurchaseOutcome::Created {
        subscription: active.clone(),
    };
    assert_eq!(
        finished_outcome(&*store, &purchase, now() + secs(1))
            .await
            .0,
        sold
    );

    let at = now() + secs(5);
    let canceled = store
        .cancel_subscription(active.id(), &admin("trace-cancel"), at)
        .await
        .expect("cancelling an active subscription failed")
        .subscription;
    assert_eq!(canceled.status(), SubscriptionStatus::Canceled);
    assert_eq!(subscription_now(&*store, active.id()).await, canceled);
    assert_eq!(
        finished_outcome(&*store, &purchase, at + secs(1)).await,
        (sold, purchase.reserve.request_id.clone()),
        "the replay is the purchase's own answer, whatever happened to the subscription since"
    );
    assert_invariants(&*store, plan.id()).await;
}

pub async fn cancelling_a_subscription_that_is_not_active_is_refused_and_changes_nothing(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let at = now();
    let incomplete = Purchase::new(plan.id(), "cus_1", "k1", at);
    incomplete.reserved(&*store).await;
    let declined = Purchase::new(plan.id(), "cus_1", "k2", at);
    declined.reserved(&*store).await;
    declined.declined(&*store, "card_declined", at).await;

    for (purchase, status) in [
        (&incomplete, SubscriptionStatus::Incomplete),
        (&declined, SubscriptionStatus::IncompleteExpired),
    ] {
        let id = purchase.subscription_id();
        let before = snapshot(&*store, plan.id()).await;
        let sub_before = subscription_now(&*store, id).await;
        match store
            .cancel_subscription(id, &admin("cancel"), at + secs(1))
            .await
        {
            Err(CancelError::NotActive(s)) => assert_eq!(s, status),
            other => panic!(
                "cancelling a {} subscription must be NotActive, got {other:?}",
                status.as_str()
            ),
        }
        assert_eq!(snapshot(&*store, plan.id()).await, before);
        assert_eq!(subscription_now(&*store, id).await, sub_before);
    }
    assert_invariants(&*store, plan.id()).await;
}

pub async fn cancelling_an_unknown_subscription_is_not_found(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let before = snapshot(&*store, plan.id()).await;
    let unknown = SubscriptionId::generate();
    match store
        .cancel_subscription(unknown, &admin("cancel"), now())
        .await
    {
        Err(CancelError::NotFound(id)) => assert_eq!(id, unknown),
        other => panic!("cancelling an unknown subscription must be NotFound, got {other:?}"),
    }
    assert_eq!(snapshot(&*store, plan.id()).await, before);
}
