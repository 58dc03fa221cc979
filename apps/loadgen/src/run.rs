//! A load run: create the plans, open `connections` keep-alive connections, start the
//! clock, drive them (one task each) until the request budget or the time limit is used
//! up, resend the purchases whose outcome was unknown until it is known, then read the
//! plans back and verify. The checkout modes' tasks are in [`crate::checkout`].

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use bytes::Bytes;
use hyper::Method;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::{
    checkout,
    client::{Answer, Api, Conn, Target},
    stats::{summarize, Latency},
    tally::{
        steps::Step, verify, Mode, Observation, Original, PlanSnapshot, StatsSnapshot, Tally,
        Verdict,
    },
};

/// The echo endpoint the server serves when `bench.echo` is on.
pub const ECHO_PATH: &str = "/bench/echo";
const PURCHASE_PATH: &str = "/api/subscriptions/purchase";
/// Earlier keys each connection keeps for retries.
const RECENT_KEYS: usize = 32;
/// One request's time limit: past it the request counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long resending unknown outcomes may take in all.
pub(crate) const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// A payment method and its weight in the mix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightedMethod {
    pub name: String,
    pub weight: u32,
}

/// Parses `pm_card_visa[:WEIGHT],pm_card_chargeDeclined[:WEIGHT],…` (weight 1 when absent).
pub fn parse_payment_methods(spec: &str) -> anyhow::Result<Vec<WeightedMethod>> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = match part.split_once(':') {
            Some((n, w)) => (
                n,
                w.parse::<u32>()
                    .ok()
                    .filter(|w| *w > 0)
                    .with_context(|| format!("the weight of '{n}' must be a positive integer"))?,
            ),
            None => (part, 1),
        };
        if !name.starts_with("pm_") {
            bail!("'{name}' is not a payment method (pm_…)");
        }
        out.push(WeightedMethod {
            name: name.to_owned(),
            weight,
        });
    }
    if out.is_empty() {
        bail!("--payment-methods names no payment method");
    }
    Ok(out)
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// `http://127.0.0.1:PORT` (loopback only).
    pub base_url: String,
    pub mode: Mode,
    /// Concurrent keep-alive connections, one task each.
    pub connections: usize,
    /// Total requests (retries included); in the checkout modes, checkouts to start. The
    /// run also stops at `duration`.
    pub requests: Option<u64>,
    /// How long to send for; the run also stops after `requests`.
    pub duration: Option<Duration>,
    /// The hard time limit when `duration` is not given.
    pub max_duration: Duration,
    /// Plans to create; requests spread over them evenly (1: one hot plan).
    pub plans: usize,
    /// Seats of each plan.
    pub seats: u32,
    /// Share of requests that resend an earlier key with the same body (0..=1).
    pub retry_share: f64,
    /// Payment methods, chosen round-robin by weight (a checkout confirms with the one
    /// given).
    pub payment_methods: Vec<WeightedMethod>,
    /// The Stripe webhook endpoint's signing secret (`payments.webhook_secrets` of the
    /// server): checkouts sign their `payment_intent.succeeded` with it.
    pub webhook_secret: Option<String>,
    /// `expires_in` of the checkout sessions, in seconds (`None`: the server's default).
    pub expires_in_secs: Option<u32>,
    pub admin_token: Option<String>,
    /// The API key purchases are sent with; `None`: the run makes a `purchases` key with
    /// the admin token, as it makes its plans.
    pub api_key: Option<String>,
    /// Print progress to stderr this often (`None`: quiet).
    pub progress: Option<Duration>,
    /// Seed of the retry choices.
    pub seed: u64,
    /// At most this many requests (checkouts, in the checkout modes) per second in all,
    /// started on an even schedule (`None`: as fast as the connections go).
    pub rate: Option<f64>,
}

impl Options {
    /// Sensible defaults against `base_url`: 16 connections, 1,000 purchases of one plan.
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            mode: Mode::Purchase,
            connections: 16,
            requests: Some(1000),
            duration: None,
            max_duration: Duration::from_secs(900),
            plans: 1,
            seats: 1_000_000,
            retry_share: 0.0,
            payment_methods: vec![WeightedMethod {
                name: "pm_card_visa".into(),
                weight: 1,
            }],
            webhook_secret: None,
            expires_in_secs: None,
            admin_token: None,
            api_key: None,
            progress: None,
            seed: 0x5eed,
            rate: None,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.connections == 0 || self.connections > 4096 {
            bail!("--connections must be 1..=4096");
        }
        if self.requests.is_none() && self.duration.is_none() {
            bail!("give --requests, --duration or both");
        }
        if self.requests == Some(0) {
            bail!("--requests must be positive");
        }
        if self.mode != Mode::Echo && (self.plans == 0 || self.plans > 10_000) {
            bail!("--plans must be 1..=10000");
        }
        if !(1..=1_000_000).contains(&self.seats) {
            bail!("--seats must be 1..=1000000 (the API's largest capacity)");
        }
        if self.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
            bail!("--rate must be a positive number");
        }
        if !(0.0..=1.0).contains(&self.retry_share) {
            bail!("--retry-share must be within 0..=1");
        }
        if self.payment_methods.is_empty() {
            bail!("give at least one payment method");
        }
        if self.mode.is_checkout() {
            if self.retry_share > 0.0 {
                bail!("--retry-share is for purchases; checkouts resend only unknown outcomes");
            }
            if self.payment_methods.len() != 1 {
                bail!("a checkout confirms with one payment method: give one in --payment-methods");
            }
        }
        if self.mode == Mode::Checkout && self.webhook_secret.as_deref().is_none_or(str::is_empty) {
            bail!("checkouts sign their webhooks: give --webhook-secret (the server's payments.webhook_secrets)");
        }
        Ok(())
    }
}

/// Counts of one run, as printed and as written by `--json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub mode: Mode,
    pub base_url: String,
    pub connections: usize,
    pub plans: usize,
    pub seats_per_plan: u32,
    pub retry_share: f64,
    pub payment_methods: Vec<WeightedMethod>,
    /// Connections opened before the clock started (the others were opened by their
    /// first request, and their handshake counted in its latency).
    #[serde(default)]
    pub connections_opened: usize,
    /// How long opening them took, before the clock started.
    #[serde(default)]
    pub connect_secs: f64,
    /// Requests answered or failed while sending (retries included, settling not).
    pub requests: u64,
    pub elapsed_secs: f64,
    /// `requests / elapsed_secs`.
    pub throughput_rps: f64,
    /// First 201s while sending, per second; in the checkout modes, completed checkouts
    /// (abandoned: sessions opened) per second.
    pub created_per_sec: f64,
    /// Each request's; in the checkout modes, each completed checkout's, from sending its
    /// opening to its webhook's answer (abandoned: the opening's).
    pub latency: Latency,
    /// The checkout modes: each step's requests (`open`, `confirm`, `webhook`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub steps: BTreeMap<Step, Latency>,
    /// The checkout modes: the sessions' `expires_in` (`None`: the server's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_secs: Option<u32>,
    pub statuses: std::collections::BTreeMap<String, u64>,
    pub codes: std::collections::BTreeMap<String, u64>,
    pub replayed: u64,
    pub retries: u64,
    /// First 201s; in the checkout modes, completed checkouts (abandoned: sessions opened).
    pub created: u64,
    pub unknown_outcomes: u64,
    /// Requests sent after the run to resolve unknown outcomes.
    pub settle_requests: u64,
    pub plan_ids: Vec<String>,
    pub plans_after: Vec<PlanSnapshot>,
    pub verification: Verdict,
}

impl Report {
    /// The human-readable summary.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let methods = self
            .payment_methods
            .iter()
            .map(|m| format!("{}:{}", m.name, m.weight))
            .collect::<Vec<_>>()
            .join(",");
        let _ = match self.mode {
            Mode::Purchase => writeln!(
                s,
                "seatkeeper-loadgen: purchases against {}, {} connections, {} plan(s) x {} seats, retry share {:.2}, {}",
                self.base_url, self.connections, self.plans, self.seats_per_plan, self.retry_share, methods
            ),
            Mode::Echo => writeln!(
                s,
                "seatkeeper-loadgen: echo (trivial JSON POST) against {}, {} connections",
                self.base_url, self.connections
            ),
            Mode::Checkout => writeln!(
                s,
                "seatkeeper-loadgen: checkouts (open, confirm, webhook) against {}, {} connections, {} plan(s) x {} seats, {}",
                self.base_url, self.connections, self.plans, self.seats_per_plan, methods
            ),
            Mode::CheckoutAbandon => writeln!(
                s,
                "seatkeeper-loadgen: abandoned checkout sessions (opened, never confirmed, expires_in {}) against {}, {} connections, {} plan(s) x {} seats",
                self.expires_in_secs.map_or("the server's default".to_owned(), |e| format!("{e} s")),
                self.base_url, self.connections, self.plans, self.seats_per_plan
            ),
        };
        let _ = writeln!(
            s,
            "  connections   {} of {} opened in {:.3} s, before the clock",
            self.connections_opened, self.connections, self.connect_secs
        );
        let what = match self.mode {
            Mode::Checkout => "completed checkouts",
            Mode::CheckoutAbandon => "sessions opened",
            _ => "first 201s",
        };
        let _ = writeln!(
            s,
            "  requests      {} in {:.2} s: {:.1} req/s ({what}: {:.1}/s)",
            self.requests, self.elapsed_secs, self.throughput_rps, self.created_per_sec
        );
        let latency = |s: &mut String, name: &str, l: &Latency| {
            let _ = writeln!(
                s,
                "  {name:<13} p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}  mean {:.3}",
                l.p50_ms, l.p90_ms, l.p99_ms, l.max_ms, l.mean_ms
            );
        };
        let whole = if self.mode == Mode::Checkout {
            "checkout (ms)"
        } else {
            "latency (ms)"
        };
        latency(&mut s, whole, &self.latency);
        for (step, l) in &self.steps {
            latency(&mut s, &format!("{} (ms)", step.as_str()), l);
        }
        let join = |m: &std::collections::BTreeMap<String, u64>| {
            if m.is_empty() {
                "-".to_owned()
            } else {
                m.iter()
                    .map(|(k, v)| format!("{k}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let _ = writeln!(s, "  statuses      {}", join(&self.statuses));
        let _ = writeln!(s, "  codes         {}", join(&self.codes));
        let _ = writeln!(
            s,
            "  replays       {} of {} retries; {} unknown outcomes resolved with {} more requests",
            self.replayed, self.retries, self.unknown_outcomes, self.settle_requests
        );
        let _ = writeln!(
            s,
            "  verification  {}",
            if self.verification.passed {
                "PASSED"
            } else {
                "FAILED"
            }
        );
        for c in &self.verification.checks {
            let _ = writeln!(
                s,
                "    {} {}: {}",
                if c.passed { "ok  " } else { "FAIL" },
                c.name,
                c.detail
            );
        }
        s
    }
}

/// A request a connection sent, kept to be resent.
#[derive(Clone)]
struct Sent {
    plan: usize,
    key: String,
    body: Bytes,
}

/// What the connections share.
pub(crate) struct Shared {
    pub(crate) opts: Options,
    pub(crate) target: Target,
    pub(crate) plan_ids: Vec<String>,
    /// `Bearer <API key>` for purchases and checkouts.
    pub(crate) authorization: Option<String>,
    /// Payment method per slot of the weighted round-robin.
    pub(crate) schedule: Vec<String>,
    pub(crate) run_id: String,
    pub(crate) issued: AtomicU64,
    pub(crate) answered: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) started: Instant,
    pub(crate) deadline: Instant,
}

impl Shared {
    /// With a rate, waits until request (or checkout) `n`'s turn on the even schedule;
    /// `false` when that turn comes at or after the deadline.
    pub(crate) async fn pace(&self, n: u64) -> bool {
        let Some(rate) = self.opts.rate else {
            return true;
        };
        let at = self.started + Duration::from_secs_f64(n as f64 / rate);
        if at >= self.deadline {
            return false;
        }
        tokio::time::sleep_until(at.into()).await;
        true
    }
}

pub(crate) struct WorkerResult {
    pub(crate) latencies: Vec<u32>,
    /// The checkout modes: each step's latencies, by [`Step::ALL`]'s order.
    pub(crate) steps: Vec<Vec<u32>>,
    pub(crate) tally: Tally,
    pub(crate) requests: u64,
    pub(crate) created: u64,
    pub(crate) main_end: Instant,
    pub(crate) settle_requests: u64,
}

/// Runs the load and the verification.
pub async fn run(opts: &Options) -> anyhow::Result<Report> {
    opts.validate()?;
    let target = Target::parse(&opts.base_url)?;
    let api = Api {
        target: target.clone(),
        admin_token: opts.admin_token.clone(),
    };
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let (plan_ids, authorization) = match opts.mode {
        Mode::Purchase | Mode::Checkout | Mode::CheckoutAbandon => {
            let key = match &opts.api_key {
                Some(key) => key.clone(),
                None => create_key(&api, &run_id).await?,
            };
            (
                create_plans(&api, opts, &run_id).await?,
                Some(format!("Bearer {key}")),
            )
        }
        Mode::Echo => (Vec::new(), None),
    };
    let schedule = opts
        .payment_methods
        .iter()
        .flat_map(|m| std::iter::repeat_n(m.name.clone(), m.weight as usize))
        .collect();
    let opening = Instant::now();
    let conns = open_connections(&target, opts.connections).await;
    let connections_opened = conns.iter().filter(|c| c.is_some()).count();
    let connect_secs = opening.elapsed().as_secs_f64();
    let started = Instant::now();
    let limit = opts.duration.unwrap_or(opts.max_duration);
    let shared = Arc::new(Shared {
        opts: opts.clone(),
        target,
        plan_ids: plan_ids.clone(),
        authorization,
        schedule,
        run_id,
        issued: AtomicU64::new(0),
        answered: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        started,
        deadline: started + limit,
    });
    let done = Arc::new(AtomicBool::new(false));
    let progress = opts.progress.map(|every| {
        let shared = shared.clone();
        let done = done.clone();
        tokio::spawn(report_progress(shared, done, started, every))
    });
    let workers: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| {
            if opts.mode.is_checkout() {
                tokio::spawn(checkout::worker(shared.clone(), conn))
            } else {
                tokio::spawn(worker(i, shared.clone(), conn))
            }
        })
        .collect();
    let mut latencies = Vec::new();
    let mut steps: Vec<Vec<u32>> = vec![Vec::new(); Step::ALL.len()];
    let mut tally = Tally::new(opts.mode, plan_ids.len());
    let (mut requests, mut created, mut settle_requests) = (0, 0, 0);
    let mut main_end = started;
    for w in workers {
        let r = w.await.context("a connection task panicked")?;
        latencies.extend(r.latencies);
        for (all, mine) in steps.iter_mut().zip(r.steps) {
            all.extend(mine);
        }
        tally.merge(r.tally);
        requests += r.requests;
        created += r.created;
        settle_requests += r.settle_requests;
        main_end = main_end.max(r.main_end);
    }
    done.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        p.abort();
    }
    let elapsed = main_end.duration_since(started).as_secs_f64().max(1e-9);
    let plans_after = read_plans(&api, &plan_ids).await?;
    let verification = verify(&tally, &plans_after);
    Ok(Report {
        mode: opts.mode,
        base_url: opts.base_url.clone(),
        connections: opts.connections,
        plans: plan_ids.len(),
        seats_per_plan: opts.seats,
        retry_share: opts.retry_share,
        payment_methods: opts.payment_methods.clone(),
        connections_opened,
        connect_secs,
        requests,
        elapsed_secs: elapsed,
        throughput_rps: requests as f64 / elapsed,
        created_per_sec: created as f64 / elapsed,
        latency: summarize(&mut latencies),
        steps: Step::ALL
            .into_iter()
            .zip(steps.iter_mut())
            .filter(|(_, l)| !l.is_empty())
            .map(|(step, l)| (step, summarize(l)))
            .collect(),
        expires_in_secs: opts.expires_in_secs.filter(|_| opts.mode.is_checkout()),
        statuses: tally.statuses.clone(),
        codes: tally.codes.clone(),
        replayed: tally.replayed,
        retries: tally.retries,
        created: match opts.mode {
            Mode::CheckoutAbandon => tally.opened(),
            _ => tally.created(),
        },
        unknown_outcomes: tally.unknown_outcomes,
        settle_requests,
        plan_ids,
        plans_after,
        verification,
    })
}

/// Makes the `purchases` key the run buys with, and returns its secret.
async fn create_key(api: &Api, run_id: &str) -> anyhow::Result<String> {
    let body = json!({"role": "purchases", "name": format!("loadgen {run_id}")});
    let answer = api.admin_post("/api/keys", &body).await?;
    if answer.status != 201 {
        bail!(
            "making an API key answered {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    Ok(answer.json()?["secret"]
        .as_str()
        .context("the made key has no secret")?
        .to_owned())
}

async fn create_plans(api: &Api, opts: &Options, run_id: &str) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(opts.plans);
    for i in 0..opts.plans {
        let body = json!({
            "name": format!("loadgen {run_id} #{i}"),
            "capacity": opts.seats,
            "unit_amount": 1500,
            "currency": "usd",
            "interval": "month",
        });
        let answer = api.admin_post("/api/plans", &body).await?;
        if answer.status != 201 {
            bail!(
                "creating a plan answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            );
        }
        let id = answer.json()?["id"]
            .as_str()
            .context("the created plan has no id")?
            .to_owned();
        ids.push(id);
    }
    Ok(ids)
}

async fn read_plans(api: &Api, ids: &[String]) -> anyhow::Result<Vec<PlanSnapshot>> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        let plan = api.get(&format!("/api/plans/{id}")).await?;
        let stats = api.get(&format!("/api/plans/{id}/stats")).await?;
        if plan.status != 200 || stats.status != 200 {
            bail!(
                "reading plan {id} back answered {} / {}",
                plan.status,
                stats.status
            );
        }
        let plan = plan.json()?;
        let stats: StatsSnapshot = serde_json::from_value(stats.json()?)
            .with_context(|| format!("the stats of plan {id} are not as expected"))?;
        let num = |field: &str| {
            plan[field]
                .as_u64()
                .with_context(|| format!("plan {id} has no {field}"))
        };
        out.push(PlanSnapshot {
            id: id.clone(),
            capacity: num("capacity")?,
            seats_left: num("seats_left")?,
            stats,
        });
    }
    Ok(out)
}

async fn report_progress(
    shared: Arc<Shared>,
    done: Arc<AtomicBool>,
    started: Instant,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let mut last = 0;
    let mut last_at = started;
    while !done.load(Ordering::Relaxed) {
        tick.tick().await;
        let now = Instant::now();
        let answered = shared.answered.load(Ordering::Relaxed);
        let rate = (answered - last) as f64 / now.duration_since(last_at).as_secs_f64();
        eprintln!(
            "[{:>6.1}s] {answered} answers, {rate:.0}/s now, {} errors",
            now.duration_since(started).as_secs_f64(),
            shared.failed.load(Ordering::Relaxed)
        );
        last = answered;
        last_at = now;
    }
}

/// A small deterministic generator for retry choices (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// The fields of an answer the tally needs.
#[derive(Deserialize)]
struct AnswerFields {
    id: Option<String>,
    code: Option<String>,
    subscription_id: Option<String>,
}

fn observe(plan: usize, answer: Option<&Answer>, retry_of: Option<Original>) -> Observation {
    let Some(a) = answer else {
        return Observation {
            plan,
            status: 0,
            replayed: false,
            code: None,
            subscription_id: None,
            retry_of,
        };
    };
    let fields = if a.status == 201 || a.status >= 400 {
        serde_json::from_slice::<AnswerFields>(&a.body).ok()
    } else {
        None
    };
    let (code, subscription_id) = match fields {
        Some(f) if a.status == 201 => (None, f.id),
        Some(f) => (f.code, f.subscription_id),
        None => (None, None),
    };
    Observation {
        plan,
        status: a.status,
        replayed: a.replayed,
        code,
        subscription_id,
        retry_of,
    }
}

/// Sends a purchase (or an echo) with its key and the run's credential.
async fn exchange_purchase(
    conn: &mut Option<Conn>,
    target: &Target,
    path: &str,
    authorization: Option<&str>,
    sent: &Sent,
) -> Option<Answer> {
    let key = ("idempotency-key", sent.key.as_str());
    let with_auth;
    let headers: &[(&'static str, &str)] = match authorization {
        Some(a) => {
            with_auth = [key, ("authorization", a)];
            &with_auth
        }
        None => std::slice::from_ref(&key),
    };
    exchange(conn, target, Method::POST, path, headers, Some(&sent.body)).await
}

/// Sends one request on the connection, (re)connecting first when needed. `None` is a
/// transport error; the connection is then dropped and made again next time. A request
/// that never left because the server had closed the connection is sent once more on a
/// new one.
pub(crate) async fn exchange(
    conn: &mut Option<Conn>,
    target: &Target,
    method: Method,
    path: &str,
    headers: &[(&'static str, &str)],
    body: Option<&Bytes>,
) -> Option<Answer> {
    for _ in 0..2 {
        if conn.is_none() {
            match Conn::connect(target).await {
                Ok(c) => *conn = Some(c),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    return None;
                }
            }
        }
        let c = conn.as_mut()?;
        let result = tokio::time::timeout(
            REQUEST_TIMEOUT,
            c.try_send(method.clone(), path, headers, body.cloned()),
        )
        .await;
        match result {
            Ok(Ok(answer)) => return Some(answer),
            Ok(Err(failure)) if failure.unsent => *conn = None,
            _ => {
                *conn = None;
                return None;
            }
        }
    }
    None
}

/// Whether an answer is final: stored on the key and replayed to retries.
fn is_final(o: &Observation) -> bool {
    matches!(
        (o.status, o.code.as_deref()),
        (201, _) | (402, _) | (404, Some("plan_not_found")) | (409, Some("plan_sold_out"))
    )
}

/// Opens `n` connections at once, before the run's clock starts, so that a request's
/// latency is the request's and not its connection's handshake: a thousand handshakes at
/// once can take a second on loopback when the listener's queue drops some SYNs. One that
/// cannot be opened now is `None`; its worker opens it with its first request, whose
/// latency then counts the handshake, as a reconnect during the run does.
async fn open_connections(target: &Target, n: usize) -> Vec<Option<Conn>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let target = target.clone();
            tokio::spawn(async move { Conn::connect(&target).await.ok() })
        })
        .collect();
    let mut conns = Vec::with_capacity(n);
    for t in tasks {
        conns.push(t.await.ok().flatten());
    }
    conns
}

/// Sends purchases (or echoes) on one connection until the budget or the time is used up.
async fn worker(index: usize, shared: Arc<Shared>, mut conn: Option<Conn>) -> WorkerResult {
    let opts = &shared.opts;
    let path = match opts.mode {
        Mode::Echo => ECHO_PATH,
        _ => PURCHASE_PATH,
    };
    let customer = format!("lg{}-c{index}", shared.run_id);
    let budget = opts.requests.unwrap_or(u64::MAX);
    let mut rng = Rng(opts.seed ^ (index as u64).wrapping_mul(0x2545_F491_4F6C_DD1D));
    let mut latencies = Vec::new();
    let mut tally = Tally::new(opts.mode, shared.plan_ids.len());
    let mut recent: Vec<(Sent, Original)> = Vec::new();
    let mut unresolved: Vec<Sent> = Vec::new();
    let mut requests = 0;
    loop {
        if Instant::now() >= shared.deadline {
            break;
        }
        let n = shared.issued.fetch_add(1, Ordering::Relaxed);
        if n >= budget {
            break;
        }
        if !shared.pace(n).await {
            break;
        }
        let retry = opts.retry_share > 0.0 && !recent.is_empty() && rng.unit() < opts.retry_share;
        let (sent, retry_of) = if retry {
            let (sent, original) = &recent[rng.below(recent.len())];
            (sent.clone(), Some(original.clone()))
        } else {
            let plan = if shared.plan_ids.is_empty() {
                0
            } else {
                (n % shared.plan_ids.len() as u64) as usize
            };
            let plan_id = shared
                .plan_ids
                .get(plan)
                .map_or("00000000-0000-0000-0000-000000000000", String::as_str);
            let method = &shared.schedule[(n % shared.schedule.len() as u64) as usize];
            let body = format!(
                r#"{{"plan_id":"{plan_id}","customer_id":"{customer}","payment_method":"{method}"}}"#
            );
            let sent = Sent {
                plan,
                key: format!("k{n}"),
                body: Bytes::from(body),
            };
            (sent, None)
        };
        let t0 = Instant::now();
        let answer = exchange_purchase(
            &mut conn,
            &shared.target,
            path,
            shared.authorization.as_deref(),
            &sent,
        )
        .await;
        let micros = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        requests += 1;
        shared.answered.fetch_add(1, Ordering::Relaxed);
        if answer.as_ref().is_none_or(|a| a.status >= 500) {
            shared.failed.fetch_add(1, Ordering::Relaxed);
        }
        if answer.is_some() {
            latencies.push(micros);
        }
        let o = observe(sent.plan, answer.as_ref(), retry_of.clone());
        tally.record(&o);
        if opts.mode == Mode::Echo || retry_of.is_some() {
            continue;
        }
        if is_final(&o) {
            let original = Original {
                status: o.status,
                subscription_id: o.subscription_id,
            };
            if recent.len() < RECENT_KEYS {
                recent.push((sent, original));
            } else {
                let slot = rng.below(RECENT_KEYS);
                recent[slot] = (sent, original);
            }
        } else if o.status == 0 || o.code.as_deref() == Some("payment_unavailable") {
            unresolved.push(sent);
        }
    }
    let main_end = Instant::now();
    let created = tally.created();
    let settle_requests = settle(&mut conn, &shared, path, unresolved, &mut tally).await;
    WorkerResult {
        latencies,
        steps: Vec::new(),
        tally,
        requests,
        created,
        main_end,
        settle_requests,
    }
}

/// Resends every purchase whose outcome is unknown (503 `payment_unavailable`, no
/// answer) until it is known, within [`SETTLE_LIMIT`]. A replay then is the first
/// answer this client sees, so it counts as one.
async fn settle(
    conn: &mut Option<Conn>,
    shared: &Shared,
    path: &str,
    unresolved: Vec<Sent>,
    tally: &mut Tally,
) -> u64 {
    let until = Instant::now() + SETTLE_LIMIT;
    let mut sent_count = 0;
    for sent in unresolved {
        loop {
            let answer = exchange_purchase(
                conn,
                &shared.target,
                path,
                shared.authorization.as_deref(),
                &sent,
            )
            .await;
            sent_count += 1;
            let mut o = observe(sent.plan, answer.as_ref(), None);
            let pending = o.status == 0
                || o.status == 503
                || o.code.as_deref() == Some("idempotency_key_in_use");
            if pending && Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            o.replayed = false;
            tally.record(&o);
            break;
        }
    }
    sent_count
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payment_methods_take_optional_weights() {
        let m = parse_payment_methods("pm_card_visa:9, pm_card_chargeDeclined").unwrap();
        assert_eq!(m[0].weight, 9);
        assert_eq!(m[1].name, "pm_card_chargeDeclined");
        assert_eq!(m[1].weight, 1);
        assert!(parse_payment_methods("visa").is_err());
        assert!(parse_payment_methods("pm_card_visa:0").is_err());
        assert!(parse_payment_methods("").is_err());
    }

    #[test]
    fn an_options_set_without_requests_or_duration_is_refused() {
        let mut o = Options::new("http://127.0.0.1:1");
        o.requests = None;
        assert!(o.validate().is_err());
        o.duration = Some(Duration::from_secs(1));
        assert!(o.validate().is_ok());
        o.retry_share = 1.5;
        assert!(o.validate().is_err());
    }

    #[test]
    fn a_rate_must_be_a_positive_number() {
        let mut o = Options::new("http://127.0.0.1:1");
        for (rate, ok) in [(Some(2000.0), true), (None, true), (Some(0.0), false)] {
            o.rate = rate;
            assert_eq!(o.validate().is_ok(), ok, "{rate:?}");
        }
        o.rate = Some(f64::NAN);
        assert!(o.validate().is_err());
    }

    #[test]
    fn the_json_report_has_the_fields_scripts_read() {
        let report = Report {
            mode: Mode::Purchase,
            base_url: "http://127.0.0.1:3000".into(),
            connections: 64,
            plans: 1,
            seats_per_plan: 1000,
            retry_share: 0.0,
            payment_methods: parse_payment_methods("pm_card_visa").unwrap(),
            connections_opened: 64,
            connect_secs: 0.01,
            requests: 1000,
            elapsed_secs: 0.5,
            throughput_rps: 2000.0,
            created_per_sec: 2000.0,
            latency: summarize(&mut [1000, 2000, 3000]),
            steps: Default::default(),
            expires_in_secs: None,
            statuses: [("201".to_owned(), 1000)].into(),
            codes: Default::default(),
            replayed: 0,
            retries: 0,
            created: 1000,
            unknown_outcomes: 0,
            settle_requests: 0,
            plan_ids: vec!["p".into()],
            plans_after: Vec::new(),
            verification: verify(&Tally::new(Mode::Purchase, 0), &[]),
        };
        let v = serde_json::to_value(&report).unwrap();
        assert_eq!(v["mode"], "purchase");
        assert_eq!(v["throughput_rps"], 2000.0);
        assert_eq!(v["connections_opened"], 64);
        assert_eq!(v["latency"]["p50_ms"], 2.0);
        for field in ["p90_ms", "p99_ms", "max_ms", "mean_ms"] {
            assert!(v["latency"][field].is_number(), "{field}");
        }
        assert_eq!(v["statuses"]["201"], 1000);
        assert!(v["codes"].is_object());
        assert!(v["verification"]["passed"].is_boolean());
        assert!(v["verification"]["checks"][0]["name"].is_string());
        let back: Report = serde_json::from_value(v).unwrap();
        assert_eq!(back, report);
    }

    #[test]
    fn the_retry_dice_are_uniform_enough_and_repeatable() {
        let mut a = Rng(7);
        let mut b = Rng(7);
        let hits = (0..10_000).filter(|_| a.unit() < 0.25).count();
        assert!((2_200..2_800).contains(&hits), "{hits}");
        let _ = (0..10_000).filter(|_| b.unit() < 0.25).count();
        assert_eq!(a.next(), b.next());
    }
}
