//! Group commit of the purchase phases on PostgreSQL: reservations of one plan, and
//! completions, that arrive while a transaction runs are taken together by the next one —
//! and each keeps the result it would have had alone. The plan row is held by another
//! transaction (`SELECT … FOR UPDATE`) so that requests really queue, whatever the
//! machine's speed. The scenarios both batching stores share are in
//! `seatkeeper_store_contract::batching`; the ones here are PostgreSQL's own (its two
//! queues, reservations and completions, and batches of several plans).

use std::sync::Arc;

use async_trait::async_trait;
use seatkeeper_domain::{
    ports::{PurchaseRepository, Reservation, Store},
    PlanId, PurchaseOutcome,
};
use seatkeeper_store_contract::{
    batching::{self, spawn_completion, until, BatchProbe, Counts, PlanHold, Steps},
    support::{assert_invariants, create_plan, now, Purchase},
};
use seatkeeper_store_postgres::{testing::TestDatabases, PostgresStore};
use sqlx::{Postgres, Transaction};

async fn store_or_skip(test: &str) -> Option<Arc<PostgresStore>> {
    let dbs = TestDatabases::for_test(test).await?;
    Some(Arc::new(dbs.fresh_store().await))
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

struct RowLock(Transaction<'static, Postgres>);

#[async_trait]
impl PlanHold for RowLock {
    async fn release(self: Box<Self>) {
        self.0.commit().await.expect("release the plan row");
    }
}

/// The shared scenarios' view of a PostgreSQL store: two queues, one for each step.
struct Probe(Arc<PostgresStore>);

#[async_trait]
impl BatchProbe for Probe {
    fn store(&self) -> Arc<dyn Store> {
        self.0.clone()
    }

    async fn hold_plan(&self, plan: PlanId) -> Box<dyn PlanHold> {
        Box::new(RowLock(hold_plan_row(&self.0, plan).await))
    }

    fn counts(&self, steps: Steps) -> Counts {
        let all = self.0.batch_stats();
        let one = match steps {
            Steps::Reservations => all.reservations,
            Steps::Completions => all.completions,
            Steps::Checkouts => all.checkouts,
            Steps::SessionChanges => all.session_changes,
        };
        Counts {
            batches: one.batches,
            requests: one.requests,
        }
    }

    fn one_queue(&self) -> bool {
        false
    }

    fn queued(&self, steps: Steps) -> usize {
        match steps {
            Steps::Reservations => self.0.queued_reservations(),
            Steps::Completions => self.0.queued_completions(),
            Steps::Checkouts => self.0.queued_checkout_steps(),
            Steps::SessionChanges => self.0.queued_session_changes(),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn purchases_that_queue_behind_a_locked_plan_row_reserve_and_complete_in_two_batches_each() {
    if let Some(store) = store_or_skip("purchases_that_queue_behind_a_locked_plan_row").await {
        batching::purchases_that_queue_behind_a_held_plan_reserve_and_complete_in_two_batches_each(
            &Probe(store),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_the_database_refuses_fails_alone_and_its_batch_neighbours_still_succeed() {
    if let Some(store) = store_or_skip("a_request_the_database_refuses_fails_alone").await {
        batching::a_step_the_database_refuses_fails_alone_and_its_batch_neighbours_still_succeed(
            &Probe(store),
        )
        .await;
    }
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
    if let Some(store) = store_or_skip("reservations_with_new_keys_share_a_transaction").await {
        batching::new_keys_and_held_keys_share_a_batch_and_a_new_key_is_claimed_once(&Probe(store))
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn checkout_steps_that_queue_behind_a_locked_plan_row_share_one_batch_in_queue_order() {
    if let Some(store) = store_or_skip("checkout_steps_that_queue_behind_a_locked_plan_row").await {
        batching::checkout_steps_that_queue_behind_a_held_plan_share_one_batch_in_queue_order(
            &Probe(store),
        )
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
async fn changes_that_write_only_their_session_do_not_wait_for_a_locked_plan_row() {
    if let Some(store) = store_or_skip("changes_that_write_only_their_session").await {
        batching::changes_that_write_only_their_session_do_not_wait_for_a_held_plan(&Probe(store))
            .await;
    }
}
