//! Every query on the purchase path and behind the API can use an index: with sequential
//! scans disabled, none of their plans falls back to one. (On tiny test tables the planner
//! would pick sequential scans by cost; disabling them asks "is there an index at all?".)

use seatkeeper_store_postgres::testing::TestDatabases;

const QUERIES: &[(&str, &str)] = &[
    ("claim: lock the key", "SELECT * FROM idempotency_keys WHERE scope = 'c' AND key = 'k' FOR UPDATE"),
    ("reserve: guarded decrement", "UPDATE plans SET seats_left = seats_left - 1, seq = seq + 1 WHERE id = '00000000-0000-0000-0000-000000000000' AND status = 'active' AND seats_left > 0"),
    ("complete: lock the subscription", "SELECT * FROM subscriptions WHERE id = '00000000-0000-0000-0000-000000000000' FOR UPDATE"),
    ("complete: finish the key", "UPDATE idempotency_keys SET state = 'finished' WHERE scope = 'c' AND key = 'k' AND state = 'open'"),
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
