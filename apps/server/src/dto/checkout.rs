//! The JSON shapes of checkout sessions: opening one, confirming it, and the session as
//! the API shows it.

use seatkeeper_domain::{
    ports::NextAction, service::Confirmation, CheckoutSession, CheckoutSessionId, CustomerId,
    PaymentMethod, PlanId, Timestamp,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{not_null_integer, SubscriptionBody};
use crate::{extract::Fields, openapi::schemas, problem::ApiError, timestamp};

/// `POST /api/checkout_sessions`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(
    as = CreateCheckoutSession,
    description = "What to hold a seat of, for whom, for how long. `plan_id` and `customer_id` are required; unknown fields are rejected (400). The fields form the request's fingerprint: reusing one of the customer's `Idempotency-Key`s with other values answers 422 `idempotency_key_reused`."
)]
pub struct CreateCheckoutRequest {
    #[schema(value_type = schemas::PlanId)]
    pub plan_id: String,
    #[schema(value_type = schemas::CustomerId)]
    pub customer_id: String,
    /// How long the seat is held, in seconds: from `checkout.min_expires_in_secs` (60 by
    /// default) to `checkout.max_expires_in_secs` (86400); 1800 when absent.
    #[serde(default, deserialize_with = "not_null_integer")]
    #[schema(value_type = Option<i64>, minimum = 1, maximum = 604800, example = 1800)]
    pub expires_in: Option<i64>,
}

pub struct ValidCheckout {
    pub plan_id: PlanId,
    pub customer_id: CustomerId,
    pub expires_in_secs: Option<u32>,
}

impl CreateCheckoutRequest {
    /// Validates the body; `expires_in` must lie within `bounds` (seconds).
    pub fn try_into_domain(self, bounds: (u32, u32)) -> Result<ValidCheckout, ApiError> {
        let mut f = Fields::default();
        let plan_id = f.check("plan_id", self.plan_id.parse::<PlanId>());
        let customer_id = f.check("customer_id", CustomerId::parse(&self.customer_id));
        let (min, max) = bounds;
        let expires_in_secs = f.check_opt("expires_in", self.expires_in, |secs| {
            u32::try_from(secs)
                .ok()
                .filter(|s| (min..=max).contains(s))
                .ok_or_else(|| {
                    seatkeeper_domain::InvalidValue::new(format!(
                        "must be an integer from {min} to {max} (seconds)"
                    ))
                })
        });
        let (Some(plan_id), Some(customer_id)) = (plan_id, customer_id) else {
            return Err(f.into_error());
        };
        f.finish()?;
        Ok(ValidCheckout {
            plan_id,
            customer_id,
            expires_in_secs,
        })
    }
}

/// `POST /api/checkout_sessions/{id}/confirm`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(
    as = ConfirmCheckoutSession,
    description = "The payment method to pay with. Unknown fields are rejected (400)."
)]
pub struct ConfirmRequest {
    #[schema(value_type = schemas::PaymentMethod)]
    pub payment_method: String,
}

impl ConfirmRequest {
    pub fn try_into_domain(self) -> Result<PaymentMethod, ApiError> {
        let mut f = Fields::default();
        let pm = f.check("payment_method", PaymentMethod::parse(&self.payment_method));
        match pm {
            Some(pm) => Ok(pm),
            None => Err(f.into_error()),
        }
    }
}

/// The session's PaymentIntent at the provider.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CheckoutPayment)]
pub struct PaymentBody {
    /// `simulated` (the in-process gateway) or `stripe`.
    #[schema(examples("stripe"))]
    pub provider: &'static str,
    /// The PaymentIntent's id.
    #[schema(examples("pi_3PxYz2Kx"))]
    pub payment_intent: String,
    /// The secret Stripe.js confirms the intent with in the customer's browser. Shown
    /// only to the session's customer and to keys; never logged.
    #[schema(examples("pi_3PxYz2Kx_secret_9f8e7d"))]
    pub client_secret: String,
}

/// A checkout session: a seat held for a customer while they pay.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CheckoutSession, example = json!({
    "id": "0193b0c1-2d3e-7f40-8a5b-6c7d8e9f0a1b", "status": "open",
    "plan_id": "0190f5c2-8a4b-7c3d-9e1f-2a3b4c5d6e7f", "customer_id": "cus_42",
    "amount": 4900, "currency": "usd",
    "created_at": "2026-02-01T12:00:00.200Z", "expires_at": "2026-02-01T12:30:00.200Z",
    "payment": {"provider": "stripe", "payment_intent": "pi_3PxYz2Kx", "client_secret": "pi_3PxYz2Kx_secret_9f8e7d"},
    "payment_error": null, "subscription_id": null, "ended_at": null, "expiry": null
}))]
pub struct CheckoutBody {
    #[schema(value_type = schemas::CheckoutSessionId)]
    pub id: CheckoutSessionId,
    #[schema(value_type = schemas::CheckoutStatus)]
    pub status: &'static str,
    #[schema(value_type = schemas::PlanId)]
    pub plan_id: PlanId,
    #[schema(value_type = schemas::CustomerId)]
    pub customer_id: String,
    /// What the seat costs, in the currency's minor unit (the plan's price).
    #[schema(value_type = schemas::UnitAmount)]
    pub amount: i64,
    #[schema(value_type = schemas::Currency)]
    pub currency: String,
    #[serde(serialize_with = "timestamp::serialize")]
    #[schema(value_type = schemas::Timestamp)]
    pub created_at: Timestamp,
    /// When an unpaid session gives its seat back.
    #[serde(serialize_with = "timestamp::serialize")]
    #[schema(value_type = schemas::Timestamp)]
    pub expires_at: Timestamp,
    /// The PaymentIntent to pay with; `null` while the provider has not made it yet (a
    /// retry of the creation with the same `Idempotency-Key`, or a confirmation, makes it).
    #[schema(required)]
    pub payment: Option<PaymentBody>,
    /// Why the last payment attempt failed, while the session is open; else `null`.
    #[schema(required)]
    pub payment_error: Option<String>,
    /// The active subscription a `complete` session made; else `null`.
    #[schema(required, value_type = Option<String>, format = Uuid)]
    pub subscription_id: Option<String>,
    /// When the session completed or expired; else `null`.
    #[serde(serialize_with = "timestamp::serialize_opt")]
    #[schema(required, value_type = Option<String>, format = DateTime)]
    pub ended_at: Option<Timestamp>,
    /// Why an `expired` session expired: `timeout` (`expires_at` passed) or `request`
    /// (expired through the API); else `null`.
    #[schema(required, value_type = Option<String>, examples("timeout"))]
    pub expiry: Option<&'static str>,
}

impl CheckoutBody {
    /// The session as shown to a caller who may see it; `provider` names the gateway.
    pub fn new(s: &CheckoutSession, provider: &'static str) -> Self {
        Self {
            id: s.id(),
            status: s.status().as_str(),
            plan_id: s.plan_id(),
            customer_id: s.customer_id().as_str().to_owned(),
            amount: s.amount().get(),
            currency: s.currency().to_string(),
            created_at: s.created_at(),
            expires_at: s.expires_at(),
            payment: s.payment_intent().map(|pi| PaymentBody {
                provider,
                payment_intent: pi.id.clone(),
                client_secret: pi.client_secret.clone(),
            }),
            payment_error: s.payment_error().map(str::to_owned),
            subscription_id: (s.status() == seatkeeper_domain::CheckoutStatus::Complete)
                .then(|| s.subscription_id().to_string()),
            ended_at: s.ended_at(),
            expiry: s.expiry().map(|e| e.as_str()),
        }
    }
}

/// What the customer must do before the payment can go on (3-D Secure).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = NextAction)]
pub struct NextActionBody {
    /// The provider's name of the action: `redirect_to_url` (send the customer to
    /// `redirect_url`) or `use_stripe_sdk` (let Stripe.js handle it with the
    /// `client_secret`).
    #[serde(rename = "type")]
    #[schema(examples("redirect_to_url"))]
    pub kind: String,
    /// Where to send the customer, for `redirect_to_url`; else `null`.
    #[schema(required)]
    pub redirect_url: Option<String>,
}

impl From<&NextAction> for NextActionBody {
    fn from(n: &NextAction) -> Self {
        Self {
            kind: n.kind.clone(),
            redirect_url: n.redirect_url.clone(),
        }
    }
}

/// What a confirmation came to.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CheckoutConfirmation)]
pub struct ConfirmationBody<'a> {
    /// `complete`: paid, `subscription` is the active subscription. `requires_action`:
    /// the customer must authenticate at `next_action`; the result arrives by webhook (or
    /// confirm again after it). `processing`: the provider is still working; the result
    /// arrives by webhook.
    #[schema(examples("complete"))]
    pub outcome: &'static str,
    pub session: CheckoutBody,
    /// For `requires_action`; else `null`.
    #[schema(required)]
    pub next_action: Option<NextActionBody>,
    /// For `complete`; else `null`.
    #[schema(required)]
    pub subscription: Option<SubscriptionBody<'a>>,
}

impl<'a> ConfirmationBody<'a> {
    pub fn new(c: &'a Confirmation, provider: &'static str) -> Self {
        match c {
            Confirmation::Complete {
                session,
                subscription,
            } => Self {
                outcome: "complete",
                session: CheckoutBody::new(session, provider),
                next_action: None,
                subscription: Some(subscription.into()),
            },
            Confirmation::RequiresAction {
                session,
                next_action,
            } => Self {
                outcome: "requires_action",
                session: CheckoutBody::new(session, provider),
                next_action: Some(next_action.into()),
                subscription: None,
            },
            Confirmation::Processing { session } | Confirmation::PaymentFailed { session, .. } => {
                Self {
                    outcome: "processing",
                    session: CheckoutBody::new(session, provider),
                    next_action: None,
                    subscription: None,
                }
            }
        }
    }
}
