//! Customer sessions: made by key holders for one customer, refused once expired.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use super::{buy, send, session};
use crate::helpers::{assert_problem, body, spawn_app_with, spawn_memory_app, StoreKind};

#[tokio::test]
async fn a_session_names_its_customer_and_expires_after_the_configured_time() {
    let app = spawn_memory_app().await;
    let res = send(
        &app,
        Method::POST,
        "/api/customer_sessions",
        Some(&app.purchases_key),
        Some(json!({"customer_id": "cus_42"})),
    )
    .await;
    assert_eq!(res.status(), 201);
    let made = body(res).await;
    assert_eq!(made["customer_id"], "cus_42");
    let expires =
        chrono::DateTime::parse_from_rfc3339(made["expires_at"].as_str().unwrap()).unwrap();
    let in_30_min = chrono::Utc::now() + chrono::Duration::minutes(30);
    assert!(
        (in_30_min - expires.to_utc()).num_seconds().abs() <= 2,
        "{made}"
    );
}

#[tokio::test]
async fn an_expired_session_is_refused_and_says_so() {
    let app = spawn_app_with(StoreKind::Memory, Duration::ZERO, |s| {
        s.auth.session_ttl_secs = 1
    })
    .await
    .unwrap();
    let plan = app.create_plan(3).await;
    let token = session(&app, &app.purchases_key, "cus_1").await;
    assert_eq!(buy(&app, &plan, "cus_1", Some(&token)).await.status(), 201);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let res = buy(&app, &plan, "cus_1", Some(&token)).await;
    let problem = assert_problem(res, 401, "unauthorized").await;
    assert_eq!(problem["detail"], "the customer session has expired");
    assert_eq!(app.plan(&plan).await["seats_left"], 2);
}

#[tokio::test]
async fn a_session_made_for_a_malformed_customer_names_the_field_and_a_session_cannot_make_one() {
    let app = spawn_memory_app().await;
    let res = send(
        &app,
        Method::POST,
        "/api/customer_sessions",
        Some(&app.purchases_key),
        Some(json!({"customer_id": "not valid!"})),
    )
    .await;
    let problem = assert_problem(res, 400, "invalid_request").await;
    assert_eq!(problem["errors"][0]["field"], "customer_id");
    let token = session(&app, &app.purchases_key, "cus_1").await;
    let res = send(
        &app,
        Method::POST,
        "/api/customer_sessions",
        Some(&token),
        Some(json!({"customer_id": "cus_1"})),
    )
    .await;
    assert_problem(res, 403, "forbidden").await;
}

#[tokio::test]
async fn a_session_signed_by_another_server_is_refused() {
    let ours = spawn_memory_app().await;
    let theirs = spawn_app_with(StoreKind::Memory, Duration::ZERO, |s| {
        s.auth.session_secret = Some("another-servers-session-secret-0123456789".into())
    })
    .await
    .unwrap();
    let token = session(&theirs, &theirs.purchases_key, "cus_1").await;
    let res = send(
        &ours,
        Method::GET,
        "/api/customers/cus_1/subscriptions",
        Some(&token),
        None,
    )
    .await;
    assert_problem(res, 401, "unauthorized").await;
}
