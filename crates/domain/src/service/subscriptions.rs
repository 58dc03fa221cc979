//! Subscription queries and cancellation.

use std::sync::Arc;

use crate::{
    model::{AuditContext, CustomerId, Page, PageRequest, Subscription, SubscriptionId},
    ports::{CancelError, Cancellation, Clock, Store, StoreError},
};

/// Errors of [`SubscriptionService::get`].
#[derive(Debug, thiserror::Error)]
pub enum SubscriptionQueryError {
    #[error("no subscription with id {0}")]
    NotFound(SubscriptionId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Reads and cancels subscriptions.
#[derive(Clone)]
pub struct SubscriptionService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl SubscriptionService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    pub async fn get(&self, id: SubscriptionId) -> Result<Subscription, SubscriptionQueryError> {
        self.store
            .get_subscription(id)
            .await?
            .ok_or(SubscriptionQueryError::NotFound(id))
    }

    pub async fn for_customer(
        &self,
        customer: &CustomerId,
        page: PageRequest<SubscriptionId>,
    ) -> Result<Page<Subscription, SubscriptionId>, StoreError> {
        let items = self
            .store
            .customer_subscriptions(customer, page.after, page.limit.get() + 1)
            .await?;
        Ok(Page::from_overfetch(items, page.limit, |s| s.id()))
    }

    /// Cancels an active subscription and releases its seat; cancelling again is a no-op.
    #[tracing::instrument(skip_all, fields(subscription_id = %id))]
    pub async fn cancel(
        &self,
        id: SubscriptionId,
        ctx: &AuditContext,
    ) -> Result<Cancellation, CancelError> {
        let done = self
            .store
            .cancel_subscription(id, ctx, self.clock.now())
            .await?;
        if !done.already_canceled {
            tracing::info!(plan_id = %done.subscription.plan_id(), "subscription canceled; seat released");
        }
        Ok(done)
    }
}
