//! The checkout clients ([`CheckoutLoad`]): each opens one session (one customer, one
//! `Idempotency-Key`, sent to any instance and retried with the same key on every
//! non-definitive answer), then goes one of the [`Way`]s a customer goes: pays at once,
//! is declined then pays with another card, passes or fails 3-D Secure at the simulated
//! issuer, pays in the browser (at the provider directly, so that only the webhook or the
//! worker can tell the server) in time or just too late, asks for the seat back, or walks
//! away. What each client was
//! finally told is its [`Told`]; every attempt goes into the load's [`Tally`].

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use rand::Rng;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

use crate::{
    api::get_json,
    load::{chance, pause},
    outcomes::{Attempt, Tally},
    processes::Fleet,
    scenario::Scenario,
    SECRET,
};

/// How a customer goes through a checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Way {
    /// Confirms with a card that pays.
    Pay,
    /// Confirms with a declined card, then with one that pays.
    DeclinedThenPay,
    /// Confirms with a 3-D Secure card and passes the check at the issuer.
    ThreeDsPass,
    /// Confirms with a 3-D Secure card, fails the check, and walks away.
    ThreeDsFail,
    /// Pays at the provider directly (as Stripe.js does in the browser).
    InBrowser,
    /// Pays in the browser just after the session expired: paid too late, if the
    /// provider still takes it (the intent was not cancelled yet).
    PayLate,
    /// Asks for the seat back.
    Expire,
    /// Walks away with the session open.
    WalkAway,
}

/// Every way, as often as customers might go it.
pub const EVERY_WAY: &[(Way, u32)] = &[
    (Way::Pay, 4),
    (Way::DeclinedThenPay, 1),
    (Way::ThreeDsPass, 2),
    (Way::ThreeDsFail, 1),
    (Way::InBrowser, 3),
    (Way::PayLate, 2),
    (Way::Expire, 1),
    (Way::WalkAway, 1),
];

#[derive(Debug, Clone)]
pub struct CheckoutJob {
    pub customer: String,
    pub key: String,
    pub plan: String,
    pub way: Way,
    /// Seconds the session is asked to live.
    pub expires_in: u64,
}

/// What a client was finally told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Told {
    /// Paid and complete (by the confirmation's answer or a later read): the subscription.
    Complete(String),
    /// The session ended unpaid (its expiry was asked for, or a read found it expired).
    Expired,
    /// The client stopped watching with the session open or its outcome unknown.
    Left,
    SoldOut,
    /// No answer to the opening that the client waited for.
    NoSession,
    Unexpected(u16, String),
}

#[derive(Debug, Clone)]
pub struct CheckoutResult {
    pub job: CheckoutJob,
    /// The session the client was given.
    pub session: Option<String>,
    pub told: Told,
}

#[derive(Debug, Clone, Copy)]
pub struct CheckoutSpec {
    /// The ways the clients go, with their weights.
    pub ways: &'static [(Way, u32)],
    pub workers: usize,
    pub max_jobs: usize,
    /// Seconds the sessions are asked to live (chosen in this range).
    pub expires_in: (u64, u64),
    /// Chance that a client walks away after a 503 or no answer to its opening.
    pub abandon_share: f64,
    /// How long a client keeps at one checkout.
    pub job_deadline: Duration,
}

/// The checkout clients of one scenario.
pub struct CheckoutLoad {
    spec: CheckoutSpec,
    tag: String,
    plans: Vec<String>,
    fleet: Arc<Fleet>,
    http: reqwest::Client,
    paysim: String,
    pub tally: Tally,
    /// `(session, payment intent)` of sessions opened so far, for the forger.
    pub opened: Mutex<Vec<(String, String)>>,
    next: AtomicUsize,
    stop: AtomicBool,
    workers: Mutex<Vec<JoinHandle<Vec<CheckoutResult>>>>,
}

impl CheckoutLoad {
    /// `spec.workers` clients on the scenario's first two plans (25 and 120 seats).
    pub fn start(sc: &Scenario, spec: CheckoutSpec) -> Arc<Self> {
        let load = Arc::new(Self {
            spec,
            tag: sc.name.replace('-', ""),
            plans: sc.plans.iter().take(2).map(|(id, _)| id.clone()).collect(),
            fleet: sc.fleet.clone(),
            http: sc.http.clone(),
            paysim: sc.paysim.base_url.clone(),
            tally: Tally::default(),
            opened: Mutex::new(Vec::new()),
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            workers: Mutex::new(Vec::new()),
        });
        let workers = (0..spec.workers)
            .map(|_| tokio::spawn(load.clone().worker()))
            .collect();
        *load.workers.lock() = workers;
        load
    }

    /// Stops starting checkouts and waits until every client is done.
    pub async fn finish(self: &Arc<Self>) -> Vec<CheckoutResult> {
        self.stop.store(true, Ordering::SeqCst);
        let workers = std::mem::take(&mut *self.workers.lock());
        let mut done = Vec::new();
        for w in workers {
            done.extend(w.await.expect("a checkout client panicked"));
        }
        done
    }

    fn job(&self, i: usize) -> CheckoutJob {
        let mut rng = rand::thread_rng();
        let ways = self.spec.ways;
        let total: u32 = ways.iter().map(|(_, w)| w).sum();
        let mut pick = rng.gen_range(0..total);
        let way = ways
            .iter()
            .find(|(_, w)| {
                let hit = pick < *w;
                pick = pick.saturating_sub(*w);
                hit
            })
            .map(|(way, _)| *way)
            .unwrap_or(Way::Pay);
        let (lo, hi) = self.spec.expires_in;
        CheckoutJob {
            customer: format!("cus_{}_c{i:05}", self.tag),
            key: format!("checkout-{}-{i}", self.tag),
            plan: self.plans[rng.gen_range(0..self.plans.len())].clone(),
            way,
            expires_in: rng.gen_range(lo..=hi),
        }
    }

    async fn worker(self: Arc<Self>) -> Vec<CheckoutResult> {
        let mut done = Vec::new();
        while !self.stop.load(Ordering::SeqCst) {
            let i = self.next.fetch_add(1, Ordering::SeqCst);
            if i >= self.spec.max_jobs {
                break;
            }
            let job = self.job(i);
            done.push(self.drive(job).await);
        }
        done
    }

    /// Opens the session (retrying with the same key), then goes the job's way.
    async fn drive(&self, job: CheckoutJob) -> CheckoutResult {
        let deadline = Instant::now() + self.spec.job_deadline;
        let result = |session: Option<String>, told| CheckoutResult {
            job: job.clone(),
            session,
            told,
        };
        let session = loop {
            let req = self
                .http
                .post(format!("{}/api/checkout_sessions", self.fleet.random_url()))
                .header("Idempotency-Key", &job.key)
                .json(&json!({"plan_id": job.plan, "customer_id": job.customer,
                    "expires_in": job.expires_in}));
            let walk_away = match self.tally.send("open ", req).await {
                Attempt::Answer {
                    status: 201, body, ..
                } => break body,
                Attempt::Answer {
                    status: 409, code, ..
                } if code == "plan_sold_out" => return result(None, Told::SoldOut),
                Attempt::Answer {
                    status: 409, code, ..
                } if code == "idempotency_key_in_use" => false,
                Attempt::Answer { status: 503, .. } | Attempt::Lost => {
                    chance(self.spec.abandon_share)
                }
                Attempt::Answer { status: 500, .. } => false,
                Attempt::Answer { status, code, .. } => {
                    return result(None, Told::Unexpected(status, code))
                }
            };
            if walk_away || Instant::now() > deadline {
                return result(None, Told::NoSession);
            }
            pause(50..200).await;
        };
        let id = session["id"].as_str().unwrap_or_default().to_owned();
        if let Some(pi) = session["payment"]["payment_intent"].as_str() {
            self.opened.lock().push((id.clone(), pi.to_owned()));
        }
        let told = match job.way {
            Way::WalkAway => Told::Left,
            Way::Expire => self.expire(&id, deadline).await,
            Way::Pay => self.confirm(&id, "pm_card_visa", deadline).await,
            Way::DeclinedThenPay => {
                match self.confirm(&id, "pm_card_chargeDeclined", deadline).await {
                    Told::Left => self.confirm(&id, "pm_card_visa", deadline).await,
                    other => other,
                }
            }
            Way::ThreeDsPass | Way::ThreeDsFail => {
                let told = self
                    .confirm(&id, "pm_card_authenticationRequired", deadline)
                    .await;
                let pass = job.way == Way::ThreeDsPass;
                match self.intent_of(&id).await {
                    Some(pi) if told == Told::Left => {
                        let result = if pass { "pass" } else { "fail" };
                        self.at_provider(&format!("{pi}/authenticate"), &[("result", result)])
                            .await;
                        if pass {
                            self.watch(&id, deadline).await
                        } else {
                            Told::Left
                        }
                    }
                    _ => told,
                }
            }
            Way::InBrowser | Way::PayLate => match self.intent_of(&id).await {
                Some(pi) => {
                    if job.way == Way::PayLate {
                        let late = job.expires_in * 1000 + rand::thread_rng().gen_range(0..400);
                        tokio::time::sleep(Duration::from_millis(late)).await;
                    }
                    let confirm = [("payment_method", "pm_card_visa")];
                    self.at_provider(&format!("{pi}/confirm"), &confirm).await;
                    self.watch(&id, deadline).await
                }
                None => Told::Left,
            },
        };
        result(Some(id), told)
    }

    /// Confirms with `method` until a definitive answer: complete, expired, or `Left`
    /// (declined, 3-D Secure required, processing, or the deadline passed).
    async fn confirm(&self, id: &str, method: &str, deadline: Instant) -> Told {
        loop {
            let url = format!(
                "{}/api/checkout_sessions/{id}/confirm",
                self.fleet.random_url()
            );
            let req = self
                .http
                .post(url)
                .json(&json!({ "payment_method": method }));
            match self.tally.send("confirm ", req).await {
                Attempt::Answer {
                    status: 200, body, ..
                } if body["outcome"] == "complete" => {
                    let sub = body["subscription"]["id"].as_str().unwrap_or_default();
                    return Told::Complete(sub.to_owned());
                }
                Attempt::Answer {
                    status: 200 | 202 | 402,
                    ..
                } => return Told::Left,
                Attempt::Answer {
                    status: 409, code, ..
                } if code == "checkout_session_not_open" => return self.read(id).await,
                Attempt::Answer { status: 503, .. } | Attempt::Lost => {}
                Attempt::Answer { status: 500, .. } => {}
                Attempt::Answer { status, code, .. } => return Told::Unexpected(status, code),
            }
            if Instant::now() > deadline {
                return Told::Left;
            }
            pause(50..200).await;
        }
    }

    /// Asks for the seat back until a definitive answer.
    async fn expire(&self, id: &str, deadline: Instant) -> Told {
        loop {
            let url = format!(
                "{}/api/checkout_sessions/{id}/expire",
                self.fleet.random_url()
            );
            match self.tally.send("expire ", self.http.post(url)).await {
                Attempt::Answer { status: 200, .. } => return Told::Expired,
                Attempt::Answer { status: 409, .. } => return self.read(id).await,
                Attempt::Answer { status: 503, .. } | Attempt::Lost => {}
                Attempt::Answer { status: 500, .. } => {}
                Attempt::Answer { status, code, .. } => return Told::Unexpected(status, code),
            }
            if Instant::now() > deadline {
                return Told::Left;
            }
            pause(50..200).await;
        }
    }

    /// Reads the session until it is no longer open (what a page polling it shows), or
    /// the deadline passes.
    async fn watch(&self, id: &str, deadline: Instant) -> Told {
        loop {
            match self.read(id).await {
                Told::Left if Instant::now() < deadline => pause(100..300).await,
                told => return told,
            }
        }
    }

    /// The session as one read shows it: complete, expired, or `Left` (open or unknown).
    async fn read(&self, id: &str) -> Told {
        let url = format!("{}/api/checkout_sessions/{id}", self.fleet.random_url());
        match get_json(&self.http, &url, false).await {
            Ok(s) if s["status"] == "complete" => {
                Told::Complete(s["subscription_id"].as_str().unwrap_or_default().to_owned())
            }
            Ok(s) if s["status"] == "expired" => Told::Expired,
            _ => Told::Left,
        }
    }

    /// The session's payment intent (attached at opening, or by a confirmation).
    async fn intent_of(&self, id: &str) -> Option<String> {
        let url = format!("{}/api/checkout_sessions/{id}", self.fleet.random_url());
        let s = get_json(&self.http, &url, false).await.ok()?;
        s["payment"]["payment_intent"].as_str().map(str::to_owned)
    }

    /// `POST /v1/payment_intents/{path}` at the provider, as the customer's browser does;
    /// a failure is left as it is (the customer gave up).
    async fn at_provider(&self, path: &str, form: &[(&str, &str)]) {
        let url = format!("{}/v1/payment_intents/{path}", self.paysim);
        let req = self.http.post(url).bearer_auth(SECRET).form(form);
        if let Ok(res) = req.send().await {
            let _ = res.bytes().await;
        }
    }
}

/// What the clients were told, counted, for the summary.
pub fn told_counts(results: &[CheckoutResult]) -> String {
    let mut counts = std::collections::BTreeMap::<String, u64>::new();
    for r in results {
        let label = match &r.told {
            Told::Complete(_) => "complete".to_owned(),
            Told::Unexpected(status, code) => format!("unexpected {status} {code}"),
            other => format!("{other:?}").to_lowercase(),
        };
        *counts.entry(label).or_default() += 1;
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A session's JSON through any instance, retried; `Null` when it cannot be read.
pub async fn session_json(http: &reqwest::Client, api: &str, id: &str) -> Value {
    get_json(http, &format!("{api}/api/checkout_sessions/{id}"), false)
        .await
        .unwrap_or(Value::Null)
}
