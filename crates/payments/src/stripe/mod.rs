//! The Stripe gateway: PaymentIntents over HTTP, with Stripe's idempotency keys.
//!
//! Two ports: [`PaymentGateway`] (one-call charges, look-ups, refunds: `charges.rs`) and
//! [`IntentGateway`](seatkeeper_domain::ports::IntentGateway) (intents created unconfirmed
//! and confirmed later, for checkout sessions: `intents.rs`). Both share the HTTP client,
//! the authentication, the timeouts and the retries with backoff and jitter here.
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

mod charges;
mod intents;

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::StatusCode;
#[cfg(doc)]
use seatkeeper_domain::ports::PaymentGateway;
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

    /// Sends a GET until it gets an answer that will not change, or runs out of retries.
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

#[cfg(test)]
mod tests {
    use super::*;

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
