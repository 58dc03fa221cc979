//! Contract cases of [`PlanFeed`]: every kind of committed plan change is announced by
//! the plan's id, a listener sees none of another plan's changes as its own, and
//! listeners are independent of each other.
//!
//! [`PlanFeed`]: seatkeeper_domain::ports::PlanFeed

use std::time::Duration;

use futures::StreamExt;
use seatkeeper_domain::{
    ports::{PlanChanges, Store},
    PlanId, PlanPatch,
};

use crate::{
    checkout_support::{change, changed, open, opening, paid, with_intent},
    support::{admin, create_plan, now, secs, Purchase},
    StoreFactory,
};

/// How long an announcement may take: "soon after its commit", with room for a loaded
/// machine.
const SOON: Duration = Duration::from_secs(10);

/// Waits until `changes` announces `plan` (skipping announcements of other plans);
/// fails after [`SOON`] or on an error item.
async fn announced(changes: &mut PlanChanges, plan: PlanId, what: &str) {
    let wait = async {
        loop {
            match changes.next().await {
                Some(Ok(id)) if id == plan => return,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("the feed failed while waiting for {what}: {e}"),
                None => panic!("the feed ended while waiting for {what}"),
            }
        }
    };
    tokio::time::timeout(SOON, wait)
        .await
        .unwrap_or_else(|_| panic!("{what} was not announced within {SOON:?}"));
}

async fn listen(store: &dyn Store) -> PlanChanges {
    store.plan_changes().await.expect("plan_changes failed")
}

pub async fn every_kind_of_plan_change_is_announced_by_the_plans_id(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let mut changes = listen(&*store).await;
    let plan = create_plan(&*store, 5).await;
    announced(&mut changes, plan.id(), "the plan's creation").await;

    let purchase = Purchase::new(plan.id(), "cus_1", "k1", now());
    purchase.reserved(&*store).await;
    announced(&mut changes, plan.id(), "a seat reserved").await;

    let at = now() + secs(1);
    let session = open(&*store, &opening(plan.id(), "cus_2", "c1", at)).await;
    announced(&mut changes, plan.id(), "a seat held").await;
    let session = with_intent(&*store, &session).await;
    changed(&*store, change(session.id(), paid(&session), at + secs(1))).await;
    announced(&mut changes, plan.id(), "a checkout completed").await;

    let patch = PlanPatch {
        name: None,
        capacity: Some(seatkeeper_domain::Capacity::new(9).expect("a capacity")),
        status: None,
    };
    store
        .update_plan(plan.id(), &patch, &admin("feed"), now() + secs(2))
        .await
        .expect("update_plan failed");
    announced(&mut changes, plan.id(), "a capacity change").await;
}

pub async fn each_listener_hears_every_plan_and_only_by_its_own_id(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let mut first = listen(&*store).await;
    let mut second = listen(&*store).await;
    let a = create_plan(&*store, 3).await;
    let b = create_plan(&*store, 3).await;
    Purchase::new(b.id(), "cus_1", "k1", now())
        .reserved(&*store)
        .await;
    for changes in [&mut first, &mut second] {
        // In commit order: a's creation, then b's creation and reservation.
        announced(changes, a.id(), "plan a's creation").await;
        announced(changes, b.id(), "plan b's changes").await;
    }
    // Nothing about `a` after its creation: the next announcement of `a` would be wrong,
    // so the next thing to hear is b again (or nothing).
    drop(second);
    Purchase::new(b.id(), "cus_2", "k2", now())
        .reserved(&*store)
        .await;
    loop {
        let next = tokio::time::timeout(SOON, first.next())
            .await
            .expect("b's second reservation was not announced")
            .expect("the feed ended")
            .expect("the feed failed");
        assert_ne!(
            next,
            a.id(),
            "an announcement named a plan that did not change"
        );
        if next == b.id() {
            break;
        }
    }
}
