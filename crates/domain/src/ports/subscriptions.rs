//! The subscription repository: reading subscriptions and cancelling them.

use async_trait::async_trait;

use super::StoreError;
use crate::model::{
    AuditContext, CustomerId, Subscription, SubscriptionId, SubscriptionStatus, Timestamp,
};

/// Errors of [`SubscriptionRepository::cancel_subscription`].
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no subscription with id {0}")]
    NotFound(SubscriptionId),
    #[error("the subscription is {} and cannot be cancelled", .0.as_str())]
    NotActive(SubscriptionStatus),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a cancellation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancellation {
    pub subscription: Subscription,
    /// `true` when the subscription was already cancelled: nothing changed.
    pub already_canceled: bool,
}

#[async_trait]
pub trait SubscriptionRepository: Send + Sync {
    /// The subscription with this id, or `None`.
    async fn get_subscription(
        &self,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError>;

    /// At most `limit` subscriptions of the customer ordered by id, after `after`.
    async fn customer_subscriptions(
        &self,
        customer: &CustomerId,
        after: Option<SubscriptionId>,
        limit: u32,
    ) -> Result<Vec<Subscription>, StoreError>;

    /// Cancels an `active` subscription: status `canceled`, its plan's `seats_left + 1`,
    /// a `subscription_canceled` audit entry, atomically. Cancelling a `canceled`
    /// subscription changes nothing and returns it with `already_canceled`. MUST return
    /// `NotFound` for an unknown id and `NotActive` for `incomplete` or
    /// `incomplete_expired` ones.
    async fn cancel_subscription(
        &self,
        id: SubscriptionId,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<Cancellation, CancelError>;
}
