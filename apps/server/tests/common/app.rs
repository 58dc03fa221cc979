//! The server in the test's own process, on a store the test opened (through a proxy, or
//! on a private `mongod`), with the simulated gateway: what the outage tests share.

use std::sync::Arc;

use seatkeeper_domain::ports::{Store, SystemClock};
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
    tune(&mut settings);
    let app = Application::build_with(
        settings,
        Wiring {
            store,
            gateway: Arc::new(SimulatedGateway::new()),
            clock: Arc::new(SystemClock),
        },
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
