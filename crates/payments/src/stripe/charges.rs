//! [`PaymentGateway`] over Stripe: a charge is one `POST /v1/payment_intents` with
//! `confirm=true`; a look-up is a search by `metadata['provider_key']` plus the intent's
//! refunds; a refund is `POST /v1/refunds`.

use async_trait::async_trait;
use reqwest::StatusCode;
use seatkeeper_domain::ports::{
    Charge, ChargeError, ChargeRequest, ChargeStatus, GatewayError, PaymentGateway,
};
use serde_json::Value;

use super::{describe, error_field, Answer, StripeGateway};

/// What a PaymentIntent object says about the charge.
fn intent_outcome(intent: &Value) -> Result<Charge, ChargeError> {
    let id = intent.get("id").and_then(Value::as_str).unwrap_or_default();
    match intent.get("status").and_then(Value::as_str) {
        Some("succeeded") if !id.is_empty() => Ok(Charge {
            payment_id: id.to_owned(),
        }),
        Some("requires_payment_method") | Some("canceled") => {
            let error = intent.get("last_payment_error");
            let field = |f: &str| error.and_then(|e| e.get(f)).and_then(Value::as_str);
            Err(ChargeError::Declined {
                code: field("decline_code")
                    .or_else(|| field("code"))
                    .unwrap_or("payment_failed")
                    .to_owned(),
                message: field("message")
                    .unwrap_or("The payment was not completed.")
                    .to_owned(),
            })
        }
        other => Err(ChargeError::Unknown(format!(
            "the payment intent {id} is {}",
            other.unwrap_or("in an unknown state")
        ))),
    }
}

#[async_trait]
impl PaymentGateway for StripeGateway {
    #[tracing::instrument(skip_all, fields(provider_key = %req.provider_key))]
    async fn charge(&self, req: &ChargeRequest) -> Result<Charge, ChargeError> {
        let form = vec![
            ("amount".to_owned(), req.amount.get().to_string()),
            ("currency".to_owned(), req.currency.to_string()),
            (
                "payment_method".to_owned(),
                req.payment_method.as_str().to_owned(),
            ),
            ("confirm".to_owned(), "true".to_owned()),
            ("error_on_requires_action".to_owned(), "true".to_owned()),
            (
                "automatic_payment_methods[enabled]".to_owned(),
                "true".to_owned(),
            ),
            (
                "automatic_payment_methods[allow_redirects]".to_owned(),
                "never".to_owned(),
            ),
            (
                "description".to_owned(),
                format!("Seatkeeper subscription {}", req.subscription_id),
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
        match self
            .post("/v1/payment_intents", &form, &req.provider_key)
            .await
        {
            Answer::Http(status, body, _) if status.is_success() => intent_outcome(&body),
            Answer::Http(StatusCode::PAYMENT_REQUIRED, body, _) => {
                let code = error_field(&body, "decline_code")
                    .or_else(|| error_field(&body, "code"))
                    .unwrap_or("card_declined");
                Err(ChargeError::Declined {
                    code: code.to_owned(),
                    message: error_field(&body, "message")
                        .unwrap_or("The card was declined.")
                        .to_owned(),
                })
            }
            Answer::Http(StatusCode::BAD_REQUEST, body, _)
                if error_field(&body, "type") == Some("invalid_request_error") =>
            {
                Err(ChargeError::Declined {
                    code: error_field(&body, "code")
                        .unwrap_or("invalid_request")
                        .to_owned(),
                    message: error_field(&body, "message")
                        .unwrap_or("The payment request was refused.")
                        .to_owned(),
                })
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

    async fn lookup(&self, provider_key: &str) -> Result<ChargeStatus, GatewayError> {
        let query = format!("metadata['provider_key']:'{provider_key}'");
        let found = match self
            .get(
                "/v1/payment_intents/search",
                &[("query", query.as_str()), ("limit", "10")],
            )
            .await
        {
            Answer::Http(status, body, _) if status.is_success() => body,
            Answer::Http(status, body, _) => {
                return Err(GatewayError::Unavailable(describe(status, &body)))
            }
            Answer::Lost(why) => return Err(GatewayError::Unavailable(why)),
        };
        let intents = found
            .get("data")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let succeeded = intents
            .iter()
            .find(|i| i.get("status").and_then(Value::as_str) == Some("succeeded"));
        let Some(intent) = succeeded else {
            return Ok(match intents.first() {
                None => ChargeStatus::NotFound,
                Some(i) => match intent_outcome(i) {
                    Err(ChargeError::Declined { code, message }) => ChargeStatus::Failed {
                        reason: format!("{code}: {message}"),
                    },
                    Err(ChargeError::Unknown(why)) => return Err(GatewayError::Unavailable(why)),
                    Ok(c) => ChargeStatus::Succeeded {
                        payment_id: c.payment_id,
                    },
                },
            });
        };
        let payment_id = intent
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let refunds = match self
            .get(
                "/v1/refunds",
                &[("payment_intent", payment_id.as_str()), ("limit", "1")],
            )
            .await
        {
            Answer::Http(status, body, _) if status.is_success() => body,
            Answer::Http(status, body, _) => {
                return Err(GatewayError::Unavailable(describe(status, &body)))
            }
            Answer::Lost(why) => return Err(GatewayError::Unavailable(why)),
        };
        let refunded = refunds
            .get("data")
            .and_then(Value::as_array)
            .is_some_and(|d| !d.is_empty());
        Ok(if refunded {
            ChargeStatus::Refunded { payment_id }
        } else {
            ChargeStatus::Succeeded { payment_id }
        })
    }

    async fn refund(&self, payment_id: &str) -> Result<(), GatewayError> {
        let form = vec![("payment_intent".to_owned(), payment_id.to_owned())];
        let key = format!("seatkeeper-refund-{payment_id}");
        match self.post("/v1/refunds", &form, &key).await {
            Answer::Http(status, _, _) if status.is_success() => Ok(()),
            Answer::Http(StatusCode::BAD_REQUEST, body, _)
                if error_field(&body, "code") == Some("charge_already_refunded") =>
            {
                Ok(())
            }
            Answer::Http(status, body, _) if status.is_client_error() => {
                Err(GatewayError::Rejected(describe(status, &body)))
            }
            Answer::Http(status, body, _) => {
                Err(GatewayError::Unavailable(describe(status, &body)))
            }
            Answer::Lost(why) => Err(GatewayError::Unavailable(why)),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_intent_that_needs_a_new_payment_method_is_a_decline_with_its_code() {
        let intent = json!({"id": "pi_1", "status": "requires_payment_method",
            "last_payment_error": {"code": "card_declined", "decline_code": "insufficient_funds", "message": "No money."}});
        assert_eq!(
            intent_outcome(&intent),
            Err(ChargeError::Declined {
                code: "insufficient_funds".into(),
                message: "No money.".into()
            })
        );
    }

    #[test]
    fn an_intent_still_processing_is_unknown_never_declined() {
        let intent = json!({"id": "pi_1", "status": "processing"});
        assert!(matches!(
            intent_outcome(&intent),
            Err(ChargeError::Unknown(_))
        ));
    }
}
