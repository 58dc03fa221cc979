//! The server in the test's own process, on a store the test opened (through a proxy, or
//! on a private `mongod`), with the simulated gateway: what the outage tests share.

use std::sync::Arc;

use seatkeeper_domain::ports::Store;
use seatkeeper_payments::SimulatedGateway;
use seatkeeper_server::{
    configuration::{Secret, Settings},
    startup::{Application, Wiring},
};
use serde_json::{json, Value};

/// Starts the server on `store` (admin token `token`, no demo plans, any port; `tune`
/// changes the settings further) and returns its base URL.
pub async fn serve(store: Arc<dyn Store>, token: &str, tune: impl FnOnce(&mut Settings)) -> String {
    let mut settings = Settings::load_from(None, Vec::new()).unwrap();
    settings.http.addr = ([127, 0, 0, 1], 0).into();
    settings.auth.admin_token = Some(Secret::from(token));
    settings.demo.seed = Some(false);
    settings.rate_limit.enabled = false;
    tune(&mut settings);
    let app = Application::build_with(
        settings,
        Wiring::simulated(store, Arc::new(SimulatedGateway::new())),
    )
    .await
    .unwrap();
    let base = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    base
}

/// Creates a plan of `capacity` seats (admin) and returns its id.
pub async fn create_plan(http: &reqwest::Client, base: &str, token: &str, capacity: u32) -> String {
    let plan: Value = http
        .post(format!("{base}/api/plans"))
        .bearer_auth(token)
        .json(&json!({"name": "Outage", "capacity": capacity, "unit_amount": 100, "currency": "usd", "interval": "month"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    plan["id"].as_str().unwrap().to_owned()
}

/// An HTTP client that sends `Authorization: Bearer <credential>` on every request that
/// does not set its own.
pub fn client_with(credential: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {credential}").parse().unwrap(),
    );
    reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .default_headers(headers)
        .build()
        .unwrap()
}

/// Makes an API key of `role` (with the admin token) and returns its secret.
pub async fn make_key(http: &reqwest::Client, base: &str, token: &str, role: &str) -> String {
    let res = http
        .post(format!("{base}/api/keys"))
        .bearer_auth(token)
        .json(&json!({"role": role, "name": format!("{role} key of a test")}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "making a key");
    let key: Value = res.json().await.unwrap();
    key["secret"].as_str().unwrap().to_owned()
}

/// The id of the key whose secret is `secret`, in a `GET /api/keys` answer (found by
/// the prefix the listing shows).
pub fn key_id(keys: &Value, secret: &str) -> String {
    keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| secret.starts_with(k["prefix"].as_str().unwrap()))
        .expect("the key is listed")["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The id of the key whose secret is `secret`, listed by the server at `base`.
pub async fn find_key_id(http: &reqwest::Client, base: &str, token: &str, secret: &str) -> String {
    let keys: Value = http
        .get(format!("{base}/api/keys?limit=100"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    key_id(&keys, secret)
}

/// The actor audit entries name for the key whose secret is `secret`: `key:<id>`.
pub async fn key_actor(http: &reqwest::Client, base: &str, token: &str, secret: &str) -> String {
    format!("key:{}", find_key_id(http, base, token, secret).await)
}
