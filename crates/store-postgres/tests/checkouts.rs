//! Checkout sessions on PostgreSQL, beyond the contract suite: one key opened on
//! *different* plans at once (which no plan lock serialises: the session insert's
//! `ON CONFLICT DO NOTHING` waits for the other opening and the step decides again), a
//! session-only change whose session another transaction changes between its read and
//! its guarded write (it decides again), and the schema's refusal of a session row the
//! domain could not read back.

use std::sync::Arc;

use seatkeeper_domain::{
    ports::{CheckoutRepository, OpenCheckoutError, Opened},
    CheckoutChange, Effect, OpenRefusal,
};
use seatkeeper_store_contract::{
    checkout_support::{change, intent_of, open, opening, session_now},
    support::{assert_invariants, create_plan, now, plan_now, race, stats_now, task},
};
use seatkeeper_store_postgres::{testing::TestDatabases, PostgresStore};
use uuid::Uuid;

async fn store_or_skip(test: &str) -> Option<Arc<PostgresStore>> {
    let dbs = TestDatabases::for_test(test).await?;
    Some(Arc::new(dbs.fresh_store().await))
}

/// A session of `(customer, key)` on `plan`, inserted by another transaction that has
/// not committed yet (returned, to commit or roll back), with the fingerprint given.
async fn uncommitted_session(
    store: &PostgresStore,
    plan: Uuid,
    customer: &str,
    key: &str,
    fingerprint: &str,
) -> sqlx::Transaction<'static, sqlx::Postgres> {
    let mut tx = store.pool().begin().await.expect("a transaction");
    sqlx::query(
        "INSERT INTO checkout_sessions (id, plan_id, customer_id, subscription_id, idempotency_key, fingerprint, \
         amount, currency, status, intent_closed, created_at, expires_at, updated_at, check_at) \
         VALUES ($1, $2, $3, $4, $5, $6, 1500, 'usd', 'open', false, now(), now() + interval '30 minutes', now(), \
         now() + interval '30 minutes')",
    )
    .bind(Uuid::now_v7())
    .bind(plan)
    .bind(customer)
    .bind(Uuid::now_v7())
    .bind(key)
    .bind(fingerprint)
    .execute(&mut *tx)
    .await
    .expect("insert a session");
    tx
}

/// Waits until one of the store's connections waits for a lock.
async fn until_an_insert_waits(store: &PostgresStore) {
    until_waiting(store, "%INSERT INTO checkout_sessions%").await
}

/// Waits until a statement of the store like `pattern` waits for a lock.
async fn until_waiting(store: &PostgresStore, pattern: &str) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE $1",
        )
        .bind(pattern)
        .fetch_one(store.pool())
        .await
        .expect("pg_stat_activity");
        if waiting > 0 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for a statement like {pattern} to wait for a lock"
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// The opening decided to hold a seat of plan B while another transaction inserted the
/// key's session on plan A; it waits for that insert, and then answers as the committed
/// session says — or, when that transaction rolled back, holds its seat.
#[tokio::test]
async fn an_opening_that_loses_its_key_to_an_uncommitted_session_decides_again() {
    let test = "an_opening_that_loses_its_key_to_an_uncommitted_session_decides_again";
    let Some(store) = store_or_skip(test).await else {
        return;
    };
    let (a, b) = (create_plan(&*store, 3).await, create_plan(&*store, 3).await);
    for (commit, fingerprint_matches) in [(true, false), (true, true), (false, false)] {
        let key = format!("k-{commit}-{fingerprint_matches}");
        let cmd = opening(b.id(), "alice", &key, now());
        let fingerprint = match fingerprint_matches {
            true => cmd.fingerprint.as_str().to_owned(),
            false => "another request".to_owned(),
        };
        let other =
            uncommitted_session(&store, a.id().as_uuid(), "alice", &key, &fingerprint).await;
        let before = plan_now(&*store, b.id()).await;
        let opening = {
            let store = store.clone();
            let cmd = cmd.clone();
            tokio::spawn(async move { store.open_checkout(&cmd).await })
        };
        until_an_insert_waits(&store).await;
        match commit {
            true => other.commit().await.expect("commit"),
            false => other.rollback().await.expect("rollback"),
        }
        let answer = opening.await.expect("the opening's task");
        match (commit, fingerprint_matches, answer) {
            (true, false, Err(OpenCheckoutError::Refused(OpenRefusal::KeyReused))) => {}
            (true, true, Ok(Opened::Existing(s))) => assert_eq!(s.plan_id(), a.id()),
            (false, _, Ok(Opened::New(s))) => {
                assert_eq!(s.plan_id(), b.id());
                assert_eq!(
                    plan_now(&*store, b.id()).await.seats_left(),
                    before.seats_left() - 1
                );
                continue;
            }
            (commit, matches, other) => {
                panic!("commit {commit}, same request {matches}: unexpected {other:?}")
            }
        }
        // It wrote nothing on plan B.
        assert_eq!(plan_now(&*store, b.id()).await, before);
    }
    assert_invariants(&*store, b.id()).await;
}

/// One key opened on eight plans at once, by five customers in turn: each time exactly
/// one seat is held, on one plan, and every other opening is refused `KeyReused`.
#[tokio::test]
async fn one_key_opened_on_eight_plans_at_once_holds_one_seat() {
    let test = "one_key_opened_on_eight_plans_at_once_holds_one_seat";
    let Some(store) = store_or_skip(test).await else {
        return;
    };
    let mut plans = Vec::new();
    for _ in 0..8 {
        plans.push(create_plan(&*store, 5).await);
    }
    for round in 0..5 {
        let customer = format!("c{round}");
        let results = race(
            plans
                .iter()
                .map(|p| {
                    let store = store.clone();
                    let cmd = opening(p.id(), &customer, "same", now());
                    task(async move { store.open_checkout(&cmd).await })
                })
                .collect(),
        )
        .await;
        let mut new = 0;
        for r in results {
            match r {
                Ok(Opened::New(_)) => new += 1,
                Err(OpenCheckoutError::Refused(OpenRefusal::KeyReused)) => {}
                other => panic!("round {round}: unexpected {other:?}"),
            }
        }
        assert_eq!(new, 1, "round {round}");
    }
    let mut held = 0;
    for p in &plans {
        held += stats_now(&*store, p.id()).await.held;
        assert_invariants(&*store, p.id()).await;
    }
    assert_eq!(held, 5);
}

/// An intent attached while another transaction records a failed payment of the same
/// session: the attach's write (guarded by the session as it read it) waits for that
/// transaction, finds the session changed and is not made; the attach runs again on the
/// session as the other left it, and keeps both changes — no lost update.
#[tokio::test]
async fn a_session_change_whose_session_changed_after_its_read_decides_again() {
    let test = "a_session_change_whose_session_changed_after_its_read_decides_again";
    let Some(store) = store_or_skip(test).await else {
        return;
    };
    let plan = create_plan(&*store, 3).await;
    let session = open(&*store, &opening(plan.id(), "alice", "k", now())).await;
    let mut other = store.pool().begin().await.expect("a transaction");
    sqlx::query(
        "UPDATE checkout_sessions SET payment_error = 'card_declined: test', \
         updated_at = updated_at + interval '1 millisecond' WHERE id = $1",
    )
    .bind(session.id().as_uuid())
    .execute(&mut *other)
    .await
    .expect("the other change");
    let attach = {
        let store = store.clone();
        let cmd = change(
            session.id(),
            CheckoutChange::AttachIntent(intent_of(&session)),
            now(),
        );
        tokio::spawn(async move { store.change_checkout(&cmd).await })
    };
    until_waiting(&store, "UPDATE checkout_sessions s SET%").await;
    other.commit().await.expect("commit");
    let attached = attach
        .await
        .expect("the attach's task")
        .expect("the attach");
    assert_eq!(attached.applied.effect, Effect::Updated);
    assert_eq!(
        attached.session.payment_intent(),
        Some(&intent_of(&session))
    );
    assert_eq!(
        attached.session.payment_error(),
        Some("card_declined: test")
    );
    assert_eq!(session_now(&*store, session.id()).await, attached.session);
    assert_invariants(&*store, plan.id()).await;
}

/// The schema refuses what `CheckoutSession::restore` would refuse to read back.
#[tokio::test]
async fn the_schema_refuses_a_session_whose_fields_disagree_with_its_status() {
    let test = "the_schema_refuses_a_session_whose_fields_disagree_with_its_status";
    let Some(store) = store_or_skip(test).await else {
        return;
    };
    let plan = create_plan(&*store, 3).await;
    let session = open(&*store, &opening(plan.id(), "alice", "k", now())).await;
    let id = session.id().as_uuid();
    for set in [
        "ended_at = now()",
        "check_at = NULL",
        "status = 'complete', ended_at = now()",
        "status = 'expired', ended_at = now()",
        "status = 'closed'",
        "expiry = 'whenever'",
        "payment_intent_id = 'pi_1'",
        "late_payment_id = 'pi_1'",
        "expires_at = created_at",
    ] {
        let sql = format!("UPDATE checkout_sessions SET {set} WHERE id = '{id}'");
        match sqlx::query(&sql).execute(store.pool()).await {
            Err(sqlx::Error::Database(e)) => {
                assert_eq!(e.code().as_deref(), Some("23514"), "{sql}: {e}")
            }
            other => panic!("`{sql}` should be refused, got {other:?}"),
        }
    }
    assert_eq!(
        store.get_checkout(session.id()).await.unwrap(),
        Some(session)
    );
}
