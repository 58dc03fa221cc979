//! The benchmark-only echo route: off by default, and when on a trivial JSON POST that
//! answers its body back, after the configured wait. It never touches the store, so these
//! tests run on the in-memory store only.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{assert_problem, body, spawn_app_with, spawn_memory_app, StoreKind, TestApp};

/// A server with the echo on, waiting `wait_ms` before each answer.
async fn spawn_echo(wait_ms: u64) -> TestApp {
    spawn_app_with(StoreKind::Memory, Duration::ZERO, |s| {
        s.bench.echo = true;
        s.bench.echo_wait_ms = wait_ms;
    })
    .await
    .expect("the in-memory store")
}

#[tokio::test]
async fn the_echo_route_is_not_served_unless_switched_on() {
    let app = spawn_memory_app().await;
    let res = app
        .client
        .post(app.url("/bench/echo"))
        .json(&json!({"plan_id": "p", "customer_id": "c", "payment_method": "m"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "not_found").await;
}

#[tokio::test]
async fn the_echo_sends_its_body_back_after_the_configured_wait() {
    let app = spawn_echo(200).await;
    let sent =
        json!({"plan_id": "plan_1", "customer_id": "cus_1", "payment_method": "pm_card_visa"});
    let started = Instant::now();
    let res = app
        .client
        .post(app.url("/bench/echo"))
        .json(&sent)
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(res.status(), 200);
    assert_eq!(body(res).await, sent);
    // A lower bound only: the answer cannot come before the timer fires.
    assert!(
        waited >= Duration::from_millis(200),
        "answered after {waited:?}"
    );
}

#[tokio::test]
async fn an_echo_body_that_is_not_the_expected_json_is_a_problem_and_not_waited_for() {
    let app = spawn_echo(60_000).await;
    let res = app
        .client
        .post(app.url("/bench/echo"))
        .json(&json!({"plan_id": "plan_1"}))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let problem = assert_problem(res, 400, "invalid_request").await;
    assert_eq!(problem["errors"][0]["field"], "customer_id");
}
