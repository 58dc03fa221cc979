//! The storage adapter as a whole, and the failure every store method may return.

use async_trait::async_trait;

use super::{
    ApiKeyRepository, AuditLog, CheckoutRepository, IdempotencyRepository, PlanFeed,
    PlanRepository, PurchaseRepository, RecoveryRepository, SubscriptionRepository,
};

type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A store operation that failed for a reason that is not a business outcome.
/// A failed operation changed nothing: adapters roll back.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or did not answer in time; retrying later may work.
    #[error("the store is unavailable")]
    Unavailable(#[source] BoxError),
    /// Anything else: a bug, corrupt data, a broken invariant.
    #[error("the store failed")]
    Internal(#[source] BoxError),
}

impl StoreError {
    pub fn unavailable(e: impl Into<BoxError>) -> Self {
        Self::Unavailable(e.into())
    }

    pub fn internal(e: impl Into<BoxError>) -> Self {
        Self::Internal(e.into())
    }
}

/// Everything a storage adapter provides.
#[async_trait]
pub trait Store:
    PlanRepository
    + SubscriptionRepository
    + IdempotencyRepository
    + PurchaseRepository
    + RecoveryRepository
    + AuditLog
    + ApiKeyRepository
    + CheckoutRepository
    + PlanFeed
    + Send
    + Sync
    + 'static
{
    /// Succeeds when the store answers now. Used by the readiness probe.
    async fn ping(&self) -> Result<(), StoreError>;

    /// How the store's connection pool is used right now, for metrics; `None` for a store
    /// without one (the in-memory store).
    fn pool_use(&self) -> Option<PoolUse> {
        None
    }
}

/// A connection pool's connections, by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PoolUse {
    /// Lent to an operation.
    pub in_use: u64,
    /// Open and waiting in the pool.
    pub idle: u64,
}
