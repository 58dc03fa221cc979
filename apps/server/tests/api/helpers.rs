use std::{sync::Arc, time::Duration};

use reqwest::{Response, StatusCode};
use seatkeeper_domain::{invariants::check_store_plan, ports::SystemClock, PlanId};
use seatkeeper_payments::SimulatedGateway;
use seatkeeper_server::{
    configuration::{Secret, Settings},
    startup::{Application, Wiring},
    telemetry,
};
use seatkeeper_store_memory::MemoryStore;
use serde_json::{json, Value};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub store: Arc<MemoryStore>,
    pub gateway: Arc<SimulatedGateway>,
}

/// A server on a free port, the in-memory store, no demo plans, instant payments.
pub async fn spawn_app() -> TestApp {
    spawn_app_with(Duration::ZERO, |_| {}).await
}

/// A server whose simulated payments take `latency`, with settings adjusted by `configure`.
pub async fn spawn_app_with(latency: Duration, configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn(latency, configure, false).await
}

/// A server whose payment gateway is the one the settings (adjusted by `configure`) name,
/// as in production; `TestApp::gateway` is then unused.
pub async fn spawn_app_with_configured_gateway(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn(Duration::ZERO, configure, true).await
}

async fn spawn(
    latency: Duration,
    configure: impl FnOnce(&mut Settings),
    configured_gateway: bool,
) -> TestApp {
    let mut settings = Settings::load_from(None, Vec::new()).expect("default settings");
    if std::env::var_os("TEST_LOG").is_some() {
        telemetry::init(&settings.log);
    }
    settings.http.addr = "127.0.0.1:0".into();
    settings.http.workers = 2;
    settings.auth.admin_token = Some(Secret::new(ADMIN_TOKEN));
    settings.demo.seed = Some(false);
    configure(&mut settings);
    let store = Arc::new(MemoryStore::new());
    let gateway = Arc::new(SimulatedGateway::with_latency(latency));
    let mut wiring = Wiring {
        store: store.clone(),
        gateway: gateway.clone(),
        clock: Arc::new(SystemClock),
    };
    if configured_gateway {
        wiring.gateway = Wiring::from_settings(&settings)
            .await
            .expect("the configured adapters")
            .gateway;
    }
    let app = Application::build_with(settings, wiring)
        .await
        .expect("the application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .build()
            .unwrap(),
        store,
        gateway,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn admin_get(&self, path: &str) -> Response {
        self.client
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> Response {
        self.client
            .post(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_patch(&self, path: &str, body: &Value) -> Response {
        self.client
            .patch(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// Creates a plan and returns its id.
    pub async fn create_plan(&self, capacity: i64) -> String {
        let res = self
            .admin_post(
                "/api/plans",
                &json!({"name": "Starter", "capacity": capacity, "unit_amount": 1500, "currency": "usd", "interval": "month"}),
            )
            .await;
        assert_eq!(res.status(), StatusCode::CREATED);
        body(res).await["id"].as_str().unwrap().to_owned()
    }

    pub async fn purchase(&self, plan_id: &str, customer: &str, key: &str, pm: &str) -> Response {
        self.client
            .post(self.url("/api/subscriptions/purchase"))
            .header("Idempotency-Key", key)
            .json(&json!({"plan_id": plan_id, "customer_id": customer, "payment_method": pm}))
            .send()
            .await
            .unwrap()
    }

    pub async fn plan(&self, plan_id: &str) -> Value {
        body(self.get(&format!("/api/plans/{plan_id}")).await).await
    }

    pub async fn stats(&self, plan_id: &str) -> Value {
        body(self.get(&format!("/api/plans/{plan_id}/stats")).await).await
    }

    /// The plan's whole audit log, following cursors.
    pub async fn audit(&self, plan_id: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/api/plans/{plan_id}/audit?limit=100&cursor={c}"),
                None => format!("/api/plans/{plan_id}/audit?limit=100"),
            };
            let page = body(self.admin_get(&path).await).await;
            all.extend(page["data"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return all,
            }
        }
    }

    /// The invariants of purchase-flow.md, checked through the API (plan, stats, audit
    /// replay) and on the store itself.
    pub async fn assert_invariants(&self, plan_id: &str) {
        let plan = self.plan(plan_id).await;
        let stats = self.stats(plan_id).await;
        let capacity = plan["capacity"].as_i64().unwrap();
        let seats_left = plan["seats_left"].as_i64().unwrap();
        assert!(
            (0..=capacity).contains(&seats_left),
            "seats_left out of range: {plan}"
        );
        assert_eq!(
            capacity,
            seats_left + stats["incomplete"].as_i64().unwrap() + stats["active"].as_i64().unwrap(),
            "capacity != seats_left + incomplete + active: {stats}"
        );
        let audit = self.audit(plan_id).await;
        let mut replayed = 0;
        for (i, e) in audit.iter().enumerate() {
            assert_eq!(e["seq"].as_u64().unwrap(), i as u64 + 1, "audit gap at {e}");
            assert_eq!(
                e["seats_left_before"].as_i64().unwrap(),
                replayed,
                "audit chain broken at {e}"
            );
            let after = e["seats_left_after"].as_i64().unwrap();
            let delta = after - replayed;
            match e["action"].as_str().unwrap() {
                "seat_reserved" => assert_eq!(delta, -1, "{e}"),
                "seat_released" | "subscription_canceled" => assert_eq!(delta, 1, "{e}"),
                "purchase_activated" | "plan_updated" | "plan_archived" | "plan_activated" => {
                    assert_eq!(delta, 0, "{e}")
                }
                _ => {}
            }
            replayed = after;
        }
        assert_eq!(
            replayed, seats_left,
            "the audit log does not replay to seats_left"
        );
        let id: PlanId = plan_id.parse().unwrap();
        let violations = check_store_plan(self.store.as_ref(), id).await;
        assert!(violations.is_empty(), "{violations:#?}");
    }
}

pub async fn body(res: Response) -> Value {
    let text = res.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// Asserts an RFC 9457 problem with this status and code, and returns it.
pub async fn assert_problem(res: Response, status: u16, code: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "unexpected status");
    let content_type = res
        .headers()
        .get("content-type")
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let request_id = res
        .headers()
        .get("x-request-id")
        .expect("X-Request-Id")
        .to_str()
        .unwrap()
        .to_owned();
    let problem = body(res).await;
    assert_eq!(problem["code"], code, "{problem}");
    assert_eq!(problem["status"], status, "{problem}");
    assert_eq!(problem["type"], format!("urn:seatkeeper:problem:{code}"));
    assert!(problem["title"].as_str().is_some_and(|t| !t.is_empty()));
    assert!(problem["detail"].as_str().is_some_and(|t| !t.is_empty()));
    assert_eq!(problem["request_id"], request_id.as_str(), "{problem}");
    problem
}
