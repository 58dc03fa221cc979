//! Running a transaction: what to run again and what to give up on at once.
//!
//! The driver's convenient API (`and_run2`) runs a transaction again on every
//! `TransientTransactionError` label and its commit again on every
//! `UnknownTransactionCommitResult`, for up to 120 s. Those labels also mark network
//! errors and an unreachable server, so while MongoDB is away each request would spin in
//! retries until the store's time limit (30 s) instead of answering 503 at once, as the
//! PostgreSQL store does after its acquire timeout. This runner retries only conflicts
//! between transactions ([`errors::retry_transaction`]: a WriteConflict, a transaction the
//! server aborted, a snapshot not yet available), with the driver's backoff (jittered,
//! 5 ms × 1.5ⁿ, at most 500 ms); every other failure, of the body or of the commit, ends
//! the transaction and goes back to the caller, whose classification makes it 503 or 500.
//! A commit whose answer was lost may have committed: the idempotency key's recovery point
//! makes the client's retry safe, as for a PostgreSQL commit whose answer is lost.
//!
//! A body returns business refusals as values after reading only ([`refuse`]): the runner
//! commits that read-only transaction, which writes nothing.
//!
//! Also the helpers every port's transactions share: the store's session, its time limit
//! ([`TimeLimitExceeded`]) and the settling of a body's outcome (`MongoStore::settle`),
//! and [`unmatched`], the error of a guarded write that the transaction's own reads
//! guaranteed would match.
//!
//! [`errors::retry_transaction`]: crate::errors::retry_transaction

use std::{future::Future, time::Duration};

use mongodb::{
    options::{ReadConcern, TransactionOptions, WriteConcern},
    ClientSession,
};
use rand::Rng;
use seatkeeper_domain::ports::StoreError;

use crate::{
    documents::Corrupt,
    errors::{classify, corrupt, retry_transaction, Facts},
    MongoStore,
};

/// A store operation that ran past
/// [`MongoSettings::transaction_time_limit`](crate::MongoSettings::transaction_time_limit).
#[derive(Debug, thiserror::Error)]
#[error("the MongoDB operation did not finish within {0:?} (transaction retries included)")]
pub struct TimeLimitExceeded(pub Duration);

/// The options of every transaction.
fn transaction_options() -> TransactionOptions {
    TransactionOptions::builder()
        .read_concern(ReadConcern::snapshot())
        .write_concern(WriteConcern::majority())
        .build()
}

/// Hands a business outcome back as a value (never as a driver error, so that it is
/// neither retried nor classified). Every refusal comes before the body's first write, so
/// the transaction that commits after it writes nothing.
pub(crate) async fn refuse<T, E>(
    _: &mut ClientSession,
    outcome: E,
) -> mongodb::error::Result<Result<T, E>> {
    Ok(Err(outcome))
}

/// A write that the transaction's own reads guaranteed would match, and did not.
pub(crate) fn unmatched(what: &str) -> mongodb::error::Error {
    corrupt(Corrupt(format!(
        "{what} matched no document although this transaction just read it"
    )))
}

impl MongoStore {
    pub(crate) async fn session(&self) -> Result<ClientSession, StoreError> {
        self.client.start_session().await.map_err(classify)
    }

    /// Awaits a transaction within the time limit.
    pub(crate) async fn limited<R>(
        &self,
        run: impl Future<Output = mongodb::error::Result<R>>,
    ) -> Result<mongodb::error::Result<R>, StoreError> {
        tokio::time::timeout(self.time_limit, run)
            .await
            .map_err(|_| StoreError::unavailable(TimeLimitExceeded(self.time_limit)))
    }

    /// Awaits a transaction whose body returns business outcomes as values.
    pub(crate) async fn settle<T, E: From<StoreError>>(
        &self,
        run: impl Future<Output = mongodb::error::Result<Result<T, E>>>,
    ) -> Result<T, E> {
        match self.limited(run).await? {
            Ok(result) => result,
            Err(e) => Err(E::from(classify(e))),
        }
    }
}

/// Runs `body` in a transaction until it commits, fails for a reason other than a
/// conflict, or (bounded by the caller) runs out of time.
pub(crate) async fn run<R, F>(session: &mut ClientSession, mut body: F) -> mongodb::error::Result<R>
where
    F: for<'b> AsyncFnMut(&'b mut ClientSession) -> mongodb::error::Result<R>,
{
    let mut attempt: u32 = 0;
    loop {
        if attempt > 0 {
            tokio::time::sleep(backoff(attempt)).await;
        }
        attempt += 1;
        session
            .start_transaction()
            .with_options(transaction_options())
            .await?;
        let value = match body(session).await {
            Ok(value) => value,
            Err(e) => {
                let facts = Facts::of(&e);
                if facts.unreachable() {
                    // Nobody to tell: the server ends it (its lifetime limit), and the
                    // session's drop sends an abort in the background. Waiting here for
                    // a server to abort on would double the time to answer 503.
                    return Err(e);
                }
                // The server may have aborted it already; either way it is over.
                let _ = session.abort_transaction().await;
                if retry_transaction(&facts) {
                    tracing::debug!(attempt, error = %e, "transaction conflict; running it again");
                    continue;
                }
                return Err(e);
            }
        };
        match session.commit_transaction().await {
            Ok(()) => return Ok(value),
            Err(e) if retry_transaction(&Facts::of(&e)) => {
                tracing::debug!(attempt, error = %e, "commit conflict; running it again");
            }
            Err(e) => return Err(e),
        }
    }
}

/// The driver's backoff before attempt `attempt + 1`.
fn backoff(attempt: u32) -> Duration {
    let jitter: f64 = rand::thread_rng().gen_range(0.0..1.0);
    let ms = (jitter * 5.0 * 1.5f64.powi(attempt.min(30) as i32)).min(jitter * 500.0);
    Duration::from_millis(ms.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backoff_grows_with_the_attempts_and_never_passes_half_a_second() {
        for _ in 0..1000 {
            assert!(backoff(1) <= Duration::from_millis(8));
            assert!(backoff(100) <= Duration::from_millis(500));
        }
        let late: u128 = (0..1000).map(|_| backoff(12).as_millis()).sum();
        let early: u128 = (0..1000).map(|_| backoff(2).as_millis()).sum();
        assert!(late > early * 10, "{late} vs {early}");
    }
}
