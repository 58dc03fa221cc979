//! `/api/admin/reconciliation`: what the reconciler of this instance did lately, and what
//! is still in doubt across all instances; `/metrics`: this instance's metrics.

use actix_web::{get, web, HttpResponse};
use seatkeeper_domain::{Limit, PageRequest, PlanStatus};
use serde_json::json;

use super::AppState;
use crate::{
    auth::Admin,
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
    security(("adminToken" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The report.", body = Reconciliation),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[get("/api/admin/reconciliation")]
pub async fn reconciliation(
    _: Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    if let Some(pool) = state.health.pool_use() {
        for (state, n) in [("in_use", pool.in_use), ("idle", pool.idle)] {
            ::metrics::gauge!("seatkeeper_store_connections", "state" => state).set(n as f64);
        }
    }
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

/// Metrics, in Prometheus' text format
///
/// Requests by route and status with latency histograms, purchases by outcome, seats left
/// per active plan (the first 100), the reconciler's backlog and actions, the purchase
/// steps' latency and batch sizes, the store's connections, and payment calls' latency by
/// outcome. The list is in
/// `docs/operations.md`. Scrape it with an `admin` key or the admin token as a bearer
/// token, or without a credential on the internal address `http.metrics_addr` when one
/// is configured.
#[utoipa::path(
    operation_id = "getMetrics",
    tag = "admin",
    security(("adminToken" = []), ("apiKey" = [])),
    responses(
        (status = 200, description = "The metrics.", content_type = "text/plain; version=0.0.4", body = String),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[get("/metrics")]
pub async fn metrics(_: Admin, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    render_metrics(state).await
}

/// The metrics page: the gauges read now, then everything recorded.
pub async fn render_metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let plans = state
        .plans
        .list(PageRequest {
            after: None,
            limit: Limit::new(i64::from(crate::metrics::PLAN_GAUGES))
                .expect("PLAN_GAUGES is a page size"),
        })
        .await?;
    for plan in plans
        .items
        .iter()
        .filter(|p| p.status() == PlanStatus::Active)
    {
        let id = plan.id().to_string();
        ::metrics::gauge!("seatkeeper_plan_seats_left", "plan_id" => id.clone())
            .set(f64::from(plan.seats_left()));
        ::metrics::gauge!("seatkeeper_plan_capacity", "plan_id" => id)
            .set(f64::from(plan.capacity().get()));
    }
    if let Some(pool) = state.health.pool_use() {
        for (state, n) in [("in_use", pool.in_use), ("idle", pool.idle)] {
            ::metrics::gauge!("seatkeeper_store_connections", "state" => state).set(n as f64);
        }
    }
    let backlog = state.recovery.reconciler().backlog().await?;
    ::metrics::gauge!("seatkeeper_recovery_stale_incomplete").set(backlog.stale_incomplete as f64);
    ::metrics::gauge!("seatkeeper_recovery_pending_verifications")
        .set(backlog.pending_verifications as f64);
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(crate::metrics::handle().render()))
}
