//! `seatkeeper-paysim`: a local payment provider that speaks the subset of Stripe's API
//! Seatkeeper uses, so the Stripe adapter can be tested against a real HTTP server that
//! lives in another process and survives Seatkeeper's crashes.
//!
//! # What it speaks
//!
//! - `POST /v1/payment_intents` (form-encoded: `amount`, `currency`, optional
//!   `payment_method`, `payment_method_types[]`, `description`, `metadata[…]`, `confirm`,
//!   `error_on_requires_action`, `return_url`). Without `confirm=true` the intent waits,
//!   `requires_payment_method` (or `requires_confirmation` with a payment method), with a
//!   `client_secret` (`pi_…_secret_…`). With `confirm=true` it is confirmed at once.
//! - `POST /v1/payment_intents/{id}/confirm` (`payment_method`, optional `return_url`,
//!   `error_on_requires_action`), `POST /v1/payment_intents/{id}/cancel` (optional
//!   `cancellation_reason`). Confirming or cancelling an intent in a status that does not
//!   allow it (`succeeded`, `canceled`) is a 400 `payment_intent_unexpected_state` carrying
//!   the intent.
//! - Stripe's test payment methods decide a confirmation: `pm_card_visa`,
//!   `pm_card_mastercard`, `pm_card_amex` succeed; `pm_card_chargeDeclined` and
//!   `pm_card_insufficientFunds` fail with a 402 `card_error` (the intent goes back to
//!   `requires_payment_method` with `last_payment_error`, so another card can be tried);
//!   `pm_card_authenticationRequired` and `pm_card_threeDSecure2Required` ask for 3-D
//!   Secure: the intent goes `requires_action` with `next_action.redirect_to_url.url` =
//!   `<paysim>/v1/payment_intents/{id}/authenticate` (a decline `authentication_required`
//!   with `error_on_requires_action=true`); `pm_card_timeout` is charged but its answer is
//!   dropped; other ids are 400 `resource_missing`.
//! - `GET|POST /v1/payment_intents/{id}/authenticate`: the simulated issuer page (no API
//!   key): `GET` shows two buttons, `POST` with `result=pass|fail` (form or query) makes the
//!   intent `succeeded` or `requires_payment_method` with `last_payment_error.code`
//!   `payment_intent_authentication_failure`.
//! - `GET /v1/payment_intents/{id}`, `GET /v1/payment_intents?limit=&starting_after=`,
//!   `GET /v1/payment_intents/search?query=metadata['key']:'value'`.
//! - `POST /v1/refunds` (`payment_intent`), `GET /v1/refunds?payment_intent=&limit=&starting_after=`.
//! - `POST /v1/webhook_endpoints` (`url`, `enabled_events[]`; the answer carries the
//!   generated `secret`, `whsec_…`), `GET /v1/webhook_endpoints[/{id}]`,
//!   `DELETE /v1/webhook_endpoints/{id}`; one more endpoint can be given at start-up
//!   ([`Simulator::with_webhook_endpoint`], `--webhook-url` / `--webhook-secret`).
//! - Webhook events `payment_intent.succeeded`, `payment_intent.payment_failed`,
//!   `payment_intent.canceled`, `payment_intent.requires_action`, whenever an intent
//!   changes (one-call charges included), in Stripe's event shape with the whole intent in
//!   `data.object`, signed as Stripe signs (`Stripe-Signature: t=…,v1=…`), delivered in the
//!   background and retried (see [`webhooks`]).
//! - `GET /v1/_sim/webhook_deliveries?event=&endpoint=` (the simulator's own): every
//!   delivery with its event, endpoint, attempts, last HTTP status and state.
//! - `Idempotency-Key` on every POST: the same key with the same parameters (and path)
//!   replays the first answer (`Idempotent-Replayed: true`); with other parameters it is a
//!   400 `idempotency_error`; while the first request is still being processed, a 409.
//! - `Authorization: Bearer <key>`: any key, or only the simulator's own when it has one
//!   ([`Simulator::with_secret_key`], `--secret-key`); otherwise a 401 as Stripe answers it.
//! - Errors in Stripe's shape: `{"error": {"type", "code", "decline_code", "message", …}}`.
//!
//! Intents, refunds, idempotent answers and API-made webhook endpoints are kept in the
//! ledger file and survive restarts; pending webhook deliveries do not.
//!
//! # Faults
//!
//! `latency` delays every answer; `error_rate` answers that share of requests 500 before
//! doing anything; `drop_rate` (and `pm_card_timeout`) makes that share of charges happen
//! but holds the answer back for `drop_hang`, so the client times out. A dropped answer is
//! still recorded for its idempotency key: a retry replays the charge, never repeats it.
//! Webhooks have their own ([`WebhookFaults`]): dropped, duplicated, delayed and
//! reordered deliveries.

mod api;
pub mod ledger;
pub mod webhooks;

use std::{net::TcpListener, path::PathBuf, sync::Arc, time::Duration};

use actix_web::{dev::ServerHandle, web, App, HttpServer};
use parking_lot::Mutex;

pub use api::routes;
use ledger::{State, WebhookEndpoint};
pub use webhooks::{Delivery, WebhookFaults, WebhookSettings, Webhooks};

/// How the simulator misbehaves.
#[derive(Debug, Clone)]
pub struct Faults {
    pub latency: Duration,
    pub error_rate: f64,
    pub drop_rate: f64,
    /// How long a dropped answer is held back.
    pub drop_hang: Duration,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            error_rate: 0.0,
            drop_rate: 0.0,
            drop_hang: Duration::from_secs(30),
        }
    }
}

/// The simulator's shared state.
pub struct Simulator {
    pub(crate) state: Mutex<State>,
    pub(crate) faults: Faults,
    /// The only API key accepted, when set.
    pub(crate) secret_key: Option<String>,
    pub(crate) webhooks: Webhooks,
}

impl Simulator {
    /// A simulator whose ledger lives in `ledger` (or only in memory). It accepts any API
    /// key, and delivers webhooks to the endpoints registered in its ledger with
    /// [`WebhookSettings::default`].
    ///
    /// Webhook deliveries run on the Tokio runtime this is called in (else on the runtime
    /// of the first request that makes an event).
    pub fn new(ledger: Option<PathBuf>, faults: Faults) -> anyhow::Result<Self> {
        let state = match ledger {
            Some(path) => State::open(&path)?,
            None => State::in_memory(),
        };
        let webhooks = Webhooks::new(state.endpoints.clone());
        Ok(Self {
            state: Mutex::new(state),
            faults,
            secret_key: None,
            webhooks,
        })
    }

    /// Accepts only `key` (`Authorization: Bearer <key>`); any other is a 401.
    pub fn with_secret_key(mut self, key: impl Into<String>) -> Self {
        self.secret_key = Some(key.into());
        self
    }

    /// Webhook retries and faults.
    pub fn with_webhook_settings(self, settings: WebhookSettings) -> Self {
        self.webhooks.set_settings(settings);
        self
    }

    /// One more webhook endpoint, for every event type, signing with `secret` (`whsec_…`).
    /// It is not written to the ledger: it is given at every start. Its id is `we_cli_…`.
    pub fn with_webhook_endpoint(self, url: &str, secret: &str) -> Self {
        self.webhooks.add(WebhookEndpoint {
            id: format!("we_cli_{}", uuid::Uuid::new_v4().simple()),
            object: "webhook_endpoint".into(),
            url: url.to_owned(),
            enabled_events: vec!["*".into()],
            secret: Some(secret.to_owned()),
            status: "enabled".into(),
            api_version: None,
            description: Some("given at start-up".into()),
            metadata: Default::default(),
            created: webhooks::now(),
            livemode: false,
        });
        self
    }

    /// The webhook endpoints and deliveries.
    pub fn webhooks(&self) -> &Webhooks {
        &self.webhooks
    }
}

/// A running simulator.
pub struct Running {
    pub port: u16,
    simulator: Arc<Simulator>,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// `http://127.0.0.1:<port>`
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The simulator it serves (its webhook deliveries, for instance).
    pub fn simulator(&self) -> &Simulator {
        &self.simulator
    }

    /// Stops it (answers still held back are cut off, webhook deliveries stop) and waits
    /// until it has stopped.
    pub async fn stop(self) {
        self.simulator.webhooks.shutdown();
        self.handle.stop(false).await;
        let _ = self.task.await;
    }
}

/// Serves `simulator` on `addr` (port 0 picks a free port) on the current Tokio runtime.
pub fn start(addr: &str, simulator: Simulator) -> anyhow::Result<Running> {
    let listener = TcpListener::bind(addr)?;
    let port = listener.local_addr()?.port();
    let simulator = Arc::new(simulator);
    let data = web::Data::new(simulator.clone());
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::FormConfig::default().limit(64 * 1024))
            .configure(routes)
    })
    .listen(listener)?
    .workers(2)
    .shutdown_timeout(1)
    .disable_signals()
    .run();
    let handle = server.handle();
    let task = tokio::spawn(server);
    Ok(Running {
        port,
        simulator,
        handle,
        task,
    })
}
