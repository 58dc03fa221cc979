//! Checkout steps that the contract suite cannot race: several store instances on one
//! database, whose turns on a plan (`checkouts.rs`) do not see each other, so that only
//! the guarded writes and the transaction runner keep the seats exact; one key opened on
//! two plans at once (the unique `(customer_id, idempotency_key)` index settles it); and
//! openings racing the purchase batches, which write the same plan document; and reads
//! of sessions, which share `find`s, racing changes of the same sessions. These run
//! only when a replica set is reachable (see `seatkeeper_store_mongo::testing`).

use std::sync::Arc;

use seatkeeper_domain::{
    ports::{
        CheckoutRepository, NewKeyReservation, OpenCheckoutError, Opened, PurchaseRepository,
        Reservation,
    },
    CheckoutSessionId, CheckoutStatus, OpenRefusal, Plan, PurchaseOutcome, SeatRefusal,
};
use seatkeeper_store_contract::{
    checkout_support::{change, expire_on_request, open, opening},
    support::{assert_invariants, create_plan, now, stats_now, Purchase},
};
use seatkeeper_store_mongo::{testing::TestDatabases, MongoSettings, MongoStore};
use tokio::sync::Barrier;

/// Three stores on one fresh database, or `None` (skipped) without a replica set.
async fn three_stores(test: &str) -> Option<Vec<Arc<MongoStore>>> {
    let dbs = TestDatabases::for_test(test).await?;
    let first = Arc::new(dbs.fresh_store().await);
    let mut settings = MongoSettings::new(dbs.url());
    settings.database = Some(first.database().name().to_owned());
    let mut stores = vec![first];
    for _ in 0..2 {
        stores.push(Arc::new(MongoStore::connect(&settings).await.unwrap()));
    }
    Some(stores)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_stores_opening_sessions_of_one_plan_hold_exactly_its_seats() {
    let Some(stores) = three_stores("three_stores_opening_sessions_of_one_plan").await else {
        return;
    };
    let plan = create_plan(&*stores[0], 10).await;
    let barrier = Arc::new(Barrier::new(60));
    let tasks: Vec<_> = (0..60)
        .map(|i| {
            let (store, barrier) = (stores[i % 3].clone(), barrier.clone());
            let cmd = opening(plan.id(), &format!("c{i}"), "k", now());
            tokio::spawn(async move {
                barrier.wait().await;
                store.open_checkout(&cmd).await
            })
        })
        .collect();
    let mut held = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(Opened::New(_)) => held += 1,
            Err(OpenCheckoutError::Refused(OpenRefusal::Seat(SeatRefusal::SoldOut))) => {}
            other => panic!("each opening should hold a seat or be sold out, got {other:?}"),
        }
    }
    assert_eq!(held, 10);
    let stats = stats_now(&*stores[0], plan.id()).await;
    assert_eq!((stats.seats_left, stats.held), (0, 10));
    assert_invariants(&*stores[0], plan.id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_key_opened_on_two_plans_from_three_stores_at_once_opens_one_session() {
    let Some(stores) = three_stores("one_key_opened_on_two_plans").await else {
        return;
    };
    let plans = [
        create_plan(&*stores[0], 5).await,
        create_plan(&*stores[0], 5).await,
    ];
    let barrier = Arc::new(Barrier::new(30));
    let tasks: Vec<_> = (0..30)
        .map(|i| {
            let (store, barrier) = (stores[i % 3].clone(), barrier.clone());
            let cmd = opening(plans[i % 2].id(), "alice", "same", now());
            tokio::spawn(async move {
                barrier.wait().await;
                store.open_checkout(&cmd).await
            })
        })
        .collect();
    let (mut new, mut existing, mut reused) = (Vec::new(), 0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(Opened::New(s)) => new.push(s),
            Ok(Opened::Existing(_)) => existing += 1,
            Err(OpenCheckoutError::Refused(OpenRefusal::KeyReused)) => reused += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(new.len(), 1, "one session under the key");
    // The openings of the winner's plan answer its session; the other plan's are refused.
    assert_eq!((existing, reused), (14, 15));
    assert_eq!(held_on(&stores[0], &plans).await, 1);
    for p in &plans {
        assert_invariants(&*stores[0], p.id()).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn openings_racing_purchases_of_one_plan_never_take_more_than_its_seats() {
    let Some(stores) = three_stores("openings_racing_purchases_of_one_plan").await else {
        return;
    };
    let plan = create_plan(&*stores[0], 30).await;
    let barrier = Arc::new(Barrier::new(80));
    let mut openings = Vec::new();
    let mut purchases = Vec::new();
    for i in 0..40 {
        let (store, start) = (stores[i % 3].clone(), barrier.clone());
        let cmd = opening(plan.id(), &format!("o{i}"), "k", now());
        openings.push(tokio::spawn(async move {
            start.wait().await;
            store.open_checkout(&cmd).await
        }));
        let (store, start) = (stores[(i + 1) % 3].clone(), barrier.clone());
        let cmd = Purchase::new(plan.id(), &format!("p{i}"), "k", now()).with_new_key();
        purchases.push(tokio::spawn(async move {
            start.wait().await;
            store.reserve_with_new_key(&cmd).await
        }));
    }
    let mut held = 0_u64;
    for t in openings {
        match t.await.unwrap() {
            Ok(Opened::New(_)) => held += 1,
            Err(OpenCheckoutError::Refused(OpenRefusal::Seat(SeatRefusal::SoldOut))) => {}
            other => panic!("unexpected opening {other:?}"),
        }
    }
    let mut reserved = 0_u64;
    for t in purchases {
        match t.await.unwrap() {
            Ok(NewKeyReservation::Claimed(Reservation::Reserved(_))) => reserved += 1,
            Ok(NewKeyReservation::Claimed(Reservation::Rejected(PurchaseOutcome::SoldOut {
                ..
            }))) => {}
            other => panic!("unexpected reservation {other:?}"),
        }
    }
    assert_eq!(held + reserved, 30, "{held} held and {reserved} reserved");
    let stats = stats_now(&*stores[0], plan.id()).await;
    assert_eq!(
        (stats.seats_left, stats.held, stats.incomplete),
        (0, held, reserved)
    );
    assert_invariants(&*stores[0], plan.id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reads_racing_changes_share_finds_and_each_sees_its_session_as_last_acknowledged() {
    let Some(stores) = three_stores("reads_racing_changes_share_finds").await else {
        return;
    };
    let store = stores[0].clone();
    let plan = create_plan(&*store, 100).await;
    let mut sessions = Vec::new();
    for i in 0..40 {
        sessions.push(open(&*store, &opening(plan.id(), &format!("c{i}"), "k", now())).await);
    }
    let before = store.session_read_stats();
    // 120 tasks at once: a third read a session no one opened; the rest each read one of
    // the 40 sessions (each three times over), and the first task of each session
    // expires it and then reads it again, which must show the expiry.
    let barrier = Arc::new(Barrier::new(120));
    let tasks: Vec<_> = (0..120)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            let session = sessions[i % 40].clone();
            tokio::spawn(async move {
                barrier.wait().await;
                if i % 3 == 0 {
                    let unknown = CheckoutSessionId::generate();
                    assert_eq!(store.get_checkout(unknown).await.unwrap(), None);
                }
                let read = store.get_checkout(session.id()).await.unwrap().unwrap();
                assert_eq!(read.id(), session.id());
                assert_eq!(read.plan_id(), session.plan_id());
                assert_eq!(read.customer_id(), session.customer_id());
                if i < 40 {
                    let cmd = change(session.id(), expire_on_request(), now());
                    store.change_checkout(&cmd).await.expect("expiring");
                    let after = store.get_checkout(session.id()).await.unwrap().unwrap();
                    assert_eq!(after.status(), CheckoutStatus::Expired, "{after:?}");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let reads = store.session_read_stats();
    let (finds, answered) = (
        reads.batches - before.batches,
        reads.requests - before.requests,
    );
    assert_eq!(answered, 120 + 40 + 40, "every read was answered once");
    assert!(finds < answered, "{finds} finds for {answered} reads");
    for s in &sessions {
        let now = store.get_checkout(s.id()).await.unwrap().unwrap();
        assert_eq!(now.status(), CheckoutStatus::Expired);
    }
    assert_invariants(&*store, plan.id()).await;
    assert_eq!(stats_now(&*store, plan.id()).await.held, 0);
}

/// The seats held by open sessions on `plans`, together.
async fn held_on(store: &MongoStore, plans: &[Plan]) -> u64 {
    let mut held = 0;
    for p in plans {
        held += stats_now(store, p.id()).await.held;
    }
    held
}
