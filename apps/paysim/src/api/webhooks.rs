//! Webhook endpoints (Stripe's `/v1/webhook_endpoints`), and the simulator's own listing
//! of deliveries, `GET /v1/_sim/webhook_deliveries?event=evt_…&endpoint=we_…`.

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    authorized, error, faults, list_param, metadata, new_id, not_found, now, page, param, post,
    respond, Form, ListQuery, Outcome, Sim,
};
use crate::{ledger::WebhookEndpoint, webhooks::new_secret, Simulator};

/// `POST /v1/webhook_endpoints` (`url`, `enabled_events[]`, optional `description`,
/// `api_version`, `metadata[…]`): the answer has the endpoint's `secret`, the only one that
/// does.
pub(super) async fn create(req: HttpRequest, sim: Sim, form: Form) -> HttpResponse {
    post(&sim, &req, &form.into_inner(), |sim, _, params| {
        create_endpoint(sim, params)
    })
    .await
}

fn create_endpoint(sim: &Simulator, params: &[(String, String)]) -> Outcome {
    let invalid = |param: &str, code: &str, message: &str| -> Outcome {
        error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some(code),
            message,
            json!({ "param": param }),
        )
        .into()
    };
    let Some(url) = param(params, "url") else {
        return invalid("url", "parameter_missing", "Missing required param: url.");
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return invalid(
            "url",
            "url_invalid",
            "Invalid URL: must be http:// or https://.",
        );
    }
    let events = list_param(params, "enabled_events");
    if events.is_empty() {
        return invalid(
            "enabled_events",
            "parameter_missing",
            "Missing required param: enabled_events.",
        );
    }
    let endpoint = WebhookEndpoint {
        id: new_id("we"),
        object: "webhook_endpoint".into(),
        url: url.to_owned(),
        enabled_events: events,
        secret: Some(new_secret()),
        status: "enabled".into(),
        api_version: param(params, "api_version").map(str::to_owned),
        description: param(params, "description").map(str::to_owned),
        metadata: metadata(params),
        created: now(),
        livemode: false,
    };
    if let Err(e) = sim.state.lock().put_endpoint(endpoint.clone()) {
        tracing::error!(error = %e, "could not record a webhook endpoint");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            None,
            "The ledger could not be written.",
            json!({}),
        )
        .into();
    }
    sim.webhooks.add(endpoint.clone());
    (
        StatusCode::OK,
        serde_json::to_value(endpoint).unwrap_or(Value::Null),
    )
        .into()
}

/// `GET /v1/webhook_endpoints`: newest first, without secrets.
pub(super) async fn list(req: HttpRequest, sim: Sim, q: web::Query<ListQuery>) -> HttpResponse {
    if let Err(res) = authorized(&sim, &req) {
        return *res;
    }
    let items: Vec<(String, WebhookEndpoint)> = sim
        .webhooks
        .endpoints()
        .into_iter()
        .rev()
        .map(|e| (e.id.clone(), e.public()))
        .collect();
    match page("/v1/webhook_endpoints", items, &q) {
        Ok(body) => respond((StatusCode::OK, body)),
        Err(res) => *res,
    }
}

/// `GET /v1/webhook_endpoints/{id}`
pub(super) async fn get(req: HttpRequest, sim: Sim, id: web::Path<String>) -> HttpResponse {
    if let Err(res) = authorized(&sim, &req) {
        return *res;
    }
    let found = sim.webhooks.endpoints().into_iter().find(|e| e.id == *id);
    respond(match found {
        Some(e) => (
            StatusCode::OK,
            serde_json::to_value(e.public()).unwrap_or_default(),
        ),
        None => not_found("webhook_endpoint", &id, "id"),
    })
}

/// `DELETE /v1/webhook_endpoints/{id}`: its pending deliveries are abandoned.
pub(super) async fn delete(req: HttpRequest, sim: Sim, id: web::Path<String>) -> HttpResponse {
    if let Err(res) = authorized(&sim, &req) {
        return *res;
    }
    if let Err(res) = faults(&sim).await {
        return res;
    }
    if sim.webhooks.remove(&id).is_none() {
        return respond(not_found("webhook_endpoint", &id, "id"));
    }
    let mut state = sim.state.lock();
    if state.endpoints.iter().any(|e| e.id == *id) {
        if let Err(e) = state.delete_endpoint(&id) {
            tracing::error!(error = %e, "could not record a webhook endpoint's deletion");
        }
    }
    respond((
        StatusCode::OK,
        json!({ "id": *id, "object": "webhook_endpoint", "deleted": true }),
    ))
}

#[derive(Deserialize)]
pub(super) struct DeliveryQuery {
    event: Option<String>,
    endpoint: Option<String>,
}

/// `GET /v1/_sim/webhook_deliveries`: every delivery, oldest first (see
/// [`crate::webhooks::Delivery`]), optionally of one event or endpoint.
pub(super) async fn deliveries(
    req: HttpRequest,
    sim: Sim,
    q: web::Query<DeliveryQuery>,
) -> HttpResponse {
    if let Err(res) = authorized(&sim, &req) {
        return *res;
    }
    let data: Vec<_> = sim
        .webhooks
        .deliveries()
        .into_iter()
        .filter(|d| q.event.as_ref().is_none_or(|e| &d.event == e))
        .filter(|d| q.endpoint.as_ref().is_none_or(|e| &d.endpoint == e))
        .collect();
    respond((
        StatusCode::OK,
        json!({ "object": "list", "url": "/v1/_sim/webhook_deliveries", "has_more": false, "data": data }),
    ))
}
