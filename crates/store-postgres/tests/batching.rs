//! Group commit of the purchase phases: reservations of one plan, and completions, that
//! arrive while a transaction runs are taken together by the next one — and each keeps
//! the result it would have had alone. The plan row is held by another transaction so
//! that requests really queue, whatever the machine's speed.

use std::sync::Arc;

use seatkeeper_domain::{
    ports::{
        ChargeResult, CompleteError, Completion, NewKeyReservation, PurchaseRepository,
        Reservation, ReserveError, StoreError,
    },
    PlanId, PurchaseOutcome,
};
use seatkeeper_store_contract::support::{assert_invariants, create_plan, now, Purchase};
use seatkeeper_store_postgres::{testing::TestDatabases, PostgresStore};
use sqlx::{Postgres, Transaction};

async fn store_or_skip(test: &str) -> Option<Arc<PostgresStore>> {
    match TestDatabases::connect().await {
        Ok(dbs) => Some(Arc::new(dbs.fresh_store().await)),
        Err(reason) => {
            eprintln!("skipped {test}: {reason}");
            None
        }
    }
}

/// Another transaction's lock on the plan row.
async fn hold_plan_row(store: &PostgresStore, plan: PlanId) -> Transaction<'static, Postgres> {
    let mut tx = store.pool().begin().await.expect("a transaction");
    sqlx::query("SELECT 1 FROM plans WHERE id = $1 FOR UPDATE")
        .bind(plan.as_uuid())
        .execute(&mut *tx)
        .await
        .expect("lock the plan row");
    tx
}

/// Completes `p` in a task of its own: declined, or charged with payment `pi_{i}`.
fn spawn_completion(
    store: &Arc<PostgresStore>,
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
async fn purchases_that_queue_behind_a_locked_plan_row_reserve_and_complete_in_one_transaction_each(
) {
    let Some(store) = store_or_skip("purchases_that_queue_behind_a_locked_plan_row").await else {
        return;
    };
    let plan = create_plan(&*store, 50).await;
    let purchases: Vec<Purchase> = (0..120)
        .map(|i| Purchase::new(plan.id(), &format!("cus_{i}"), "k", now()))
        .collect();
    for p in &purchases {
        p.claim(&*store).await;
    }

    // Reservations: the first batch waits for the row; everything else queues behind it.
    let blocker = hold_plan_row(&store, plan.id()).await;
    let tasks: Vec<_> = purchases
        .iter()
        .map(|p| {
            let (store, cmd) = (store.clone(), p.reserve.clone());
            tokio::spawn(async move { store.reserve_seat(&cmd).await })
        })
        .collect();
    until("the first batch", || {
        store.batch_stats().reservations.batches == 1
    })
    .await;
    let first = store.batch_stats().reservations.requests as usize;
    until("the others to queue", || {
        store.queued_reservations() == 120 - first
    })
    .await;
    blocker.commit().await.unwrap();
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
    let stats = store.batch_stats().reservations;
    assert_eq!((stats.batches, stats.requests), (2, 120));
    assert_invariants(&*store, plan.id()).await;

    // Completions: 40 charged and 10 declined, again behind the held row.
    let blocker = hold_plan_row(&store, plan.id()).await;
    let tasks: Vec<_> = reserved
        .iter()
        .enumerate()
        .map(|(i, p)| spawn_completion(&store, p, i, i % 5 == 4))
        .collect();
    until("the first completion batch", || {
        store.batch_stats().completions.batches == 1
    })
    .await;
    let first = store.batch_stats().completions.requests as usize;
    until("the other completions to queue", || {
        store.queued_completions() == 50 - first
    })
    .await;
    blocker.commit().await.unwrap();
    let mut outcomes = (0, 0);
    for t in tasks {
        match t.await.unwrap().unwrap().outcome {
            PurchaseOutcome::Created { .. } => outcomes.0 += 1,
            PurchaseOutcome::Declined { .. } => outcomes.1 += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(outcomes, (40, 10));
    let stats = store.batch_stats().completions;
    assert_eq!((stats.batches, stats.requests), (2, 50));
    let plan_now = seatkeeper_store_contract::support::plan_now(&*store, plan.id()).await;
    assert_eq!(plan_now.seats_left(), 10);
    assert_invariants(&*store, plan.id()).await;

    // A second completion of any of them changes nothing, batched or not.
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
async fn a_request_the_database_refuses_fails_alone_and_its_batch_neighbours_still_succeed() {
    let Some(store) = store_or_skip("a_request_the_database_refuses_fails_alone").await else {
        return;
    };
    let plan = create_plan(&*store, 10).await;
    let taken = Purchase::new(plan.id(), "cus_first", "k", now());
    let existing = taken.reserved(&*store).await;
    // The same subscription id again: its insert violates the primary key.
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
    let blocker = hold_plan_row(&store, plan.id()).await;
    let before = store.batch_stats().reservations;
    let reserve = |p: &Purchase| {
        let (store, cmd) = (store.clone(), p.reserve.clone());
        tokio::spawn(async move { store.reserve_seat(&cmd).await })
    };
    // The first alone in a batch that waits for the row; the other five, the refused
    // one among them, queue behind it and make the next batch.
    let mut tasks = vec![reserve(&purchases[0])];
    until("the first batch", || {
        store.batch_stats().reservations.batches == before.batches + 1
    })
    .await;
    tasks.extend(purchases[1..].iter().map(reserve));
    until("the others to queue", || store.queued_reservations() == 5).await;
    blocker.commit().await.unwrap();
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
    let after = store.batch_stats().reservations;
    assert_eq!(after.batches - before.batches, 2, "the five shared a batch");
    let plan_now = seatkeeper_store_contract::support::plan_now(&*store, plan.id()).await;
    assert_eq!(plan_now.seats_left(), 10 - 1 - 5);
    assert_invariants(&*store, plan.id()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reservations_of_several_plans_share_a_batch_and_each_gets_its_own_answer() {
    let Some(store) = store_or_skip("reservations_of_several_plans_share_a_batch").await else {
        return;
    };
    let (a, b) = (create_plan(&*store, 5).await, create_plan(&*store, 2).await);
    let unknown = PlanId::generate();
    let mut purchases = vec![Purchase::new(a.id(), "cus_first", "k", now())];
    for i in 0..4 {
        purchases.push(Purchase::new(a.id(), &format!("cus_a{i}"), "k", now()));
        purchases.push(Purchase::new(b.id(), &format!("cus_b{i}"), "k", now()));
    }
    purchases.push(Purchase::new(unknown, "cus_lost", "k", now()));
    for p in &purchases {
        p.claim(&*store).await;
    }
    let blocker = hold_plan_row(&store, a.id()).await;
    let reserve = |p: &Purchase| {
        let (store, cmd) = (store.clone(), p.reserve.clone());
        tokio::spawn(async move { store.reserve_seat(&cmd).await })
    };
    let mut tasks = vec![reserve(&purchases[0])];
    until("the first batch", || {
        store.batch_stats().reservations.batches == 1
    })
    .await;
    tasks.extend(purchases[1..].iter().map(reserve));
    until("the others to queue", || store.queued_reservations() == 9).await;
    blocker.commit().await.unwrap();
    // Queue order is arrival order, so which two of plan b's four get its seats is open;
    // how many is not.
    let mut answers = std::collections::BTreeMap::new();
    for (p, t) in purchases.iter().zip(tasks) {
        let answer = match t.await.unwrap().unwrap() {
            Reservation::Reserved(_) => "reserved",
            Reservation::Rejected(PurchaseOutcome::SoldOut { .. }) => "sold out",
            Reservation::Rejected(PurchaseOutcome::PlanNotFound { .. }) => "not found",
            other => panic!("unexpected {other:?}"),
        };
        let plan = match p.reserve.plan_id {
            id if id == a.id() => "a",
            id if id == b.id() => "b",
            _ => "unknown",
        };
        *answers.entry((plan, answer)).or_insert(0) += 1;
    }
    let expected = [
        (("a", "reserved"), 5),
        (("b", "reserved"), 2),
        (("b", "sold out"), 2),
        (("unknown", "not found"), 1),
    ];
    assert_eq!(answers, expected.into_iter().collect());
    assert_eq!(store.batch_stats().reservations.batches, 2);
    for plan in [a.id(), b.id()] {
        assert_eq!(
            seatkeeper_store_contract::support::plan_now(&*store, plan)
                .await
                .seats_left(),
            0
        );
        assert_invariants(&*store, plan).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn completions_of_several_plans_share_a_batch_and_each_plan_audits_its_own_moves_in_order() {
    let Some(store) = store_or_skip("completions_of_several_plans_share_a_batch").await else {
        return;
    };
    let (a, b) = (create_plan(&*store, 6).await, create_plan(&*store, 6).await);
    let mut purchases = Vec::new();
    for i in 0..6 {
        purchases.push(Purchase::new(a.id(), &format!("cus_a{i}"), "k", now()));
        purchases.push(Purchase::new(b.id(), &format!("cus_b{i}"), "k", now()));
    }
    for p in &purchases {
        p.claim(&*store).await;
        let reserved = store.reserve_seat(&p.reserve).await.expect("a reservation");
        assert!(matches!(reserved, Reservation::Reserved(_)), "{reserved:?}");
    }
    // Plan a's row is held: the first completion batch waits for it when it locks the
    // plans, and the eleven others queue behind it, the two plans interleaved and every
    // third one declined (a seat back, between its plan's other moves).
    let blocker = hold_plan_row(&store, a.id()).await;
    let complete = |i: usize, p: &Purchase| spawn_completion(&store, p, i, i % 3 == 2);
    let mut tasks = vec![complete(0, &purchases[0])];
    until("the first completion batch", || {
        store.batch_stats().completions.batches == 1
    })
    .await;
    tasks.extend(
        purchases
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, p)| complete(i, p)),
    );
    until("the others to queue", || store.queued_completions() == 11).await;
    blocker.commit().await.unwrap();
    let mut declined = 0;
    for t in tasks {
        match t.await.unwrap().unwrap().outcome {
            PurchaseOutcome::Created { .. } => {}
            PurchaseOutcome::Declined { .. } => declined += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(declined, 4);
    let stats = store.batch_stats().completions;
    assert_eq!((stats.batches, stats.requests), (2, 12));
    for plan in [a.id(), b.id()] {
        let now = seatkeeper_store_contract::support::plan_now(&*store, plan).await;
        // Six reserved, two of them given back; seq: created, 6 reserved, 6 completed.
        assert_eq!((now.seats_left(), now.seq()), (2, 13));
        assert_invariants(&*store, plan).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reservations_with_new_keys_share_a_transaction_with_held_ones_and_a_new_key_is_claimed_once(
) {
    let Some(store) = store_or_skip("reservations_with_new_keys_share_a_transaction").await else {
        return;
    };
    let plan = create_plan(&*store, 50).await;
    let used = Purchase::new(plan.id(), "cus_used", "k", now());
    used.claim(&*store).await; // has a record: a new-key reservation of it is KeyExists
    let held = Purchase::new(plan.id(), "cus_held", "k", now());
    held.claim(&*store).await; // reserves with reserve_seat, in the same batch

    // The first batch claims its key and then waits for the plan row; everything else
    // queues behind it.
    let blocker = hold_plan_row(&store, plan.id()).await;
    let new_key = |p: &Purchase| {
        let (store, cmd) = (store.clone(), p.with_new_key());
        tokio::spawn(async move { store.reserve_with_new_key(&cmd).await.map(Some) })
    };
    let first = Purchase::new(plan.id(), "cus_first", "k", now());
    let mut tasks = vec![new_key(&first)];
    until("the first batch", || {
        store.batch_stats().reservations.batches == 1
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
    until("the others to queue", || store.queued_reservations() == 23).await;
    blocker.commit().await.unwrap();

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
    assert_eq!(answers["cus_first"], ["reserved"]);
    let mut twice = answers["cus_0"].clone();
    twice.sort();
    assert_eq!(twice, ["key exists", "reserved"]);
    assert_eq!(answers["cus_used"], ["key exists"]);
    assert_eq!(answers["cus_held"], ["reserved"]);
    for i in 1..20 {
        assert_eq!(answers[&format!("cus_{i}")], ["reserved"]);
    }
    let stats = store.batch_stats().reservations;
    assert_eq!((stats.batches, stats.requests), (2, 24));
    let plan_now = seatkeeper_store_contract::support::plan_now(&*store, plan.id()).await;
    assert_eq!(plan_now.seats_left(), 50 - 22);
    assert_invariants(&*store, plan.id()).await;
}
