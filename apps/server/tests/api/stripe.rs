//! The server with `payments.provider = "stripe"` against `seatkeeper-paysim`: what the
//! customer sees, and what the provider's ledger holds.

use std::time::Duration;

use seatkeeper_paysim::{start, Faults, Running, Simulator};
use serde_json::Value;

use crate::helpers::{assert_problem, body, spawn_app_with_configured_gateway, TestApp};

const SECRET: &str = "sk_test_server_against_paysim";

async fn app_on(sim: &Running, max_retries: u32) -> TestApp {
    let base_url = sim.base_url();
    spawn_app_with_configured_gateway(move |s| {
        s.payments.provider = seatkeeper_server::configuration::PaymentProvider::Stripe;
        s.payments.base_url = base_url;
        s.payments.secret_key = Some(seatkeeper_server::configuration::Secret::from(SECRET));
        s.payments.timeout_ms = 400;
        s.payments.max_retries = max_retries;
    })
    .await
}

async fn intents(sim: &Running) -> Vec<Value> {
    let page: Value = reqwest::Client::new()
        .get(format!("{}/v1/payment_intents?limit=100", sim.base_url()))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["data"].as_array().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purchase_makes_exactly_one_succeeded_payment_intent_for_the_new_subscription() {
    let sim = start(
        "127.0.0.1:0",
        Simulator::new(None, Faults::default()).unwrap(),
    )
    .unwrap();
    let app = app_on(&sim, 2).await;
    let plan = app.create_plan(3).await;
    let res = app
        .purchase(&plan, "cus_1", "order-1", "pm_card_visa")
        .await;
    assert_eq!(res.status(), 201);
    let sub = body(res).await;
    let again = app
        .purchase(&plan, "cus_1", "order-1", "pm_card_visa")
        .await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let intents = intents(&sim).await;
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0]["status"], "succeeded");
    assert_eq!(intents[0]["id"], sub["payment_id"]);
    assert_eq!(intents[0]["metadata"]["subscription_id"], sub["id"]);
    assert_eq!(intents[0]["amount"], 1500);
    app.assert_invariants(&plan).await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decline_at_the_provider_is_a_402_and_the_seat_comes_back() {
    let sim = start(
        "127.0.0.1:0",
        Simulator::new(None, Faults::default()).unwrap(),
    )
    .unwrap();
    let app = app_on(&sim, 2).await;
    let plan = app.create_plan(1).await;
    let res = app
        .purchase(&plan, "cus_1", "order-1", "pm_card_chargeDeclined")
        .await;
    let problem = assert_problem(res, 402, "payment_declined").await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("generic_decline"));
    assert_eq!(app.plan(&plan).await["seats_left"], 1);
    assert!(intents(&sim)
        .await
        .iter()
        .all(|i| i["status"] != "succeeded"));
    app.assert_invariants(&plan).await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_answer_is_a_503_and_the_retry_completes_without_a_second_charge() {
    let sim = start(
        "127.0.0.1:0",
        Simulator::new(
            None,
            Faults {
                drop_hang: Duration::from_secs(3),
                ..Faults::default()
            },
        )
        .unwrap(),
    )
    .unwrap();
    let app = app_on(&sim, 0).await;
    let plan = app.create_plan(2).await;
    let res = app
        .purchase(&plan, "cus_1", "order-1", "pm_card_timeout")
        .await;
    assert_problem(res, 503, "payment_unavailable").await;
    assert_eq!(app.stats(&plan).await["incomplete"], 1);
    let res = app
        .purchase(&plan, "cus_1", "order-1", "pm_card_timeout")
        .await;
    assert_eq!(res.status(), 201);
    let sub = body(res).await;
    let intents = intents(&sim).await;
    assert_eq!(intents.len(), 1, "one charge for one key");
    assert_eq!(intents[0]["id"], sub["payment_id"]);
    assert_eq!(intents[0]["metadata"]["subscription_id"], sub["id"]);
    app.assert_invariants(&plan).await;
    sim.stop().await;
}
