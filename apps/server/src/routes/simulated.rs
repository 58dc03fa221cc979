//! `POST /api/simulated_payments/{payment_intent}/authenticate`: the 3-D Secure page of
//! the in-process payment simulator. A customer whose checkout answered `requires_action`
//! is sent here (`next_action.redirect_url`); passing or failing the check changes the
//! intent, and the simulator tells the checkout service at once, as a webhook would.

use actix_web::{post, web, HttpRequest, HttpResponse};
use seatkeeper_domain::{
    ports::{IntentStatus, WebhookEvent},
    service::{PaymentEvent, PaymentEventKind},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use crate::{
    extract::json_body,
    openapi::responses::*,
    problem::{ApiError, Code},
};

/// The customer's answer to the 3-D Secure check.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = SimulatedAuthentication)]
pub struct AuthenticateRequest {
    pub result: AuthResult,
}

/// `pass` or `fail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthResult {
    Pass,
    Fail,
}

/// The intent after the check.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = SimulatedIntent)]
pub struct IntentBody {
    pub payment_intent: String,
    /// `succeeded` after a pass; `requires_payment_method` after a failure (confirm again
    /// with another method); otherwise the intent's status, unchanged.
    #[schema(examples("succeeded"))]
    pub status: &'static str,
}

fn status_name(s: &IntentStatus) -> &'static str {
    match s {
        IntentStatus::RequiresPaymentMethod { .. } => "requires_payment_method",
        IntentStatus::RequiresAction { .. } => "requires_action",
        IntentStatus::Processing => "processing",
        IntentStatus::Succeeded { .. } => "succeeded",
        IntentStatus::Canceled => "canceled",
    }
}

/// Pass or fail a simulated 3-D Secure check
///
/// Only with the in-process payment simulator (`payments.provider = "simulated"`; else
/// 404). `pass` makes an intent in `requires_action` succeed, `fail` sends it back to
/// `requires_payment_method`; the checkout session learns of it at once, exactly as from
/// a webhook. An intent in any other state is answered unchanged. No credential: the
/// intent's id, given only to its session's customer, stands for the bank's page.
#[utoipa::path(
    operation_id = "authenticateSimulatedPayment",
    tag = "webhooks",
    security(()),
    params(("payment_intent" = String, Path, description = "The intent's id (`pi_sim_…`). Unknown ids answer 404 `not_found`.", example = "pi_sim_6f1c2a9e4b7d4c0e9a3b5d7f1e2c4a6b")),
    request_body(content = AuthenticateRequest, example = json!({"result": "pass"})),
    responses(
        (status = 200, description = "The intent after the check.", body = IntentBody),
        (status = 400, response = InvalidRequest),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[post("/api/simulated_payments/{payment_intent}/authenticate")]
pub async fn authenticate(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let unknown = || {
        ApiError::new(
            Code::NotFound,
            format!("there is no simulated payment intent '{path}'"),
        )
    };
    let Some(simulator) = &state.simulated else {
        return Err(ApiError::new(
            Code::NotFound,
            "the in-process payment simulator is not in use here",
        ));
    };
    let input = json_body::<AuthenticateRequest>(&req, &body)?;
    let pass = input.result == AuthResult::Pass;
    let session_id = simulator.intent_session(&path).ok_or_else(unknown)?;
    let intent = simulator
        .authenticate(&path, pass)
        .await
        .map_err(|_| unknown())?;
    let kind = match &intent.status {
        IntentStatus::Succeeded { payment_method } => Some((
            "payment_intent.succeeded",
            PaymentEventKind::Succeeded {
                payment_method: payment_method.clone(),
            },
        )),
        IntentStatus::RequiresPaymentMethod {
            last_error: Some(reason),
        } => Some((
            "payment_intent.payment_failed",
            PaymentEventKind::Failed {
                reason: reason.clone(),
            },
        )),
        _ => None,
    };
    if let Some((name, kind)) = kind {
        let event = PaymentEvent {
            event: WebhookEvent {
                id: format!("evt_sim_{}", uuid::Uuid::now_v7().simple()),
                kind: name.to_owned(),
                received_at: state.checkouts.now(),
            },
            session_id,
            intent_id: intent.id.clone(),
            kind,
        };
        state.checkouts.on_event(&event).await?;
    }
    Ok(HttpResponse::Ok().json(IntentBody {
        payment_intent: intent.id,
        status: status_name(&intent.status),
    }))
}
