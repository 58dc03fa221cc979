//! Contract cases of [`PlanRepository`] and [`AuditLog`]: creating, reading, listing and
//! changing plans, their stats, and paging their audit log.
//!
//! [`PlanRepository`]: seatkeeper_domain::ports::PlanRepository
//! [`AuditLog`]: seatkeeper_domain::ports::AuditLog

use std::collections::BTreeSet;

use seatkeeper_domain::{
    ports::UpdatePlanError, AuditAction, AuditEntry, Capacity, Currency, Interval, NewPlan, Plan,
    PlanId, PlanName, PlanPatch, PlanStatus, UnitAmount,
};
use uuid::Uuid;

use crate::{
    support::{
        admin, altered, assert_invariants, assert_same_entry, create_plan, new_plan, now, plan_now,
        secs, snapshot, stats_now, stats_of, whole_audit, Purchase,
    },
    StoreFactory,
};

fn name(s: &str) -> PlanName {
    PlanName::parse(s).expect("a valid plan name")
}

fn capacity(n: i64) -> Capacity {
    Capacity::new(n).expect("a valid capacity")
}

pub async fn a_created_plan_reads_back_exactly_as_it_was_stored(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let monthly = new_plan("Starter", 10);
    let yearly = Plan::create(
        NewPlan {
            name: name("Équipe 🚀 «annuel»"),
            capacity: capacity(1_000_000),
            unit_amount: UnitAmount::new(0).expect("a valid amount"),
            currency: Currency::parse("eur").expect("a valid currency"),
            interval: Interval::Year,
        },
        now(),
    );
    for (plan, trace) in [(&monthly, "trace-monthly"), (&yearly, "trace-yearly")] {
        let ctx = admin(trace);
        store
            .create_plan(plan, &ctx)
            .await
            .expect("create_plan failed");
        assert_eq!(
            store.get_plan(plan.id()).await.expect("get_plan failed"),
            Some(plan.clone()),
            "get_plan must return the plan exactly as it was created"
        );
        let audit = whole_audit(&*store, plan.id()).await;
        assert_eq!(audit.len(), 1, "a new plan has one audit entry: {audit:#?}");
        assert_same_entry(&audit[0], &AuditEntry::plan_created(plan, &ctx));
        assert_eq!(
            stats_now(&*store, plan.id()).await,
            stats_of(plan, [0, 0, 0, 0]),
            "a new plan has every seat free and no subscription"
        );
        assert_invariants(&*store, plan.id()).await;
    }
}

pub async fn reading_an_unknown_plan_finds_nothing(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let known = create_plan(&*store, 3).await;
    let unknown = PlanId::generate();
    assert_eq!(
        store.get_plan(unknown).await.expect("get_plan failed"),
        None
    );
    assert_eq!(
        store.plan_stats(unknown).await.expect("plan_stats failed"),
        None
    );
    assert_eq!(
        store
            .plan_audit(unknown, None, 10)
            .await
            .expect("plan_audit failed"),
        None,
        "the audit log of an unknown plan is None, not an empty page"
    );
    assert_eq!(
        store.list_plans(None, 10).await.expect("list_plans failed"),
        vec![known]
    );
}

pub async fn plans_are_listed_in_id_order_one_page_at_a_time(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    assert_eq!(
        store.list_plans(None, 10).await.expect("list_plans failed"),
        vec![],
        "a fresh store has no plans"
    );
    // Random ids, stored in an order unrelated to their sort order.
    let mut created = Vec::new();
    for i in 0..7 {
        let plan = altered(&new_plan(&format!("Plan {i}"), 5 + i), |p| {
            p.id = PlanId::from_uuid(Uuid::new_v4())
        });
        store
            .create_plan(&plan, &admin("create"))
            .await
            .expect("create_plan failed");
        created.push(plan);
    }
    let mut sorted = created.clone();
    sorted.sort_by_key(|p| p.id());

    let list = |after: Option<PlanId>, limit: u32| {
        let store = store.clone();
        async move {
            store
                .list_plans(after, limit)
                .await
                .expect("list_plans failed")
        }
    };
    assert_eq!(list(None, 100).await, sorted, "every plan, ordered by id");
    assert_eq!(list(None, 3).await, sorted[0..3], "first page of 3");
    assert_eq!(
        list(Some(sorted[2].id()), 3).await,
        sorted[3..6],
        "second page, after the last id of the first"
    );
    assert_eq!(
        list(Some(sorted[5].id()), 3).await,
        sorted[6..7],
        "last page"
    );
    assert_eq!(
        list(Some(sorted[6].id()), 3).await,
        vec![],
        "after the last"
    );
    assert_eq!(list(None, 1).await, sorted[0..1], "a limit of one");
    // `after` need not be a stored id.
    let nil = PlanId::from_uuid(Uuid::nil());
    let max = PlanId::from_uuid(Uuid::max());
    let between = PlanId::from_uuid(Uuid::from_u128(sorted[2].id().as_uuid().as_u128() + 1));
    assert_eq!(list(Some(nil), 100).await, sorted, "after the nil uuid");
    assert_eq!(list(Some(max), 100).await, vec![], "after the max uuid");
    assert_eq!(
        list(Some(between), 100).await,
        sorted[3..],
        "after an id that is not stored"
    );
}

pub async fn updating_a_plan_applies_the_patch_and_records_one_audit_entry_per_change(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 10).await;
    for i in 0..2 {
        Purchase::new(plan.id(), "cus_1", &format!("k{i}"), now())
            .reserved(&*store)
            .await;
    }
    let mut expected = plan_now(&*store, plan.id()).await;
    let audit_before = whole_audit(&*store, plan.id()).await;

    let patch = PlanPatch {
        name: Some(name("Starter (renamed)")),
        capacity: Some(capacity(15)),
        status: Some(PlanStatus::Archived),
    };
    let ctx = admin("trace-patch-1");
    let at = now() + secs(1);
    let changes = expected.apply(&patch).expect("the patch applies");
    let updated = store
        .update_plan(plan.id(), &patch, &ctx, at)
        .await
        .expect("update_plan failed");
    assert_eq!(updated, expected, "update_plan returns the plan as patched");
    assert_eq!(expected.seats_left(), 13, "2 seats held of 15");
    assert_eq!(expected.seq(), 6, "three changes after three entries");
    assert_eq!(plan_now(&*store, plan.id()).await, expected);
    let audit = whole_audit(&*store, plan.id()).await;
    assert_eq!(
        audit[..3],
        audit_before[..],
        "earlier entries are untouched"
    );
    let expected_entries = AuditEntry::plan_changes(&expected, &changes, &ctx, at);
    assert_eq!(
        audit.len(),
        6,
        "one entry per change (rename, capacity, archive): {audit:#?}"
    );
    for (actual, wanted) in audit[3..].iter().zip(&expected_entries) {
        assert_same_entry(actual, wanted);
    }
    assert_eq!(
        audit[3..].iter().map(|e| e.action).collect::<Vec<_>>(),
        [
            AuditAction::PlanUpdated,
            AuditAction::CapacityChanged,
            AuditAction::PlanArchived
        ]
    );

    // Shrinking to exactly the held seats sells out; reactivating is one more change.
    let patch = PlanPatch {
        capacity: Some(capacity(2)),
        status: Some(PlanStatus::Active),
        ..Default::default()
    };
    let ctx = admin("trace-patch-2");
    let at = at + secs(1);
    let changes = expected.apply(&patch).expect("the patch applies");
    let updated = store
        .update_plan(plan.id(), &patch, &ctx, at)
        .await
        .expect("update_plan failed");
    assert_eq!(updated, expected);
    assert_eq!((expected.seats_left(), expected.seq()), (0, 8));
    let audit = whole_audit(&*store, plan.id()).await;
    assert_eq!(audit.len(), 8);
    for (actual, wanted) in audit[6..]
        .iter()
        .zip(&AuditEntry::plan_changes(&expected, &changes, &ctx, at))
    {
        assert_same_entry(actual, wanted);
    }
    assert_eq!(
        stats_now(&*store, plan.id()).await,
        stats_of(&expected, [2, 0, 0, 0])
    );
    assert_invariants(&*store, plan.id()).await;
}

pub async fn a_patch_that_changes_nothing_records_nothing(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 4).await;
    let before = snapshot(&*store, plan.id()).await;
    for patch in [
        PlanPatch::default(),
        PlanPatch {
            name: Some(plan.name().clone()),
            capacity: Some(plan.capacity()),
            status: Some(PlanStatus::Active),
        },
    ] {
        let updated = store
            .update_plan(plan.id(), &patch, &admin("noop"), now())
            .await
            .expect("update_plan failed");
        assert_eq!(updated, plan, "a patch without changes returns the plan");
        assert_eq!(
            snapshot(&*store, plan.id()).await,
            before,
            "a patch without changes changes nothing and records nothing ({patch:?})"
        );
    }
}

pub async fn updating_an_unknown_plan_is_not_found(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let unknown = PlanId::generate();
    let patch = PlanPatch {
        name: Some(name("Ghost")),
        ..Default::default()
    };
    match store
        .update_plan(unknown, &patch, &admin("ghost"), now())
        .await
    {
        Err(UpdatePlanError::NotFound(id)) => assert_eq!(id, unknown),
        other => panic!("updating an unknown plan must be NotFound, got {other:?}"),
    }
    assert_eq!(
        store.get_plan(unknown).await.expect("get_plan failed"),
        None
    );
}

pub async fn lowering_capacity_below_the_held_seats_is_refused_and_changes_nothing(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 5).await;
    for i in 0..3 {
        Purchase::new(plan.id(), "cus_1", &format!("k{i}"), now())
            .reserved(&*store)
            .await;
    }
    let before = snapshot(&*store, plan.id()).await;
    // The rename and the archive in the same patch must not happen either.
    let patch = PlanPatch {
        name: Some(name("Smaller")),
        capacity: Some(capacity(2)),
        status: Some(PlanStatus::Archived),
    };
    match store
        .update_plan(plan.id(), &patch, &admin("shrink"), now())
        .await
    {
        Err(UpdatePlanError::CapacityBelowHeld { held, requested }) => {
            assert_eq!((held, requested), (3, 2))
        }
        other => panic!("capacity below the held seats must be refused, got {other:?}"),
    }
    assert_eq!(
        snapshot(&*store, plan.id()).await,
        before,
        "a refused patch changes nothing"
    );

    let patch = PlanPatch {
        capacity: Some(capacity(3)),
        ..Default::default()
    };
    let updated = store
        .update_plan(plan.id(), &patch, &admin("shrink"), now())
        .await
        .expect("capacity equal to the held seats is allowed");
    assert_eq!((updated.capacity().get(), updated.seats_left()), (3, 0));
    assert!(stats_now(&*store, plan.id()).await.sold_out);
    assert_invariants(&*store, plan.id()).await;
}

pub async fn plan_stats_count_the_subscriptions_of_each_status(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 10).await;
    let other = create_plan(&*store, 10).await;
    let at = now();
    let purchases: Vec<Purchase> = (0..6)
        .map(|i| Purchase::new(plan.id(), "cus_1", &format!("k{i}"), at))
        .collect();
    for p in &purchases {
        p.reserved(&*store).await;
    }
    // 0, 1: active; 2: canceled; 3: incomplete_expired; 4, 5: incomplete.
    for p in &purchases[0..3] {
        p.charged(&*store, &format!("pi_{}", p.subscription_id()), at)
            .await;
    }
    store
        .cancel_subscription(purchases[2].subscription_id(), &admin("cancel"), at)
        .await
        .expect("cancel_subscription failed");
    purchases[3].declined(&*store, "card_declined", at).await;
    // A subscription of another plan counts for that plan only.
    Purchase::new(other.id(), "cus_1", "other", at)
        .reserved(&*store)
        .await;

    let plan = plan_now(&*store, plan.id()).await;
    assert_eq!(plan.seats_left(), 6, "4 seats held of 10");
    assert_eq!(
        stats_now(&*store, plan.id()).await,
        stats_of(&plan, [2, 2, 1, 1])
    );
    let other = plan_now(&*store, other.id()).await;
    assert_eq!(
        stats_now(&*store, other.id()).await,
        stats_of(&other, [1, 0, 0, 0])
    );
    assert_invariants(&*store, plan.id()).await;
    assert_invariants(&*store, other.id()).await;

    let tiny = create_plan(&*store, 1).await;
    Purchase::new(tiny.id(), "cus_2", "k", at)
        .reserved(&*store)
        .await;
    let stats = stats_now(&*store, tiny.id()).await;
    assert!(
        stats.sold_out && stats.seats_left == 0,
        "a plan without seats is sold out: {stats:?}"
    );
}

pub async fn the_audit_log_pages_by_seq_and_is_none_for_an_unknown_plan(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let plan = create_plan(&*store, 3).await;
    let at = now();
    for i in 0..6 {
        let patch = PlanPatch {
            name: Some(name(&format!("Name {i}"))),
            ..Default::default()
        };
        store
            .update_plan(
                plan.id(),
                &patch,
                &admin(&format!("rename-{i}")),
                at + secs(i),
            )
            .await
            .expect("update_plan failed");
    }
    let plan_id = plan.id();
    let page = |after: Option<u64>, limit: u32| {
        let store = store.clone();
        async move {
            store
                .plan_audit(plan_id, after, limit)
                .await
                .expect("plan_audit failed")
                .expect("the plan exists")
        }
    };
    let seqs = |entries: &[AuditEntry]| entries.iter().map(|e| e.seq).collect::<Vec<_>>();
    let all = page(None, 100).await;
    assert_eq!(seqs(&all), [1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(
        all.iter().map(|e| e.id).collect::<BTreeSet<_>>().len(),
        7,
        "every audit entry has its own id"
    );
    assert!(all.iter().all(|e| e.plan_id == plan.id()));
    assert_eq!(page(None, 3).await, all[0..3]);
    assert_eq!(page(Some(3), 3).await, all[3..6]);
    assert_eq!(page(Some(6), 3).await, all[6..7]);
    assert_eq!(page(Some(7), 3).await, vec![], "after the last entry");
    assert_eq!(
        page(Some(1000), 3).await,
        vec![],
        "far after the last entry"
    );
    assert_eq!(page(Some(0), 100).await, all, "after seq 0 is everything");
    assert_eq!(page(Some(4), 1).await, all[4..5], "a limit of one");
    for (i, e) in all[1..].iter().enumerate() {
        assert_eq!(
            (e.action, &*e.trace_id, e.at),
            (
                AuditAction::PlanUpdated,
                &*format!("rename-{i}"),
                at + secs(i as i64)
            ),
        );
    }
    assert_eq!(
        store
            .plan_audit(PlanId::generate(), None, 100)
            .await
            .expect("plan_audit failed"),
        None
    );
    assert_invariants(&*store, plan.id()).await;
}
