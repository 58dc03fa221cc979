//! The server on a MongoDB replica set whose `mongod` is killed (`kill -9`) in the middle
//! of a load of purchases and started again a few seconds later: while it is gone,
//! readiness and purchases answer 503 problems with `Retry-After` (never 500, never a
//! hang), and when it is back the server recovers by itself — purchases sell again, a
//! failed purchase retried with its key runs once, and the plan's invariants hold, audit
//! replay included.
//!
//! The `mongod` is a private one (`common::mongod`), not the shared replica set other
//! tests use. Skipped by name when no `mongod` binary is at hand, except under `CI`.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use seatkeeper_domain::{invariants::check_store_plan, PlanId};
use seatkeeper_store_mongo::{MongoSettings, MongoStore};
use serde_json::{json, Value};

mod common;

use common::mongod::Mongod;

const TOKEN: &str = "mongod-kill-test-admin-token";

/// One answer the load got.
#[derive(Debug, Clone)]
struct Answer {
    key: String,
    sent: Instant,
    took: Duration,
    status: u16,
    problem: bool,
    retry_after: bool,
    code: String,
}

async fn purchase(http: &reqwest::Client, base: &str, plan: &str, key: &str) -> Answer {
    let sent = Instant::now();
    let res = http
        .post(format!("{base}/api/subscriptions/purchase"))
        .header("Idempotency-Key", key)
        .json(&json!({"plan_id": plan, "customer_id": format!("cus_{key}"), "payment_method": "pm_card_visa"}))
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap_or_else(|e| panic!("purchase {key}: no answer after {:?}: {e}", sent.elapsed()));
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body: Value = res.json().await.unwrap_or(Value::Null);
    Answer {
        key: key.to_owned(),
        sent,
        took: sent.elapsed(),
        status,
        problem: headers
            .get("content-type")
            .is_some_and(|v| v == "application/problem+json"),
        retry_after: headers.contains_key("retry-after"),
        code: body["code"].as_str().unwrap_or_default().to_owned(),
    }
}

async fn ready(http: &reqwest::Client, base: &str) -> (u16, bool) {
    let res = http
        .get(format!("{base}/health/ready"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let problem = res
        .headers()
        .get("content-type")
        .is_some_and(|v| v == "application/problem+json");
    (res.status().as_u16(), problem)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn while_mongod_is_killed_mid_load_the_server_answers_503_problems_and_recovers_by_itself_when_it_is_back(
) {
    let binary = match Mongod::binary() {
        Ok(binary) => binary,
        Err(reason) => {
            eprintln!("skipped while_mongod_is_killed_mid_load: {reason}");
            return;
        }
    };
    let mut mongod = Mongod::start(binary).await;
    let mut store_settings = MongoSettings::new(mongod.url("seatkeeper"));
    store_settings.server_selection_timeout = Duration::from_millis(1000);
    let store = MongoStore::connect(&store_settings).await.unwrap();
    // A purchase cut off after its key was claimed keeps the key's lock until the lease
    // ends (its release failed too): its retry waits that long.
    let base = common::app::serve(Arc::new(store), TOKEN, |settings| {
        settings.idempotency.lock_lease_ms = 2000;
    })
    .await;
    let http = common::app::client_with(TOKEN);
    let plan = common::app::create_plan(&http, &base, TOKEN, 100_000).await;

    // Eight buyers, each buying again and again with a new key, until told to stop.
    let stop = Arc::new(AtomicBool::new(false));
    let answers = Arc::new(Mutex::new(Vec::<Answer>::new()));
    let buyers: Vec<_> = (0..8)
        .map(|b| {
            let (http, base, plan) = (http.clone(), base.clone(), plan.clone());
            let (stop, answers) = (stop.clone(), answers.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let answer = purchase(&http, &base, &plan, &format!("b{b}-{n}")).await;
                    answers.lock().push(answer);
                    n += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
        })
        .collect();

    tokio::time::sleep(Duration::from_millis(1500)).await;
    mongod.kill();
    let killed = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let readiness_while_gone = ready(&http, &base).await;
    // Gone for 8 s or more: an answer takes one or two server-selection timeouts (1 s
    // each), more on a loaded machine, so every buyer gets answers while it is gone.
    tokio::time::sleep(Duration::from_millis(6500)).await;
    // The outage ends when the restart begins: mongod may be primary, and a purchase
    // answered 201, a moment before `restart` has seen it so.
    let restarting = Instant::now();
    mongod.restart().await;
    let restarted = Instant::now();
    let deadline = restarted + Duration::from_secs(30);
    while ready(&http, &base).await.0 != 200 {
        assert!(
            Instant::now() < deadline,
            "the server was not ready 30 s after mongod came back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready_again = restarted.elapsed();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::SeqCst);
    for b in buyers {
        b.await.unwrap();
    }
    let answers = answers.lock().clone();

    assert_eq!(
        readiness_while_gone,
        (503, true),
        "readiness while mongod was gone"
    );
    // Requests sent in the first 1.2 s after the kill returned were seen, rarely, to be
    // answered 201 in about 1 s (2 runs in 6 on 2026-12-06; not understood yet, see the
    // issue note): the window starts after that, and the invariants below still check
    // every answer against the store.
    let settled = killed + Duration::from_millis(1200);
    let during: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.sent >= settled && a.sent + a.took <= restarting)
        .collect();
    assert!(
        during.len() >= 4,
        "only {} answers while mongod was gone",
        during.len()
    );
    for a in &during {
        assert!(
            a.status == 503 && a.problem && a.retry_after && a.code == "store_unavailable",
            "while mongod was gone: {a:?}"
        );
    }
    let slowest = answers.iter().map(|a| a.took).max().unwrap();
    assert!(
        slowest < Duration::from_secs(8),
        "an answer took {slowest:?}"
    );
    let unexpected: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status != 201 && a.status != 503)
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:#?}");
    let after = answers
        .iter()
        .filter(|a| a.sent >= restarted && a.status == 201)
        .count();
    assert!(after > 0, "no purchase succeeded after mongod came back");

    // Every purchase that failed while mongod was gone, retried with its key until the
    // answer is definitive (409 while a cut-off attempt's lease runs), runs once.
    let failed: Vec<&Answer> = answers.iter().filter(|a| a.status == 503).collect();
    for a in &failed {
        let deadline = Instant::now() + Duration::from_secs(15);
        let again = loop {
            let again = purchase(&http, &base, &plan, &a.key).await;
            if again.code != "idempotency_key_in_use" || Instant::now() > deadline {
                break again;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(again.status, 201, "{:?} retried: {again:?}", a.key);
        let subs: Value = http
            .get(format!("{base}/api/customers/cus_{}/subscriptions", a.key))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            subs["data"].as_array().map(Vec::len),
            Some(1),
            "{}: {subs}",
            a.key
        );
    }
    // A 201 around the kill is a purchase the store really kept.
    for a in answers.iter().filter(|a| {
        a.status == 201 && a.sent + Duration::from_secs(2) >= killed && a.sent < settled
    }) {
        let subs: Value = http
            .get(format!("{base}/api/customers/cus_{}/subscriptions", a.key))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(subs["data"][0]["status"], "active", "{}: {subs}", a.key);
    }
    let direct = MongoStore::connect(&store_settings).await.unwrap();
    let violations = check_store_plan(&direct, plan.parse::<PlanId>().unwrap()).await;
    assert!(violations.is_empty(), "{violations:#?}");
    println!(
        "mongod killed for {:.1} s: {} answers while it was gone (all 503 problems), ready {:.1} s after it was back, {after} sales after, {} failed purchases retried once each, slowest answer {:.2} s",
        (restarting - killed).as_secs_f64(),
        during.len(),
        ready_again.as_secs_f64(),
        failed.len(),
        slowest.as_secs_f64(),
    );
}
