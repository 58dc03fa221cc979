//! `/api/plans`: list, create, read, change, stats and audit log of plans.

use actix_web::{web, HttpRequest, HttpResponse};
use seatkeeper_domain::{AuditContext, InvalidValue, PlanId};

use super::{created_at, AppState};
use crate::{
    dto::{AuditEntryBody, CreatePlanRequest, List, PlanBody, StatsBody, UpdatePlanRequest},
    errors::no_such_plan,
    extract::{json_body, Admin, ListQuery},
    problem::ApiError,
    request_id::RequestId,
};

fn plan_id(raw: &str) -> Result<PlanId, ApiError> {
    raw.parse().map_err(|_| no_such_plan(raw))
}

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

pub async fn create(
    _: Admin,
    req: HttpRequest,
    body: web::Bytes,
    rid: RequestId,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let new = json_body::<CreatePlanRequest>(&req, &body)?.try_into_domain()?;
    let plan = state
        .plans
        .create(new, &AuditContext::admin(rid.as_str()))
        .await?;
    Ok(created_at(
        format!("/api/plans/{}", plan.id),
        PlanBody::from(&plan),
    ))
}

pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let plan = state.plans.get(plan_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(PlanBody::from(&plan)))
}

pub async fn update(
    _: Admin,
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
        .update(id, &patch, &AuditContext::admin(rid.as_str()))
        .await?;
    Ok(HttpResponse::Ok().json(PlanBody::from(&plan)))
}

pub async fn stats(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let stats = state.plans.stats(plan_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(StatsBody::from(stats)))
}

pub async fn audit(
    _: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = plan_id(&path)?;
    let page = query.page(|c| {
        c.parse::<u64>()
            .map_err(|_| InvalidValue::new("not a sequence number"))
    })?;
    let page = state.plans.audit(id, page).await?;
    Ok(HttpResponse::Ok().json(List {
        data: page.items.iter().map(AuditEntryBody::from).collect(),
        next_cursor: page.next.map(|seq| seq.to_string()),
    }))
}
