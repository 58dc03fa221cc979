//! `GET /health` (the process answers) and `GET /health/ready` (and its store does).

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::problem::ApiError;

pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.store.ping().await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "ready" })))
}
