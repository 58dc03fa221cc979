//! The payment gateway: charge a customer once per provider key, look a charge up,
//! refund it.

use async_trait::async_trait;

use crate::model::{Currency, CustomerId, PaymentMethod, SubscriptionId, UnitAmount};

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
