//! `GET /health` (the process answers) and `GET /health/ready` (and its store does).

use actix_web::{get, web, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::{
    openapi::{
        bodies::{Check, Checks, Health},
        responses::*,
    },
    problem::ApiError,
};

/// Liveness
///
/// Answers 200 as long as the process serves requests. Does not touch the store.
#[utoipa::path(
    operation_id = "getHealth",
    tag = "health",
    responses(
        (status = 200, description = "The process is alive.", body = Health, example = json!({"status": "ok"})),
        (status = 500, response = Internal),
    ),
)]
#[get("/health")]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Readiness
///
/// Answers 200 with each dependency's state when the store answers a ping (`checks.store`:
/// `up` and how long the ping took), 503 `store_unavailable` when it does not.
#[utoipa::path(
    operation_id = "getReadiness",
    tag = "health",
    responses(
        (status = 200, description = "The process and its store are ready.", body = Health, example = json!({"status": "ready", "checks": {"store": {"status": "up", "latency_ms": 0.4}}})),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[get("/health/ready")]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let latency = state.health.store().await?;
    Ok(HttpResponse::Ok().json(Health {
        status: "ready".to_owned(),
        checks: Some(Checks {
            store: Check {
                status: "up",
                latency_ms: latency.as_secs_f64() * 1000.0,
            },
        }),
    }))
}
