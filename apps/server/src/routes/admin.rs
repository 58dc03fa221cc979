//! `/api/admin/reconciliation`: what the reconciler of this instance did lately, and what
//! is still in doubt across all instances.

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::{extract::Admin, problem::ApiError};

pub async fn reconciliation(
    _: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let backlog = state.recovery.reconciler().backlog().await?;
    let settings = state.recovery.reconciler().settings();
    Ok(HttpResponse::Ok().json(json!({
        "in_doubt": {
            "stale_incomplete": backlog.stale_incomplete,
            "pending_verifications": backlog.pending_verifications,
        },
        "lease_ms": settings.lease.as_millis() as u64,
        "verify_delay_ms": settings.verify_delay.as_millis() as u64,
        "runs": state.recovery.recent(),
    })))
}
