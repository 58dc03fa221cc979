//! `seatkeeper-paysim`, the payment simulator, served from this test process ([`Paysim`]),
//! with what the suite adds in front of it as a middleware ([`Lane`]): random jitter,
//! injected 429s, failed cancellations, a count of the reconciler's look-ups, and a slow lane that holds one
//! charge until the test releases it — to drop it unprocessed ([`Hold::Swallow`]) or to
//! process it after its caller is gone ([`Hold::ChargeOnRelease`]). When a scenario asks
//! for webhooks ([`Provider::with_webhooks`]), the simulator signs them with
//! [`WEBHOOK_SECRET`] and delivers them, with their own faults, to the [`Relay`]: the load
//! balancer in front of the fleet, served by the same test server.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
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
use seatkeeper_paysim::{Delivery, Faults, Simulator, WebhookSettings};
use serde_json::{json, Value};

use crate::{load::chance, relay::Relay, SECRET, WEBHOOK_SECRET};

/// The payment provider of a scenario: its faults, the jitter the suite adds to every
/// answer, and its webhooks (none unless asked for).
#[derive(Clone)]
pub struct Provider {
    pub faults: Faults,
    pub jitter: Duration,
    pub webhooks: Option<WebhookSettings>,
}

impl Provider {
    pub fn new(faults: Faults, jitter: Duration) -> Self {
        Self {
            faults,
            jitter,
            webhooks: None,
        }
    }

    /// Webhooks for every event, with these retries and faults, to the fleet's relay.
    pub fn with_webhooks(mut self, settings: WebhookSettings) -> Self {
        self.webhooks = Some(settings);
        self
    }
}

/// What the simulator does with the next charge (`POST /v1/payment_intents`) once armed.
#[derive(Debug, Clone, Copy)]
pub enum Hold {
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
pub struct Lane {
    armed: Mutex<Option<Hold>>,
    held: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    arrivals: AtomicUsize,
    /// Share of POSTs and searches answered 429 without effect.
    rate_limit: Mutex<f64>,
    pub rate_limited: AtomicUsize,
    /// Share of cancellations answered 500 without effect.
    cancel_failures: Mutex<f64>,
    /// Look-ups received (`GET /v1/payment_intents/search`), answered or not.
    pub searches: AtomicUsize,
}

impl Lane {
    pub fn set_rate_limit(&self, share: f64) {
        *self.rate_limit.lock() = share;
    }

    pub fn set_cancel_failures(&self, share: f64) {
        *self.cancel_failures.lock() = share;
    }

    /// Holds the next charge; returns the arrival count to wait past.
    pub fn arm(&self, hold: Hold) -> usize {
        *self.armed.lock() = Some(hold);
        self.arrivals.load(Ordering::SeqCst)
    }

    /// Waits until a held charge has arrived after `before` (at most 10 s).
    pub async fn wait_arrival(&self, before: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.arrivals.load(Ordering::SeqCst) <= before {
            assert!(
                Instant::now() < deadline,
                "the held charge never reached the simulator"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn release(&self) {
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
    // The relay is the fleet's load balancer, not the provider.
    if req.path().starts_with(Relay::PATH) {
        return next.call(req).await;
    }
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
    let post = req.method() == actix_web::http::Method::POST;
    if post && req.path().ends_with("/cancel") && chance(*lane.cancel_failures.lock()) {
        let body = json!({"error": {"type": "api_error",
            "message": "The cancellation failed (injected fault)."}});
        return Ok(req.into_response(
            HttpResponse::InternalServerError()
                .content_type("application/json")
                .body(body.to_string()),
        ));
    }
    let charge = post && req.path() == "/v1/payment_intents";
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
pub struct Paysim {
    pub base_url: String,
    pub handle: ServerHandle,
    pub lane: Arc<Lane>,
    pub relay: Arc<Relay>,
    simulator: Arc<Simulator>,
}

impl Paysim {
    pub fn start(provider: &Provider) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a port for paysim");
        let port = listener.local_addr().unwrap().port();
        let base_url = format!("http://127.0.0.1:{port}");
        let mut simulator =
            Simulator::new(None, provider.faults.clone()).expect("an in-memory simulator");
        if let Some(settings) = &provider.webhooks {
            simulator = simulator
                .with_webhook_settings(settings.clone())
                .with_webhook_endpoint(&format!("{base_url}{}", Relay::PATH), WEBHOOK_SECRET);
        }
        let simulator = Arc::new(simulator);
        let data = web::Data::new(simulator.clone());
        let jitter_ms = provider.jitter.as_millis() as u64;
        let lane = Arc::new(Lane::default());
        let relay = Arc::new(Relay::default());
        let shared = lane.clone();
        let relay_data = web::Data::new(relay.clone());
        let server = HttpServer::new(move || {
            let lane = shared.clone();
            App::new()
                .app_data(data.clone())
                .app_data(relay_data.clone())
                .app_data(web::FormConfig::default().limit(64 * 1024))
                .wrap(from_fn(move |req, next| {
                    slow_lane(lane.clone(), jitter_ms, req, next)
                }))
                .route(Relay::PATH, web::post().to(crate::relay::forward))
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
            base_url,
            handle,
            lane,
            relay,
            simulator,
        }
    }

    /// Every webhook delivery so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.simulator.webhooks().deliveries()
    }

    /// Every object of a Stripe list (`/v1/payment_intents`, `/v1/refunds`), page by page.
    pub async fn list_all(&self, http: &reqwest::Client, path: &str) -> Vec<Value> {
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
