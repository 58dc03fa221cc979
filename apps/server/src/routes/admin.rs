//! `/api/admin/reconciliation`: what the reconciler of this instance did lately, and what
//! is still in doubt across all instances.

use actix_web::{get, web, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::{
    extract::Admin,
    openapi::{bodies::Reconciliation, responses::*},
    problem::ApiError,
};

/// What the reconciler did and what is still in doubt
///
/// The reconciler runs in every instance (every `recovery.interval_ms`): it finishes
/// `incomplete` purchases untouched for `recovery.lease_ms` by asking the payment
/// provider what became of their charge (charged: `active`; never charged:
/// `incomplete_expired` with the seat released; a charge that lands later is refunded).
/// `runs` are this instance's last runs, newest first; `in_doubt` counts, across all
/// instances, the stale `incomplete` purchases and the late-charge checks still to run.
#[utoipa::path(
    operation_id = "getReconciliation",
    tag = "admin",
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The report.", body = Reconciliation),
        (status = 401, response = Unauthorized),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[get("/api/admin/reconciliation")]
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
