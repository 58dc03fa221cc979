//! The transaction runner: each store operation runs in one transaction, run again from
//! the start (a bounded number of times, with a growing pause) when it loses a
//! serialization or deadlock race; a business refusal (`Fail::Rule`) rolls back and is
//! returned as is, and any other failure is classified (`errors.rs`).

use std::time::Duration;

use futures::future::BoxFuture;
use seatkeeper_domain::ports::StoreError;
use sqlx::{PgConnection, PgPool};

use crate::{
    errors::{classify, is_retryable, Fail},
    PostgresStore,
};

/// How a transaction that lost a serialization or deadlock race is retried.
const MAX_ATTEMPTS: u32 = 5;

impl PostgresStore {
    /// Runs `op` in a transaction, again from the start when it loses a serialization or
    /// deadlock race. `Fail::Rule` rolls back and returns the business error.
    pub(crate) async fn tx<T, E, F>(&self, op: F) -> Result<T, E>
    where
        E: From<StoreError>,
        F: for<'c> Fn(&'c mut PgConnection) -> BoxFuture<'c, Result<T, Fail<E>>>,
    {
        run_tx(&self.pool, op).await
    }
}

/// Runs `op` in a transaction, again from the start when it loses a serialization or
/// deadlock race. `Fail::Rule` rolls back and returns the business error.
pub(crate) async fn run_tx<T, E, F>(pool: &PgPool, op: F) -> Result<T, E>
where
    E: From<StoreError>,
    F: for<'c> Fn(&'c mut PgConnection) -> BoxFuture<'c, Result<T, Fail<E>>>,
{
    let mut attempt = 1;
    loop {
        let mut tx = pool.begin().await.map_err(|e| E::from(classify(e)))?;
        let failure = match op(&mut tx).await {
            Ok(value) => match tx.commit().await {
                Ok(()) => return Ok(value),
                Err(e) => e,
            },
            Err(Fail::Rule(e)) => return Err(e),
            Err(Fail::Db(e)) => e,
        };
        if !is_retryable(&failure) || attempt >= MAX_ATTEMPTS {
            return Err(E::from(classify(failure)));
        }
        tracing::debug!(attempt, error = %failure, "transaction conflict; retrying");
        tokio::time::sleep(Duration::from_millis(2u64 << attempt)).await;
        attempt += 1;
    }
}
