//! The Stripe gateway: PaymentIntents over HTTP, with Stripe's idempotency keys.
//!
//! A charge is one `POST /v1/payment_intents` with `confirm=true`, the amount, currency,
//! payment method and `metadata[subscription_id]` / `metadata[provider_key]`, sent with
//! `Idempotency-Key: <provider key>` (derived from the subscription id by the domain).
//! Every retry — ours here, the client's, the reconciler's — is the same request under the
//! same key, so Stripe charges at most once.
//!
//! | Stripe says | the port gets |
//! | --- | --- |
//! | 200, intent `succeeded` | `Ok(Charge)` |
//! | 402 `card_error`, or an intent in `requires_payment_method` / `canceled` | `Declined` |
//! | 400 `invalid_request_error` (no such payment method, bad parameter) | `Declined`: nothing was charged |
//! | 409 (same key in progress), 429, 5xx, timeout, connection error | retried with backoff and jitter, then `Unknown` |
//! | 400 `idempotency_error`, 401/403, an intent still `processing`, anything else | `Unknown` |
//!
//! A timeout is always "unknown", never "declined". The secret key is sent only in the
//! `Authorization` header: it is never logged, never in an error, and `Debug` hides it.

use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};
use reqwest::StatusCode;
use seatkeeper_domain::ports::{
    Charge, ChargeError, ChargeRequest, ChargeStatus, GatewayError, PaymentGateway,
};
use serde_json::Value;

/// How to reach Stripe (or the simulator).
#[derive(Clone)]
pub struct StripeSettings {
    /// `https://api.stripe.com` in production; the simulator's address in tests.
    pub base_url: String,
    /// `sk_test_…` or `sk_live_…`.
    pub secret_key: String,
    /// The limit of one HTTP request.
    pub timeout: Duration,
    /// Retries after the first attempt, for answers that may change (timeouts, 409, 429, 5xx).
    pub max_retries: u32,
}

/// The first back-off before a retry; each next one doubles, up to [`MAX_BACKOFF`], and
/// jitter adds up to as much again.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl StripeSettings {
    /// How long one request to the provider can take at worst, retries included: every
    /// attempt running into the timeout, every back-off at its longest.
    pub fn worst_case(&self) -> Duration {
        let attempts = self
            .timeout
            .saturating_mul(self.max_retries.saturating_add(1));
        let backoffs = (0..self.max_retries)
            .map(|retry| {
                2 * FIRST_BACKOFF
                    .saturating_mul(1 << retry.min(16))
                    .min(MAX_BACKOFF)
            })
            .sum::<Duration>();
        attempts.saturating_add(backoffs)
    }

    fn backoff(&self) -> ExponentialBuilder {
        ExponentialBuilder::default()
            .with_min_delay(FIRST_BACKOFF)
            .with_max_delay(MAX_BACKOFF)
            .with_max_times(self.max_retries as usize)
            .with_jitter()
    }
}

impl std::fmt::Debug for StripeSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeSettings")
            .field("base_url", &self.base_url)
            .field("secret_key", &"[redacted]")
            .field("timeout", &self.timeout)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

/// The Stripe payment gateway.
pub struct StripeGateway {
    http: reqwest::Client,
    settings: StripeSettings,
}

impl std::fmt::Debug for StripeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeGateway")
            .field("settings", &self.settings)
            .finish()
    }
}

/// One answer, or why there was none.
enum Answer {
    Http(StatusCode, Value, bool),
    /// No answer (timeout, connection error, unreadable body): the request may or may not
    /// have been processed.
    Lost(String),
}

impl StripeGateway {
    pub fn new(settings: StripeSettings) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout)
            .user_agent("seatkeeper")
            .build()
            .map_err(|e| format!("could not build the HTTP client: {e}"))?;
        Ok(Self {
            http,
            settings: StripeSettings {
                base_url: settings.base_url.trim_end_matches('/').to_owned(),
                ..settings
            },
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.settings.base_url)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Answer {
        let res = match req.bearer_auth(&self.settings.secret_key).send().await {
            Ok(res) => res,
            // reqwest's message names the URL and the cause, never the headers.
            Err(e) => return Answer::Lost(without_url_secrets(&e)),
        };
        let status = res.status();
        let should_retry = res
            .headers()
            .get("stripe-should-retry")
            .and_then(|v| v.to_str().ok())
            .map(|v| v == "true");
        let retryable = should_retry.unwrap_or(
            status == StatusCode::CONFLICT
                || status == StatusCode::TOO_MANY_REQUESTS
                || status.is_server_error(),
        );
        match res.json::<Value>().await {
            Ok(body) => Answer::Http(status, body, retryable),
            Err(e) => Answer::Lost(format!(
                "unreadable answer ({status}): {}",
                without_url_secrets(&e)
            )),
        }
    }

    /// Sends a POST until it gets an answer that will not change, or runs out of retries.
    async fn post(&self, path: &str, form: &[(String, String)], idempotency_key: &str) -> Answer {
        let attempt = || async {
            let req = self
                .http
                .post(self.url(path))
                .header("Idempotency-Key", idempotency_key)
                .form(form);
            self.send(req).await.settled()
        };
        attempt
            .retry(self.settings.backoff())
            .sleep(tokio::time::sleep)
            .notify(|_, after| tracing::debug!(path, ?after, "retrying a payment provider request"))
            .await
            .unwrap_or_else(|last| last)
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Answer {
        let attempt = || async {
            self.send(self.http.get(self.url(path)).query(query))
                .await
                .settled()
        };
        attempt
            .retry(self.settings.backoff())
            .sleep(tokio::time::sleep)
            .await
            .unwrap_or_else(|last| last)
    }
}

impl Answer {
    /// `Ok` when the answer will not change by asking again; `Err` (retry) when it may.
    fn settled(self) -> Result<Self, Self> {
        match &self {
            Self::Http(_, _, retryable) if !retryable => Ok(self),
            _ => Err(self),
        }
    }
}

/// reqwest's error text, which never contains headers; URLs carry no secrets here.
fn without_url_secrets(e: &reqwest::Error) -> String {
    seatkeeper_domain::error_chain(e)
}

fn error_field<'a>(body: &'a Value, field: &str) -> Option<&'a str> {
    body.get("error")?.get(field)?.as_str()
}

fn describe(status: StatusCode, body: &Value) -> String {
    let kind = error_field(body, "type").unwrap_or("unknown");
    let message = error_field(body, "message").unwrap_or("no message");
    format!("{status} {kind}: {message}")
}

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

    #[test]
    fn the_worst_case_counts_every_attempt_and_every_longest_backoff() {
        let settings = |max_retries| StripeSettings {
            base_url: "http://x".into(),
            secret_key: "sk_test_x".into(),
            timeout: Duration::from_secs(1),
            max_retries,
        };
        assert_eq!(settings(0).worst_case(), Duration::from_secs(1));
        // 4 attempts of 1 s, then back-offs of 200, 400 and 800 ms, each doubled by jitter.
        assert_eq!(settings(3).worst_case(), Duration::from_millis(6_800));
        // Back-offs stop growing at 2 s (4 s with jitter).
        assert_eq!(
            settings(6).worst_case() - settings(5).worst_case(),
            Duration::from_secs(5)
        );
    }

    #[test]
    fn debug_output_hides_the_secret_key() {
        let settings = StripeSettings {
            base_url: "http://x".into(),
            secret_key: "sk_test_supersecret".into(),
            timeout: Duration::from_secs(1),
            max_retries: 0,
        };
        let gateway = StripeGateway::new(settings.clone()).unwrap();
        assert!(!format!("{settings:?} {gateway:?}").contains("supersecret"));
    }
}
