//! `/api/plans`: list, create, read, change, stats and audit log of plans, and the check
//! that a plan's audit log replays to its seats.

use actix_web::{get, patch, post, web, HttpRequest, HttpResponse};
use seatkeeper_domain::PlanId;

use super::{created_at, AppState};
use crate::{
    auth::Admin,
    dto::{
        AuditCheckBody, AuditEntryBody, CreatePlanRequest, List, PlanBody, StatsBody,
        UpdatePlanRequest,
    },
    errors::no_such_plan,
    extract::{json_body, ListQuery, SeqListQuery},
    openapi::{
        bodies::{AuditEntryList, PlanList},
        responses::*,
        schemas,
    },
    problem::ApiError,
    request_id::RequestId,
};

fn plan_id(raw: &str) -> Result<PlanId, ApiError> {
    raw.parse().map_err(|_| no_such_plan(raw))
}

/// List plans
///
/// All plans, active and archived, ordered by id (ids are UUIDv7, so this is creation
/// order). The cursor is a plan id. Public: no token needed.
#[utoipa::path(
    operation_id = "listPlans",
    tag = "plans",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of plans.", body = PlanList),
        (status = 400, response = InvalidListQuery),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[get("/api/plans")]
pub async fn list(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.page(|c| c.parse::<PlanId>())?;
    let page = state.plans.list(page).await?;
    Ok(HttpResponse::Ok().json(List {
        data: page.items.iter().map(PlanBody::from).collect(),
        next_cursor: page.next.map(|id| id.to_string()),
    }))
}

/// Create a plan
///
/// Creates an `active` plan with every seat free (`seats_left == capacity`); the
/// creation is entry 1 (`plan_created`) of the plan's audit log, with actor `admin` and
/// the request id as trace id. Needs an `admin` key or the admin token.
///
/// Checks run in this order: token (401), body size (413), `Content-Type` (415), JSON
/// and fields (400, naming every invalid field).
#[utoipa::path(
    operation_id = "createPlan",
    tag = "plans",
    security(("adminToken" = []), ("apiKey" = [])),
    request_body(
        content = CreatePlanRequest,
        example = json!({"name": "Team", "capacity": 50, "unit_amount": 4900, "currency": "usd", "interval": "month"}),
    ),
    responses(
        (status = 201, description = "The plan was created.", body = PlanBody, headers(
            ("Location" = String, description = "The path of the created plan (`/api/plans/{id}`)."),
        )),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[post("/api/plans")]
pub async fn create(
    admin: Admin,
    req: HttpRequest,
    body: web::Bytes,
    rid: RequestId,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let new = json_body::<CreatePlanRequest>(&req, &body)?.try_into_domain()?;
    let plan = state
        .plans
        .create(new, &admin.0.audit_context(rid.as_str()))
        .await?;
    Ok(created_at(
        format!("/api/plans/{}", plan.id()),
        PlanBody::from(&plan),
    ))
}

/// Read a plan
///
/// The plan with its current `seats_left`. Public. An id that is not a UUID answers 404
/// `plan_not_found` like an unknown one.
#[utoipa::path(
    operation_id = "getPlan",
    tag = "plans",
    params(("id" = schemas::PlanId, Path, description = "The plan's id (a UUID). Any other value answers 404 `plan_not_found`.", example = "0190f5c2-8a4b-7c3d-9e1f-2a3b4c5d6e7f")),
    responses(
        (status = 200, description = "The plan.", body = PlanBody),
        (status = 404, response = PlanNotFound),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[get("/api/plans/{id}")]
pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let plan = state.plans.get(plan_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(PlanBody::from(&plan)))
}

/// Change a plan
///
/// Changes the name, the capacity and/or the status of a plan; absent fields stay as
/// they are, and at least one must be given. Needs an `admin` key or the admin token.
///
/// - A new `capacity` keeps the seats held by `incomplete` and `active` subscriptions:
///   `seats_left` moves by the difference. A capacity below the seats held answers 409
///   `capacity_below_held` and changes nothing.
/// - `status: archived` stops the plan selling seats (purchases answer 409
///   `plan_inactive`); `status: active` makes it sell again. Existing subscriptions
///   are not touched.
/// - Each effective change appends one audit entry (`plan_updated` for the name,
///   `capacity_changed`, `plan_archived` or `plan_activated`), atomically with the
///   change. A value equal to the current one changes nothing and records nothing; the
///   answer is still 200.
///
/// Checks run in this order: token (401), body size (413), plan id syntax (404),
/// `Content-Type` (415), JSON and fields (400), then the plan itself (404, 409).
#[utoipa::path(
    operation_id = "updatePlan",
    tag = "plans",
    security(("adminToken" = []), ("apiKey" = [])),
    params(("id" = schemas::PlanId, Path, description = "The plan's id (a UUID). Any other value answers 404 `plan_not_found`.", example = "0190f5c2-8a4b-7c3d-9e1f-2a3b4c5d6e7f")),
    request_body(
        content = UpdatePlanRequest,
        examples(
            ("capacity" = (summary = "Raise the capacity", value = json!({"capacity": 80}))),
            ("archive" = (summary = "Stop selling", value = json!({"status": "archived"}))),
        ),
    ),
    responses(
        (status = 200, description = "The plan after the change.", body = PlanBody),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = PlanNotFound),
        (status = 409, response = CapacityBelowHeld),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[patch("/api/plans/{id}")]
pub async fn update(
    admin: Admin,
    req: HttpRequest,
    body: web::Bytes,
    rid: RequestId,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = plan_id(&path)?;
    let patch = json_body::<UpdatePlanRequest>(&req, &body)?.try_into_domain()?;
    let plan = state
        .plans
        .update(id, &patch, &admin.0.audit_context(rid.as_str()))
        .await?;
    Ok(HttpResponse::Ok().json(PlanBody::from(&plan)))
}

/// Seat statistics of a plan
///
/// The plan's seats and its subscriptions counted by status, read in one consistent
/// snapshot: `capacity == seats_left + incomplete + active`. Public.
#[utoipa::path(
    operation_id = "getPlanStats",
    tag = "plans",
    params(("id" = schemas::PlanId, Path, description = "The plan's id (a UUID). Any other value answers 404 `plan_not_found`.", example = "0190f5c2-8a4b-7c3d-9e1f-2a3b4c5d6e7f")),
    responses(
        (status = 200, description = "The statistics.", body = StatsBody),
        (status = 404, response = PlanNotFound),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[get("/api/plans/{id}/stats")]
pub async fn stats(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let stats = state.plans.stats(plan_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(StatsBody::from(stats)))
}

/// Audit log of a plan
///
/// Every change of the plan's seats or attributes, in the order the changes took
/// effect (`seq` 1, 2, 3, …; entry 1 is `plan_created`). Replaying the entries from the
/// start reproduces `seats_left`. The cursor is the `seq` of the last entry of the
/// previous page, in decimal. Needs an `admin` key or the admin token.
///
/// Checks run in this order: token (401), plan id syntax (404), `limit` and `cursor`
/// (400), then the plan itself (404).
#[utoipa::path(
    operation_id = "getPlanAudit",
    tag = "plans",
    security(("adminToken" = []), ("apiKey" = [])),
    params(("id" = schemas::PlanId, Path, description = "The plan's id (a UUID). Any other value answers 404 `plan_not_found`.", example = "0190f5c2-8a4b-7c3d-9e1f-2a3b4c5d6e7f"), SeqListQuery),
    responses(
        (status = 200, description = "One page of audit entries.", body = AuditEntryList),
        (status = 400, response = InvalidListQuery),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = PlanNotFound),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[get("/api/plans/{id}/audit")]
pub async fn audit(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<SeqListQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = plan_id(&path)?;
    let page = query.page()?;
    let page = state.plans.audit(id, page).await?;
    Ok(HttpResponse::Ok().json(List {
        data: page.items.iter().map(AuditEntryBody::from).collect(),
        next_cursor: page.next.map(|seq| seq.to_string()),
    }))
}

/// Check that a plan's audit log replays to its seats
///
/// Reads the plan, then its whole audit log from entry 1 up to the plan's `seq`, and
/// replays it by the domain's rule (the one the test suites check every store with):
/// each entry must start where the previous one left `seats_left` and move it as its
/// action allows, with no gap in `seq`. The answer says how many entries were replayed,
/// the `seats_left` the replay arrives at and the plan's, and whether they agree; a
/// broken log answers 200 with `consistent: false` and the `error`. Entries written
/// after the plan was read (purchases going on) are not replayed, so a busy plan checks
/// as consistently as a quiet one. Needs an `admin` key or the admin token.
///
/// Checks run in this order: token (401), plan id syntax (404), then the plan itself
/// (404).
#[utoipa::path(
    operation_id = "checkPlanAudit",
    tag = "plans",
    security(("adminToken" = []), ("apiKey" = [])),
    params(("id" = schemas::PlanId, Path, description = "The plan's id (a UUID). Any other value answers 404 `plan_not_found`.", example = "0190f5c2-8a4b-7c3d-9e1f-2a3b4c5d6e7f")),
    responses(
        (status = 200, description = "What the replay found.", body = AuditCheckBody),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = PlanNotFound),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[get("/api/plans/{id}/audit/check")]
pub async fn audit_check(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = plan_id(&path)?;
    let check = state.plans.check_audit(id).await?;
    Ok(HttpResponse::Ok().json(AuditCheckBody::new(id, check)))
}
