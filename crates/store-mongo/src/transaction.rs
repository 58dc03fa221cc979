//! Running a transaction: what to run again and what to give up on at once.
//!
//! The driver's convenient API (`and_run2`) runs a transaction again on every
//! `TransientTransactionError` label and its commit again on every
//! `UnknownTransactionCommitResult`, for up to 120 s. Those labels also mark network
//! errors and an unreachable server, so while MongoDB is away each request would spin in
//! retries until the store's time limit (30 s) instead of answering 503 at once, as the
//! PostgreSQL store does after its acquire timeout. This runner retries only conflicts
//! between transactions ([`errors::retry_transaction`]: a WriteConflict, a transaction the
//! server aborted, a snapshot not yet available), with a back-off like the driver's (5 ms ×
//! 1.5ⁿ, at most 500 ms, plus up to as much again of jitter: `backon`); every other failure, of the body or of the commit, ends
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

use backon::{BackoffBuilder, ExponentialBuilder};
use mongodb::{
    options::{ReadConcern, TransactionOptions, WriteConcern},
    ClientSession,
};
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
    let mut pauses = backoff().build();
    let mut attempt: u32 = 0;
    loop {
        if attempt > 0 {
            // Unbounded: the caller's time limit ends a transaction that keeps conflicting.
            let pause = pauses.next().unwrap_or(MAX_PAUSE);
            tokio::time::sleep(pause).await;
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

/// The longest pause between two attempts, jitter aside.
const MAX_PAUSE: Duration = Duration::from_millis(500);

/// The pauses between attempts: 5 ms × 1.5ⁿ up to [`MAX_PAUSE`], each plus up to as much
/// again, without end.
fn backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(5))
        .with_factor(1.5)
        .with_max_delay(MAX_PAUSE)
        .without_max_times()
        .with_jitter()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pauses_grow_without_end_and_never_pass_twice_the_longest() {
        let pauses: Vec<Duration> = backoff().build().take(40).collect();
        assert_eq!(pauses.len(), 40, "the pauses never run out");
        assert!(pauses[0] <= Duration::from_millis(10));
        assert!(pauses.iter().all(|p| *p <= 2 * MAX_PAUSE));
        assert!(pauses[39] >= MAX_PAUSE);
    }
}
