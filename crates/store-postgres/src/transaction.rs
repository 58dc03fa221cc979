//! The transaction runner: each store operation runs in one transaction, run again from
//! the start (a bounded number of times, with a growing, jittered pause: `backon`) when it loses a
//! serialization or deadlock race; a business refusal (`Fail::Rule`) rolls back and is
//! returned as is, and any other failure is classified (`errors.rs`).

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures::future::BoxFuture;
use seatkeeper_domain::ports::StoreError;
use sqlx::{PgConnection, PgPool};

use crate::{
    errors::{classify, is_retryable, Fail},
    PostgresStore,
};

/// How a transaction that lost a serialization or deadlock race is retried: four more
/// attempts, after 4, 8, 16 and 32 ms, each plus up to as much again (jitter).
fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(4))
        .with_max_times(4)
        .with_jitter()
}

/// Why an attempt ended without a commit.
enum Attempt<E> {
    /// A business refusal, or a failure to begin: answered as is.
    Final(E),
    /// The database refused; retried when [`is_retryable`].
    Db(sqlx::Error),
}

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
    let attempt = || async {
        let mut tx = pool
            .begin()
            .await
            .map_err(|e| Attempt::Final(E::from(classify(e))))?;
        match op(&mut tx).await {
            Ok(value) => tx.commit().await.map(|()| value).map_err(Attempt::Db),
            Err(Fail::Rule(e)) => Err(Attempt::Final(e)),
            Err(Fail::Db(e)) => Err(Attempt::Db(e)),
        }
    };
    attempt
        .retry(backoff())
        .sleep(tokio::time::sleep)
        .when(|failure| matches!(failure, Attempt::Db(e) if is_retryable(e)))
        .notify(|failure, after| {
            if let Attempt::Db(e) = failure {
                tracing::debug!(error = %e, ?after, "transaction conflict; retrying");
            }
        })
        .await
        .map_err(|failure| match failure {
            Attempt::Final(e) => e,
            Attempt::Db(e) => E::from(classify(e)),
        })
}
