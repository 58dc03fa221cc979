//! `POST /api/webhooks/stripe`: the payment provider tells us what became of the
//! PaymentIntents of checkout sessions. No credential: the `Stripe-Signature` is the
//! proof. The answer comes as soon as the event is recorded (well within Stripe's
//! limits); refunds and provider calls it causes are left to the checkout worker.

use actix_web::{post, web, HttpRequest, HttpResponse};
use seatkeeper_domain::service::EventOutcome;
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use crate::{
    openapi::responses::*,
    problem::{ApiError, Code},
    webhooks::{event, signature},
};

/// The webhook settings an instance runs with.
#[derive(Debug, Clone, Default)]
pub struct WebhookConfig {
    /// The endpoint's signing secrets; empty: the endpoint is off (404).
    pub secrets: Vec<String>,
    pub tolerance_secs: i64,
}

/// The answer to a delivered event.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = WebhookReceipt)]
pub struct WebhookReceipt {
    /// Always `true`: the event was taken.
    pub received: bool,
    /// `handled`: applied to its checkout session (an event about a complete session, which
    /// nothing changes, is `handled` however often it comes). `duplicate`: an event with
    /// this id was handled before; nothing was done. `ignored`: not about a checkout
    /// session's payment.
    #[schema(examples("handled"))]
    pub outcome: &'static str,
}

/// Receive a Stripe webhook
///
/// Stripe (or `seatkeeper-paysim`) posts PaymentIntent events here. The `Stripe-Signature`
/// header must carry a `v1` HMAC-SHA256 of `"<t>.<raw body>"` under one of the secrets of
/// `payments.webhook_secrets`, with `t` within `payments.webhook_tolerance_secs` (300) of
/// now; anything else is 400 `webhook_signature_invalid`, logged, and changes nothing.
/// A redelivery does nothing: about a complete session, which no event changes, it is
/// answered `handled` again; otherwise it is known by its id and answered `duplicate`.
/// `payment_intent.succeeded` completes the session (exactly once, whoever learns of the
/// payment first), `payment_intent.payment_failed` records the failure (the session stays
/// open), `payment_intent.canceled` is noted; other events are acknowledged and ignored.
/// With no secret configured the endpoint is off: 404 (after the 400 for a missing
/// `Stripe-Signature`). A 503 makes the provider retry.
#[utoipa::path(
    operation_id = "receiveStripeWebhook",
    tag = "webhooks",
    security(()),
    params(
        ("Stripe-Signature" = String, Header, description = "`t=<unix seconds>,v1=<hex HMAC-SHA256>` as Stripe sends it; several `v1` values may be given.", example = "t=1780000000,v1=ec91baef515b76d132cffcff38a05932c6e1f9facad958f0166227c62878b2b1"),
    ),
    request_body(content = Object, description = "A Stripe event, as Stripe sends it.", content_type = "application/json",
        example = json!({"id": "evt_1Q2w3e", "object": "event", "type": "payment_intent.succeeded",
            "data": {"object": {"id": "pi_3PxYz2Kx", "object": "payment_intent", "status": "succeeded",
                "payment_method": "pm_card_visa", "metadata": {"checkout_session_id": "0193b0c1-2d3e-7f40-8a5b-6c7d8e9f0a1b"}}}})),
    responses(
        (status = 200, description = "Taken: handled, a duplicate, or ignored.", body = WebhookReceipt),
        (status = 400, response = WebhookBadRequest),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[post("/api/webhooks/stripe")]
pub async fn stripe(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let config = &state.webhooks;
    let header = req
        .headers()
        .get("stripe-signature")
        .map(|v| v.to_str().unwrap_or(""));
    if header.is_none() {
        metrics::counter!("seatkeeper_webhooks_total", "outcome" => "refused").increment(1);
        return Err(ApiError::new(
            Code::WebhookSignatureInvalid,
            signature::SignatureError::Missing.to_string(),
        ));
    }
    if config.secrets.is_empty() {
        return Err(ApiError::new(
            Code::NotFound,
            "no Stripe webhook endpoint is configured here (payments.webhook_secrets)",
        ));
    }
    let now = state.checkouts.now();
    if let Err(e) = signature::verify(
        header,
        &body,
        &config.secrets,
        now.timestamp(),
        config.tolerance_secs,
    ) {
        tracing::warn!(error = %e, "a webhook was refused");
        metrics::counter!("seatkeeper_webhooks_total", "outcome" => "refused").increment(1);
        return Err(ApiError::new(Code::WebhookSignatureInvalid, e.to_string()));
    }
    let read = event::read(&body, now).map_err(|e| {
        tracing::warn!(error = %e, "a signed webhook could not be read");
        ApiError::new(Code::InvalidRequest, e)
    })?;
    let outcome = match read {
        event::Read::Ignored { id, kind } => {
            tracing::debug!(event_id = %id, kind = %kind, "webhook ignored");
            "ignored"
        }
        event::Read::Payment(ev) => match state.checkouts.on_event(&ev).await? {
            EventOutcome::Duplicate => "duplicate",
            EventOutcome::Ignored => "ignored",
            EventOutcome::Handled(effect) => {
                tracing::info!(
                    event_id = %ev.event.id,
                    kind = %ev.event.kind,
                    session_id = %ev.session_id,
                    effect = ?effect,
                    "webhook handled"
                );
                "handled"
            }
        },
    };
    metrics::counter!("seatkeeper_webhooks_total", "outcome" => outcome).increment(1);
    Ok(HttpResponse::Ok().json(WebhookReceipt {
        received: true,
        outcome,
    }))
}
