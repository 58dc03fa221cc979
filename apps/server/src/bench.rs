//! Benchmark-only routes, off unless `bench.echo` is set (`SEATKEEPER_BENCH__ECHO=true`).
//!
//! `POST /bench/echo` parses a small JSON body and sends it back: the cost of a trivial
//! JSON POST through the same actix-web build, middleware (request id, log span) and body
//! handling as the API, without touching the store. `seatkeeper-loadgen --target echo`
//! measures it, as the ceiling the in-memory purchase rate is compared with
//! (docs/benchmarks.md). With `bench.echo_wait_ms` set it first waits that long on a timer,
//! as a purchase waits on its payment: the framework's own cost of thousands of requests
//! parked mid-flight, the control of the payment-latency rows. It is not part of the API,
//! so it is not among `routes::services` nor in `openapi.yaml`.

use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::{configuration::BenchSettings, extract::json_body, problem::ApiError};

pub const ECHO_PATH: &str = "/bench/echo";

/// A body shaped like a purchase request.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct EchoBody {
    plan_id: String,
    customer_id: String,
    payment_method: String,
}

/// Whether the echo is served, and how long it waits before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EchoRoute {
    pub on: bool,
    pub wait: Duration,
}

impl EchoRoute {
    pub fn of(settings: &BenchSettings) -> Self {
        Self {
            on: settings.echo,
            wait: Duration::from_millis(settings.echo_wait_ms),
        }
    }
}

/// Adds the benchmark routes when the echo is on.
pub fn configure(cfg: &mut web::ServiceConfig, echo: EchoRoute) {
    if echo.on {
        let wait = echo.wait;
        cfg.route(
            ECHO_PATH,
            web::post().to(move |req: HttpRequest, body: web::Bytes| echo_handler(req, body, wait)),
        );
    }
}

/// Parses the body, waits (like a purchase on its payment) when asked to, sends it back.
async fn echo_handler(
    req: HttpRequest,
    body: web::Bytes,
    wait: Duration,
) -> Result<HttpResponse, ApiError> {
    let echo: EchoBody = json_body(&req, &body)?;
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    Ok(HttpResponse::Ok().json(echo))
}
