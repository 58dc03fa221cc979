//! Who may call what, black-box: every endpoint against every kind of caller (the
//! permission table of issue 18), another customer's resources, keys made, listed, used
//! and revoked, sessions that expire, credentials that are not valid, and the actor each
//! audit entry names.

mod callers;
mod keys;
mod limits;
mod matrix;
mod sessions;

use reqwest::{Method, Response};
use serde_json::{json, Value};

use crate::helpers::{body, make_key, TestApp};

/// A customer session, a `purchases` key and an `admin` key.
pub struct Callers {
    pub session: Option<String>,
    pub purchases: Option<String>,
    pub admin_key: Option<String>,
}

impl Callers {
    /// A session for `customer`, the app's purchases key, a new admin key.
    pub async fn of(app: &TestApp, customer: &str) -> Self {
        let admin_key = make_key(&app.anonymous, &app.address, "admin", "ops").await;
        Self {
            session: Some(session(app, &app.purchases_key, customer).await),
            purchases: Some(app.purchases_key.clone()),
            admin_key: Some(admin_key),
        }
    }
}

/// A customer session for `customer`, made with `credential`; returns its token.
pub async fn session(app: &TestApp, credential: &str, customer: &str) -> String {
    let res = send(
        app,
        Method::POST,
        "/api/customer_sessions",
        Some(credential),
        Some(json!({ "customer_id": customer })),
    )
    .await;
    assert_eq!(res.status(), 201, "making a session");
    body(res).await["token"].as_str().unwrap().to_owned()
}

/// Sends a request with `credential` as the bearer (none: anonymous).
pub async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    credential: Option<&str>,
    json: Option<Value>,
) -> Response {
    let mut req = app.anonymous.request(method, app.url(path));
    if let Some(c) = credential {
        req = req.bearer_auth(c);
    }
    if let Some(json) = json {
        req = req.json(&json);
    }
    req.send().await.unwrap()
}

/// Buys a seat of `plan` for `customer` with `credential` under a new idempotency key.
pub async fn buy(app: &TestApp, plan: &str, customer: &str, credential: Option<&str>) -> Response {
    let mut req = app
        .anonymous
        .post(app.url("/api/subscriptions/purchase"))
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({"plan_id": plan, "customer_id": customer, "payment_method": "pm_card_visa"}));
    if let Some(c) = credential {
        req = req.bearer_auth(c);
    }
    req.send().await.unwrap()
}
