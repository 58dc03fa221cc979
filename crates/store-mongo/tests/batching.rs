//! Group commit of the purchase steps on a live replica set: reservations and completions
//! that arrive while a batch runs are taken together by the next one, and each keeps the
//! result it would have had alone.
//!
//! To make requests really queue, whatever the machine's speed, another transaction holds
//! an uncommitted write on the plan document: the first batch's guarded plan update meets
//! a `WriteConflict` and is retried with back-off until that transaction aborts, while
//! every later request queues behind it. These run only when a replica set is reachable
//! (see `seatkeeper_store_mongo::testing`).

use std::sync::Arc;

use mongodb::{bson::doc, ClientSession};
use seatkeeper_domain::{
    ports::{
        ChargeResult, CompleteError, Completion, NewKeyReservation, PurchaseRepository,
        Reservation, ReserveError, StoreError,
    },
    PlanId, PurchaseOutcome,
};
use seatkeeper_store_contract::support::{assert_invariants, create_plan, now, plan_now, Purchase};
use seatkeeper_store_mongo::{documents::uuid, testing::TestDatabases, MongoStore};

async fn store_or_skip(test: &str) -> Option<Arc<MongoStore>> {
    match TestDatabases::connect().await {
        Ok(dbs) => Some(Arc::new(dbs.fresh_store().await)),
        Err(reason) => {
            eprintln!("skipped {test}: {reason}");
            None
        }
    }
}

/// Another transaction's uncommitted write on the plan document; abort it to let go.
async fn hold_plan_document(store: &MongoStore, plan: PlanId) -> ClientSession {
    let mut s = store.client().start_session().await.expect("a session");
    s.start_transaction().await.expect("a transaction");
    let written = store
        .database()
        .collection::<mongodb::bson::Document>("plans")
        .update_one(
            doc! { "_id": uuid(plan.as_uuid()) },
            doc! { "$set": { "name": "held by the test" } },
        )
        .session(&mut s)
        .await
        .expect("write the plan document");
    assert_eq!(written.matched_count, 1);
    s
}

/// Completes `p` in a task of its own: declined, or charged with payment `pi_{i}`.
fn spawn_completion(
    store: &Arc<MongoStore>,
    p: &Purchase,
    i: usize,
    declined: bool,
) -> tokio::task::JoinHandle<Result<Completion, CompleteError>> {
    let result = if declined {
        ChargeResult::Declined {
            reason: "card_declined".into(),
        }
    } else {
        ChargeResult::Charged {
            payment_id: format!("pi_{i}"),
        }
    };
    let (store, cmd) = (store.clone(), p.completion(result, "req", now()));
    tokio::spawn(async move { store.complete_purchase(&cmd).await })
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purchases_that_queue_behind_a_written_plan_document_reserve_and_complete_in_one_transaction_each(
) {
    let Some(store) = store_or_skip("purchases_that_queue_behind_a_written_plan_document").await
    else {
        return;
    };
    let plan = create_plan(&*store, 50).await;
    let purchases: Vec<Purchase> = (0..120)
        .map(|i| Purchase::new(plan.id(), &format!("cus_{i}"), "k", now()))
        .collect();
    for p in &purchases {
        p.claim(&*store).await;
    }

    // Reservations: the first batch conflicts on the plan; everything else queues.
    let mut blocker = hold_plan_document(&store, plan.id()).await;
    let base = store.batch_stats();
    let tasks: Vec<_> = purchases
        .iter()
        .map(|p| {
            let (store, cmd) = (store.clone(), p.reserve.clone());
            tokio::spawn(async move { store.reserve_seat(&cmd).await })
        })
        .collect();
    until("the first batch", || {
        store.batch_stats().batches == base.batches + 1
    })
    .await;
    let first = (store.batch_stats().requests - base.requests) as usize;
    until("the others to queue", || {
        store.queued_steps() == 120 - first
    })
    .await;
    blocker.abort_transaction().await.unwrap();
    let mut reserved = Vec::new();
    let mut sold_out = 0;
    for (p, t) in purchases.iter().zip(tasks) {
        match t.await.unwrap().unwrap() {
            Reservation::Reserved(sub) => {
                assert_eq!(sub.id, p.subscription_id());
                reserved.push(p.clone());
            }
            Reservation::Rejected(PurchaseOutcome::SoldOut { .. }) => sold_out += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((reserved.len(), sold_out), (50, 70));
    let stats = store.batch_stats();
    assert_eq!(
        (stats.batches - base.batches, stats.requests - base.requests),
        (2, 120)
    );
    assert_invariants(&*store, plan.id()).await;

    // Completions: 40 charged and 10 declined, again behind the written plan.
    let mut blocker = hold_plan_document(&store, plan.id()).await;
    let base = store.batch_stats();
    let tasks: Vec<_> = reserved
        .iter()
        .enumerate()
        .map(|(i, p)| spawn_completion(&store, p, i, i % 5 == 4))
        .collect();
    until("the first completion batch", || {
        store.batch_stats().batches == base.batches + 1
    })
    .await;
    let first = (store.batch_stats().requests - base.requests) as usize;
    until("the other completions to queue", || {
        store.queued_steps() == 50 - first
    })
    .await;
    blocker.abort_transaction().await.unwrap();
    let mut outcomes = (0, 0);
    for t in tasks {
        match t.await.unwrap().unwrap().outcome {
            PurchaseOutcome::Created { .. } => outcomes.0 += 1,
            PurchaseOutcome::Declined { .. } => outcomes.1 += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(outcomes, (40, 10));
    let stats = store.batch_stats();
    assert_eq!(
        (stats.batches - base.batches, stats.requests - base.requests),
        (2, 50)
    );
    assert_eq!(plan_now(&*store, plan.id()).await.seats_left(), 10);
    assert_invariants(&*store, plan.id()).await;

    // A second completion of any of them changes nothing.
    let again = reserved[0].completion(
        ChargeResult::Charged {
            payment_id: "pi_other".into(),
        },
        "req",
        now(),
    );
    assert!(matches!(
        store.complete_purchase(&again).await,
        Err(CompleteError::NotIncomplete(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_step_the_database_refuses_fails_alone_and_its_batch_neighbours_still_succeed() {
    let Some(store) = store_or_skip("a_step_the_database_refuses_fails_alone").await else {
        return;
    };
    let plan = create_plan(&*store, 10).await;
    let taken = Purchase::new(plan.id(), "cus_first", "k", now());
    let existing = taken.reserved(&*store).await;
    // The same subscription id again: its insert violates the `_id` index.
    let purchases: Vec<Purchase> = (0..6)
        .map(|i| {
            let p = Purchase::new(plan.id(), &format!("cus_{i}"), "k", now());
            if i == 3 {
                p.with_subscription_id(existing.id)
            } else {
                p
            }
        })
        .collect();
    for p in &purchases {
        p.claim(&*store).await;
    }
    let mut blocker = hold_plan_document(&store, plan.id()).await;
    let before = store.batch_stats();
    let reserve = |p: &Purchase| {
        let (store, cmd) = (store.clone(), p.reserve.clone());
        tokio::spawn(async move { store.reserve_seat(&cmd).await })
    };
    // The first alone in a batch that waits for the plan; the other five, the refused
    // one among them, queue behind it and make the next batch.
    let mut tasks = vec![reserve(&purchases[0])];
    until("the first batch", || {
        store.batch_stats().batches == before.batches + 1
    })
    .await;
    tasks.extend(purchases[1..].iter().map(reserve));
    until("the others to queue", || store.queued_steps() == 5).await;
    blocker.abort_transaction().await.unwrap();
    for (i, t) in tasks.into_iter().enumerate() {
        let answer = t.await.unwrap();
        if i == 3 {
            assert!(
                matches!(answer, Err(ReserveError::Store(StoreError::Internal(_)))),
                "{answer:?}"
            );
        } else {
            assert!(matches!(answer, Ok(Reservation::Reserved(_))), "{answer:?}");
        }
    }
    let after = store.batch_stats();
    assert_eq!(after.batches - before.batches, 2, "the five shared a batch");
    assert_eq!(plan_now(&*store, plan.id()).await.seats_left(), 10 - 1 - 5);
    assert_invariants(&*store, plan.id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_keys_held_keys_and_completions_share_a_transaction_and_a_new_key_is_claimed_once() {
    let Some(store) = store_or_skip("new_keys_held_keys_and_completions_share_a_transaction").await
    else {
        return;
    };
    let plan = create_plan(&*store, 50).await;
    let used = Purchase::new(plan.id(), "cus_used", "k", now());
    used.claim(&*store).await; // has a record: a new-key reservation of it is KeyExists
    let held = Purchase::new(plan.id(), "cus_held", "k", now());
    held.claim(&*store).await; // reserves with reserve_seat, in the same batch
    let paying = Purchase::new(plan.id(), "cus_paying", "k", now());
    paying.reserved(&*store).await; // completes, declined, in the same batch

    let mut blocker = hold_plan_document(&store, plan.id()).await;
    let before = store.batch_stats();
    let new_key = |p: &Purchase| {
        let (store, cmd) = (store.clone(), p.with_new_key());
        tokio::spawn(async move { store.reserve_with_new_key(&cmd).await.map(Some) })
    };
    let first = Purchase::new(plan.id(), "cus_first", "k", now());
    let mut tasks = vec![new_key(&first)];
    until("the first batch", || {
        store.batch_stats().batches == before.batches + 1
    })
    .await;
    let mut queued: Vec<Purchase> = (0..20)
        .map(|i| Purchase::new(plan.id(), &format!("cus_{i}"), "k", now()))
        .collect();
    queued.push(Purchase::new(plan.id(), "cus_0", "k", now())); // cus_0's key, again
    queued.push(Purchase::new(plan.id(), "cus_used", "k", now()));
    tasks.extend(queued.iter().map(new_key));
    tasks.push({
        let (store, cmd) = (store.clone(), held.reserve.clone());
        tokio::spawn(async move {
            match store.reserve_seat(&cmd).await {
                Ok(r) => Ok(Some(NewKeyReservation::Claimed(r))),
                Err(ReserveError::Store(e)) => Err(e),
                Err(ReserveError::LockLost) => Ok(None),
            }
        })
    });
    let declined = spawn_completion(&store, &paying, 0, true);
    until("the others to queue", || store.queued_steps() == 24).await;
    blocker.abort_transaction().await.unwrap();

    let mut answers = std::collections::BTreeMap::new();
    let customers = std::iter::once(&first)
        .chain(&queued)
        .chain(std::iter::once(&held))
        .map(|p| p.customer().as_str().to_owned());
    for (customer, t) in customers.zip(tasks) {
        let answer = match t.await.unwrap().unwrap() {
            Some(NewKeyReservation::Claimed(Reservation::Reserved(_))) => "reserved",
            Some(NewKeyReservation::KeyExists) => "key exists",
            other => panic!("unexpected {other:?}"),
        };
        answers
            .entry(customer)
            .or_insert_with(Vec::new)
            .push(answer);
    }
    assert!(matches!(
        declined.await.unwrap().unwrap().outcome,
        PurchaseOutcome::Declined { .. }
    ));
    assert_eq!(answers["cus_first"], ["reserved"]);
    let mut twice = answers["cus_0"].clone();
    twice.sort();
    assert_eq!(twice, ["key exists", "reserved"]);
    assert_eq!(answers["cus_used"], ["key exists"]);
    assert_eq!(answers["cus_held"], ["reserved"]);
    for i in 1..20 {
        assert_eq!(answers[&format!("cus_{i}")], ["reserved"]);
    }
    let stats = store.batch_stats();
    assert_eq!(
        (
            stats.batches - before.batches,
            stats.requests - before.requests
        ),
        (2, 25)
    );
    // 50 seats, the paying purchase's given back: 21 new-key and one held reservation.
    assert_eq!(plan_now(&*store, plan.id()).await.seats_left(), 50 - 22);
    assert_invariants(&*store, plan.id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_stores_on_one_database_racing_for_fifty_seats_reserve_exactly_fifty() {
    let Ok(dbs) = TestDatabases::connect().await else {
        eprintln!("skipped three_stores_on_one_database_racing_for_fifty_seats: no MongoDB");
        return;
    };
    let first = Arc::new(dbs.fresh_store().await);
    let mut settings = seatkeeper_store_mongo::MongoSettings::new(dbs.url());
    settings.database = Some(first.database().name().to_owned());
    let mut stores = vec![first.clone()];
    for _ in 0..2 {
        stores.push(Arc::new(MongoStore::connect(&settings).await.unwrap()));
    }
    let plan = create_plan(&*first, 50).await;
    let purchases: Vec<Purchase> = (0..300)
        .map(|i| Purchase::new(plan.id(), &format!("cus_{i}"), "k", now()))
        .collect();
    // Every instance's requests wait on one barrier, then go at once, new keys and held
    // keys mixed.
    let barrier = Arc::new(tokio::sync::Barrier::new(purchases.len()));
    let mut tasks = Vec::new();
    for (i, p) in purchases.iter().enumerate() {
        let store = stores[i % 3].clone();
        let barrier = barrier.clone();
        if i % 2 == 0 {
            p.claim(&*store).await;
            let cmd = p.reserve.clone();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                store.reserve_seat(&cmd).await.map_err(|e| e.to_string())
            }));
        } else {
            let cmd = p.with_new_key();
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                match store.reserve_with_new_key(&cmd).await {
                    Ok(NewKeyReservation::Claimed(r)) => Ok(r),
                    other => Err(format!("{other:?}")),
                }
            }));
        }
    }
    let (mut reserved, mut sold_out) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            Ok(Reservation::Reserved(_)) => reserved += 1,
            Ok(Reservation::Rejected(PurchaseOutcome::SoldOut { .. })) => sold_out += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((reserved, sold_out), (50, 250));
    assert_eq!(plan_now(&*first, plan.id()).await.seats_left(), 0);
    assert_invariants(&*first, plan.id()).await;
    let batches: u64 = stores.iter().map(|s| s.batch_stats().batches).sum();
    eprintln!("300 reservations on three stores: {batches} batches");
}
