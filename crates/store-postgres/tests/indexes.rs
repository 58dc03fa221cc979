//! Every query on the purchase path and behind the API can use an index: with sequential
//! scans disabled, none of their plans falls back to one. (On tiny test tables the planner
//! would pick sequential scans by cost; disabling them asks "is there an index at all?".)

use seatkeeper_store_postgres::testing::TestDatabases;

const QUERIES: &[(&str, &str)] = &[
    ("claim: lock the key", "SELECT * FROM idempotency_keys WHERE scope = 'c' AND key = 'k' FOR UPDATE"),
    ("batch: lock the keys", "SELECT * FROM idempotency_keys WHERE (scope, key) IN (SELECT * FROM UNNEST('{c}'::text[], '{k}'::text[])) ORDER BY scope, key FOR UPDATE"),
    ("batch: lock the plans", "SELECT * FROM plans WHERE id = ANY('{00000000-0000-0000-0000-000000000000}'::uuid[]) ORDER BY id FOR UPDATE"),
    ("batch: write the plans", "UPDATE plans p SET seats_left = u.seats_left, seq = u.seq FROM UNNEST('{00000000-0000-0000-0000-000000000000}'::uuid[], '{1}'::int[], '{2}'::bigint[]) AS u(id, seats_left, seq) WHERE p.id = u.id"),
    ("reserve: recovery points", "UPDATE idempotency_keys k SET recovery_subscription_id = u.sub FROM UNNEST('{c}'::text[], '{k}'::text[], '{00000000-0000-0000-0000-000000000000}'::uuid[]) AS u(scope, key, sub) WHERE k.scope = u.scope AND k.key = u.key"),
    ("complete: lock the keys, then the subscriptions", "WITH k AS (SELECT 1 FROM idempotency_keys WHERE (scope, key) IN (SELECT customer_id, idempotency_key FROM subscriptions WHERE id = ANY('{00000000-0000-0000-0000-000000000000}'::uuid[]) AND idempotency_key IS NOT NULL) ORDER BY scope, key FOR UPDATE) SELECT * FROM subscriptions WHERE id = ANY('{00000000-0000-0000-0000-000000000000}'::uuid[]) AND (SELECT count(*) FROM k) >= 0 ORDER BY id FOR UPDATE"),
    ("complete: write the subscriptions", "UPDATE subscriptions s SET status = u.status FROM UNNEST('{00000000-0000-0000-0000-000000000000}'::uuid[], '{active}'::text[]) AS u(id, status) WHERE s.id = u.id"),
    ("complete: end recovery tasks", "DELETE FROM recovery_tasks t USING UNNEST('{00000000-0000-0000-0000-000000000000}'::uuid[]) AS u(id) WHERE t.subscription_id = u.id"),
    ("batch: finish keys", "UPDATE idempotency_keys k SET state = 'finished' FROM UNNEST('{c}'::text[], '{k}'::text[], '{00000000-0000-0000-0000-000000000000}'::uuid[]) AS u(scope, key, purchase) WHERE k.scope = u.scope AND k.key = u.key AND k.state = 'open' AND (u.purchase IS NULL OR k.recovery_subscription_id = u.purchase)"),
    ("stats: counts by status", "SELECT status, count(*) FROM subscriptions WHERE plan_id = '00000000-0000-0000-0000-000000000000' GROUP BY status"),
    ("audit: a page of the log", "SELECT * FROM audit_entries WHERE plan_id = '00000000-0000-0000-0000-000000000000' AND seq > 5 ORDER BY seq LIMIT 20"),
    ("customer: a page of subscriptions", "SELECT * FROM subscriptions WHERE customer_id = 'c' AND id > '00000000-0000-0000-0000-000000000000' ORDER BY id LIMIT 20"),
    ("plans: a page", "SELECT * FROM plans WHERE id > '00000000-0000-0000-0000-000000000000' ORDER BY id LIMIT 20"),
    ("sweep: expired keys", "DELETE FROM idempotency_keys WHERE expires_at <= now()"),
    ("checkout: the session of a key", "SELECT * FROM checkout_sessions WHERE customer_id = 'c' AND idempotency_key = 'k'"),
    ("checkout: a customer's open sessions on a plan", "SELECT id FROM checkout_sessions WHERE plan_id = '00000000-0000-0000-0000-000000000000' AND customer_id = 'c' AND status = 'open' ORDER BY id"),
    ("checkout: lock a session", "SELECT * FROM checkout_sessions WHERE id = '00000000-0000-0000-0000-000000000000' FOR UPDATE"),
    ("checkout: write a session", "UPDATE checkout_sessions SET status = 'expired' WHERE id = '00000000-0000-0000-0000-000000000000'"),
    ("stats: held seats", "SELECT count(*) FROM checkout_sessions WHERE plan_id = '00000000-0000-0000-0000-000000000000' AND status = 'open'"),
    ("availability: the plan and its held seats", "SELECT id, seats_left, seq, (SELECT count(*) FROM checkout_sessions s WHERE s.plan_id = plans.id AND s.status = 'open') AS held FROM plans WHERE id = '00000000-0000-0000-0000-000000000000'"),
    ("checkout: due sessions", "SELECT * FROM checkout_sessions WHERE check_at <= now() ORDER BY check_at, id LIMIT 20"),
    ("purge: ended sessions", "DELETE FROM checkout_sessions WHERE check_at IS NULL AND ended_at < now()"),
    ("purge: old webhook events", "DELETE FROM webhook_events WHERE received_at < now()"),
    ("webhook: release an event", "DELETE FROM webhook_events WHERE id = 'evt_1'"),
];

#[tokio::test]
async fn no_query_of_the_api_needs_a_sequential_scan() {
    let Some(dbs) = TestDatabases::for_test("no_query_of_the_api_needs_a_sequential_scan").await
    else {
        return;
    };
    let store = dbs.fresh_store().await;
    // The store's connections have sequential scans off: whatever is left is a table
    // without a usable index.
    let mut conn = store.pool().acquire().await.expect("a connection");
    for (what, sql) in QUERIES {
        assert_no_seq_scan(&mut conn, what, &format!("EXPLAIN {sql}")).await;
    }
}

/// Fails when the plan `explain` prints scans a table whole; returns the plan.
async fn assert_no_seq_scan(conn: &mut sqlx::PgConnection, what: &str, explain: &str) -> String {
    let plan: Vec<String> = sqlx::query_scalar(explain)
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{explain} ({what}): {e}"));
    let plan = plan.join("\n");
    assert!(
        !plan.contains("Seq Scan"),
        "{what} scans a table whole:\n{plan}"
    );
    plan
}

/// The completion batch's first statement, which locks the keys and then the
/// subscriptions.
const COMPLETION_LOCKS: &str = "complete: lock the keys, then the subscriptions";

/// The checkout batch's read of its sessions: each part on its own index.
const CHECKOUT_BATCH_READ: &str =
    "checkout batch: the changed sessions, the openings' keys and open sessions";

/// The checkout batch's first statement, which locks the changed sessions and then the
/// plans.
const CHECKOUT_BATCH_LOCKS: &str = "checkout batch: lock the sessions, then the plans";

/// The batch statements as the store sends them: with parameters, planned once per
/// connection (a generic plan).
const PREPARED: &[(&str, &str, &str)] = &[
    (
        "batch: lock the keys",
        "SELECT * FROM idempotency_keys WHERE (scope, key) IN (SELECT * FROM UNNEST($1::text[], $2::text[])) ORDER BY scope, key FOR UPDATE",
        "('{c,d}', '{k,l}')",
    ),
    (
        "batch: lock the plans",
        "SELECT * FROM plans WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        "('{00000000-0000-0000-0000-000000000000}')",
    ),
    (
        "reserve: recovery points",
        "UPDATE idempotency_keys k SET recovery_subscription_id = u.sub FROM UNNEST($1::text[], $2::text[], $3::uuid[]) AS u(scope, key, sub) WHERE k.scope = u.scope AND k.key = u.key",
        "('{c}', '{k}', '{00000000-0000-0000-0000-000000000000}')",
    ),
    (
        COMPLETION_LOCKS,
        "WITH k AS (SELECT 1 FROM idempotency_keys WHERE (scope, key) IN (SELECT customer_id, idempotency_key FROM subscriptions WHERE id = ANY($1) AND idempotency_key IS NOT NULL) ORDER BY scope, key FOR UPDATE) SELECT * FROM subscriptions WHERE id = ANY($1) AND (SELECT count(*) FROM k) >= 0 ORDER BY id FOR UPDATE",
        "('{00000000-0000-0000-0000-000000000000}')",
    ),
    (
        "complete: write the subscriptions",
        "UPDATE subscriptions s SET status = u.status FROM UNNEST($1::uuid[], $2::text[]) AS u(id, status) WHERE s.id = u.id",
        "('{00000000-0000-0000-0000-000000000000}', '{active}')",
    ),
    (
        "batch: finish keys",
        "UPDATE idempotency_keys k SET state = 'finished' FROM UNNEST($1::text[], $2::text[], $3::uuid[]) AS u(scope, key, purchase) WHERE k.scope = u.scope AND k.key = u.key AND k.state = 'open' AND (u.purchase IS NULL OR k.recovery_subscription_id = u.purchase)",
        "('{c}', '{k}', '{00000000-0000-0000-0000-000000000000}')",
    ),
    (
        "checkout: a customer's open sessions on a plan",
        "SELECT id FROM checkout_sessions WHERE plan_id = $1 AND customer_id = $2 AND status = 'open' ORDER BY id",
        "('00000000-0000-0000-0000-000000000000', 'c')",
    ),
    (
        CHECKOUT_BATCH_READ,
        "SELECT * FROM checkout_sessions WHERE id = ANY($1) UNION ALL SELECT * FROM checkout_sessions WHERE (customer_id, idempotency_key) IN (SELECT * FROM UNNEST($2::text[], $3::text[])) UNION ALL SELECT * FROM checkout_sessions WHERE status = 'open' AND (plan_id, customer_id) IN (SELECT * FROM UNNEST($4::uuid[], $2::text[]))",
        "('{00000000-0000-0000-0000-000000000002}', '{c,d}', '{k,l}', '{00000000-0000-0000-0000-000000000000,00000000-0000-0000-0000-000000000001}')",
    ),
    (
        CHECKOUT_BATCH_LOCKS,
        "WITH s AS (SELECT 1 FROM checkout_sessions WHERE id = ANY($1) ORDER BY id FOR UPDATE) SELECT * FROM plans WHERE id = ANY($2::uuid[] || ARRAY(SELECT plan_id FROM checkout_sessions WHERE id = ANY($3))) AND (SELECT count(*) FROM s) >= 0 ORDER BY id FOR UPDATE",
        "('{00000000-0000-0000-0000-000000000002}', '{00000000-0000-0000-0000-000000000000}', '{00000000-0000-0000-0000-000000000002}')",
    ),
    (
        "checkout batch: lock the changed sessions",
        "SELECT * FROM checkout_sessions WHERE id = ANY($1) ORDER BY id FOR UPDATE",
        "('{00000000-0000-0000-0000-000000000000}')",
    ),
    (
        "session changes: the guarded write",
        "UPDATE checkout_sessions s SET status = u.status, updated_at = u.updated_at FROM UNNEST($1::uuid[], $2::text[], $3::timestamptz[], $4::text[], $5::timestamptz[]) AS u(id, status, updated_at, o_status, o_updated_at) WHERE s.id = u.id AND (s.status, s.updated_at) IS NOT DISTINCT FROM (u.o_status, u.o_updated_at) RETURNING s.id",
        "('{00000000-0000-0000-0000-000000000000}', '{open}', array[now()], '{open}', array[now()])",
    ),
    (
        "stats: held seats",
        "SELECT count(*) FROM checkout_sessions WHERE plan_id = $1 AND status = 'open'",
        "('00000000-0000-0000-0000-000000000000')",
    ),
    (
        "availability: the plan and its held seats",
        "SELECT id, seats_left, seq, (SELECT count(*) FROM checkout_sessions s WHERE s.plan_id = plans.id AND s.status = 'open') AS held FROM plans WHERE id = $1",
        "('00000000-0000-0000-0000-000000000000')",
    ),
    (
        "checkout: due sessions",
        "SELECT * FROM checkout_sessions WHERE check_at <= $1 ORDER BY check_at, id LIMIT $2",
        "(now(), 20)",
    ),
    (
        "purge: ended sessions",
        "DELETE FROM checkout_sessions WHERE check_at IS NULL AND ended_at < $1",
        "(now())",
    ),
    (
        "batch: write the plans",
        "UPDATE plans p SET seats_left = u.seats_left, seq = u.seq FROM UNNEST($1::uuid[], $2::int[], $3::bigint[]) AS u(id, seats_left, seq) WHERE p.id = u.id",
        "('{00000000-0000-0000-0000-000000000000}', '{1}', '{2}')",
    ),
];

/// Statements of `PREPARED` that a scan of a wrong index would still serve without a
/// sequential scan (a walk of the whole primary key to save a sort), and the index each
/// must use.
const EXPECTED_INDEX: &[(&str, &str)] = &[
    (
        "checkout: a customer's open sessions on a plan",
        "Index Only Scan using checkout_sessions_open",
    ),
    ("stats: held seats", "using checkout_sessions_open"),
    (
        "availability: the plan and its held seats",
        "using checkout_sessions_open",
    ),
    ("checkout: due sessions", "using checkout_sessions_due"),
    ("purge: ended sessions", "using checkout_sessions_ended"),
];

/// The store's connections plan each statement once (a generic plan) and never scan a
/// table whole where an index serves. A generic plan is made from the statistics of its
/// moment: made by cost alone on a young database, the batch statements joined their
/// arrays to the key and subscription tables with sequential scans and kept them as the
/// tables grew to millions of rows. Here the plans are made on freshly analyzed, nearly
/// empty tables, the worst moment, and none scans.
#[tokio::test]
async fn generic_plans_made_on_a_young_database_never_scan_a_table_whole() {
    let Some(dbs) =
        TestDatabases::for_test("generic_plans_made_on_a_young_database_never_scan_a_table_whole")
            .await
    else {
        return;
    };
    let store = dbs.fresh_store().await;
    let mut conn = store.pool().acquire().await.expect("a connection");
    let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
        .fetch_one(&mut *conn)
        .await
        .expect("SHOW plan_cache_mode");
    assert_eq!(mode, "force_generic_plan");
    sqlx::query("ANALYZE")
        .execute(&mut *conn)
        .await
        .expect("ANALYZE");
    for (i, (what, sql, args)) in PREPARED.iter().enumerate() {
        sqlx::raw_sql(&format!("PREPARE q{i} AS {sql}"))
            .execute(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("PREPARE {what}: {e}"));
        let plan =
            assert_no_seq_scan(&mut conn, what, &format!("EXPLAIN EXECUTE q{i}{args}")).await;
        if let Some((_, index)) = EXPECTED_INDEX.iter().find(|(w, _)| w == what) {
            assert!(plan.contains(index), "{what} must scan `{index}`:\n{plan}");
        }
        if *what == CHECKOUT_BATCH_READ {
            for index in [
                "checkout_sessions_pkey",
                "checkout_sessions_one_per_key",
                "checkout_sessions_open",
            ] {
                assert!(plan.contains(index), "{what} must scan `{index}`:\n{plan}");
            }
        }
        if *what == CHECKOUT_BATCH_LOCKS {
            // As the completion's: every changed session is locked before the first plan
            // is read, as the store's lock order (sessions, plans) requires.
            assert!(
                plan.contains("One-Time Filter") && plan.contains("CTE Scan on s"),
                "{what} must lock the sessions before it scans the plans:\n{plan}"
            );
        }
        if *what == COMPLETION_LOCKS {
            // The keys' lock is an init plan behind a one-time filter: it runs, locking
            // every key, before the first subscription is read, as the store's lock
            // order (keys, subscriptions, plans) requires.
            assert!(
                plan.contains("One-Time Filter") && plan.contains("CTE Scan on k"),
                "{what} must lock the keys before it scans the subscriptions:\n{plan}"
            );
        }
    }
}
