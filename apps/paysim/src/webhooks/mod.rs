//! Webhook events, signed and delivered as Stripe does, with faults.
//!
//! An event (`payment_intent.succeeded`, `payment_intent.payment_failed`,
//! `payment_intent.canceled`, `payment_intent.requires_action`) is made when an intent
//! changes, and queued for every endpoint whose `enabled_events` has its type (or `*`).
//! Each endpoint has one background task that posts its queue, so an API answer never
//! waits for a delivery. A delivery is `POST <url>` of the event's JSON with
//! `Stripe-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`, keyed with
//! the endpoint's whole `whsec_…` secret and signed again at every attempt. Any answer
//! but a 2xx, or none within 10 s, is retried after 1 s, 2 s, 4 s … (at most 60 s), each
//! multiplied by [`WebhookSettings::retry_scale`], until [`WebhookSettings::max_attempts`].
//!
//! Faults ([`WebhookFaults`]): `drop_rate` (that share of deliveries never happens),
//! `duplicate_rate` (that share is delivered twice, as two deliveries of the same event),
//! `delay` (every first attempt waits that long) and `reorder` (the task waits 200 ms
//! after the first delivery is due, then sends all that are due, newest first).
//!
//! Every delivery is listed by [`Webhooks::deliveries`] (and `GET /v1/_sim/webhook_deliveries`).

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use hmac::{Hmac, Mac};
use parking_lot::{Mutex, RwLock};
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::{runtime::Handle, sync::Notify, task::JoinHandle, time::Instant};

use crate::ledger::WebhookEndpoint;

mod task;
use task::run;

/// The API version events are written in.
pub const API_VERSION: &str = "2024-06-20";
/// How long one delivery attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(60);
/// With `reorder`, how long a task gathers deliveries after the first one is due.
pub const REORDER_WINDOW: Duration = Duration::from_millis(200);

/// How webhook deliveries misbehave.
#[derive(Debug, Clone, Default)]
pub struct WebhookFaults {
    /// Share of deliveries that never happen (0 to 1).
    pub drop_rate: f64,
    /// Share of deliveries made twice (0 to 1).
    pub duplicate_rate: f64,
    /// Every delivery's first attempt waits this long.
    pub delay: Duration,
    /// Deliveries due together are sent newest first.
    pub reorder: bool,
}

/// Retries and faults of webhook deliveries.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Multiplies the retry schedule (1 s, 2 s, 4 s … 60 s): 0.001 makes it milliseconds.
    pub retry_scale: f64,
    /// Attempts of one delivery before it is given up (at least 1).
    pub max_attempts: u32,
    pub faults: WebhookFaults,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            retry_scale: 1.0,
            max_attempts: 8,
            faults: WebhookFaults::default(),
        }
    }
}

impl WebhookSettings {
    /// The wait after the `failed`-th failed attempt: 1 s, 2 s, 4 s … at most 60 s, scaled.
    pub fn retry_after(&self, failed: u32) -> Duration {
        let base = FIRST_RETRY
            .saturating_mul(1 << failed.saturating_sub(1).min(16))
            .min(MAX_RETRY);
        base.mul_f64(self.retry_scale.clamp(0.0, 1e6))
    }
}

/// A `Stripe-Signature` header for `body` sent at `timestamp` (unix seconds).
pub fn signature_header(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// A new endpoint secret, `whsec_…`.
pub fn new_secret() -> String {
    format!(
        "whsec_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

pub(crate) fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// One delivery of one event to one endpoint, as the admin listing shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Delivery {
    /// `whdel_…`
    pub id: String,
    /// The event's id, `evt_…` (the same for both deliveries of a duplicate).
    pub event: String,
    pub event_type: String,
    pub payment_intent: Option<String>,
    pub endpoint: String,
    pub url: String,
    /// The second delivery of a duplicated event.
    pub duplicate: bool,
    /// `pending`, `delivered`, `failed` (given up), `dropped` (fault) or `abandoned`
    /// (its endpoint was deleted).
    pub state: String,
    pub attempts: u32,
    /// The HTTP status of the last attempt, if it got one.
    pub last_status: Option<u16>,
    /// Why the last attempt got no answer.
    pub last_error: Option<String>,
    pub created: i64,
    pub delivered_at: Option<i64>,
}

struct Pending {
    record: usize,
    due: Instant,
    seq: u64,
    body: Arc<str>,
}

struct Endpoint {
    info: WebhookEndpoint,
    queue: Mutex<Vec<Pending>>,
    notify: Notify,
    deleted: AtomicBool,
    task: Mutex<Option<JoinHandle<()>>>,
}

struct Inner {
    settings: RwLock<WebhookSettings>,
    client: reqwest::Client,
    deliveries: Mutex<Vec<Delivery>>,
    seq: AtomicU64,
}

/// The endpoints, their queues and tasks, and the record of every delivery.
pub struct Webhooks {
    inner: Arc<Inner>,
    /// The runtime the delivery tasks run on: the one the simulator was made in, else the
    /// one of the first request that needs a task.
    handle: Mutex<Option<Handle>>,
    endpoints: Mutex<Vec<Arc<Endpoint>>>,
}

impl Webhooks {
    pub(crate) fn new(endpoints: Vec<WebhookEndpoint>) -> Self {
        let client = reqwest::Client::builder()
            .user_agent("Stripe/1.0 (+https://stripe.com/docs/webhooks)")
            .timeout(ATTEMPT_TIMEOUT)
            .build()
            .expect("a plain HTTP client builds");
        let hooks = Self {
            inner: Arc::new(Inner {
                settings: RwLock::new(WebhookSettings::default()),
                client,
                deliveries: Mutex::new(Vec::new()),
                seq: AtomicU64::new(0),
            }),
            handle: Mutex::new(Handle::try_current().ok()),
            endpoints: Mutex::new(Vec::new()),
        };
        for e in endpoints {
            hooks.add(e);
        }
        hooks
    }

    pub(crate) fn set_settings(&self, settings: WebhookSettings) {
        *self.inner.settings.write() = settings;
    }

    pub fn settings(&self) -> WebhookSettings {
        self.inner.settings.read().clone()
    }

    /// Registers an endpoint (with its secret); its task starts with its first event.
    pub(crate) fn add(&self, info: WebhookEndpoint) {
        self.endpoints.lock().push(Arc::new(Endpoint {
            info,
            queue: Mutex::new(Vec::new()),
            notify: Notify::new(),
            deleted: AtomicBool::new(false),
            task: Mutex::new(None),
        }));
    }

    /// Removes an endpoint: its task stops, its pending deliveries are abandoned.
    pub(crate) fn remove(&self, id: &str) -> Option<WebhookEndpoint> {
        let ep = {
            let mut endpoints = self.endpoints.lock();
            let i = endpoints.iter().position(|e| e.info.id == id)?;
            endpoints.remove(i)
        };
        ep.deleted.store(true, Ordering::SeqCst);
        if let Some(task) = ep.task.lock().take() {
            task.abort();
        }
        ep.queue.lock().clear();
        // Queued, or in the middle of an attempt when the task was stopped.
        for d in self.inner.deliveries.lock().iter_mut() {
            if d.endpoint == id && d.state == "pending" {
                d.state = "abandoned".into();
            }
        }
        Some(ep.info.clone())
    }

    /// Every endpoint, oldest first, with its secret.
    pub fn endpoints(&self) -> Vec<WebhookEndpoint> {
        self.endpoints
            .lock()
            .iter()
            .map(|e| e.info.clone())
            .collect()
    }

    /// Every delivery so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.deliveries.lock().clone()
    }

    /// Stops every delivery task (at the simulator's stop).
    pub(crate) fn shutdown(&self) {
        for ep in self.endpoints.lock().iter() {
            if let Some(task) = ep.task.lock().take() {
                task.abort();
            }
        }
    }

    /// Makes a `kind` event of `intent` (a PaymentIntent object as `GET` answers it) and
    /// queues it for every endpoint that wants it.
    pub(crate) fn emit(&self, kind: &str, intent: &Value) {
        let event_id = format!("evt_{}", uuid::Uuid::new_v4().simple());
        let created = now();
        let event = json!({
            "id": event_id,
            "object": "event",
            "api_version": API_VERSION,
            "created": created,
            "type": kind,
            "livemode": false,
            "pending_webhooks": 1,
            "request": {"id": null, "idempotency_key": null},
            "data": {"object": intent},
        });
        let body: Arc<str> = event.to_string().into();
        let payment_intent = intent.get("id").and_then(Value::as_str).map(str::to_owned);
        let faults = self.inner.settings.read().faults.clone();
        let endpoints: Vec<_> = self
            .endpoints
            .lock()
            .iter()
            .filter(|e| e.info.wants(kind))
            .cloned()
            .collect();
        let mut rng = rand::thread_rng();
        for ep in endpoints {
            let dropped = faults.drop_rate > 0.0 && rng.gen_bool(faults.drop_rate.min(1.0));
            let twice = !dropped
                && faults.duplicate_rate > 0.0
                && rng.gen_bool(faults.duplicate_rate.min(1.0));
            for copy in 0..if twice { 2 } else { 1 } {
                let record = {
                    let mut deliveries = self.inner.deliveries.lock();
                    deliveries.push(Delivery {
                        id: format!("whdel_{}", uuid::Uuid::new_v4().simple()),
                        event: event_id.clone(),
                        event_type: kind.to_owned(),
                        payment_intent: payment_intent.clone(),
                        endpoint: ep.info.id.clone(),
                        url: ep.info.url.clone(),
                        duplicate: copy == 1,
                        state: if dropped { "dropped" } else { "pending" }.into(),
                        attempts: 0,
                        last_status: None,
                        last_error: None,
                        created,
                        delivered_at: None,
                    });
                    deliveries.len() - 1
                };
                if dropped {
                    tracing::info!(event = %event_id, endpoint = %ep.info.id, "webhook dropped (injected fault)");
                    continue;
                }
                ep.queue.lock().push(Pending {
                    record,
                    due: Instant::now() + faults.delay,
                    seq: self.inner.seq.fetch_add(1, Ordering::SeqCst),
                    body: body.clone(),
                });
            }
            ep.notify.notify_one();
            self.ensure_task(&ep);
        }
    }

    fn ensure_task(&self, ep: &Arc<Endpoint>) {
        let mut task = ep.task.lock();
        if task.is_some() || ep.deleted.load(Ordering::SeqCst) {
            return;
        }
        let mut handle = self.handle.lock();
        if handle.is_none() {
            *handle = Handle::try_current().ok();
        }
        let Some(handle) = handle.as_ref() else {
            tracing::error!(endpoint = %ep.info.id, "no Tokio runtime to deliver webhooks on");
            return;
        };
        *task = Some(handle.spawn(run(self.inner.clone(), ep.clone())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_stripes_hmac_of_the_timestamp_and_body() {
        // Computed independently: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac whsec_test
        let header = signature_header("whsec_test", 1_700_000_000, br#"{"a":1}"#);
        assert_eq!(
            header,
            "t=1700000000,v1=38877139021993b830af32feea6e18a8da83eb2f6e49ee50bd9e4cf4ca4d3789"
        );
    }

    #[test]
    fn retries_double_from_one_second_up_to_a_minute_times_the_scale() {
        let s = WebhookSettings::default();
        assert_eq!(s.retry_after(1), Duration::from_secs(1));
        assert_eq!(s.retry_after(3), Duration::from_secs(4));
        assert_eq!(s.retry_after(30), Duration::from_secs(60));
        let fast = WebhookSettings {
            retry_scale: 0.001,
            ..WebhookSettings::default()
        };
        assert_eq!(fast.retry_after(2), Duration::from_millis(2));
    }
}
