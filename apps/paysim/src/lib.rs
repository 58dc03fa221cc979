//! `seatkeeper-paysim`: a local payment provider that speaks the subset of Stripe's API
//! Seatkeeper uses, so the Stripe adapter can be tested against a real HTTP server that
//! lives in another process and survives Seatkeeper's crashes.
//!
//! # What it speaks
//!
//! - `POST /v1/payment_intents` (form-encoded, `confirm=true`): create and confirm a
//!   PaymentIntent. Stripe's test payment methods decide the outcome: `pm_card_visa`,
//!   `pm_card_mastercard`, `pm_card_amex` succeed; `pm_card_chargeDeclined` and
//!   `pm_card_insufficientFunds` fail with a 402 `card_error`; `pm_card_timeout` is charged
//!   but its answer is dropped; other ids are 400 `resource_missing`.
//! - `GET /v1/payment_intents/{id}`, `GET /v1/payment_intents?limit=&starting_after=`,
//!   `GET /v1/payment_intents/search?query=metadata['key']:'value'`.
//! - `POST /v1/refunds` (`payment_intent`), `GET /v1/refunds?payment_intent=&limit=&starting_after=`.
//! - `Idempotency-Key` on every POST: the same key with the same parameters replays the
//!   first answer (`Idempotent-Replayed: true`); with other parameters it is a 400
//!   `idempotency_error`; while the first request is still being processed, a 409.
//! - Errors in Stripe's shape: `{"error": {"type", "code", "decline_code", "message", …}}`.
//!
//! # Faults
//!
//! `latency` delays every answer; `error_rate` answers that share of requests 500 before
//! doing anything; `drop_rate` (and `pm_card_timeout`) makes that share of charges happen
//! but holds the answer back for `drop_hang`, so the client times out. A dropped answer is
//! still recorded for its idempotency key: a retry replays the charge, never repeats it.

mod api;
pub mod ledger;

use std::{net::TcpListener, path::PathBuf, sync::Arc, time::Duration};

use actix_web::{dev::ServerHandle, web, App, HttpServer};
use parking_lot::Mutex;

pub use api::routes;
use ledger::State;

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
}

impl Simulator {
    /// A simulator whose ledger lives in `ledger` (or only in memory).
    pub fn new(ledger: Option<PathBuf>, faults: Faults) -> anyhow::Result<Self> {
        let state = match ledger {
            Some(path) => State::open(&path)?,
            None => State::in_memory(),
        };
        Ok(Self {
            state: Mutex::new(state),
            faults,
        })
    }
}

/// A running simulator.
pub struct Running {
    pub port: u16,
    handle: ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// `http://127.0.0.1:<port>`
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops it (answers still held back are cut off) and waits until it has stopped.
    pub async fn stop(self) {
        self.handle.stop(false).await;
        let _ = self.task.await;
    }
}

/// Serves `simulator` on `addr` (port 0 picks a free port) on the current Tokio runtime.
pub fn start(addr: &str, simulator: Simulator) -> anyhow::Result<Running> {
    let listener = TcpListener::bind(addr)?;
    let port = listener.local_addr()?.port();
    let data = web::Data::new(Arc::new(simulator));
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
    Ok(Running { port, handle, task })
}
