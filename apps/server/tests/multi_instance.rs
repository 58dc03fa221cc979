//! Several server instances, one database: three `seatkeeper-server` processes share a
//! fresh database, 600 buyers race for 100 seats spread over them, and a key retried
//! against another instance replays instead of charging again. The same test runs on
//! PostgreSQL and on MongoDB.
//!
//! Each is skipped by name (with a message naming `SEATKEEPER_TEST_POSTGRES_URL` or
//! `SEATKEEPER_TEST_MONGODB_URL`) when its database server cannot be reached, except
//! under `CI`, where that fails.

use std::{
    collections::HashMap,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use seatkeeper_domain::{invariants::check_store_plan, PlanId};
use serde_json::{json, Value};
use tokio::sync::Barrier;

mod common;

use common::{
    free_port,
    stores::{DatabaseKind, FreshDatabase},
};

const TOKEN: &str = "multi-instance-admin-token";
const SESSION_SECRET: &str = "multi-instance-session-secret-0123456789";

/// Server processes, killed when dropped.
struct Servers {
    children: Vec<Child>,
    urls: Vec<String>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Starts `n` servers on the database; each one's log goes to
/// `<temp dir>/seatkeeper-multi-instance-<kind>-<port>.log` (printed), so that runs at the
/// same time (other checkouts) keep their own.
async fn start_servers(n: usize, database_url: &str, kind: DatabaseKind) -> Servers {
    let mut servers = Servers {
        children: Vec::new(),
        urls: Vec::new(),
    };
    for i in 0..n {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("seatkeeper-multi-instance-{kind}-{port}.log"));
        eprintln!("instance {i} on {kind} logs to {}", log.display());
        let log = std::fs::File::create(&log).expect("a log file");
        let child = Command::new(env!("CARGO_BIN_EXE_seatkeeper-server"))
            .env("SEATKEEPER_HTTP__ADDR", format!("127.0.0.1:{port}"))
            .env("SEATKEEPER_HTTP__WORKERS", "2")
            .env("SEATKEEPER_STORE__URL", database_url)
            .env("SEATKEEPER_STORE__POOL_SIZE", "8")
            // Correctness, not latency, is measured here: a loaded 2-core machine may
            // queue 600 transactions on one plan row for a while.
            .env("SEATKEEPER_STORE__ACQUIRE_TIMEOUT_MS", "20000")
            .env("SEATKEEPER_AUTH__ADMIN_TOKEN", TOKEN)
            .env("SEATKEEPER_AUTH__SESSION_SECRET", SESSION_SECRET)
            .env("SEATKEEPER_RATE_LIMIT__ENABLED", "false")
            .env("SEATKEEPER_PAYMENTS__LATENCY_MS", "5")
            .env("SEATKEEPER_LOG__LEVEL", "warn")
            .stdout(Stdio::from(log.try_clone().expect("the log file")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start seatkeeper-server");
        servers.children.push(child);
        servers.urls.push(format!("http://127.0.0.1:{port}"));
    }
    let client = reqwest::Client::new();
    for url in &servers.urls {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(res) = client.get(format!("{url}/health/ready")).send().await {
                if res.status() == 200 {
                    break;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{url} never became ready"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    servers
}

async fn purchase(
    client: &reqwest::Client,
    base: &str,
    plan: &str,
    customer: &str,
    key: &str,
) -> reqwest::Response {
    client
        .post(format!("{base}/api/subscriptions/purchase"))
        .header("Idempotency-Key", key)
        .json(&json!({"plan_id": plan, "customer_id": customer, "payment_method": "pm_card_visa"}))
        .send()
        .await
        .expect("purchase request")
}

async fn json_of(res: reqwest::Response) -> Value {
    res.json().await.expect("a JSON body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_on_one_postgres_database_sell_exactly_the_capacity_and_replay_across_instances(
) {
    three_instances_sell_exactly_the_capacity_and_replay_across_instances(DatabaseKind::Postgres)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_on_one_mongodb_database_sell_exactly_the_capacity_and_replay_across_instances(
) {
    three_instances_sell_exactly_the_capacity_and_replay_across_instances(DatabaseKind::Mongo)
        .await;
}

async fn three_instances_sell_exactly_the_capacity_and_replay_across_instances(kind: DatabaseKind) {
    let test = "three_instances_on_one_database_sell_exactly_the_capacity…";
    let Some(db) = FreshDatabase::or_skip(kind, test).await else {
        return;
    };
    let started = std::time::Instant::now();
    let servers = start_servers(3, &db.url, kind).await;
    // A key made on one instance works on every one.
    let key = common::app::make_key(
        &reqwest::Client::new(),
        &servers.urls[0],
        TOKEN,
        "purchases",
    )
    .await;
    let client = common::app::client_with(&key);

    let plan = json_of(
        client
            .post(format!("{}/api/plans", servers.urls[0]))
            .bearer_auth(TOKEN)
            .json(&json!({"name": "Hot", "capacity": 100, "unit_amount": 1000, "currency": "usd", "interval": "month"}))
            .send()
            .await
            .unwrap(),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let barrier = Arc::new(Barrier::new(600));
    let urls = Arc::new(servers.urls.clone());
    let tasks: Vec<_> = (0..600)
        .map(|i| {
            let (client, barrier, urls, plan) =
                (client.clone(), barrier.clone(), urls.clone(), plan.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                // A client retries what is not definitive (503, 409 key in use) with the
                // same key, as the API asks; the count of retries stays small.
                for tries in 1..=30 {
                    let res = purchase(
                        &client,
                        &urls[i % 3],
                        &plan,
                        &format!("cus_{i}"),
                        &format!("order-{i}"),
                    )
                    .await;
                    let status = res.status().as_u16();
                    let body = json_of(res).await;
                    let code = body["code"].as_str().unwrap_or("created").to_owned();
                    if status != 503 && code != "idempotency_key_in_use" {
                        return (i, status, code, tries);
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                panic!("order-{i} got no definitive answer in 30 tries")
            })
        })
        .collect();
    let mut counts: HashMap<(u16, String), usize> = HashMap::new();
    let mut winner = None;
    let mut retries = 0;
    for t in tasks {
        let (i, status, code, tries) = t.await.unwrap();
        if status == 201 && winner.is_none() {
            winner = Some(i);
        }
        *counts.entry((status, code)).or_default() += 1;
        retries += tries - 1;
    }
    eprintln!(
        "{test} on {kind}: 600 buyers answered after {:.1} s: {counts:?}; {retries} retries \
         (503 or key in use)",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(
        counts.get(&(201, "created".into())),
        Some(&100),
        "{counts:?}"
    );
    assert_eq!(
        counts.get(&(409, "plan_sold_out".into())),
        Some(&500),
        "{counts:?}"
    );

    // The same key, sent to another instance, replays: no second charge, no second subscription.
    let i = winner.unwrap();
    let first_instance = &servers.urls[i % 3];
    let other_instance = &servers.urls[(i + 1) % 3];
    let original = client
        .get(format!(
            "{first_instance}/api/customers/cus_{i}/subscriptions"
        ))
        .send()
        .await
        .unwrap();
    let original = json_of(original).await["data"][0].clone();
    let replay = purchase(
        &client,
        other_instance,
        &plan,
        &format!("cus_{i}"),
        &format!("order-{i}"),
    )
    .await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let replayed = json_of(replay).await;
    assert_eq!(replayed["id"], original["id"]);
    assert_eq!(replayed["payment_id"], original["payment_id"]);
    let subs = json_of(
        client
            .get(format!(
                "{other_instance}/api/customers/cus_{i}/subscriptions"
            ))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(subs["data"].as_array().unwrap().len(), 1);

    // The invariants, through the API of every instance and on the database itself.
    for url in &servers.urls {
        let p = json_of(
            client
                .get(format!("{url}/api/plans/{plan}"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(p["seats_left"], 0);
        let s = json_of(
            client
                .get(format!("{url}/api/plans/{plan}/stats"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (s["active"].as_u64(), s["incomplete"].as_u64()),
            (Some(100), Some(0)),
            "{s}"
        );
    }
    let violations = check_store_plan(db.store.as_ref(), plan.parse::<PlanId>().unwrap()).await;
    assert!(violations.is_empty(), "{violations:#?}");

    credentials_hold_across_instances(&servers.urls, &key, i).await;
    drop(servers);
    eprintln!("{test} on {kind}: {:.1} s", started.elapsed().as_secs_f64());
}

/// A customer session made on one instance works on the others (they share the signing
/// secret), for its own customer only; a key revoked on one instance stops working on
/// every instance within a second.
async fn credentials_hold_across_instances(urls: &[String], key: &str, customer: usize) {
    let keyed = common::app::client_with(key);
    let session = json_of(
        keyed
            .post(format!("{}/api/customer_sessions", urls[0]))
            .json(&json!({"customer_id": format!("cus_{customer}")}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let browser = common::app::client_with(session["token"].as_str().unwrap());
    for url in &urls[1..] {
        let own = browser
            .get(format!("{url}/api/customers/cus_{customer}/subscriptions"))
            .send()
            .await
            .unwrap();
        assert_eq!(own.status(), 200, "a session made elsewhere works on {url}");
        let other = browser
            .get(format!(
                "{url}/api/customers/cus_{}/subscriptions",
                customer + 1
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 404, "another customer's list is not found");
    }
    // Each instance has just used the key, so each one holds it in its cache.
    for url in urls {
        let res = keyed
            .get(format!("{url}/api/customers/cus_0/subscriptions"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let id = common::app::find_key_id(&reqwest::Client::new(), &urls[1], TOKEN, key).await;
    let revoked = reqwest::Client::new()
        .delete(format!("{}/api/keys/{id}", urls[1]))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 200);
    let revoked_at = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    for url in urls {
        let res = keyed
            .get(format!("{url}/api/customers/cus_0/subscriptions"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            401,
            "{url} still took the key {:?} after its revocation",
            revoked_at.elapsed()
        );
    }
}
