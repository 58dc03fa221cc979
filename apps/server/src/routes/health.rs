//! `GET /health` (the process answers) and `GET /health/ready` (and its store does).

use actix_web::{get, web, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::{
    openapi::{bodies::Health, responses::*},
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
/// Answers 200 when the store answers a ping, 503 `store_unavailable` when it does not.
#[utoipa::path(
    operation_id = "getReadiness",
    tag = "health",
    responses(
        (status = 200, description = "The process and its store are ready.", body = Health, example = json!({"status": "ready"})),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[get("/health/ready")]
pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.store.ping().await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "ready" })))
}
