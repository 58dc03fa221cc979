//! The schema's references, checked once per statement (migration
//! `20261128000001_statement_references.sql`): the database still refuses any row that
//! names a plan or subscription that does not exist, one bad row fails its whole
//! statement, what is referred to can never be removed, the audit log is append-only, and
//! the checks find rows by index whatever the table statistics say. An audit entry may
//! name the subscription a checkout session may become (migration
//! `20261207000001_checkout_sessions.sql`).

use seatkeeper_store_postgres::{testing::TestDatabases, PostgresStore};
use sqlx::{pool::PoolConnection, Postgres};
use uuid::Uuid;

/// A store on a fresh database and one of its connections (the store keeps the database).
async fn connect(test: &str) -> Option<(PostgresStore, PoolConnection<Postgres>)> {
    let dbs = TestDatabases::for_test(test).await?;
    let store = dbs.fresh_store().await;
    let c = store.pool().acquire().await.expect("a connection");
    Some((store, c))
}

/// The SQLSTATE a statement failed with.
async fn refused(c: &mut PoolConnection<Postgres>, sql: &str) -> String {
    match sqlx::query(sql).execute(&mut **c).await {
        Ok(done) => panic!(
            "the database accepted `{sql}` ({} rows)",
            done.rows_affected()
        ),
        Err(sqlx::Error::Database(e)) => e.code().expect("a SQLSTATE").into_owned(),
        Err(e) => panic!("`{sql}` failed without a SQLSTATE: {e}"),
    }
}

async fn run(c: &mut PoolConnection<Postgres>, sql: &str) {
    sqlx::query(sql)
        .execute(&mut **c)
        .await
        .unwrap_or_else(|e| panic!("`{sql}`: {e}"));
}

async fn count(c: &mut PoolConnection<Postgres>, table: &str) -> i64 {
    sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&mut **c)
        .await
        .expect("count")
}

fn plan(id: Uuid) -> String {
    format!(
        "INSERT INTO plans (id, name, capacity, seats_left, unit_amount, currency, \"interval\", status, created_at, seq) \
         VALUES ('{id}', 'Starter', 10, 10, 1500, 'usd', 'month', 'active', now(), 1)"
    )
}

fn subscription(id: Uuid, plan: Uuid) -> String {
    format!(
        "INSERT INTO subscriptions (id, plan_id, customer_id, status, payment_method, unit_amount, currency, \
         \"interval\", created_at, updated_at) \
         VALUES ('{id}', '{plan}', 'cus_1', 'incomplete', 'pm_card_visa', 1500, 'usd', 'month', now(), now())"
    )
}

/// Audit entries `seq` = 2, 3, … of `plan`, one per subscription id (`None`: no subscription).
fn audit(plan: Uuid, subscriptions: &[Option<Uuid>]) -> String {
    let rows: Vec<String> = subscriptions
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let s = s.map_or("NULL".to_owned(), |s| format!("'{s}'::uuid"));
            format!(
                "('{plan}'::uuid, {}, '{}'::uuid, now(), 'seat_reserved', {s}, 'test', 'trace', 10, 9)",
                i + 2,
                Uuid::new_v4()
            )
        })
        .collect();
    format!(
        "INSERT INTO audit_entries (plan_id, seq, id, at, action, subscription_id, actor, trace_id, \
         seats_left_before, seats_left_after) VALUES {}",
        rows.join(", ")
    )
}

/// An open checkout session of `plan` holding a seat for the future subscription `sub`.
fn session(id: Uuid, plan: Uuid, sub: Uuid) -> String {
    format!(
        "INSERT INTO checkout_sessions (id, plan_id, customer_id, subscription_id, idempotency_key, fingerprint, \
         amount, currency, status, intent_closed, created_at, expires_at, updated_at, check_at) \
         VALUES ('{id}', '{plan}', 'cus_1', '{sub}', 'k-{id}', 'f', 1500, 'usd', 'open', false, now(), \
         now() + interval '30 minutes', now(), now() + interval '30 minutes')"
    )
}

fn key(name: &str, recovery: Option<Uuid>) -> String {
    let recovery = recovery.map_or("NULL".to_owned(), |s| format!("'{s}'::uuid"));
    format!(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, state, recovery_subscription_id, created_at, expires_at) \
         VALUES ('cus_1', '{name}', 'f', 'open', {recovery}, now(), now() + interval '1 day')"
    )
}

#[tokio::test]
async fn rows_that_name_a_missing_plan_or_subscription_are_refused() {
    let Some((_store, mut c)) =
        connect("rows_that_name_a_missing_plan_or_subscription_are_refused").await
    else {
        return;
    };
    let (p, s, missing) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    run(&mut c, &plan(p)).await;
    run(&mut c, &subscription(s, p)).await;

    assert_eq!(
        refused(&mut c, &subscription(Uuid::new_v4(), missing)).await,
        "23503"
    );
    assert_eq!(refused(&mut c, &audit(missing, &[None])).await, "23503");
    assert_eq!(refused(&mut c, &audit(p, &[Some(missing)])).await, "23503");
    assert_eq!(refused(&mut c, &key("k1", Some(missing))).await, "23503");
    run(&mut c, &key("k2", None)).await;
    assert_eq!(
        refused(
            &mut c,
            &format!("UPDATE idempotency_keys SET recovery_subscription_id = '{missing}' WHERE key = 'k2'")
        )
        .await,
        "23503"
    );

    // What names rows that exist is accepted.
    run(&mut c, &audit(p, &[Some(s), None])).await;
    run(&mut c, &key("k3", Some(s))).await;
    run(
        &mut c,
        &format!("UPDATE idempotency_keys SET recovery_subscription_id = '{s}' WHERE key = 'k2'"),
    )
    .await;
    assert_eq!(count(&mut c, "subscriptions").await, 1);
    assert_eq!(count(&mut c, "audit_entries").await, 2);
}

/// A hold's audit entries name the subscription its session may become, which does not
/// exist (yet, or ever): the session's `subscription_id` is accepted in its place, at
/// write time. A session names a plan that exists and keeps its plan and subscription id.
#[tokio::test]
async fn audit_entries_may_name_the_subscription_of_a_checkout_session() {
    let Some((_store, mut c)) =
        connect("audit_entries_may_name_the_subscription_of_a_checkout_session").await
    else {
        return;
    };
    let (p, other, cs, future, missing) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    run(&mut c, &plan(p)).await;
    run(&mut c, &plan(other)).await;
    assert_eq!(
        refused(&mut c, &session(Uuid::new_v4(), missing, Uuid::new_v4())).await,
        "23503"
    );
    run(&mut c, &session(cs, p, future)).await;
    run(&mut c, &audit(p, &[Some(future)])).await;
    assert_eq!(
        refused(&mut c, &audit(other, &[Some(missing)])).await,
        "23503"
    );
    for sql in [
        format!("UPDATE checkout_sessions SET plan_id = '{other}' WHERE id = '{cs}'"),
        format!("UPDATE checkout_sessions SET subscription_id = '{missing}' WHERE id = '{cs}'"),
        format!(
            "UPDATE checkout_sessions SET id = '{}' WHERE id = '{cs}'",
            Uuid::new_v4()
        ),
    ] {
        assert_eq!(refused(&mut c, &sql).await, "23001", "{sql}");
    }
    // The check holds at write time: a purged session leaves its entries in the log.
    run(
        &mut c,
        &format!("DELETE FROM checkout_sessions WHERE id = '{cs}'"),
    )
    .await;
    assert_eq!(count(&mut c, "audit_entries").await, 1);
    assert_eq!(
        refused(&mut c, &audit(other, &[Some(future)])).await,
        "23503"
    );
}

#[tokio::test]
async fn one_bad_row_among_many_fails_its_whole_statement() {
    let Some((_store, mut c)) = connect("one_bad_row_among_many_fails_its_whole_statement").await
    else {
        return;
    };
    let p = Uuid::new_v4();
    run(&mut c, &plan(p)).await;
    let mut subs = Vec::new();
    for _ in 0..50 {
        let s = Uuid::new_v4();
        run(&mut c, &subscription(s, p)).await;
        subs.push(Some(s));
    }
    subs.insert(37, Some(Uuid::new_v4()));
    assert_eq!(refused(&mut c, &audit(p, &subs)).await, "23503");
    assert_eq!(count(&mut c, "audit_entries").await, 0);
}

/// The batches write several tables, and one table twice, in one statement of
/// data-modifying `WITH` parts: every part's rows are checked.
#[tokio::test]
async fn every_part_of_a_statement_of_with_parts_is_checked() {
    let Some((_store, mut c)) = connect("every_part_of_a_statement_of_with_parts_is_checked").await
    else {
        return;
    };
    let (p, s, missing) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    run(&mut c, &plan(p)).await;
    run(&mut c, &subscription(s, p)).await;
    run(&mut c, &key("k1", None)).await;
    run(&mut c, &key("k2", None)).await;
    let two_updates = |first: Uuid, second: Uuid| {
        format!(
            "WITH a AS (UPDATE idempotency_keys SET recovery_subscription_id = '{first}' WHERE key = 'k1'), \
             b AS (UPDATE idempotency_keys SET recovery_subscription_id = '{second}' WHERE key = 'k2') \
             SELECT 1"
        )
    };
    assert_eq!(refused(&mut c, &two_updates(s, missing)).await, "23503");
    assert_eq!(refused(&mut c, &two_updates(missing, s)).await, "23503");
    let insert_and_audit = format!(
        "WITH a AS ({}), b AS ({}) SELECT 1",
        subscription(Uuid::new_v4(), p),
        audit(p, &[Some(missing)])
    );
    assert_eq!(refused(&mut c, &insert_and_audit).await, "23503");
    run(&mut c, &two_updates(s, s)).await;
    assert_eq!(count(&mut c, "subscriptions").await, 1);
}

#[tokio::test]
async fn plans_and_subscriptions_stay_and_the_audit_log_is_append_only() {
    let Some((_store, mut c)) =
        connect("plans_and_subscriptions_stay_and_the_audit_log_is_append_only").await
    else {
        return;
    };
    let (p, other, s) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    run(&mut c, &plan(p)).await;
    run(&mut c, &plan(other)).await;
    run(&mut c, &subscription(s, p)).await;
    run(&mut c, &audit(p, &[Some(s)])).await;

    for sql in [
        format!("DELETE FROM plans WHERE id = '{other}'"),
        "TRUNCATE plans CASCADE".to_owned(),
        format!(
            "UPDATE plans SET id = '{}' WHERE id = '{p}'",
            Uuid::new_v4()
        ),
        format!("DELETE FROM subscriptions WHERE id = '{s}'"),
        format!("UPDATE subscriptions SET plan_id = '{other}' WHERE id = '{s}'"),
        format!(
            "UPDATE subscriptions SET id = '{}' WHERE id = '{s}'",
            Uuid::new_v4()
        ),
        "UPDATE audit_entries SET seats_left_after = 3".to_owned(),
        "DELETE FROM audit_entries".to_owned(),
        "TRUNCATE audit_entries".to_owned(),
    ] {
        assert_eq!(refused(&mut c, &sql).await, "23001", "{sql}");
    }
    assert_eq!(count(&mut c, "plans").await, 2);
    assert_eq!(count(&mut c, "subscriptions").await, 1);
    assert_eq!(count(&mut c, "audit_entries").await, 1);
    // What the store does change still changes.
    run(
        &mut c,
        &format!("UPDATE plans SET seats_left = 9, seq = 2 WHERE id = '{p}'"),
    )
    .await;
    run(
        &mut c,
        &format!("UPDATE subscriptions SET status = 'incomplete_expired' WHERE id = '{s}'"),
    )
    .await;
}

/// Sequential scans of plans, subscriptions and checkout sessions so far (the statistics
/// flushed first).
async fn seq_scans(c: &mut PoolConnection<Postgres>) -> i64 {
    run(c, "SELECT pg_stat_force_next_flush()").await;
    run(c, "SELECT pg_stat_clear_snapshot()").await;
    sqlx::query_scalar(
        "SELECT sum(seq_scan)::bigint FROM pg_stat_user_tables WHERE relname IN ('plans', 'subscriptions', 'checkout_sessions')",
    )
    .fetch_one(&mut **c)
    .await
    .expect("seq_scan counts")
}

/// The checks' plans are made once per connection. Made while the tables are tiny and
/// freshly analyzed, a plan by cost alone would scan them whole — and keep doing so when
/// they hold millions of rows. The checks never scan a referenced table.
#[tokio::test]
async fn the_checks_find_rows_by_index_even_with_the_statistics_of_tiny_tables() {
    let Some((_store, mut c)) =
        connect("the_checks_find_rows_by_index_even_with_the_statistics_of_tiny_tables").await
    else {
        return;
    };
    let p = Uuid::new_v4();
    run(&mut c, &plan(p)).await;
    let s = Uuid::new_v4();
    run(&mut c, &subscription(s, p)).await;
    let cs = Uuid::new_v4();
    run(&mut c, &session(cs, p, Uuid::new_v4())).await;
    run(&mut c, "ANALYZE plans, subscriptions, checkout_sessions").await;
    let before = seq_scans(&mut c).await;
    for n in 0..20 {
        // A hold's entry, naming the subscription its session may become.
        let future = Uuid::new_v4();
        run(&mut c, &session(Uuid::new_v4(), p, future)).await;
        run(
            &mut c,
            &format!(
                "INSERT INTO audit_entries (plan_id, seq, id, at, action, subscription_id, actor, trace_id, \
                 seats_left_before, seats_left_after) \
                 VALUES ('{p}', {}, '{}', now(), 'seat_held', '{future}', 'test', 'trace', 10, 9)",
                n + 100,
                Uuid::new_v4()
            ),
        )
        .await;
        let s = Uuid::new_v4();
        run(&mut c, &subscription(s, p)).await;
        run(
            &mut c,
            &format!(
                "INSERT INTO audit_entries (plan_id, seq, id, at, action, subscription_id, actor, trace_id, \
                 seats_left_before, seats_left_after) \
                 VALUES ('{p}', {}, '{}', now(), 'seat_reserved', '{s}', 'test', 'trace', 10, 9)",
                n + 2,
                Uuid::new_v4()
            ),
        )
        .await;
        run(&mut c, &key(&format!("k{n}"), Some(s))).await;
    }
    assert_eq!(
        seq_scans(&mut c).await,
        before,
        "a reference check scanned plans, subscriptions or checkout sessions whole"
    );
}
