//! One run of a scenario ([`Scenario`]): a fresh database (behind the TCP proxy when the
//! scenario cuts it away), the payment simulator, the server processes and three plans;
//! and the faults a scenario injects into them besides the payment faults: `kill -9` at
//! random moments ([`Scenario::kill_at_random`]) and database outages
//! ([`Scenario::outage`]). Reads and waits through the API are in [`crate::api`]; how a
//! run ends is in [`crate::conclude`].

use std::{
    ops::Range,
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use rand::Rng;
use serde_json::{json, Value};

use crate::{
    common::{
        stores::{DatabaseKind, FreshDatabase},
        Proxy,
    },
    knobs::Knobs,
    paysim::{Paysim, Provider},
    processes::Fleet,
    REQUEST_TIMEOUT, TOKEN,
};

/// Fields drop in order: the servers go before the database they use.
pub struct Scenario {
    pub name: &'static str,
    pub started: Instant,
    pub fleet: Arc<Fleet>,
    pub paysim: Paysim,
    proxy: Option<Proxy>,
    pub http: reqwest::Client,
    /// The actor audit entries name for the buyers' `purchases` key (`key:<id>`).
    pub buyer: String,
    pub knobs: Knobs,
    /// `(id, capacity)`
    pub plans: Vec<(String, u64)>,
    pub notes: Mutex<Vec<String>>,
    /// The database, directly (it lives as long as this).
    pub db: FreshDatabase,
}

/// When an outage began, ended, and when every instance was ready again.
pub struct Outage {
    pub cut: Instant,
    pub restored: Instant,
    pub ready: Instant,
}

impl Scenario {
    /// A fresh database, the simulator, `instances` servers and three plans: 25 seats
    /// (sells out early), 120 seats, and 100,000 seats. `None` when the database server is
    /// not reachable (and `CI` is not set).
    pub async fn start(
        kind: DatabaseKind,
        name: &'static str,
        knobs: Knobs,
        instances: usize,
        provider: Provider,
        through_proxy: bool,
    ) -> Option<Self> {
        let db = FreshDatabase::or_skip(kind, &format!("the fault scenario {name}")).await?;
        let started = Instant::now();
        let proxy = if through_proxy {
            Some(Proxy::start(db.upstream.clone()).await)
        } else {
            None
        };
        let server_url = match &proxy {
            Some(proxy) => db.url_through(proxy.port),
            None => db.url.clone(),
        };
        let paysim = Paysim::start(&provider);
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap();
        let logs = std::env::temp_dir().join(format!(
            "seatkeeper-faults-{name}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&logs).unwrap();
        let fleet = Fleet::start(
            instances,
            knobs.env(&server_url, &paysim.base_url),
            logs,
            http.clone(),
        )
        .await;
        paysim.relay.serve(fleet.clone());
        let mut plans = Vec::new();
        for (plan, capacity) in [("A", 25u64), ("B", 120), ("C", 100_000)] {
            let res = http
                .post(format!("{}/api/plans", fleet.url(0)))
                .bearer_auth(TOKEN)
                .json(
                    &json!({"name": format!("Fault plan {plan}"), "capacity": capacity,
                    "unit_amount": 1500, "currency": "usd", "interval": "month"}),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(res.status(), 201, "create plan {plan}");
            let body: Value = res.json().await.unwrap();
            plans.push((body["id"].as_str().unwrap().to_owned(), capacity));
        }
        // Buyers and readers act as an integrator's server does: with a `purchases` key.
        let key = crate::common::app::make_key(&http, &fleet.url(0), TOKEN, "purchases").await;
        let buyer = crate::common::app::key_actor(&http, &fleet.url(0), TOKEN, &key).await;
        let http = crate::common::app::client_with(&key);
        Some(Self {
            buyer,
            name,
            started,
            db,
            paysim,
            proxy,
            fleet,
            http,
            knobs,
            plans,
            notes: Mutex::new(Vec::new()),
        })
    }

    pub fn note(&self, note: String) {
        self.notes.lock().push(note);
    }

    /// `events` kills, `gap` milliseconds apart; events whose index is in `all_at` kill
    /// every instance at once. Each killed instance is restarted at once (and waited for).
    pub async fn kill_at_random(&self, events: usize, gap: Range<u64>, all_at: &[usize]) {
        for event in 0..events {
            let pause = rand::thread_rng().gen_range(gap.clone());
            tokio::time::sleep(Duration::from_millis(pause)).await;
            let victims: Vec<usize> = if all_at.contains(&event) {
                (0..self.fleet.len()).collect()
            } else {
                vec![rand::thread_rng().gen_range(0..self.fleet.len())]
            };
            for &i in &victims {
                self.fleet.kill(i);
            }
            for &i in &victims {
                self.fleet.boot(i).await;
            }
        }
    }

    /// Cuts the database away for `length`, probing readiness meanwhile, then restores it and
    /// waits until every instance is ready again (at most 20 s).
    pub async fn outage(&self, length: Duration, problems: &mut Vec<String>) -> Outage {
        let proxy = self
            .proxy
            .as_ref()
            .expect("the scenario runs through the proxy");
        proxy.cut();
        let cut = Instant::now();
        tokio::time::sleep(length / 2).await;
        for i in 0..self.fleet.len() {
            let probe = Instant::now();
            match self
                .http
                .get(format!("{}/health/ready", self.fleet.url(i)))
                .timeout(REQUEST_TIMEOUT)
                .send()
                .await
            {
                Ok(res) => {
                    let problem = res
                        .headers()
                        .get("content-type")
                        .is_some_and(|v| v == "application/problem+json");
                    if res.status() != 503 || !problem {
                        problems.push(format!(
                            "readiness of instance {i} during the outage: {} (problem+json: {problem})",
                            res.status()
                        ));
                    }
                }
                Err(e) => problems.push(format!(
                    "readiness of instance {i} during the outage: no answer after {:?}: {e}",
                    probe.elapsed()
                )),
            }
        }
        tokio::time::sleep(length.saturating_sub(cut.elapsed())).await;
        proxy.restore();
        let restored = Instant::now();
        let deadline = restored + Duration::from_secs(20);
        for i in 0..self.fleet.len() {
            loop {
                let ready = self
                    .http
                    .get(format!("{}/health/ready", self.fleet.url(i)))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                if ready {
                    break;
                }
                if Instant::now() > deadline {
                    problems.push(format!(
                        "instance {i} was not ready 20 s after the database came back"
                    ));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Outage {
            cut,
            restored,
            ready: Instant::now(),
        }
    }
}
