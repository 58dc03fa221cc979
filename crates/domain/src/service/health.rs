//! Readiness: whether what this instance depends on answers, and how fast. The store is
//! the one dependency a request cannot do without; the payment gateway is asked only by
//! purchases (its failures are answered per purchase, and the reconciler catches up).

use std::{sync::Arc, time::Duration};

use crate::ports::{PoolUse, Store, StoreError};

/// Checks the dependencies.
#[derive(Clone)]
pub struct HealthService {
    store: Arc<dyn Store>,
}

impl HealthService {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Pings the store; how long it took to answer.
    pub async fn store(&self) -> Result<Duration, StoreError> {
        let started = std::time::Instant::now();
        self.store.ping().await?;
        Ok(started.elapsed())
    }

    /// How the store's connection pool is used, when it has one.
    pub fn pool_use(&self) -> Option<PoolUse> {
        self.store.pool_use()
    }
}
