//! The server under test: [`spawn_app`] starts one on a free port over a fresh store of
//! the given [`StoreKind`] (in memory, or a new PostgreSQL or MongoDB database), and
//! [`on_every_store!`] turns one test function into a test per store. A test whose
//! database server cannot be reached says `skipped <test name>: <reason>` and passes (under
//! `CI` it fails instead).

use std::{future::Future, sync::Arc, time::Duration};

use reqwest::{Response, StatusCode};
use seatkeeper_domain::{invariants::check_store_plan, ports::Store, PlanId};
use seatkeeper_payments::SimulatedGateway;
use seatkeeper_server::{
    configuration::{Secret, Settings},
    startup::{Application, Wiring},
    telemetry,
};
use seatkeeper_store_contract::outage::Switchable;
use seatkeeper_store_memory::MemoryStore;
use serde_json::{json, Value};

use crate::common::stores::{DatabaseKind, FreshDatabase};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
/// The servers' session signing secret, so that tests can make expired or forged tokens.
pub const SESSION_SECRET: &str = "test-session-secret-0123456789abcdefghij";
/// The servers' Stripe webhook signing secret.
pub const WEBHOOK_SECRET: &str = "whsec_test_0123456789abcdef";

/// Makes `name::on_memory`, `name::on_postgres` and `name::on_mongodb` tests of the async
/// function `name` defined next to it. `on_every_store!(name);` hands it a fresh
/// [`TestApp`] (`async fn name(app: TestApp)`); `on_every_store!(name(kind));` hands it
/// the [`StoreKind`] (`async fn name(kind: StoreKind)`), for a test that spawns its own
/// server with [`spawn_app_with`].
macro_rules! on_every_store {
    ($name:ident) => {
        on_every_store!(@tests $name, |kind| $crate::helpers::run(super::$name, kind));
    };
    ($name:ident(kind)) => {
        on_every_store!(@tests $name, |kind| super::$name(kind));
    };
    (@tests $name:ident, $run:expr) => {
        mod $name {
            use $crate::helpers::StoreKind;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_memory() {
                ($run)(StoreKind::Memory).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_postgres() {
                ($run)(StoreKind::Postgres).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_mongodb() {
                ($run)(StoreKind::Mongo).await
            }
        }
    };
}

/// The store a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    Postgres,
    Mongo,
}

pub struct TestApp {
    pub address: String,
    /// Sends the secret of a `purchases` key made at start-up ([`TestApp::purchases_key`])
    /// on every request that does not set `Authorization` itself.
    pub client: reqwest::Client,
    /// Sends no credential.
    pub anonymous: reqwest::Client,
    /// The secret of the `purchases` key `client` sends.
    pub purchases_key: String,
    pub kind: StoreKind,
    /// The server's store; a database store's database is dropped with it.
    pub store: Arc<dyn Store>,
    /// The store when it is the in-memory one (for its switches and counters).
    memory: Option<Arc<Switchable<MemoryStore>>>,
    /// The database's URL when the store is PostgreSQL or MongoDB.
    database_url: Option<String>,
    pub gateway: Arc<SimulatedGateway>,
}

/// Runs `test` on a fresh server over `kind`, unless that store cannot be had (skipped).
pub async fn run<F, Fut>(test: F, kind: StoreKind)
where
    F: FnOnce(TestApp) -> Fut,
    Fut: Future<Output = ()>,
{
    if let Some(app) = spawn_app(kind).await {
        test(app).await
    }
}

/// A server on a free port over a fresh `kind` store, no demo plans, instant payments; or,
/// when the database server cannot be reached, `None` after saying the test was skipped.
pub async fn spawn_app(kind: StoreKind) -> Option<TestApp> {
    spawn_app_with(kind, Duration::ZERO, |_| {}).await
}

/// [`spawn_app`] on the in-memory store, for the tests that use its switches.
pub async fn spawn_memory_app() -> TestApp {
    spawn_app(StoreKind::Memory)
        .await
        .expect("the in-memory store")
}

/// A server whose simulated payments take `latency`, with settings adjusted by `configure`.
pub async fn spawn_app_with(
    kind: StoreKind,
    latency: Duration,
    configure: impl FnOnce(&mut Settings),
) -> Option<TestApp> {
    spawn(kind, latency, configure, false).await
}

/// A server on the in-memory store whose payment gateway is the one the settings (adjusted
/// by `configure`) name, as in production; `TestApp::gateway` is then unused.
pub async fn spawn_app_with_configured_gateway(configure: impl FnOnce(&mut Settings)) -> TestApp {
    spawn(StoreKind::Memory, Duration::ZERO, configure, true)
        .await
        .expect("the in-memory store")
}

/// The settings every test server starts from.
fn test_settings() -> Settings {
    let mut settings = Settings::load_from(None, Vec::new()).expect("default settings");
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = telemetry::init(&settings.log);
    }
    settings.http.addr = ([127, 0, 0, 1], 0).into();
    settings.http.workers = 2;
    settings.auth.admin_token = Some(Secret::from(ADMIN_TOKEN));
    settings.auth.session_secret = Some(Secret::from(SESSION_SECRET));
    settings.demo.seed = Some(false);
    // Tests send hundreds of requests at once with one key; the limits have tests of
    // their own, which turn them on.
    settings.rate_limit.enabled = false;
    // Checkout tests hold seats for a second or two and watch the worker expire them.
    settings.checkout.min_expires_in_secs = 1;
    settings.checkout.worker_interval_ms = 100;
    settings.payments.webhook_secrets = vec![Secret::from(WEBHOOK_SECRET)];
    settings
}

async fn spawn(
    kind: StoreKind,
    latency: Duration,
    configure: impl FnOnce(&mut Settings),
    configured_gateway: bool,
) -> Option<TestApp> {
    let mut settings = test_settings();
    configure(&mut settings);
    let (store, memory, database_url): (Arc<dyn Store>, _, _) = match kind {
        StoreKind::Memory => {
            let memory = Arc::new(Switchable::new(MemoryStore::new()));
            (memory.clone(), Some(memory), None)
        }
        StoreKind::Postgres | StoreKind::Mongo => {
            let database = match kind {
                StoreKind::Postgres => DatabaseKind::Postgres,
                _ => DatabaseKind::Mongo,
            };
            let db = match FreshDatabase::new(database).await {
                Ok(db) => db,
                Err(reason) => {
                    let test = std::thread::current().name().unwrap_or("?").to_owned();
                    eprintln!("skipped {test}: {reason}");
                    return None;
                }
            };
            (db.store, None, Some(db.url))
        }
    };
    Some(
        serve(
            kind,
            settings,
            store,
            memory,
            database_url,
            latency,
            configured_gateway,
        )
        .await,
    )
}

/// Serves `store` with `settings` on a free port, with a `purchases` key made for it.
async fn serve(
    kind: StoreKind,
    settings: Settings,
    store: Arc<dyn Store>,
    memory: Option<Arc<Switchable<MemoryStore>>>,
    database_url: Option<String>,
    latency: Duration,
    configured_gateway: bool,
) -> TestApp {
    let gateway = Arc::new(SimulatedGateway::with_latency(latency));
    let mut wiring = Wiring::simulated(store.clone(), gateway.clone());
    if configured_gateway {
        let configured = Wiring::from_settings(&settings)
            .await
            .expect("the configured adapters");
        wiring.gateway = configured.gateway;
        wiring.intents = configured.intents;
        wiring.simulated = configured.simulated;
    }
    let app = Application::build_with(settings, wiring)
        .await
        .expect("the application builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    let anonymous = reqwest::Client::builder()
        .pool_max_idle_per_host(512)
        .build()
        .unwrap();
    let purchases_key = make_key(&anonymous, &address, "purchases", "tests").await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {purchases_key}").parse().unwrap(),
    );
    TestApp {
        address,
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .default_headers(headers)
            .build()
            .unwrap(),
        anonymous,
        purchases_key,
        kind,
        store,
        memory,
        database_url,
        gateway,
    }
}

/// Makes an API key of `role` with the admin token and returns its secret.
pub async fn make_key(http: &reqwest::Client, address: &str, role: &str, name: &str) -> String {
    let res = http
        .post(format!("{address}/api/keys"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"role": role, "name": name}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED, "making a key");
    body(res).await["secret"].as_str().unwrap().to_owned()
}

impl TestApp {
    /// Another server on the same database (its own connections, as another instance
    /// has), with the test settings adjusted by `configure`. Panics on the in-memory store,
    /// which no other process can share.
    pub async fn second_instance(&self, configure: impl FnOnce(&mut Settings)) -> TestApp {
        let url = self
            .database_url
            .clone()
            .expect("a second instance needs a database store");
        let store = crate::common::stores::open_store(&url, Duration::from_secs(5)).await;
        let mut settings = test_settings();
        configure(&mut settings);
        serve(
            self.kind,
            settings,
            store,
            None,
            Some(url),
            Duration::ZERO,
            false,
        )
        .await
    }

    /// The in-memory store; panics on another store (memory-only tests use it).
    pub fn memory_store(&self) -> &MemoryStore {
        self.store_switch().inner()
    }

    /// The switch in front of the in-memory store, which makes it fail as an unreachable
    /// database does; panics on another store.
    pub fn store_switch(&self) -> &Switchable<MemoryStore> {
        self.memory
            .as_deref()
            .expect("a test of the in-memory store's switches runs on it only")
    }

    /// How many idempotency records the store holds (expired or not), read directly.
    pub async fn key_count(&self) -> u64 {
        match (self.kind, &self.database_url) {
            (StoreKind::Memory, _) => self.memory_store().key_count() as u64,
            (StoreKind::Postgres, Some(url)) => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                let n: i64 = sqlx::query_scalar("SELECT count(*) FROM idempotency_keys")
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
                let _ = conn.close().await;
                n as u64
            }
            (StoreKind::Mongo, Some(url)) => {
                let client = mongodb::Client::with_uri_str(url).await.unwrap();
                let n = client
                    .default_database()
                    .expect("the URL names the database")
                    .collection::<mongodb::bson::Document>(
                        seatkeeper_store_mongo::queries::IDEMPOTENCY_KEYS,
                    )
                    .count_documents(mongodb::bson::doc! {})
                    .await
                    .unwrap();
                client.shutdown().await;
                n
            }
            _ => unreachable!("a database store has its URL"),
        }
    }

    /// The actor audit entries name for what [`TestApp::client`] does: `key:<id>` of the
    /// `purchases` key.
    pub async fn purchases_actor(&self) -> String {
        let keys = body(self.admin_get("/api/keys?limit=100").await).await;
        format!(
            "key:{}",
            crate::common::app::key_id(&keys, &self.purchases_key)
        )
    }

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
            seats_left
                + stats["held"].as_i64().unwrap()
                + stats["incomplete"].as_i64().unwrap()
                + stats["active"].as_i64().unwrap(),
            "capacity != seats_left + held + incomplete + active: {stats}"
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
                "seat_reserved" | "seat_held" => assert_eq!(delta, -1, "{e}"),
                "seat_released" | "subscription_canceled" | "hold_expired" => {
                    assert_eq!(delta, 1, "{e}")
                }
                "purchase_activated" | "plan_updated" | "plan_archived" | "plan_activated"
                | "checkout_completed" | "payment_refunded" => assert_eq!(delta, 0, "{e}"),
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
