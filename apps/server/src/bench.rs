//! Benchmark-only routes, off unless `bench.echo` is set (`SEATKEEPER_BENCH__ECHO=true`).
//!
//! `POST /bench/echo` parses a small JSON body and sends it back: the cost of a trivial
//! JSON POST through the same actix-web build, middleware (request id, log span) and body
//! handling as the API, without touching the store. `seatkeeper-loadgen --target echo`
//! measures it, as the ceiling the in-memory purchase rate is compared with
//! (docs/benchmarks.md). It is not part of the API, so it is not in `routes::router()`
//! nor in `openapi.yaml`.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::{extract::json_body, problem::ApiError};

pub const ECHO_PATH: &str = "/bench/echo";

/// A body shaped like a purchase request.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Echo {
    plan_id: String,
    customer_id: String,
    payment_method: String,
}

/// Adds the benchmark routes when `echo` is on.
pub fn configure(cfg: &mut web::ServiceConfig, echo: bool) {
    if echo {
        cfg.route(ECHO_PATH, web::post().to(echo_handler));
    }
}

async fn echo_handler(req: HttpRequest, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    let echo: Echo = json_body(&req, &body)?;
    Ok(HttpResponse::Ok().json(echo))
}
