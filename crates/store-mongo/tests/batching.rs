//! Group commit of the purchase steps on a live replica set: reservations and completions
//! that arrive while a batch runs are taken together by the next one, and each keeps the
//! result it would have had alone.
//!
//! To make requests really queue, whatever the machine's speed, another transaction holds
//! an uncommitted write on the plan document: the first batch's guarded plan update meets
//! a `WriteConflict` and is retried with back-off until that transaction aborts, while
//! every later request queues behind it. The scenarios both batching stores share are in
//! `seatkeeper_store_contract::batching`; the ones here are MongoDB's own (one queue for
//! every step, several instances on one database). These run only when a replica set is
//! reachable (see `seatkeeper_store_mongo::testing`).

use std::sync::Arc;

use async_trait::async_trait;
use mongodb::{bson::doc, ClientSession};
use seatkeeper_domain::{
    ports::{
        CheckoutRepository, NewKeyReservation, Opened, PurchaseRepository, Reservation, Store,
    },
    CheckoutStatus, PlanId, PurchaseOutcome,
};
use seatkeeper_store_contract::{
    batching::{self, BatchProbe, Counts, PlanHold, Steps},
    checkout_support::{change, open, opening, paid as checkout_paid, with_intent},
    support::{assert_invariants, create_plan, now, plan_now, Purchase},
};
use seatkeeper_store_mongo::{
    documents::{uuid, KeyDoc},
    testing::TestDatabases,
    MongoStore,
};

async fn store_or_skip(test: &str) -> Option<Arc<MongoStore>> {
    let dbs = TestDatabases::for_test(test).await?;
    Some(Arc::new(dbs.fresh_store().await))
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

struct DocumentWrite(ClientSession);

#[async_trait]
impl PlanHold for DocumentWrite {
    async fn release(mut self: Box<Self>) {
        self.0
            .abort_transaction()
            .await
            .expect("abort the test's write");
    }
}

/// The shared scenarios' view of a MongoDB store: one queue for every step, so both
/// kinds of step count the same batches.
struct Probe(Arc<MongoStore>);

#[async_trait]
impl BatchProbe for Probe {
    fn store(&self) -> Arc<dyn Store> {
        self.0.clone()
    }

    async fn hold_plan(&self, plan: PlanId) -> Box<dyn PlanHold> {
        Box::new(DocumentWrite(hold_plan_document(&self.0, plan).await))
    }

    fn counts(&self, steps: Steps) -> Counts {
        let stats = match steps {
            Steps::SessionChanges => self.0.session_change_stats(),
            _ => self.0.batch_stats(),
        };
        Counts {
            batches: stats.batches,
            requests: stats.requests,
        }
    }

    fn queued(&self, steps: Steps) -> usize {
        match steps {
            Steps::SessionChanges => self.0.queued_session_changes(),
            _ => self.0.queued_steps(),
        }
    }

    fn one_queue(&self) -> bool {
        true
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purchases_that_queue_behind_a_written_plan_document_reserve_and_complete_in_two_batches_each(
) {
    if let Some(store) = store_or_skip("purchases_that_queue_behind_a_written_plan_document").await
    {
        batching::purchases_that_queue_behind_a_held_plan_reserve_and_complete_in_two_batches_each(
            &Probe(store),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_step_the_database_refuses_fails_alone_and_its_batch_neighbours_still_succeed() {
    if let Some(store) = store_or_skip("a_step_the_database_refuses_fails_alone").await {
        batching::a_step_the_database_refuses_fails_alone_and_its_batch_neighbours_still_succeed(
            &Probe(store),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_keys_held_keys_and_completions_share_a_transaction_and_a_new_key_is_claimed_once() {
    if let Some(store) =
        store_or_skip("new_keys_held_keys_and_completions_share_a_transaction").await
    {
        batching::new_keys_and_held_keys_share_a_batch_and_a_new_key_is_claimed_once(&Probe(store))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_stores_on_one_database_racing_for_fifty_seats_reserve_exactly_fifty() {
    let Some(dbs) =
        TestDatabases::for_test("three_stores_on_one_database_racing_for_fifty_seats").await
    else {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_key_another_transaction_is_inserting_is_key_exists_once_that_commits_and_takes_no_seat(
) {
    let Some(store) = store_or_skip("a_new_key_another_transaction_is_inserting").await else {
        return;
    };
    let plan = create_plan(&*store, 10).await;
    let racing = Purchase::new(plan.id(), "cus_racing", "k", now());
    // Another transaction inserts the key's record and keeps it uncommitted: the batch
    // reads no record, and its insert of the key conflicts until that transaction ends.
    let mut other = store.client().start_session().await.expect("a session");
    other.start_transaction().await.expect("a transaction");
    store
        .database()
        .collection::<KeyDoc>("idempotency_keys")
        .insert_one(KeyDoc::from(&racing.claim.fresh_record()))
        .session(&mut other)
        .await
        .expect("insert the key's record");
    let base = store.batch_stats();
    let task = {
        let (store, cmd) = (store.clone(), racing.with_new_key());
        tokio::spawn(async move { store.reserve_with_new_key(&cmd).await })
    };
    batching::until("the batch to meet the uncommitted key", || {
        store.batch_stats().batches > base.batches
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    other.commit_transaction().await.expect("commit the key");

    let answer = task.await.unwrap().expect("an answer");
    assert!(matches!(answer, NewKeyReservation::KeyExists), "{answer:?}");
    assert_eq!(plan_now(&*store, plan.id()).await.seats_left(), 10);
    assert_invariants(&*store, plan.id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_that_write_only_their_session_do_not_wait_for_a_written_plan_document() {
    if let Some(store) = store_or_skip("changes_that_write_only_their_session").await {
        batching::changes_that_write_only_their_session_do_not_wait_for_a_held_plan(&Probe(store))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn customers_who_use_each_others_keys_in_one_batch_are_answered_from_their_own_records() {
    if let Some(store) = store_or_skip("customers_who_use_each_others_keys_in_one_batch").await {
        batching::customers_who_use_each_others_keys_in_one_batch_are_answered_from_their_own_records(&Probe(store)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reports_about_a_complete_session_take_no_checkout_step() {
    if let Some(store) = store_or_skip("reports_about_a_complete_session").await {
        batching::reports_about_a_complete_session_take_no_checkout_step(&Probe(store)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkout_steps_that_queue_behind_a_written_plan_document_share_one_batch_in_queue_order() {
    if let Some(store) = store_or_skip("checkout_steps_that_queue_behind_a_written_plan").await {
        batching::checkout_steps_that_queue_behind_a_held_plan_share_one_batch_in_queue_order(
            &Probe(store),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purchases_and_checkout_steps_of_one_plan_share_a_batch() {
    let Some(store) = store_or_skip("purchases_and_checkout_steps_of_one_plan").await else {
        return;
    };
    let plan = create_plan(&*store, 20).await;
    let to_pay = open(&*store, &opening(plan.id(), "cus_pay", "k", now())).await;
    let to_pay = with_intent(&*store, &to_pay).await;

    let mut blocker = hold_plan_document(&store, plan.id()).await;
    let base = store.batch_stats();
    let first = {
        let cmd = Purchase::new(plan.id(), "cus_first", "k", now()).with_new_key();
        let store = store.clone();
        tokio::spawn(async move { store.reserve_with_new_key(&cmd).await })
    };
    batching::until("the first batch", || {
        store.batch_stats().batches == base.batches + 1
    })
    .await;
    let pay = {
        let (store, cmd) = (
            store.clone(),
            change(to_pay.id(), checkout_paid(&to_pay), now()),
        );
        tokio::spawn(async move { store.change_checkout(&cmd).await })
    };
    let opened = {
        let (store, cmd) = (store.clone(), opening(plan.id(), "cus_open", "k", now()));
        tokio::spawn(async move { store.open_checkout(&cmd).await })
    };
    let bought = {
        let cmd = Purchase::new(plan.id(), "cus_buy", "k", now()).with_new_key();
        let store = store.clone();
        tokio::spawn(async move { store.reserve_with_new_key(&cmd).await })
    };
    batching::until("the others to queue", || store.queued_steps() == 3).await;
    blocker
        .abort_transaction()
        .await
        .expect("abort the test's write");

    assert!(matches!(
        first.await.unwrap(),
        Ok(NewKeyReservation::Claimed(_))
    ));
    let paid = pay.await.unwrap().expect("the payment");
    assert_eq!(paid.session.status(), CheckoutStatus::Complete);
    assert!(matches!(opened.await.unwrap(), Ok(Opened::New(_))));
    assert!(matches!(
        bought.await.unwrap(),
        Ok(NewKeyReservation::Claimed(Reservation::Reserved(_)))
    ));
    let stats = store.batch_stats();
    assert_eq!(
        (stats.batches - base.batches, stats.requests - base.requests),
        (2, 4),
        "the first batch, then the payment, the opening and the purchase in one"
    );
    // 20 − 1 held before − 1 (first) − 1 opened − 1 bought.
    assert_eq!(plan_now(&*store, plan.id()).await.seats_left(), 16);
    assert_invariants(&*store, plan.id()).await;
}
