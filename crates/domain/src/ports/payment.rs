//! The payment gateway: charge a customer once per provider key, look a charge up,
//! refund it; and, for checkout sessions, PaymentIntents confirmed later
//! ([`IntentGateway`]).

use async_trait::async_trait;

use crate::model::{
    CheckoutSessionId, Currency, CustomerId, PaymentMethod, SubscriptionId, UnitAmount,
};

/// One charge. `provider_key` is the gateway's idempotency key: every call with the
/// same key is the same charge, charged at most once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChargeRequest {
    pub provider_key: String,
    pub subscription_id: SubscriptionId,
    pub customer_id: CustomerId,
    pub amount: UnitAmount,
    pub currency: Currency,
    pub payment_method: PaymentMethod,
}

/// A successful charge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The gateway's reference (a PaymentIntent id for Stripe).
    pub payment_id: String,
}

/// Errors of [`PaymentGateway::charge`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChargeError {
    /// The gateway answered that the charge was refused: nothing was charged.
    #[error("payment declined ({code}): {message}")]
    Declined { code: String, message: String },
    /// No definitive answer (timeout, connection lost, gateway error): the charge may or
    /// may not have happened. Never to be read as a decline.
    #[error("payment outcome unknown: {0}")]
    Unknown(String),
}

/// What the gateway knows of a provider key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeStatus {
    /// Never charged under this key.
    NotFound,
    Succeeded {
        payment_id: String,
    },
    Failed {
        reason: String,
    },
    Refunded {
        payment_id: String,
    },
}

/// Errors of [`PaymentGateway::lookup`] and [`PaymentGateway::refund`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayError {
    #[error("the payment gateway is unavailable: {0}")]
    Unavailable(String),
    #[error("the payment gateway refused: {0}")]
    Rejected(String),
}

#[async_trait]
pub trait PaymentGateway: Send + Sync + 'static {
    /// Charges once per `provider_key`; a retry with the same key returns the first
    /// result and never charges again.
    async fn charge(&self, req: &ChargeRequest) -> Result<Charge, ChargeError>;

    /// What became of the charge made under `provider_key`.
    async fn lookup(&self, provider_key: &str) -> Result<ChargeStatus, GatewayError>;

    /// Refunds a successful charge in full (idempotent per payment).
    async fn refund(&self, payment_id: &str) -> Result<(), GatewayError>;
}

/// A PaymentIntent to create for a checkout session, not confirmed: the customer confirms
/// it later (with the server, or in the browser with Stripe.js).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntentRequest {
    /// The provider's idempotency key: every creation with it is the same intent.
    pub provider_key: String,
    pub checkout_session_id: CheckoutSessionId,
    pub subscription_id: SubscriptionId,
    pub customer_id: CustomerId,
    pub amount: UnitAmount,
    pub currency: Currency,
}

/// Where a PaymentIntent is, in Stripe's vocabulary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IntentStatus {
    /// Waiting for a payment method; `last_error` says why the previous one failed.
    RequiresPaymentMethod { last_error: Option<String> },
    /// The customer must authenticate (3-D Secure) at `next_action`.
    RequiresAction { next_action: NextAction },
    /// The provider is still working on it.
    Processing,
    /// Paid with `payment_method`.
    Succeeded { payment_method: PaymentMethod },
    /// Cancelled: it can never charge.
    Canceled,
}

/// What the customer must do for an intent in `requires_action`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextAction {
    /// The provider's name of the action (`redirect_to_url`, `use_stripe_sdk`).
    pub kind: String,
    /// Where to send the customer, for a redirect.
    pub redirect_url: Option<String>,
}

/// A PaymentIntent as the provider reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentIntent {
    pub id: String,
    pub client_secret: String,
    pub status: IntentStatus,
}

/// The payment side of checkout sessions: intents created unconfirmed, then confirmed,
/// read or cancelled.
#[async_trait]
pub trait IntentGateway: Send + Sync + 'static {
    /// The provider's name, shown with the intent (`simulated`, `stripe`).
    fn provider(&self) -> &'static str;

    /// Creates the intent, once per `provider_key`: a retry returns the same intent.
    async fn create_intent(&self, req: &IntentRequest) -> Result<PaymentIntent, GatewayError>;

    /// Confirms `intent_id` with `payment_method` on the customer's behalf. A decline is
    /// `ChargeError::Declined` (the intent waits for another method); no definitive
    /// answer is `ChargeError::Unknown`.
    async fn confirm_intent(
        &self,
        intent_id: &str,
        payment_method: &PaymentMethod,
    ) -> Result<PaymentIntent, ChargeError>;

    /// The intent as the provider has it now.
    async fn retrieve_intent(&self, intent_id: &str) -> Result<PaymentIntent, GatewayError>;

    /// Cancels the intent so it can never charge. An intent that already succeeded is
    /// returned as it is (`Succeeded`); one already cancelled too.
    async fn cancel_intent(&self, intent_id: &str) -> Result<PaymentIntent, GatewayError>;
}
