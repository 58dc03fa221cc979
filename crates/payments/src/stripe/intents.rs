//! [`IntentGateway`] over Stripe: PaymentIntents created unconfirmed for a checkout
//! session, then confirmed (by the server with a payment method, or in the browser by
//! Stripe.js), read, or cancelled.
//!
//! | call | request | idempotency key |
//! | --- | --- | --- |
//! | `create_intent` | `POST /v1/payment_intents` (`amount`, `currency`, `payment_method_types[]=card`, `metadata[checkout_session_id, subscription_id, customer_id, provider_key]`) | the request's provider key: every creation with it is the same intent |
//! | `confirm_intent` | `POST /v1/payment_intents/{id}/confirm` (`payment_method`) | `seatkeeper-confirm-<intent>-<uuid>`, new for every call, the same for the retries within it |
//! | `retrieve_intent` | `GET /v1/payment_intents/{id}` | — |
//! | `cancel_intent` | `POST /v1/payment_intents/{id}/cancel` | `seatkeeper-cancel-<intent>` |
//!
//! **Why a confirmation's key is new at every call.** A key made of the intent and the
//! payment method alone would replay a stored answer to a later, legitimate confirmation
//! with the same card: a decline would be declined again for 24 hours even after the
//! customer's bank said yes, and a second 3-D Secure attempt after a failed one would get
//! back the first, finished `requires_action`. A fresh key per call still makes the
//! adapter's own retries (a timeout, a 409, a 5xx) replays of one request, and a retry by
//! the caller after a lost answer is safe without a shared key because an intent succeeds
//! at most once: confirming it again is a 400 `payment_intent_unexpected_state`, on which
//! the adapter retrieves the intent and answers it (`Succeeded`). A cancellation has no
//! parameters and is final, so one key per intent is enough; its 400
//! `payment_intent_unexpected_state` (already succeeded or cancelled) is answered the same
//! way, with the intent as it is.
//!
//! | Stripe says to a confirmation | the port gets |
//! | --- | --- |
//! | 200, intent `succeeded` / `requires_action` / `processing` | `Ok(intent)` |
//! | 402 `card_error` | `Declined { decline_code or code, message }`; the intent waits for another method |
//! | 400 `payment_intent_unexpected_state` | the intent, retrieved (`Ok`), or `Unknown` if it cannot be read |
//! | 400 / 404 `invalid_request_error` (no such payment method or intent) | `Declined { code, message }`: nothing was charged |
//! | 409, 429, 5xx, timeout after the retries; 401 / 403; 400 `idempotency_error` | `Unknown` |
//!
//! The other calls answer `GatewayError::Rejected` for a 4xx and `Unavailable` when there
//! is no definitive answer (timeouts, 409, 429, 5xx after the retries).

use async_trait::async_trait;
use reqwest::StatusCode;
use seatkeeper_domain::{
    ports::{
        ChargeError, GatewayError, IntentGateway, IntentRequest, IntentStatus, NextAction,
        PaymentIntent,
    },
    PaymentMethod,
};
use serde_json::Value;

use super::{describe, error_field, Answer, StripeGateway};

fn field<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    v.pointer(path).and_then(Value::as_str)
}

/// `"<code>: <message>"` of a `last_payment_error` (its `decline_code` when it has one, as
/// declines are reported).
fn last_error(error: &Value) -> Option<String> {
    if error.is_null() {
        return None;
    }
    let code = field(error, "/decline_code")
        .or_else(|| field(error, "/code"))
        .unwrap_or("payment_failed");
    let message = field(error, "/message").unwrap_or("The payment was not completed.");
    Some(format!("{code}: {message}"))
}

/// A PaymentIntent object as the port sees it. `sent` is the payment method of the
/// confirmation, for a succeeded intent whose `payment_method` cannot be read.
fn parse_intent(v: &Value, sent: Option<&PaymentMethod>) -> Result<PaymentIntent, String> {
    let id = field(v, "/id").ok_or("a payment intent without an id")?;
    let status = match field(v, "/status") {
        Some("requires_payment_method") => IntentStatus::RequiresPaymentMethod {
            last_error: v.get("last_payment_error").and_then(last_error),
        },
        Some("requires_confirmation") => IntentStatus::RequiresPaymentMethod { last_error: None },
        Some("requires_action") => {
            let action = v.get("next_action").unwrap_or(&Value::Null);
            IntentStatus::RequiresAction {
                next_action: NextAction {
                    kind: field(action, "/type").unwrap_or("unknown").to_owned(),
                    redirect_url: field(action, "/redirect_to_url/url").map(str::to_owned),
                },
            }
        }
        Some("processing") | Some("requires_capture") => IntentStatus::Processing,
        Some("succeeded") => {
            let pm = v.get("payment_method");
            let pm = pm
                .and_then(Value::as_str)
                .or_else(|| pm.and_then(|p| field(p, "/id")));
            let payment_method = pm
                .and_then(|p| PaymentMethod::parse(p).ok())
                .or_else(|| sent.cloned())
                .ok_or_else(|| {
                    format!("the payment intent {id} succeeded without a payment method")
                })?;
            IntentStatus::Succeeded { payment_method }
        }
        Some("canceled") => IntentStatus::Canceled,
        other => {
            return Err(format!(
                "the payment intent {id} has an unknown status {}",
                other.unwrap_or("(none)")
            ))
        }
    };
    Ok(PaymentIntent {
        id: id.to_owned(),
        client_secret: field(v, "/client_secret").unwrap_or_default().to_owned(),
        status,
    })
}

/// The answer to a create, retrieve or cancel as the port sees it.
fn gateway_answer(answer: Answer) -> Result<PaymentIntent, GatewayError> {
    match answer {
        Answer::Http(status, body, _) if status.is_success() => {
            parse_intent(&body, None).map_err(GatewayError::Unavailable)
        }
        Answer::Http(status, body, _)
            if status.is_client_error()
                && !matches!(status, StatusCode::CONFLICT | StatusCode::TOO_MANY_REQUESTS) =>
        {
            if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                tracing::error!(%status, "the payment provider refused our credentials");
            }
            Err(GatewayError::Rejected(describe(status, &body)))
        }
        Answer::Http(status, body, _) => Err(GatewayError::Unavailable(describe(status, &body))),
        Answer::Lost(why) => Err(GatewayError::Unavailable(why)),
    }
}

fn unexpected_state(status: StatusCode, body: &Value) -> bool {
    status == StatusCode::BAD_REQUEST
        && error_field(body, "code") == Some("payment_intent_unexpected_state")
}

fn intent_path(intent_id: &str, action: &str) -> String {
    // Stripe's ids are letters, digits and '_'; anything else cannot name an intent and
    // must not change the path.
    let id: String = intent_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    format!("/v1/payment_intents/{id}{action}")
}

#[async_trait]
impl IntentGateway for StripeGateway {
    fn provider(&self) -> &'static str {
        "stripe"
    }

    #[tracing::instrument(skip_all, fields(provider_key = %req.provider_key))]
    async fn create_intent(&self, req: &IntentRequest) -> Result<PaymentIntent, GatewayError> {
        let form = vec![
            ("amount".to_owned(), req.amount.get().to_string()),
            ("currency".to_owned(), req.currency.to_string()),
            ("payment_method_types[]".to_owned(), "card".to_owned()),
            (
                "description".to_owned(),
                format!("Seatkeeper checkout {}", req.checkout_session_id),
            ),
            (
                "metadata[checkout_session_id]".to_owned(),
                req.checkout_session_id.to_string(),
            ),
            (
                "metadata[subscription_id]".to_owned(),
                req.subscription_id.to_string(),
            ),
            (
                "metadata[customer_id]".to_owned(),
                req.customer_id.to_string(),
            ),
            (
                "metadata[provider_key]".to_owned(),
                req.provider_key.clone(),
            ),
        ];
        gateway_answer(
            self.post("/v1/payment_intents", &form, &req.provider_key)
                .await,
        )
    }

    #[tracing::instrument(skip_all, fields(intent_id = %intent_id))]
    async fn confirm_intent(
        &self,
        intent_id: &str,
        payment_method: &PaymentMethod,
    ) -> Result<PaymentIntent, ChargeError> {
        let form = vec![(
            "payment_method".to_owned(),
            payment_method.as_str().to_owned(),
        )];
        let key = format!(
            "seatkeeper-confirm-{intent_id}-{}",
            uuid::Uuid::new_v4().simple()
        );
        let path = intent_path(intent_id, "/confirm");
        let declined =
            |body: &Value, default_code: &str, default_message: &str| ChargeError::Declined {
                code: error_field(body, "decline_code")
                    .or_else(|| error_field(body, "code"))
                    .unwrap_or(default_code)
                    .to_owned(),
                message: error_field(body, "message")
                    .unwrap_or(default_message)
                    .to_owned(),
            };
        match self.post(&path, &form, &key).await {
            Answer::Http(status, body, _) if status.is_success() => {
                let intent =
                    parse_intent(&body, Some(payment_method)).map_err(ChargeError::Unknown)?;
                match &intent.status {
                    // Stripe answers a decline with a 402; an intent back to waiting in a
                    // 200 is one too.
                    IntentStatus::RequiresPaymentMethod {
                        last_error: Some(e),
                    } => {
                        let (code, message) = e.split_once(": ").unwrap_or(("payment_failed", e));
                        Err(ChargeError::Declined {
                            code: code.to_owned(),
                            message: message.to_owned(),
                        })
                    }
                    _ => Ok(intent),
                }
            }
            Answer::Http(StatusCode::PAYMENT_REQUIRED, body, _) => {
                Err(declined(&body, "card_declined", "The card was declined."))
            }
            Answer::Http(status, body, _) if unexpected_state(status, &body) => {
                // Already succeeded (a retry of a lost answer) or cancelled: as it is.
                match self.retrieve_intent(intent_id).await {
                    Ok(intent) => Ok(intent),
                    Err(e) => Err(ChargeError::Unknown(format!(
                        "{}; then: {e}",
                        describe(status, &body)
                    ))),
                }
            }
            Answer::Http(status, body, _)
                if matches!(status, StatusCode::BAD_REQUEST | StatusCode::NOT_FOUND)
                    && error_field(&body, "type") == Some("invalid_request_error") =>
            {
                Err(declined(
                    &body,
                    "invalid_request",
                    "The payment request was refused.",
                ))
            }
            Answer::Http(status, body, _) => {
                if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
                    tracing::error!(%status, "the payment provider refused our credentials");
                }
                Err(ChargeError::Unknown(describe(status, &body)))
            }
            Answer::Lost(why) => Err(ChargeError::Unknown(why)),
        }
    }

    async fn retrieve_intent(&self, intent_id: &str) -> Result<PaymentIntent, GatewayError> {
        gateway_answer(self.get(&intent_path(intent_id, ""), &[]).await)
    }

    async fn cancel_intent(&self, intent_id: &str) -> Result<PaymentIntent, GatewayError> {
        let key = format!("seatkeeper-cancel-{intent_id}");
        match self
            .post(&intent_path(intent_id, "/cancel"), &[], &key)
            .await
        {
            Answer::Http(status, body, _) if unexpected_state(status, &body) => {
                self.retrieve_intent(intent_id).await
            }
            answer => gateway_answer(answer),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pm(s: &str) -> PaymentMethod {
        PaymentMethod::parse(s).unwrap()
    }

    #[test]
    fn stripes_statuses_map_onto_the_ports() {
        let status = |v: Value| parse_intent(&v, None).unwrap().status;
        assert_eq!(
            status(
                json!({"id": "pi_1", "status": "requires_payment_method", "last_payment_error": null})
            ),
            IntentStatus::RequiresPaymentMethod { last_error: None }
        );
        assert_eq!(
            status(json!({"id": "pi_1", "status": "requires_payment_method",
                "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds", "message": "No money."}})),
            IntentStatus::RequiresPaymentMethod {
                last_error: Some("insufficient_funds: No money.".into())
            }
        );
        assert_eq!(
            status(
                json!({"id": "pi_1", "status": "requires_confirmation", "payment_method": "pm_card_visa"})
            ),
            IntentStatus::RequiresPaymentMethod { last_error: None }
        );
        assert_eq!(
            status(json!({"id": "pi_1", "status": "requires_action",
                "next_action": {"type": "redirect_to_url", "redirect_to_url": {"url": "https://x/3ds", "return_url": null}}})),
            IntentStatus::RequiresAction {
                next_action: NextAction {
                    kind: "redirect_to_url".into(),
                    redirect_url: Some("https://x/3ds".into())
                }
            }
        );
        assert_eq!(
            status(
                json!({"id": "pi_1", "status": "requires_action", "next_action": {"type": "use_stripe_sdk"}})
            ),
            IntentStatus::RequiresAction {
                next_action: NextAction {
                    kind: "use_stripe_sdk".into(),
                    redirect_url: None
                }
            }
        );
        assert_eq!(
            status(json!({"id": "pi_1", "status": "requires_capture"})),
            IntentStatus::Processing
        );
        assert_eq!(
            status(json!({"id": "pi_1", "status": "processing"})),
            IntentStatus::Processing
        );
        assert_eq!(
            status(json!({"id": "pi_1", "status": "canceled"})),
            IntentStatus::Canceled
        );
        assert_eq!(
            status(
                json!({"id": "pi_1", "status": "succeeded", "payment_method": {"id": "pm_1Abc", "object": "payment_method"}})
            ),
            IntentStatus::Succeeded {
                payment_method: pm("pm_1Abc")
            }
        );
        assert!(parse_intent(&json!({"id": "pi_1", "status": "exploded"}), None).is_err());
    }

    #[test]
    fn a_succeeded_intent_without_a_readable_payment_method_takes_the_one_sent() {
        let v = json!({"id": "pi_1", "client_secret": "pi_1_secret_x", "status": "succeeded", "payment_method": null});
        let sent = pm("pm_card_visa");
        let intent = parse_intent(&v, Some(&sent)).unwrap();
        assert_eq!(intent.client_secret, "pi_1_secret_x");
        assert_eq!(
            intent.status,
            IntentStatus::Succeeded {
                payment_method: sent
            }
        );
        assert!(parse_intent(&v, None).is_err());
    }

    #[test]
    fn an_intent_id_cannot_change_the_path() {
        assert_eq!(
            intent_path("pi_1/../../v1/refunds?x", "/cancel"),
            "/v1/payment_intents/pi_1v1refundsx/cancel"
        );
    }
}
