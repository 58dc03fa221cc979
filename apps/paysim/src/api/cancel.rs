//! Cancelling a PaymentIntent: final, for the statuses Stripe allows.

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};

use super::{
    intents::{invalid, params_of, store, unexpected_state},
    not_found, now, param, post, MaybeForm, Outcome, Sim,
};
use crate::Simulator;

/// `POST /v1/payment_intents/{id}/cancel`
pub(super) async fn cancel(
    req: HttpRequest,
    sim: Sim,
    id: web::Path<String>,
    form: MaybeForm,
) -> HttpResponse {
    post(&sim, &req, &params_of(form), |sim, _, params| {
        cancel_intent(sim, params, &id)
    })
    .await
}

const CANCELABLE: [&str; 5] = [
    "requires_payment_method",
    "requires_capture",
    "requires_confirmation",
    "requires_action",
    "processing",
];

fn cancel_intent(sim: &Simulator, params: &[(String, String)], id: &str) -> Outcome {
    let reason = param(params, "cancellation_reason");
    if let Some(r) = reason.filter(|r| {
        ![
            "duplicate",
            "fraudulent",
            "requested_by_customer",
            "abandoned",
        ]
        .contains(r)
    }) {
        return invalid(
            "cancellation_reason",
            &format!("Invalid cancellation_reason: must be one of duplicate, fraudulent, requested_by_customer or abandoned ('{r}')."),
        );
    }
    let mut state = sim.state.lock();
    let Some(mut intent) = state.intent(id).cloned() else {
        return not_found("payment_intent", id, "intent").into();
    };
    if !CANCELABLE.contains(&intent.status.as_str()) {
        let message = format!(
            "You cannot cancel this PaymentIntent because it has a status of {}. Only a \
             PaymentIntent with one of the following statuses may be canceled: {}.",
            intent.status,
            CANCELABLE.join(", ")
        );
        return unexpected_state(serde_json::to_value(&intent).unwrap_or_default(), &message);
    }
    intent.status = "canceled".into();
    intent.canceled_at = Some(now());
    intent.cancellation_reason = reason.map(str::to_owned);
    intent.next_action = None;
    let object = match store(&mut state, intent) {
        Ok(object) => object,
        Err(out) => return out,
    };
    drop(state);
    sim.webhooks.emit("payment_intent.canceled", &object);
    (StatusCode::OK, object).into()
}
