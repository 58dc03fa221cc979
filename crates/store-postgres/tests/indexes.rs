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
    ("complete: lock the keys of the subscriptions", "SELECT 1 FROM idempotency_keys WHERE (scope, key) IN (SELECT customer_id, idempotency_key FROM subscriptions WHERE id = ANY('{00000000-0000-0000-0000-000000000000}'::uuid[]) AND idempotency_key IS NOT NULL) ORDER BY scope, key FOR UPDATE"),
    ("complete: lock the subscriptions", "SELECT * FROM subscriptions WHERE id = ANY('{00000000-0000-0000-0000-000000000000}'::uuid[]) ORDER BY id FOR UPDATE"),
    ("complete: write the subscriptions", "UPDATE subscriptions s SET status = u.status FROM UNNEST('{00000000-0000-0000-0000-000000000000}'::uuid[], '{active}'::text[]) AS u(id, status) WHERE s.id = u.id"),
    ("complete: end recovery tasks", "DELETE FROM recovery_tasks t USING UNNEST('{00000000-0000-0000-0000-000000000000}'::uuid[]) AS u(id) WHERE t.subscription_id = u.id"),
    ("batch: finish keys", "UPDATE idempotency_keys k SET state = 'finished' FROM UNNEST('{c}'::text[], '{k}'::text[], '{00000000-0000-0000-0000-000000000000}'::uuid[]) AS u(scope, key, purchase) WHERE k.scope = u.scope AND k.key = u.key AND k.state = 'open' AND (u.purchase IS NULL OR k.recovery_subscription_id = u.purchase)"),
    ("stats: counts by status", "SELECT status, count(*) FROM subscriptions WHERE plan_id = '00000000-0000-0000-0000-000000000000' GROUP BY status"),
    ("audit: a page of the log", "SELECT * FROM audit_entries WHERE plan_id = '00000000-0000-0000-0000-000000000000' AND seq > 5 ORDER BY seq LIMIT 20"),
    ("customer: a page of subscriptions", "SELECT * FROM subscriptions WHERE customer_id = 'c' AND id > '00000000-0000-0000-0000-000000000000' ORDER BY id LIMIT 20"),
    ("plans: a page", "SELECT * FROM plans WHERE id > '00000000-0000-0000-0000-000000000000' ORDER BY id LIMIT 20"),
    ("sweep: expired keys", "DELETE FROM idempotency_keys WHERE expires_at <= now()"),
];

#[tokio::test]
async fn no_query_of_the_api_needs_a_sequential_scan() {
    let dbs = match TestDatabases::connect().await {
        Ok(dbs) => dbs,
        Err(reason) => {
            eprintln!("skipped no_query_of_the_api_needs_a_sequential_scan: {reason}");
            return;
        }
    };
    let store = dbs.fresh_store().await;
    let mut conn = store.pool().acquire().await.expect("a connection");
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .expect("disable sequential scans");
    for (what, sql) in QUERIES {
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {sql}"))
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_else(|e| panic!("EXPLAIN {what}: {e}"));
        let plan = plan.join("\n");
        assert!(
            !plan.contains("Seq Scan"),
            "{what} needs a sequential scan:\n{plan}"
        );
    }
}

/// A cached generic plan is made from the table sizes of the moment it is made: on a young
/// database the batch statements would keep sequential scans as the tables grow. The
/// store's connections plan each statement for its parameters and the tables as they are.
#[tokio::test]
async fn the_store_plans_every_statement_for_the_tables_as_they_are() {
    let dbs = match TestDatabases::connect().await {
        Ok(dbs) => dbs,
        Err(reason) => {
            eprintln!(
                "skipped the_store_plans_every_statement_for_the_tables_as_they_are: {reason}"
            );
            return;
        }
    };
    let store = dbs.fresh_store().await;
    let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
        .fetch_one(store.pool())
        .await
        .expect("SHOW plan_cache_mode");
    assert_eq!(mode, "force_custom_plan");
}
