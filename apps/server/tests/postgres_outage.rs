//! The server on PostgreSQL through a TCP proxy that the test can cut: while the database
//! is unreachable, readiness and purchases answer 503 problems (never 500, never a hang
//! past the acquire timeout), nothing is half written, and the server recovers by itself
//! when the database comes back.
//!
//! Skipped (with a message naming `SEATKEEPER_TEST_POSTGRES_URL`) when PostgreSQL cannot
//! be reached, except under `CI`, where that fails.

use std::{sync::Arc, time::Duration};

use seatkeeper_domain::{invariants::check_store_plan, PlanId};
use seatkeeper_store_postgres::{testing::TestDatabases, PostgresSettings, PostgresStore};
use serde_json::{json, Value};
use sqlx::{postgres::PgConnectOptions, ConnectOptions};

mod common;

use common::Proxy;

const TOKEN: &str = "outage-test-admin-token";

async fn purchase(
    client: &reqwest::Client,
    base: &str,
    plan: &str,
    key: &str,
) -> reqwest::Response {
    client
        .post(format!("{base}/api/subscriptions/purchase"))
        .header("Idempotency-Key", key)
        .json(&json!({"plan_id": plan, "customer_id": "cus_1", "payment_method": "pm_card_visa"}))
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn while_postgres_is_unreachable_the_server_answers_503_and_recovers_by_itself() {
    let dbs = match TestDatabases::connect().await {
        Ok(dbs) => dbs,
        Err(reason) => {
            eprintln!("skipped while_postgres_is_unreachable…: {reason}");
            return;
        }
    };
    let (direct, url) = dbs.fresh_store_with_url().await;
    let options: PgConnectOptions = url.parse().unwrap();
    let proxy = Proxy::start(format!("{}:{}", options.get_host(), options.get_port())).await;
    let proxied = options.port(proxy.port).to_url_lossy().to_string();

    let store = PostgresStore::connect(&PostgresSettings {
        url: proxied,
        max_connections: 4,
        acquire_timeout: Duration::from_millis(1500),
    })
    .await
    .unwrap();
    let base = common::app::serve(Arc::new(store), TOKEN, |_| {}).await;
    let client = common::app::client_with(TOKEN);
    let plan = common::app::create_plan(&client, &base, TOKEN, 5).await;
    assert_eq!(
        purchase(&client, &base, &plan, "before").await.status(),
        201
    );

    proxy.cut();
    let started = std::time::Instant::now();
    let ready = client
        .get(format!("{base}/health/ready"))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    assert_eq!(ready.headers()["content-type"], "application/problem+json");
    for key in ["during-1", "during-2"] {
        let res = purchase(&client, &base, &plan, key).await;
        assert_eq!(res.status(), 503);
        assert!(res.headers().contains_key("retry-after"));
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["code"], "store_unavailable", "{problem}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "requests hung while the database was away"
    );

    proxy.restore();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let res = client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .unwrap();
        if res.status() == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server did not recover"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The failed purchases left nothing behind: a retry with the same key runs once.
    assert_eq!(
        purchase(&client, &base, &plan, "during-1").await.status(),
        201
    );
    let stats: Value = client
        .get(format!("{base}/api/plans/{plan}/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (stats["active"].as_u64(), stats["seats_left"].as_u64()),
        (Some(2), Some(3)),
        "{stats}"
    );
    let violations = check_store_plan(&direct, plan.parse::<PlanId>().unwrap()).await;
    assert!(violations.is_empty(), "{violations:#?}");
}
