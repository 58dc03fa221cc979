//! The fault-injection suite of issue 6: real `seatkeeper-server` processes on a fresh
//! database — each scenario runs twice, on PostgreSQL (`<scenario>::on_postgres`) and on
//! the MongoDB replica set (`<scenario>::on_mongodb`) — charging through the payment simulator (`seatkeeper-paysim`, run in
//! this test process, so it outlives every server it serves), under faults:
//!
//! 1. `kill -9` of server processes at random moments during a load of purchases;
//! 2. payment faults: declines, dropped answers, provider 500s and 429s;
//! 3. the database cut away (behind a TCP proxy in this process) for several seconds;
//! 4. all of them at once, with two clients per key retrying every failure with the same key;
//! 5. a charge landing after the reconciler gave its purchase up (the simulator holds it);
//! 6. a provider that cannot answer the reconciler's look-ups.
//!
//! Every client retries each non-definitive answer (409 `idempotency_key_in_use`, 503,
//! no answer) with the same key until it gets a definitive one or a bounded deadline
//! passes; some scenarios let a share of clients walk away instead, so that only the
//! reconciler can finish their purchases. Each scenario ends, once the load has stopped and
//! recovery has settled (`GET /api/admin/reconciliation` shows nothing in doubt), with
//! [`check_invariants`]: seats, audit log and subscriptions through the API, money through
//! the simulator's ledger. Each prints a one-line summary (run with `--nocapture` to see it).
//!
//! A scenario is skipped (with a message naming the database and the reason) when its
//! database server cannot be reached, except under `CI`, where that fails. The scenarios
//! run one at a time.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fs::File,
    ops::Range,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix_web::{
    body::BoxBody,
    dev::{ServerHandle, ServiceRequest, ServiceResponse},
    middleware::{from_fn, Next},
    web, App, HttpResponse, HttpServer,
};
use parking_lot::Mutex;
use rand::Rng;
use seatkeeper_domain::{invariants::check_store_plan, PlanId};
use seatkeeper_paysim::{Faults, Simulator};
use serde_json::{json, Value};
use tokio::task::JoinHandle;

mod common;

use common::{
    free_port,
    stores::{DatabaseKind, FreshDatabase},
    Proxy,
};

const TOKEN: &str = "fault-suite-admin-token";
const SECRET: &str = "sk_test_fault_suite";
/// The longest a client waits for one answer; anything longer is a hang.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The scenarios share two cores with the database and their servers: one at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

// ----- the scenarios -----

/// Runs a scenario on every durable store: `<scenario>::on_postgres` and
/// `<scenario>::on_mongodb`.
macro_rules! on_every_store {
    ($($scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_postgres() {
                super::$scenario(DatabaseKind::Postgres).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_mongodb() {
                super::$scenario(DatabaseKind::Mongo).await;
            }
        }
    )+};
}

on_every_store!(
    kill_9_at_random_moments_during_load_loses_no_purchase_and_charges_no_key_twice,
    payment_declines_dropped_answers_provider_500s_and_429s_during_load_leave_every_charge_attached_or_refunded,
    a_database_outage_during_load_answers_503_problems_then_recovers_by_itself_with_invariants_intact,
    clients_retrying_every_failure_with_the_same_key_through_kills_payment_faults_and_an_outage_are_charged_once_per_key,
    a_charge_that_lands_after_the_reconciler_gave_its_purchase_up_is_refunded_and_audited,
    while_the_provider_is_down_purchases_wait_in_doubt_without_a_busy_loop_and_finish_when_it_is_back,
);

async fn kill_9_at_random_moments_during_load_loses_no_purchase_and_charges_no_key_twice(
    kind: DatabaseKind,
) {
    let _serial = SERIAL.lock().await;
    let Some(sc) = Scenario::start(
        kind,
        "kill-9",
        Knobs::FAST,
        2,
        Faults {
            latency: Duration::from_millis(20),
            ..Faults::default()
        },
        Duration::from_millis(30),
        false,
    )
    .await
    else {
        return;
    };
    let load = Load::start(
        &sc,
        LoadSpec {
            workers: 12,
            max_jobs: 900,
            decline_share: 0.05,
            cancel_share: 0.1,
            abandon_share: 0.3,
            senders: 1,
            job_deadline: Duration::from_secs(30),
        },
    );
    // 12 kill events, 250–700 ms apart; the 4th and the 8th kill both instances at once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sc.kill_at_random(12, 250..700, &[3, 7]).await;
    let jobs = load.finish().await;
    let kills = sc.fleet.kills();
    assert!(kills >= 10, "only {kills} kills");
    sc.conclude(&load, &jobs, &[]).await;
}

async fn payment_declines_dropped_answers_provider_500s_and_429s_during_load_leave_every_charge_attached_or_refunded(
    kind: DatabaseKind,
) {
    let _serial = SERIAL.lock().await;
    let Some(sc) = Scenario::start(
        kind,
        "payment-faults",
        Knobs::FAST,
        1,
        Faults {
            latency: Duration::from_millis(10),
            error_rate: 0.05,
            drop_rate: 0.1,
            // Longer than the adapter's timeout: the answer is lost, the charge is not.
            drop_hang: Duration::from_millis(1500),
        },
        Duration::from_millis(20),
        false,
    )
    .await
    else {
        return;
    };
    sc.paysim.lane.set_rate_limit(0.03);
    let load = Load::start(
        &sc,
        LoadSpec {
            workers: 12,
            max_jobs: 600,
            decline_share: 0.3,
            cancel_share: 0.05,
            // A client that got 503 payment_unavailable sometimes never comes back: the
            // reconciler finds its charge.
            abandon_share: 0.3,
            senders: 1,
            job_deadline: Duration::from_secs(30),
        },
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let jobs = load.finish().await;
    let mut extra = Vec::new();
    let outcomes = load.tally.outcomes();
    let declines = outcomes
        .get("402 payment_declined")
        .copied()
        .unwrap_or_default();
    if declines == 0 {
        extra.push("no request was declined: the decline share did not reach the server".into());
    }
    let unknown = outcomes
        .get("503 payment_unavailable")
        .copied()
        .unwrap_or_default();
    if unknown == 0 {
        extra.push(
            "no 503 payment_unavailable: the dropped answers and 500s did not reach the client"
                .into(),
        );
    }
    sc.conclude(&load, &jobs, &extra).await;
}

async fn a_database_outage_during_load_answers_503_problems_then_recovers_by_itself_with_invariants_intact(
    kind: DatabaseKind,
) {
    let _serial = SERIAL.lock().await;
    let Some(sc) = Scenario::start(
        kind,
        "database-outage",
        Knobs::FAST,
        2,
        Faults {
            latency: Duration::from_millis(20),
            ..Faults::default()
        },
        Duration::from_millis(30),
        true,
    )
    .await
    else {
        return;
    };
    let load = Load::start(
        &sc,
        LoadSpec {
            workers: 12,
            max_jobs: 900,
            decline_share: 0.1,
            cancel_share: 0.05,
            abandon_share: 0.2,
            senders: 1,
            job_deadline: Duration::from_secs(30),
        },
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut extra = Vec::new();
    let outage = sc.outage(Duration::from_secs(6), &mut extra).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let jobs = load.finish().await;

    // What the clients saw while the database was away.
    let seen = load.tally.seen.lock().clone();
    let during: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.at >= outage.cut && s.at + s.took <= outage.restored)
        .collect();
    if during.is_empty() {
        extra.push("no request was answered during the outage".into());
    }
    for s in &during {
        if s.status != Some(503) || !s.problem_json || !s.retry_after {
            extra.push(format!(
                "during the outage a request got {} (problem+json: {}, Retry-After: {}) instead of a 503 problem",
                s.label, s.problem_json, s.retry_after
            ));
        }
    }
    let slowest = during.iter().map(|s| s.took).max().unwrap_or_default();
    if slowest > Duration::from_secs(5) {
        extra.push(format!(
            "a request hung for {slowest:?} while the database was away (acquire timeout 1 s)"
        ));
    }
    let after = seen
        .iter()
        .filter(|s| s.at >= outage.ready && s.status == Some(201))
        .count();
    if after == 0 {
        extra.push("no purchase succeeded after the database came back".into());
    }
    sc.note(format!(
        "outage {:.1} s: {} answers during it, slowest {:.2} s, ready again {:.1} s after restore, {after} sales after",
        (outage.restored - outage.cut).as_secs_f64(),
        during.len(),
        slowest.as_secs_f64(),
        (outage.ready - outage.restored).as_secs_f64(),
    ));
    extra.dedup();
    sc.conclude(&load, &jobs, &extra).await;
}

async fn clients_retrying_every_failure_with_the_same_key_through_kills_payment_faults_and_an_outage_are_charged_once_per_key(
    kind: DatabaseKind,
) {
    let _serial = SERIAL.lock().await;
    let Some(sc) = Scenario::start(
        kind,
        "same-key-retries",
        // The adapter retries once here (backoff included it fits in the 4 s lock lease).
        Knobs::RETRYING,
        2,
        Faults {
            latency: Duration::from_millis(20),
            error_rate: 0.05,
            drop_rate: 0.1,
            drop_hang: Duration::from_millis(1000),
        },
        Duration::from_millis(30),
        true,
    )
    .await
    else {
        return;
    };
    sc.paysim.lane.set_rate_limit(0.05);
    let load = Load::start(
        &sc,
        LoadSpec {
            workers: 8,
            max_jobs: 500,
            decline_share: 0.3,
            cancel_share: 0.0,
            abandon_share: 0.0,
            // Two clients send every key at once, to different instances, each retrying
            // until it has a definitive answer.
            senders: 2,
            job_deadline: Duration::from_secs(40),
        },
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    sc.kill_at_random(5, 250..700, &[2]).await;
    let mut extra = Vec::new();
    sc.outage(Duration::from_secs(3), &mut extra).await;
    sc.kill_at_random(5, 250..700, &[]).await;
    let jobs = load.finish().await;
    sc.conclude(&load, &jobs, &extra).await;
}

async fn a_charge_that_lands_after_the_reconciler_gave_its_purchase_up_is_refunded_and_audited(
    kind: DatabaseKind,
) {
    let _serial = SERIAL.lock().await;
    let Some(sc) = Scenario::start(
        kind,
        "late-charge",
        Knobs::LATE,
        1,
        Faults::default(),
        Duration::ZERO,
        false,
    )
    .await
    else {
        return;
    };
    let load = Load::start(
        &sc,
        LoadSpec {
            workers: 0,
            max_jobs: 0,
            decline_share: 0.0,
            cancel_share: 0.0,
            abandon_share: 0.0,
            senders: 1,
            job_deadline: Duration::from_secs(20),
        },
    );
    let lane = sc.paysim.lane.clone();
    let job = |n: usize| Job {
        customer: format!("cus_latecharge_{n}"),
        key: format!("order-latecharge-{n}"),
        plan: sc.plans[1].0.clone(),
        method: "pm_card_visa",
    };
    let purchase_once = |job: &Job| {
        let (load, job) = (load.clone(), job.clone());
        tokio::spawn(async move { load.purchase_once(&job).await })
    };
    let mut extra = Vec::new();

    // 1. The server dies while its charge is on the way; the charge lands after the
    //    reconciler gave the purchase up (never charged: expired, seat released); the
    //    late-charge check refunds it.
    let first = job(1);
    let before = lane.arm(Hold::ChargeOnRelease);
    let attempt = purchase_once(&first);
    lane.wait_arrival(before).await;
    sc.fleet.kill(0);
    sc.fleet.boot(0).await;
    let _ = attempt.await;
    let s1 = sc.only_subscription_of(&first.customer).await;
    sc.wait_for_status(&s1, "incomplete_expired").await;
    lane.release();
    let refunded = sc.wait_for_refund_of(&s1).await;
    sc.note(format!(
        "1: charge {refunded} landed after the give-up, refunded by the late-charge check"
    ));

    // 2. The server dies before its charge reaches the provider; the client retries after
    //    the lock lease, and its charge is on the way while the reconciler gives the
    //    purchase up: the request itself refunds it and answers 402.
    let second = job(2);
    let before = lane.arm(Hold::Swallow);
    let attempt = purchase_once(&second);
    lane.wait_arrival(before).await;
    let reserved = Instant::now();
    sc.fleet.kill(0);
    sc.fleet.boot(0).await;
    lane.release();
    let _ = attempt.await;
    let s2 = sc.only_subscription_of(&second.customer).await;
    tokio::time::sleep(
        (reserved + Duration::from_millis(sc.knobs.lock_lease_ms + 50))
            .saturating_duration_since(Instant::now()),
    )
    .await;
    let before = lane.arm(Hold::ChargeOnRelease);
    let retry = purchase_once(&second);
    lane.wait_arrival(before).await;
    sc.wait_for_status(&s2, "incomplete_expired").await;
    lane.release();
    let second_final = match retry.await.unwrap() {
        Attempt::Answer { status: 402, .. } => Final::Declined,
        Attempt::Answer { status, code, .. } => {
            extra.push(format!(
                "the retry whose charge landed late got {status} {code}, not 402"
            ));
            Final::Unexpected(status, code)
        }
        Attempt::Lost => {
            extra.push("the retry whose charge landed late got no answer".into());
            Final::GaveUp
        }
    };
    let refunded = sc.wait_for_refund_of(&s2).await;
    sc.note(format!(
        "2: the retry's charge {refunded} landed after the give-up, refunded at once, 402"
    ));

    // Each refund is audited once, by whoever made it.
    let audit = sc.audit(&sc.plans[1].0).await;
    for (sub, actor) in [
        (&s1, "reconciler".to_owned()),
        (&s2, format!("customer:{}", second.customer)),
    ] {
        let refunds: Vec<&Value> = audit
            .iter()
            .filter(|e| e["action"] == "payment_refunded" && e["subscription_id"] == sub.as_str())
            .collect();
        if refunds.len() != 1 || refunds[0]["actor"] != actor.as_str() {
            extra.push(format!(
                "subscription {sub}: refund audit entries {refunds:?}, expected one by {actor}"
            ));
        }
    }

    // The one-shot reconciler runs against the same database and simulator, and exits.
    let output = sc.fleet.reconcile_once().await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let reports: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if !output.status.success()
        || reports.is_empty()
        || reports.iter().any(|r| r["found"].as_u64().is_none())
    {
        extra.push(format!(
            "seatkeeper-server reconcile: {} with {stdout:?} {:?}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }

    let jobs = vec![
        JobResult {
            job: first,
            finals: vec![Final::Abandoned],
            canceled: false,
        },
        JobResult {
            job: second,
            finals: vec![second_final],
            canceled: false,
        },
    ];
    sc.conclude(&load, &jobs, &extra).await;
}

async fn while_the_provider_is_down_purchases_wait_in_doubt_without_a_busy_loop_and_finish_when_it_is_back(
    kind: DatabaseKind,
) {
    let _serial = SERIAL.lock().await;
    let Some(sc) = Scenario::start(
        kind,
        "provider-down",
        Knobs::FAST,
        1,
        Faults::default(),
        Duration::ZERO,
        false,
    )
    .await
    else {
        return;
    };
    let load = Load::start(
        &sc,
        LoadSpec {
            workers: 0,
            max_jobs: 0,
            decline_share: 0.0,
            cancel_share: 0.0,
            abandon_share: 1.0,
            senders: 1,
            job_deadline: Duration::from_secs(20),
        },
    );
    let lane = sc.paysim.lane.clone();
    let mut extra = Vec::new();

    // The provider answers nothing but 429s: each purchase reserves its seat, cannot
    // charge (503 payment_unavailable) and its client walks away.
    lane.set_rate_limit(1.0);
    let mut jobs = Vec::new();
    for n in 0..5 {
        let job = Job {
            customer: format!("cus_providerdown_{n}"),
            key: format!("order-providerdown-{n}"),
            plan: sc.plans[1].0.clone(),
            method: "pm_card_visa",
        };
        let final_ = match load.drive(&job).await {
            Final::Abandoned => Final::Abandoned,
            other => {
                extra.push(format!(
                    "{}: {other:?} while the provider was down",
                    job.key
                ));
                other
            }
        };
        jobs.push(JobResult {
            job,
            finals: vec![final_],
            canceled: false,
        });
    }

    // Once stale, the reconciler asks the provider each interval and leaves them in doubt.
    let stale_at = Instant::now() + Duration::from_millis(sc.knobs.recovery_lease_ms + 200);
    tokio::time::sleep(stale_at.saturating_duration_since(Instant::now())).await;
    let window = Duration::from_secs(3);
    let before = lane.searches.load(Ordering::SeqCst);
    tokio::time::sleep(window).await;
    let lookups = lane.searches.load(Ordering::SeqCst) - before;
    let runs = window.as_millis() as usize / sc.knobs.recovery_interval_ms as usize;
    // Five purchases per run, a run every interval, with slack for timing.
    let bound = 5 * (runs + 2) * 2;
    if lookups > bound {
        extra.push(format!(
            "the reconciler asked the unreachable provider {lookups} times in {window:?} (a run every {} ms should ask about {}): it retries in-doubt purchases in a busy loop",
            sc.knobs.recovery_interval_ms,
            5 * runs
        ));
    }
    let state = get_json(
        &sc.http,
        &format!("{}/api/admin/reconciliation", sc.fleet.url(0)),
        true,
    )
    .await
    .unwrap_or(Value::Null);
    if state["in_doubt"]["stale_incomplete"] != 5 {
        extra.push(format!(
            "the admin report does not show the 5 purchases in doubt: {}",
            state["in_doubt"]
        ));
    }
    sc.note(format!(
        "provider down: {lookups} look-ups in {:.0} s, {} in doubt",
        window.as_secs_f64(),
        state["in_doubt"]["stale_incomplete"]
    ));

    // The provider is back: nothing was charged, so every seat comes back.
    lane.set_rate_limit(0.0);
    sc.conclude(&load, &jobs, &extra).await;
}

// ----- settings of the server processes -----

/// The timing settings of the servers. Start-up checks that a charge (timeout × attempts
/// plus backoff) fits in the lock lease, and the recovery lease exceeds the lock lease.
#[derive(Debug, Clone, Copy)]
struct Knobs {
    lock_lease_ms: u64,
    recovery_lease_ms: u64,
    recovery_interval_ms: u64,
    verify_delay_ms: u64,
    payment_timeout_ms: u64,
    max_retries: u32,
}

impl Knobs {
    /// No adapter retry: every lost answer reaches the client as a 503.
    const FAST: Knobs = Knobs {
        lock_lease_ms: 2000,
        recovery_lease_ms: 3000,
        recovery_interval_ms: 500,
        verify_delay_ms: 1000,
        payment_timeout_ms: 500,
        max_retries: 0,
    };
    /// One adapter retry: 300 × 2 + 3000 < 4000.
    const RETRYING: Knobs = Knobs {
        lock_lease_ms: 4000,
        recovery_lease_ms: 5000,
        recovery_interval_ms: 500,
        verify_delay_ms: 1000,
        payment_timeout_ms: 300,
        max_retries: 1,
    };
    /// A charge may be held for seconds (the late-charge scenario holds one while the
    /// reconciler gives its purchase up); the reconciler looks every 100 ms.
    const LATE: Knobs = Knobs {
        lock_lease_ms: 3000,
        recovery_lease_ms: 4000,
        recovery_interval_ms: 100,
        verify_delay_ms: 2000,
        payment_timeout_ms: 2900,
        max_retries: 0,
    };
    const ACQUIRE_TIMEOUT_MS: u64 = 1000;

    fn env(&self, store_url: &str, paysim_url: &str) -> Vec<(String, String)> {
        [
            ("SEATKEEPER_HTTP__WORKERS", "2".to_owned()),
            ("SEATKEEPER_STORE__URL", store_url.to_owned()),
            ("SEATKEEPER_STORE__POOL_SIZE", "8".to_owned()),
            (
                "SEATKEEPER_STORE__ACQUIRE_TIMEOUT_MS",
                Self::ACQUIRE_TIMEOUT_MS.to_string(),
            ),
            ("SEATKEEPER_AUTH__ADMIN_TOKEN", TOKEN.to_owned()),
            ("SEATKEEPER_DEMO__SEED", "false".to_owned()),
            ("SEATKEEPER_PAYMENTS__PROVIDER", "stripe".to_owned()),
            ("SEATKEEPER_PAYMENTS__BASE_URL", paysim_url.to_owned()),
            ("SEATKEEPER_PAYMENTS__SECRET_KEY", SECRET.to_owned()),
            (
                "SEATKEEPER_PAYMENTS__TIMEOUT_MS",
                self.payment_timeout_ms.to_string(),
            ),
            (
                "SEATKEEPER_PAYMENTS__MAX_RETRIES",
                self.max_retries.to_string(),
            ),
            (
                "SEATKEEPER_IDEMPOTENCY__LOCK_LEASE_MS",
                self.lock_lease_ms.to_string(),
            ),
            (
                "SEATKEEPER_RECOVERY__LEASE_MS",
                self.recovery_lease_ms.to_string(),
            ),
            (
                "SEATKEEPER_RECOVERY__INTERVAL_MS",
                self.recovery_interval_ms.to_string(),
            ),
            (
                "SEATKEEPER_RECOVERY__VERIFY_DELAY_MS",
                self.verify_delay_ms.to_string(),
            ),
            ("SEATKEEPER_LOG__FORMAT", "text".to_owned()),
            (
                "SEATKEEPER_LOG__LEVEL",
                "warn,seatkeeper_domain=info".to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

// ----- the payment simulator, in this process -----

/// What the simulator does with the next charge (`POST /v1/payment_intents`) once armed.
#[derive(Debug, Clone, Copy)]
enum Hold {
    /// Hold it until released, then drop it unprocessed: the charge never reached the
    /// provider.
    Swallow,
    /// Hold it until released, then process it even if its caller is gone: a charge that
    /// lands late.
    ChargeOnRelease,
}

/// What the test adds to the simulator: a slow lane for one charge at a time, and
/// injected 429s.
#[derive(Default)]
struct Lane {
    armed: Mutex<Option<Hold>>,
    held: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    arrivals: AtomicUsize,
    /// Share of POSTs and searches answered 429 without effect.
    rate_limit: Mutex<f64>,
    rate_limited: AtomicUsize,
    /// Look-ups received (`GET /v1/payment_intents/search`), answered or not.
    searches: AtomicUsize,
}

impl Lane {
    fn set_rate_limit(&self, share: f64) {
        *self.rate_limit.lock() = share;
    }

    /// Holds the next charge; returns the arrival count to wait past.
    fn arm(&self, hold: Hold) -> usize {
        *self.armed.lock() = Some(hold);
        self.arrivals.load(Ordering::SeqCst)
    }

    /// Waits until a held charge has arrived after `before` (at most 10 s).
    async fn wait_arrival(&self, before: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.arrivals.load(Ordering::SeqCst) <= before {
            assert!(
                Instant::now() < deadline,
                "the held charge never reached the simulator"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn release(&self) {
        if let Some(release) = self.held.lock().take() {
            let _ = release.send(());
        }
    }
}

/// Answers late, as armed: the middleware of the simulator.
async fn slow_lane(
    lane: Arc<Lane>,
    jitter_ms: u64,
    mut req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let delay = rand::thread_rng().gen_range(0..=jitter_ms);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    // Stripe answers 429 when requests come too fast; nothing happens. The ledger's own
    // lists (what the test reads) are spared.
    let listing = req.method() == actix_web::http::Method::GET
        && matches!(req.path(), "/v1/payment_intents" | "/v1/refunds");
    if req.path() == "/v1/payment_intents/search" {
        lane.searches.fetch_add(1, Ordering::SeqCst);
    }
    let rate_limit = *lane.rate_limit.lock();
    if !listing && chance(rate_limit) {
        lane.rate_limited.fetch_add(1, Ordering::SeqCst);
        let body = json!({"error": {"type": "invalid_request_error", "code": "rate_limit",
            "message": "Too many requests hit the API too quickly (injected fault)."}});
        return Ok(req.into_response(
            HttpResponse::TooManyRequests()
                .content_type("application/json")
                .body(body.to_string()),
        ));
    }
    let charge =
        req.method() == actix_web::http::Method::POST && req.path() == "/v1/payment_intents";
    let hold = if charge {
        lane.armed.lock().take()
    } else {
        None
    };
    let Some(hold) = hold else {
        return next.call(req).await;
    };
    // Read the form now, while its sender is alive; the handler reads it later.
    let body = req.extract::<web::Bytes>().await?;
    req.set_payload(actix_web::dev::Payload::from(body));
    let (release, released) = tokio::sync::oneshot::channel();
    *lane.held.lock() = Some(release);
    lane.arrivals.fetch_add(1, Ordering::SeqCst);
    match hold {
        Hold::Swallow => {
            let _ = released.await;
            Ok(req.into_response(HttpResponse::ServiceUnavailable().finish()))
        }
        Hold::ChargeOnRelease => {
            let (done, answer) = tokio::sync::oneshot::channel();
            // Detached: it runs to the end even if the caller was killed meanwhile.
            actix_web::rt::spawn(async move {
                let _ = released.await;
                let _ = done.send(next.call(req).await);
            });
            answer.await.unwrap_or_else(|_| {
                Err(actix_web::error::ErrorInternalServerError(
                    "held charge lost",
                ))
            })
        }
    }
}

/// `seatkeeper-paysim` served from this test process: it survives every server kill, and
/// its ledger is the truth about money. Each answer is delayed by the simulator's own
/// `latency` plus a random 0..=`jitter`; the [`Lane`] holds single charges on demand.
struct Paysim {
    base_url: String,
    handle: ServerHandle,
    lane: Arc<Lane>,
}

impl Paysim {
    fn start(faults: Faults, jitter: Duration) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port for paysim");
        let port = listener.local_addr().unwrap().port();
        let data = web::Data::new(Arc::new(
            Simulator::new(None, faults).expect("an in-memory simulator"),
        ));
        let jitter_ms = jitter.as_millis() as u64;
        let lane = Arc::new(Lane::default());
        let shared = lane.clone();
        let server = HttpServer::new(move || {
            let lane = shared.clone();
            App::new()
                .app_data(data.clone())
                .app_data(web::FormConfig::default().limit(64 * 1024))
                .wrap(from_fn(move |req, next| {
                    slow_lane(lane.clone(), jitter_ms, req, next)
                }))
                .configure(seatkeeper_paysim::routes)
        })
        .listen(listener)
        .expect("serve paysim")
        .workers(2)
        .shutdown_timeout(1)
        .disable_signals()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            handle,
            lane,
        }
    }

    /// Every object of a Stripe list (`/v1/payment_intents`, `/v1/refunds`), page by page.
    async fn list_all(&self, http: &reqwest::Client, path: &str) -> Vec<Value> {
        let mut all: Vec<Value> = Vec::new();
        loop {
            let mut url = format!("{}{path}?limit=100", self.base_url);
            if let Some(last) = all.last() {
                url.push_str(&format!("&starting_after={}", last["id"].as_str().unwrap()));
            }
            let page: Value = http
                .get(&url)
                .bearer_auth(SECRET)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .unwrap_or_else(|e| panic!("GET {url}: {e}"))
                .json()
                .await
                .unwrap();
            let data = page["data"].as_array().cloned().unwrap_or_default();
            let more = page["has_more"].as_bool().unwrap_or(false);
            all.extend(data);
            if !more {
                return all;
            }
        }
    }
}

// ----- server processes -----

struct Slot {
    child: Option<Child>,
    port: u16,
}

/// `seatkeeper-server` processes on one database; killed when dropped. Each process
/// writes its log to its own file under `logs`.
struct Fleet {
    env: Vec<(String, String)>,
    slots: Mutex<Vec<Slot>>,
    logs: PathBuf,
    spawned: AtomicUsize,
    kills: AtomicUsize,
    http: reqwest::Client,
}

impl Fleet {
    async fn start(
        n: usize,
        env: Vec<(String, String)>,
        logs: PathBuf,
        http: reqwest::Client,
    ) -> Arc<Self> {
        let fleet = Arc::new(Self {
            env,
            slots: Mutex::new(
                (0..n)
                    .map(|_| Slot {
                        child: None,
                        port: free_port(),
                    })
                    .collect(),
            ),
            logs,
            spawned: AtomicUsize::new(0),
            kills: AtomicUsize::new(0),
            http,
        });
        for i in 0..n {
            fleet.boot(i).await;
        }
        fleet
    }

    fn len(&self) -> usize {
        self.slots.lock().len()
    }

    fn kills(&self) -> usize {
        self.kills.load(Ordering::SeqCst)
    }

    fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.slots.lock()[i].port)
    }

    /// Any instance, up or not: clients cope.
    fn random_url(&self) -> String {
        let i = rand::thread_rng().gen_range(0..self.len());
        self.url(i)
    }

    fn spawn(&self, port: u16) -> Child {
        let n = self.spawned.fetch_add(1, Ordering::SeqCst);
        let path = self.logs.join(format!("server-{n:02}-port-{port}.log"));
        let log = File::create(&path).expect("a server log file");
        Command::new(env!("CARGO_BIN_EXE_seatkeeper-server"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("SEATKEEPER_HTTP__ADDR", format!("127.0.0.1:{port}"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a server log file"))
            .stderr(log)
            .spawn()
            .expect("start seatkeeper-server")
    }

    /// Starts instance `i` (on its port; on a new one if that cannot be bound) and waits
    /// until it is ready.
    async fn boot(&self, i: usize) {
        for attempt in 0..3 {
            let port = {
                let mut slots = self.slots.lock();
                if attempt > 0 {
                    slots[i].port = free_port();
                }
                slots[i].port
            };
            let child = self.spawn(port);
            self.slots.lock()[i].child = Some(child);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let ready = self
                    .http
                    .get(format!("http://127.0.0.1:{port}/health/ready"))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                if ready {
                    return;
                }
                let exited = {
                    let mut slots = self.slots.lock();
                    slots[i]
                        .child
                        .as_mut()
                        .and_then(|c| c.try_wait().ok().flatten())
                };
                if let Some(status) = exited {
                    eprintln!("instance {i} on port {port} exited at start-up ({status}); trying another port");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "instance {i} on port {port} was not ready after 30 s; logs in {}",
                    self.logs.display()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!(
            "instance {i} could not start; logs in {}",
            self.logs.display()
        );
    }

    /// `kill -9` (SIGKILL) instance `i`.
    fn kill(&self, i: usize) {
        let mut slots = self.slots.lock();
        if let Some(mut child) = slots[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.kills.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Fleet {
    /// Kills every instance (not counted as a fault).
    fn stop_all(&self) {
        for slot in self.slots.lock().iter_mut() {
            if let Some(mut child) = slot.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// `seatkeeper-server reconcile`, the one-shot reconciler, with the fleet's settings.
    async fn reconcile_once(&self) -> std::process::Output {
        let env = self.env.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_seatkeeper-server"))
                .arg("reconcile")
                .envs(env)
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .output()
                .expect("run seatkeeper-server reconcile")
        })
        .await
        .unwrap()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for slot in self.slots.get_mut() {
            if let Some(mut child) = slot.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

// ----- one scenario -----

/// Fields drop in order: the servers go before the database they use.
struct Scenario {
    name: &'static str,
    started: Instant,
    fleet: Arc<Fleet>,
    paysim: Paysim,
    proxy: Option<Proxy>,
    http: reqwest::Client,
    knobs: Knobs,
    /// `(id, capacity)`
    plans: Vec<(String, u64)>,
    notes: Mutex<Vec<String>>,
    /// The database, directly (it lives as long as this).
    db: FreshDatabase,
}

/// When an outage began, ended, and when every instance was ready again.
struct Outage {
    cut: Instant,
    restored: Instant,
    ready: Instant,
}

impl Scenario {
    /// A fresh database, the simulator, `instances` servers and three plans: 25 seats
    /// (sells out early), 120 seats, and 100,000 seats. `None` when the database server is
    /// not reachable (and `CI` is not set).
    async fn start(
        kind: DatabaseKind,
        name: &'static str,
        knobs: Knobs,
        instances: usize,
        faults: Faults,
        jitter: Duration,
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
        let paysim = Paysim::start(faults, jitter);
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
        Some(Self {
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

    fn note(&self, note: String) {
        self.notes.lock().push(note);
    }

    /// `events` kills, `gap` milliseconds apart; events whose index is in `all_at` kill
    /// every instance at once. Each killed instance is restarted at once (and waited for).
    async fn kill_at_random(&self, events: usize, gap: Range<u64>, all_at: &[usize]) {
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
    async fn outage(&self, length: Duration, problems: &mut Vec<String>) -> Outage {
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

    /// The id of the one subscription of `customer`.
    async fn only_subscription_of(&self, customer: &str) -> String {
        let url = format!(
            "{}/api/customers/{customer}/subscriptions",
            self.fleet.url(0)
        );
        let page = get_json(&self.http, &url, false).await.unwrap();
        let data = page["data"].as_array().cloned().unwrap_or_default();
        assert_eq!(data.len(), 1, "subscriptions of {customer}: {page}");
        data[0]["id"].as_str().unwrap().to_owned()
    }

    /// Waits (at most 15 s) until the subscription has `status`.
    async fn wait_for_status(&self, id: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let url = format!("{}/api/subscriptions/{id}", self.fleet.url(0));
            let sub = get_json(&self.http, &url, false)
                .await
                .unwrap_or(Value::Null);
            if sub["status"] == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "subscription {id} is still {} after 15 s, not {status}",
                sub["status"]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (at most 15 s) until a succeeded charge of the subscription is refunded;
    /// returns the charge's id.
    async fn wait_for_refund_of(&self, id: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let intents = self
                .paysim
                .list_all(&self.http, "/v1/payment_intents")
                .await;
            let refunds = self.paysim.list_all(&self.http, "/v1/refunds").await;
            let charge = intents
                .iter()
                .find(|i| i["metadata"]["subscription_id"] == id && i["status"] == "succeeded");
            if let Some(charge) = charge {
                if refunds.iter().any(|r| r["payment_intent"] == charge["id"]) {
                    return charge["id"].as_str().unwrap().to_owned();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no refunded charge of subscription {id} after 15 s (charge: {charge:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A plan's whole audit log (admin), page by page.
    async fn audit(&self, plan: &str) -> Vec<Value> {
        fetch_audit(&self.http, &self.fleet.url(0), plan)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits (bounded) until recovery has nothing left in doubt and no plan holds an
    /// `incomplete` subscription.
    async fn wait_for_recovery(&self) -> Result<Duration, String> {
        let started = Instant::now();
        let bound = Duration::from_millis(
            self.knobs.recovery_lease_ms + self.knobs.verify_delay_ms + 20_000,
        );
        let api = self.fleet.url(0);
        loop {
            let state = get_json(&self.http, &format!("{api}/api/admin/reconciliation"), true)
                .await
                .unwrap_or(Value::Null);
            let stale = state["in_doubt"]["stale_incomplete"].as_u64();
            let pending = state["in_doubt"]["pending_verifications"].as_u64();
            let mut incomplete = 0;
            for (plan, _) in &self.plans {
                let stats = get_json(&self.http, &format!("{api}/api/plans/{plan}/stats"), false)
                    .await
                    .unwrap_or(Value::Null);
                incomplete += stats["incomplete"].as_u64().unwrap_or(1);
            }
            if stale == Some(0) && pending == Some(0) && incomplete == 0 {
                return Ok(started.elapsed());
            }
            if started.elapsed() > bound {
                return Err(format!(
                    "recovery did not settle in {bound:?}: stale incomplete {stale:?}, pending verifications {pending:?}, incomplete {incomplete}; last state {state}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Waits for recovery, checks every invariant, replays every finished key once more,
    /// prints the summary and fails on any violation (`extra` are the scenario's own).
    async fn conclude(self, load: &Load, jobs: &[JobResult], extra: &[String]) {
        let mut violations: Vec<String> = extra.to_vec();
        let settled = match self.wait_for_recovery().await {
            Ok(took) => format!(
                "recovery settled {:.1} s after the load",
                took.as_secs_f64()
            ),
            Err(e) => {
                violations.push(e);
                "recovery did not settle".into()
            }
        };
        let checked = check_invariants(&self, jobs).await;
        violations.extend(checked.violations.iter().cloned());
        violations.extend(replay_every_key(&self, jobs, &checked).await);
        violations.extend(server_panics(&self.fleet.logs));
        violations.extend(load.tally.bad_answers());
        self.fleet.stop_all();

        let outcomes = load.tally.outcomes();
        let requests: u64 = outcomes.values().sum();
        let outcomes = outcomes
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let verdict = if violations.is_empty() {
            "invariants OK".to_owned()
        } else {
            format!("{} INVARIANT VIOLATIONS", violations.len())
        };
        let rate_limited = self.paysim.lane.rate_limited.load(Ordering::SeqCst);
        if rate_limited > 0 {
            self.note(format!(
                "the provider answered 429 to {rate_limited} requests"
            ));
        }
        let notes = self.notes.lock().join("; ");
        println!(
            "[faults/{}/{}] {} kills · {} keys, {requests} requests ({outcomes}) · {} · {} · {settled} · {notes}{}{verdict} · {:.1} s",
            self.name,
            self.db.kind,
            self.fleet.kills(),
            jobs.len(),
            checked.keys,
            checked.money,
            if notes.is_empty() { "" } else { " · " },
            self.started.elapsed().as_secs_f64(),
        );
        if violations.is_empty() {
            if std::env::var_os("SEATKEEPER_FAULTS_KEEP_LOGS").is_none() {
                let _ = std::fs::remove_dir_all(&self.fleet.logs);
            } else {
                println!(
                    "[faults/{}] server logs in {}",
                    self.name,
                    self.fleet.logs.display()
                );
            }
        } else {
            for v in violations.iter().take(40) {
                eprintln!("  violation: {v}");
            }
            panic!(
                "{}: {} violations (first: {}); server logs in {}",
                self.name,
                violations.len(),
                violations[0],
                self.fleet.logs.display()
            );
        }
        self.paysim.handle.stop(false).await;
    }
}

/// `panicked at` in any server log.
fn server_panics(logs: &Path) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(dir) = std::fs::read_dir(logs) {
        for entry in dir.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            for line in text.lines().filter(|l| l.contains("panicked at")) {
                found.push(format!("{}: {line}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

/// A plan's whole audit log through `GET /api/plans/{id}/audit` (admin), following
/// `next_cursor`.
async fn fetch_audit(http: &reqwest::Client, api: &str, plan: &str) -> Result<Vec<Value>, String> {
    let mut audit: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{api}/api/plans/{plan}/audit?limit=100");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = get_json(http, &url, true).await?;
        audit.extend(page["data"].as_array().cloned().unwrap_or_default());
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            return Ok(audit);
        }
    }
}

async fn get_json(http: &reqwest::Client, url: &str, admin: bool) -> Result<Value, String> {
    let mut last = String::new();
    for _ in 0..5 {
        let mut req = http.get(url).timeout(REQUEST_TIMEOUT);
        if admin {
            req = req.bearer_auth(TOKEN);
        }
        match req.send().await {
            Ok(res) if res.status().is_success() => {
                return res.json().await.map_err(|e| format!("GET {url}: {e}"))
            }
            Ok(res) if res.status() == 404 => return Err(format!("GET {url}: 404")),
            Ok(res) => last = format!("GET {url}: {}", res.status()),
            Err(e) => last = format!("GET {url}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}

// ----- the load -----

#[derive(Debug, Clone, Copy)]
struct LoadSpec {
    /// Concurrent keys.
    workers: usize,
    /// The most keys the load starts.
    max_jobs: usize,
    /// Share of keys paying with `pm_card_chargeDeclined`.
    decline_share: f64,
    /// Share of sold subscriptions the client cancels right away.
    cancel_share: f64,
    /// Chance that a client walks away after a request that got no answer or a 503 (a
    /// purchase that only the reconciler can finish, if it reserved a seat).
    abandon_share: f64,
    /// Clients sending each key at once.
    senders: usize,
    /// How long a client keeps retrying one key.
    job_deadline: Duration,
}

/// One attempt as the client saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    took: Duration,
    status: Option<u16>,
    label: String,
    problem_json: bool,
    retry_after: bool,
}

#[derive(Default)]
struct Tally {
    seen: Mutex<Vec<Seen>>,
}

impl Tally {
    /// Answers no client should ever get, whatever the fault: a 500, an error that is not
    /// a problem document, a 503 without `Retry-After`, or no answer within the timeout.
    fn bad_answers(&self) -> Vec<String> {
        let mut bad = BTreeMap::<String, u64>::new();
        for s in self.seen.lock().iter() {
            let why = match s.status {
                Some(503) if !s.retry_after => "a 503 without Retry-After",
                Some(500..) if s.status != Some(503) => "a 5xx other than 503",
                Some(400..) if !s.problem_json => "an error that is not application/problem+json",
                None if s.took >= REQUEST_TIMEOUT => {
                    "no answer within the request timeout (a hang)"
                }
                _ => continue,
            };
            *bad.entry(format!("{why}: {}", s.label)).or_default() += 1;
        }
        bad.into_iter()
            .map(|(why, n)| format!("{n} × {why}"))
            .collect()
    }

    fn outcomes(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for s in self.seen.lock().iter() {
            *counts.entry(s.label.clone()).or_default() += 1;
        }
        counts
    }
}

#[derive(Debug, Clone)]
struct Job {
    customer: String,
    key: String,
    plan: String,
    method: &'static str,
}

/// How a client's work on a key ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Final {
    Created {
        subscription: String,
        payment: String,
    },
    Declined,
    SoldOut,
    /// The client walked away after a non-definitive failure.
    Abandoned,
    /// No definitive answer before the deadline.
    GaveUp,
    /// An answer no purchase should get.
    Unexpected(u16, String),
}

impl Final {
    fn definitive(&self) -> bool {
        matches!(
            self,
            Final::Created { .. } | Final::Declined | Final::SoldOut
        )
    }
}

#[derive(Debug, Clone)]
struct JobResult {
    job: Job,
    /// One per sender.
    finals: Vec<Final>,
    canceled: bool,
}

enum Attempt {
    Answer {
        status: u16,
        code: String,
        body: Value,
    },
    Lost,
}

struct Load {
    spec: LoadSpec,
    tag: String,
    plans: Vec<String>,
    fleet: Arc<Fleet>,
    http: reqwest::Client,
    tally: Tally,
    next: AtomicUsize,
    stop: AtomicBool,
    workers: Mutex<Vec<JoinHandle<Vec<JobResult>>>>,
}

fn chance(p: f64) -> bool {
    p > 0.0 && rand::thread_rng().gen_bool(p.min(1.0))
}

async fn pause(ms: Range<u64>) {
    let ms = rand::thread_rng().gen_range(ms);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

impl Load {
    fn start(sc: &Scenario, spec: LoadSpec) -> Arc<Self> {
        let load = Arc::new(Self {
            spec,
            tag: sc.name.replace('-', ""),
            plans: sc.plans.iter().map(|(id, _)| id.clone()).collect(),
            fleet: sc.fleet.clone(),
            http: sc.http.clone(),
            tally: Tally::default(),
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

    /// Stops starting keys and waits until every client is done with its key.
    async fn finish(self: &Arc<Self>) -> Vec<JobResult> {
        self.stop.store(true, Ordering::SeqCst);
        let workers = std::mem::take(&mut *self.workers.lock());
        let mut jobs = Vec::new();
        for w in workers {
            jobs.extend(w.await.expect("a client task panicked"));
        }
        jobs
    }

    fn job(&self, i: usize) -> Job {
        let mut rng = rand::thread_rng();
        Job {
            // One customer per key: a charge's metadata[customer_id] names its key.
            customer: format!("cus_{}_{i:05}", self.tag),
            key: format!("order-{}-{i}", self.tag),
            plan: self.plans[rng.gen_range(0..self.plans.len())].clone(),
            method: if rng.gen_bool(self.spec.decline_share) {
                "pm_card_chargeDeclined"
            } else {
                "pm_card_visa"
            },
        }
    }

    async fn worker(self: Arc<Self>) -> Vec<JobResult> {
        let mut done = Vec::new();
        while !self.stop.load(Ordering::SeqCst) {
            let i = self.next.fetch_add(1, Ordering::SeqCst);
            if i >= self.spec.max_jobs {
                break;
            }
            let job = self.job(i);
            let finals = if self.spec.senders == 1 {
                vec![self.drive(&job).await]
            } else {
                futures::future::join_all((0..self.spec.senders).map(|s| {
                    let job = &job;
                    let this = &self;
                    async move {
                        if s > 0 {
                            pause(0..30).await;
                        }
                        this.drive(job).await
                    }
                }))
                .await
            };
            let mut canceled = false;
            if let Some(Final::Created { subscription, .. }) = finals.first() {
                if chance(self.spec.cancel_share) {
                    canceled = self.cancel(subscription).await;
                }
            }
            done.push(JobResult {
                job,
                finals,
                canceled,
            });
        }
        done
    }

    fn record(
        &self,
        at: Instant,
        status: Option<u16>,
        label: String,
        headers: Option<&reqwest::header::HeaderMap>,
    ) {
        let problem_json = headers
            .and_then(|h| h.get("content-type"))
            .is_some_and(|v| v == "application/problem+json");
        let retry_after = headers.is_some_and(|h| h.contains_key("retry-after"));
        self.tally.seen.lock().push(Seen {
            at,
            took: at.elapsed(),
            status,
            label,
            problem_json,
            retry_after,
        });
    }

    fn lost_label(prefix: &str, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            format!("{prefix}no answer (timeout)")
        } else if e.is_connect() {
            format!("{prefix}connection refused")
        } else {
            format!("{prefix}connection lost")
        }
    }

    async fn send(&self, prefix: &str, req: reqwest::RequestBuilder) -> Attempt {
        let at = Instant::now();
        match req.timeout(REQUEST_TIMEOUT).send().await {
            Err(e) => {
                self.record(at, None, Self::lost_label(prefix, &e), None);
                Attempt::Lost
            }
            Ok(res) => {
                let status = res.status().as_u16();
                let headers = res.headers().clone();
                match res.json::<Value>().await {
                    Ok(body) => {
                        let code = body["code"]
                            .as_str()
                            .unwrap_or(match status {
                                201 => "created",
                                s if s < 300 => "ok",
                                _ => "-",
                            })
                            .to_owned();
                        self.record(
                            at,
                            Some(status),
                            format!("{prefix}{status} {code}"),
                            Some(&headers),
                        );
                        Attempt::Answer { status, code, body }
                    }
                    Err(e) => {
                        self.record(at, None, Self::lost_label(prefix, &e), None);
                        Attempt::Lost
                    }
                }
            }
        }
    }

    /// One purchase request for the key, to any instance.
    async fn purchase_once(&self, job: &Job) -> Attempt {
        let req = self
            .http
            .post(format!("{}/api/subscriptions/purchase", self.fleet.random_url()))
            .header("Idempotency-Key", &job.key)
            .json(&json!({"plan_id": job.plan, "customer_id": job.customer, "payment_method": job.method}));
        self.send("", req).await
    }

    /// Sends the key until a definitive answer, the deadline, or (sometimes, after a
    /// non-definitive failure) the client walks away.
    async fn drive(&self, job: &Job) -> Final {
        let deadline = Instant::now() + self.spec.job_deadline;
        loop {
            let walk_away = match self.purchase_once(job).await {
                Attempt::Answer {
                    status: 201, body, ..
                } => {
                    return Final::Created {
                        subscription: body["id"].as_str().unwrap_or_default().to_owned(),
                        payment: body["payment_id"].as_str().unwrap_or_default().to_owned(),
                    }
                }
                Attempt::Answer { status: 402, .. } => return Final::Declined,
                Attempt::Answer {
                    status: 409, code, ..
                } if code == "plan_sold_out" => return Final::SoldOut,
                Attempt::Answer {
                    status: 409, code, ..
                } if code == "idempotency_key_in_use" => false,
                Attempt::Answer { status: 503, .. } => chance(self.spec.abandon_share),
                // Never expected; retried so that the end state still gets checked.
                Attempt::Answer { status: 500, .. } => false,
                Attempt::Answer { status, code, .. } => return Final::Unexpected(status, code),
                Attempt::Lost => chance(self.spec.abandon_share),
            };
            if walk_away {
                return Final::Abandoned;
            }
            if Instant::now() > deadline {
                return Final::GaveUp;
            }
            pause(50..200).await;
        }
    }

    /// Cancels a subscription, retrying failures; whether it ended canceled.
    async fn cancel(&self, subscription: &str) -> bool {
        let deadline = Instant::now() + self.spec.job_deadline;
        while Instant::now() < deadline {
            let url = self.fleet.random_url();
            let req = self
                .http
                .post(format!("{url}/api/subscriptions/{subscription}/cancel"));
            match self.send("cancel ", req).await {
                Attempt::Answer { status: 200, .. } => return true,
                // An earlier attempt may have cancelled it before its answer was lost.
                Attempt::Answer { status: 409, .. } => {
                    return get_json(
                        &self.http,
                        &format!("{url}/api/subscriptions/{subscription}"),
                        false,
                    )
                    .await
                    .is_ok_and(|s| s["status"] == "canceled")
                }
                Attempt::Answer { status, .. } if status < 500 => return false,
                _ => pause(50..200).await,
            }
        }
        false
    }
}

// ----- the invariants -----

/// What the final check found.
struct Checked {
    violations: Vec<String>,
    /// Subscriptions by status, for the summary.
    keys: String,
    /// The ledger and the reconciler's work, for the summary.
    money: String,
    /// Subscription (if any) of each customer.
    subscription_of: HashMap<String, Value>,
    /// How many payment intents the ledger held.
    intents: usize,
}

/// The full check, through the API (`fleet.url(0)`) and the simulator's ledger:
///
/// - every plan: `capacity == seats_left + incomplete + active`, no `incomplete` left, the
///   stats' counts match the subscriptions, and the audit log (admin, every page) replays
///   from `plan_created` at 0 to `seats_left`, each entry starting where the last ended,
///   every subscription reserved once and activated / released / cancelled / refunded as
///   its status says;
/// - every succeeded PaymentIntent belongs to exactly one `active` or `canceled`
///   subscription whose `payment_id` it is, or is refunded (and the refund audited);
/// - every active or canceled subscription has exactly one succeeded PaymentIntent;
/// - each key (one customer per key) has at most one subscription and at most one charge,
///   and keeps one exactly when its subscription holds the seat it paid for;
/// - what each client was told (201 with a subscription and payment, 402, 409 sold out)
///   is what the store holds, and clients sending one key agree;
/// - the database's own view agrees (`check_store_plan`).
async fn check_invariants(sc: &Scenario, jobs: &[JobResult]) -> Checked {
    let api = sc.fleet.url(0);
    let http = &sc.http;
    let mut v: Vec<String> = Vec::new();

    // The ledger.
    let intents = sc.paysim.list_all(http, "/v1/payment_intents").await;
    let refunds = sc.paysim.list_all(http, "/v1/refunds").await;
    let mut refunded: HashMap<String, i64> = HashMap::new();
    for r in &refunds {
        *refunded
            .entry(r["payment_intent"].as_str().unwrap_or_default().to_owned())
            .or_default() += r["amount"].as_i64().unwrap_or_default();
    }
    let succeeded: Vec<&Value> = intents
        .iter()
        .filter(|i| i["status"] == "succeeded")
        .collect();
    let fully_refunded = |intent: &Value| {
        refunded
            .get(intent["id"].as_str().unwrap_or_default())
            .is_some_and(|&amount| amount >= intent["amount"].as_i64().unwrap_or(i64::MAX))
    };

    // Every key's subscriptions (one customer per key).
    let mut subscription_of: HashMap<String, Value> = HashMap::new();
    let mut subscriptions: HashMap<String, Value> = HashMap::new();
    for r in jobs {
        let customer = &r.job.customer;
        match get_json(
            http,
            &format!("{api}/api/customers/{customer}/subscriptions?limit=100"),
            false,
        )
        .await
        {
            Ok(page) => {
                let data = page["data"].as_array().cloned().unwrap_or_default();
                if data.len() > 1 {
                    v.push(format!(
                        "key {} has {} subscriptions: {:?}",
                        r.job.key,
                        data.len(),
                        data.iter().map(|s| s["id"].clone()).collect::<Vec<_>>()
                    ));
                }
                for s in data {
                    if s["plan_id"] != r.job.plan.as_str() {
                        v.push(format!(
                            "key {}: subscription {} is on plan {} instead of {}",
                            r.job.key, s["id"], s["plan_id"], r.job.plan
                        ));
                    }
                    subscriptions
                        .insert(s["id"].as_str().unwrap_or_default().to_owned(), s.clone());
                    subscription_of.insert(customer.clone(), s);
                }
            }
            Err(e) => v.push(format!("subscriptions of {customer}: {e}")),
        }
    }
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    for s in subscriptions.values() {
        *by_status
            .entry(s["status"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }

    // Seats, stats and the audit log of each plan.
    let mut refund_audited: HashSet<String> = HashSet::new();
    let mut reconciler: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (plan, capacity) in &sc.plans {
        let stats = match get_json(http, &format!("{api}/api/plans/{plan}/stats"), false).await {
            Ok(s) => s,
            Err(e) => {
                v.push(format!("stats of {plan}: {e}"));
                continue;
            }
        };
        let n = |f: &str| stats[f].as_u64().unwrap_or(u64::MAX / 4);
        if n("capacity") != *capacity
            || n("capacity") != n("seats_left") + n("incomplete") + n("active")
        {
            v.push(format!(
                "plan {plan}: capacity {} != seats_left {} + incomplete {} + active {}",
                n("capacity"),
                n("seats_left"),
                n("incomplete"),
                n("active")
            ));
        }
        if n("incomplete") != 0 {
            v.push(format!(
                "plan {plan}: {} incomplete subscriptions after recovery",
                n("incomplete")
            ));
        }
        let ours = |status: &str| {
            subscriptions
                .values()
                .filter(|s| s["plan_id"] == plan.as_str() && s["status"] == status)
                .count() as u64
        };
        for status in ["active", "canceled", "incomplete_expired"] {
            if ours(status) != n(status) {
                v.push(format!(
                    "plan {plan}: stats count {} {status}, the keys' subscriptions {}",
                    n(status),
                    ours(status)
                ));
            }
        }

        let audit = match fetch_audit(http, &api, plan).await {
            Ok(audit) => audit,
            Err(e) => {
                v.push(e);
                Vec::new()
            }
        };
        let mut seats: Option<u64> = None;
        let mut actions: HashMap<String, BTreeMap<String, u64>> = HashMap::new();
        for (i, e) in audit.iter().enumerate() {
            let action = e["action"].as_str().unwrap_or("?");
            let before = e["seats_left_before"].as_u64().unwrap_or(u64::MAX);
            let after = e["seats_left_after"].as_u64().unwrap_or(u64::MAX);
            if e["seq"].as_u64() != Some(i as u64 + 1) {
                v.push(format!("plan {plan}: audit entry {i} has seq {}", e["seq"]));
            }
            match seats {
                None if action != "plan_created" || before != 0 => v.push(format!(
                    "plan {plan}: the audit log starts with {action} from {before}, not plan_created from 0"
                )),
                Some(prev) if prev != before => v.push(format!(
                    "plan {plan}: audit seq {} starts at {before} seats but the previous entry left {prev}",
                    e["seq"]
                )),
                _ => {}
            }
            let delta = after as i64 - before as i64;
            let allowed = match action {
                "seat_reserved" => delta == -1,
                "seat_released" | "subscription_canceled" => delta == 1,
                "purchase_activated" | "payment_refunded" => delta == 0,
                "plan_created" => i == 0,
                other => {
                    v.push(format!("plan {plan}: unexpected audit action {other}"));
                    true
                }
            };
            if !allowed || after > *capacity {
                v.push(format!(
                    "plan {plan}: audit seq {} {action} moves seats {before} -> {after}",
                    e["seq"]
                ));
            }
            seats = Some(after);
            if let Some(sub) = e["subscription_id"].as_str() {
                *actions
                    .entry(sub.to_owned())
                    .or_default()
                    .entry(action.to_owned())
                    .or_default() += 1;
                if action == "payment_refunded" {
                    refund_audited.insert(sub.to_owned());
                }
            }
            if e["actor"] == "reconciler" {
                let what = match action {
                    "purchase_activated" => "activated",
                    "seat_released" => "expired",
                    "payment_refunded" => "refunded",
                    _ => "other",
                };
                *reconciler.entry(what).or_default() += 1;
            }
        }
        if seats != Some(n("seats_left")) {
            v.push(format!(
                "plan {plan}: the audit log replays to {seats:?} seats left, the plan has {}",
                n("seats_left")
            ));
        }
        // Each subscription's entries, as its status says.
        for (sub, counts) in &actions {
            let Some(s) = subscriptions.get(sub) else {
                v.push(format!(
                    "plan {plan}: the audit log names subscription {sub}, which belongs to no key"
                ));
                continue;
            };
            let c = |a: &str| counts.get(a).copied().unwrap_or(0);
            let expected: [u64; 4] = match s["status"].as_str() {
                Some("active") => [1, 1, 0, 0],
                Some("canceled") => [1, 1, 0, 1],
                Some("incomplete_expired") => [1, 0, 1, 0],
                _ => [1, 0, 0, 0],
            };
            let actual = [
                c("seat_reserved"),
                c("purchase_activated"),
                c("seat_released"),
                c("subscription_canceled"),
            ];
            if actual != expected || c("payment_refunded") > 1 {
                v.push(format!(
                    "subscription {sub} ({}): audit entries {counts:?}",
                    s["status"]
                ));
            }
        }
        for (id, s) in &subscriptions {
            if s["plan_id"] == plan.as_str() && !actions.contains_key(id) {
                v.push(format!("subscription {id} has no audit entry"));
            }
        }

        // The database agrees.
        let plan_id: PlanId = plan.parse().unwrap();
        for problem in check_store_plan(sc.db.store.as_ref(), plan_id).await {
            v.push(format!("plan {plan} in the database: {problem}"));
        }
    }

    // Money: every succeeded intent is attached to a live subscription or refunded.
    let mut charges_of: HashMap<String, Vec<&Value>> = HashMap::new();
    let mut intents_of_customer: HashMap<String, Vec<&Value>> = HashMap::new();
    let customers: HashSet<&str> = jobs.iter().map(|r| r.job.customer.as_str()).collect();
    for intent in &intents {
        let customer = intent["metadata"]["customer_id"]
            .as_str()
            .unwrap_or_default();
        if !customers.contains(customer) {
            v.push(format!(
                "payment intent {} names customer {customer:?}, no key's",
                intent["id"]
            ));
        }
        intents_of_customer
            .entry(customer.to_owned())
            .or_default()
            .push(intent);
    }
    for intent in &succeeded {
        let id = intent["id"].as_str().unwrap_or_default();
        let sub_id = intent["metadata"]["subscription_id"]
            .as_str()
            .unwrap_or_default();
        charges_of
            .entry(sub_id.to_owned())
            .or_default()
            .push(intent);
        let sub = match get_json(http, &format!("{api}/api/subscriptions/{sub_id}"), false).await {
            Ok(s) => s,
            Err(e) => {
                v.push(format!(
                    "succeeded payment intent {id} names subscription {sub_id}: {e}"
                ));
                continue;
            }
        };
        if sub["customer_id"] != intent["metadata"]["customer_id"] {
            v.push(format!(
                "payment intent {id} of customer {} pays subscription {sub_id} of {}",
                intent["metadata"]["customer_id"], sub["customer_id"]
            ));
        }
        match sub["status"].as_str() {
            Some("active") | Some("canceled") => {
                if sub["payment_id"] != id {
                    v.push(format!(
                        "succeeded payment intent {id} is not the payment of its {} subscription {sub_id} (payment_id {})",
                        sub["status"], sub["payment_id"]
                    ));
                    if !fully_refunded(intent) {
                        v.push(format!(
                            "payment intent {id} is neither attached nor refunded"
                        ));
                    }
                } else if refunded.contains_key(id) {
                    v.push(format!(
                        "payment intent {id} pays the {} subscription {sub_id} but was refunded",
                        sub["status"]
                    ));
                }
            }
            status => {
                if !fully_refunded(intent) {
                    v.push(format!(
                        "succeeded payment intent {id} belongs to the {status:?} subscription {sub_id} and was not refunded"
                    ));
                } else if !refund_audited.contains(sub_id) {
                    v.push(format!(
                        "the refund of {id} (subscription {sub_id}) is not in the audit log"
                    ));
                }
            }
        }
    }
    for r in &refunds {
        let pi = r["payment_intent"].as_str().unwrap_or_default();
        if !succeeded.iter().any(|i| i["id"] == pi) {
            v.push(format!(
                "refund {} of {pi}, which is not a succeeded charge",
                r["id"]
            ));
        }
    }
    for (id, s) in &subscriptions {
        if matches!(s["status"].as_str(), Some("active") | Some("canceled")) {
            let charges = charges_of.get(id).map(Vec::len).unwrap_or(0);
            if charges != 1 {
                v.push(format!(
                    "{} subscription {id} has {charges} succeeded payment intents",
                    s["status"]
                ));
            }
        }
    }

    // Each key: one subscription, one charge, and what its clients were told.
    let mut finals: BTreeMap<&'static str, u64> = BTreeMap::new();
    for r in jobs {
        let key = &r.job.key;
        let customer = &r.job.customer;
        let sub = subscription_of.get(customer);
        let theirs = intents_of_customer.get(customer.as_str());
        let charged: Vec<&&Value> = theirs
            .iter()
            .flat_map(|v| v.iter())
            .filter(|i| i["status"] == "succeeded")
            .collect();
        if charged.len() > 1 {
            v.push(format!(
                "key {key} was charged {} times: {:?}",
                charged.len(),
                charged.iter().map(|i| i["id"].clone()).collect::<Vec<_>>()
            ));
        }
        let paid_subs: HashSet<&str> = theirs
            .iter()
            .flat_map(|v| v.iter())
            .filter_map(|i| i["metadata"]["subscription_id"].as_str())
            .collect();
        if paid_subs.len() > 1 {
            v.push(format!(
                "key {key} has payment intents for {} subscriptions",
                paid_subs.len()
            ));
        }
        let kept = charged.iter().filter(|i| !fully_refunded(i)).count();
        let holds =
            sub.is_some_and(|s| matches!(s["status"].as_str(), Some("active") | Some("canceled")));
        if (kept == 1) != holds || kept > 1 {
            v.push(format!(
                "key {key}: {kept} charges kept, subscription {:?}",
                sub.map(|s| s["status"].clone())
            ));
        }
        for f in &r.finals {
            match f {
                Final::Created {
                    subscription,
                    payment,
                } => {
                    let ok = sub.is_some_and(|s| {
                        s["id"] == subscription.as_str()
                            && s["payment_id"] == payment.as_str()
                            && matches!(s["status"].as_str(), Some("active") | Some("canceled"))
                    });
                    if !ok {
                        v.push(format!(
                            "key {key}: the client got 201 {subscription} paid by {payment}, the store has {sub:?}"
                        ));
                    }
                    if (sub.map(|s| s["status"] == "canceled") == Some(true)) != r.canceled {
                        v.push(format!(
                            "key {key}: cancelled by the client: {}, status {:?}",
                            r.canceled,
                            sub.map(|s| s["status"].clone())
                        ));
                    }
                }
                Final::Declined => {
                    if sub.map(|s| s["status"] == "incomplete_expired") != Some(true) {
                        v.push(format!(
                            "key {key}: the client got 402, the store has {sub:?}"
                        ));
                    }
                }
                Final::SoldOut => {
                    if sub.is_some() {
                        v.push(format!(
                            "key {key}: the client got 409 sold out, the store has {sub:?}"
                        ));
                    }
                }
                Final::Unexpected(status, code) => {
                    v.push(format!("key {key}: unexpected answer {status} {code}"))
                }
                Final::Abandoned | Final::GaveUp => {}
            }
        }
        let definitive: Vec<&Final> = r.finals.iter().filter(|f| f.definitive()).collect();
        if definitive.windows(2).any(|w| w[0] != w[1]) {
            v.push(format!(
                "key {key}: its clients were told different things: {:?}",
                r.finals
            ));
        }
        for f in &r.finals {
            *finals
                .entry(match f {
                    Final::Created { .. } => "created",
                    Final::Declined => "declined",
                    Final::SoldOut => "sold out",
                    Final::Abandoned => "abandoned",
                    Final::GaveUp => "gave up",
                    Final::Unexpected(..) => "unexpected",
                })
                .or_default() += 1;
        }
    }
    let without_answer = jobs
        .iter()
        .filter(|r| !r.finals.iter().any(Final::definitive))
        .count();

    let by_status = by_status
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let finals = finals
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let reconciler = reconciler
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    Checked {
        violations: v,
        keys: format!(
            "clients: {finals}; keys without a definitive answer: {without_answer} · subscriptions: {by_status}"
        ),
        money: format!(
            "ledger: {} intents, {} succeeded, {} refunds · reconciler: {}",
            intents.len(),
            succeeded.len(),
            refunds.len(),
            if reconciler.is_empty() { "nothing to do".to_owned() } else { reconciler }
        ),
        subscription_of,
        intents: intents.len(),
    }
}

/// Sends every key that reached a subscription or a definitive answer once more, after
/// recovery: each must replay (`Idempotent-Replayed: true`) what the store holds, and the
/// ledger must not grow.
async fn replay_every_key(sc: &Scenario, jobs: &[JobResult], checked: &Checked) -> Vec<String> {
    let mut v = Vec::new();
    for r in jobs {
        let sub = checked.subscription_of.get(&r.job.customer);
        let sold_out = r.finals.contains(&Final::SoldOut);
        if sub.is_none() && !sold_out {
            // Never reserved anything: sending it now would be a new purchase.
            continue;
        }
        let res = sc
            .http
            .post(format!("{}/api/subscriptions/purchase", sc.fleet.url(0)))
            .header("Idempotency-Key", &r.job.key)
            .json(&json!({"plan_id": r.job.plan, "customer_id": r.job.customer, "payment_method": r.job.method}))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await;
        let res = match res {
            Ok(res) => res,
            Err(e) => {
                v.push(format!("replay of {}: {e}", r.job.key));
                continue;
            }
        };
        let status = res.status().as_u16();
        let replayed = res
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|h| h == "true");
        let body: Value = res.json().await.unwrap_or(Value::Null);
        let expected = match sub.and_then(|s| s["status"].as_str()) {
            Some("active") | Some("canceled") => 201,
            Some("incomplete_expired") => 402,
            None => 409,
            Some(_) => 0,
        };
        let same = status != 201 || sub.is_some_and(|s| s["id"] == body["id"]);
        if !replayed || status != expected || !same {
            v.push(format!(
                "key {} sent again after recovery: {status} (replayed: {replayed}), expected a replayed {expected}: {body}",
                r.job.key
            ));
        }
    }
    let after = sc
        .paysim
        .list_all(&sc.http, "/v1/payment_intents")
        .await
        .len();
    if after != checked.intents {
        v.push(format!(
            "sending every key again made {} new payment intents",
            after - checked.intents
        ));
    }
    v
}
