//! Refunds: a succeeded PaymentIntent refunded in full, once.

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde_json::{json, Value};

use super::{authorized, error, new_id, now, page, param, post, respond, Form, ListQuery, Sim};
use crate::{ledger::Refund, Simulator};

pub(super) async fn create(req: HttpRequest, sim: Sim, form: Form) -> HttpResponse {
    post(&sim, &req, &form.into_inner(), |sim, _, params| {
        refund(sim, params).into()
    })
    .await
}

fn refund(sim: &Simulator, params: &[(String, String)]) -> (StatusCode, Value) {
    let Some(pi) = param(params, "payment_intent") else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_missing"),
            "Missing required param: payment_intent.",
            json!({ "param": "payment_intent" }),
        );
    };
    let mut state = sim.state.lock();
    let Some(intent) = state.intent(pi).cloned() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such payment_intent: '{pi}'"),
            json!({ "param": "payment_intent" }),
        );
    };
    if intent.status != "succeeded" {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("payment_intent_unexpected_state"),
            &format!("This PaymentIntent ({pi}) does not have a successful charge to refund."),
            json!({ "param": "payment_intent" }),
        );
    }
    let left = intent.amount_received - state.refunded(pi);
    if left <= 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("charge_already_refunded"),
            &format!(
                "Charge {} has already been refunded.",
                intent.latest_charge.clone().unwrap_or_default()
            ),
            json!({}),
        );
    }
    let refund = Refund {
        id: new_id("re"),
        object: "refund".into(),
        amount: left,
        currency: intent.currency.clone(),
        payment_intent: intent.id.clone(),
        charge: intent.latest_charge.clone(),
        status: "succeeded".into(),
        created: now(),
    };
    if let Err(e) = state.put_refund(refund.clone()) {
        tracing::error!(error = %e, "could not record a refund");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            None,
            "The ledger could not be written.",
            json!({}),
        );
    }
    (
        StatusCode::OK,
        serde_json::to_value(refund).unwrap_or(Value::Null),
    )
}

pub(super) async fn list(req: HttpRequest, sim: Sim, q: web::Query<ListQuery>) -> HttpResponse {
    if let Err(res) = authorized(&sim, &req) {
        return *res;
    }
    let items: Vec<(String, Refund)> = sim
        .state
        .lock()
        .refunds
        .iter()
        .rev()
        .filter(|r| {
            q.payment_intent
                .as_ref()
                .is_none_or(|pi| &r.payment_intent == pi)
        })
        .map(|r| (r.id.clone(), r.clone()))
        .collect();
    match page("/v1/refunds", items, &q) {
        Ok(body) => respond((StatusCode::OK, body)),
        Err(res) => *res,
    }
}
