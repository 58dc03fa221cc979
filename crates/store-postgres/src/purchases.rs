//! [`PurchaseRepository`]: the purchase path's two steps — reserving a seat (under a held
//! key or with a new one) and completing a purchase — submitted to the store's coalescers,
//! and the glue that runs their batches (`batch.rs`) in transactions.

use async_trait::async_trait;
use futures::future::BoxFuture;
use seatkeeper_coalesce::BatchStats;
use seatkeeper_domain::ports::{
    CompleteError, CompletePurchase, Completion, NewKeyReservation, PurchaseRepository,
    Reservation, ReserveError, ReserveSeat, ReserveWithNewKey, StoreError,
};
use sqlx::{PgConnection, PgPool};

use crate::{batch, errors::Fail, transaction::run_tx, PostgresStore};

/// Batches and requests of each coalesced phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurchaseBatchStats {
    pub reservations: BatchStats,
    pub completions: BatchStats,
    /// Checkout openings and seat-moving changes.
    pub checkouts: BatchStats,
    /// Checkout changes that write their session only.
    pub session_changes: BatchStats,
}

/// How many requests one batch transaction takes at most.
pub(crate) const MAX_BATCH: usize = 128;

pub(crate) type ReserveAnswer = Result<batch::Reserved, ReserveError>;
pub(crate) type CompleteAnswer = Result<Completion, CompleteError>;

#[async_trait]
impl PurchaseRepository for PostgresStore {
    #[tracing::instrument(skip_all, fields(plan_id = %cmd.plan_id))]
    async fn reserve_seat(&self, cmd: &ReserveSeat) -> Result<Reservation, ReserveError> {
        let req = batch::Reserve::Held(cmd.clone());
        match self.reservations.submit(req).await? {
            batch::Reserved::Seat(reservation) => Ok(reservation),
            batch::Reserved::KeyExists => Err(StoreError::internal(
                "a reservation under a held key was answered as a new key's",
            )
            .into()),
        }
    }

    #[tracing::instrument(skip_all, fields(plan_id = %cmd.seat().plan_id))]
    async fn reserve_with_new_key(
        &self,
        cmd: &ReserveWithNewKey,
    ) -> Result<NewKeyReservation, StoreError> {
        match self
            .reservations
            .submit(batch::Reserve::New(cmd.clone()))
            .await
        {
            Ok(batch::Reserved::Seat(reservation)) => Ok(NewKeyReservation::Claimed(reservation)),
            Ok(batch::Reserved::KeyExists) => Ok(NewKeyReservation::KeyExists),
            Err(ReserveError::Store(e)) => Err(e),
            Err(ReserveError::LockLost) => Err(StoreError::internal(
                "a key claimed in the reservation's own transaction was lost",
            )),
        }
    }

    #[tracing::instrument(skip_all, fields(subscription_id = %cmd.subscription_id))]
    async fn complete_purchase(&self, cmd: &CompletePurchase) -> Result<Completion, CompleteError> {
        self.completions.submit(cmd.clone()).await
    }
}

// ----- batches -----

/// What a batch transaction does for its requests.
type BatchTx<Req, Res> =
    for<'c> fn(&'c mut PgConnection, Vec<Req>) -> BoxFuture<'c, Result<Vec<Res>, sqlx::Error>>;

pub(crate) fn batch_reserve(
    c: &mut PgConnection,
    cmds: Vec<batch::Reserve>,
) -> BoxFuture<'_, Result<Vec<ReserveAnswer>, sqlx::Error>> {
    Box::pin(batch::reserve_tx(c, cmds))
}

pub(crate) fn batch_complete(
    c: &mut PgConnection,
    cmds: Vec<CompletePurchase>,
) -> BoxFuture<'_, Result<Vec<CompleteAnswer>, sqlx::Error>> {
    Box::pin(batch::complete_tx(c, cmds))
}

/// Runs one batch in one transaction. When the database is unavailable every request
/// fails with that; when the batch fails for any other reason (one request the
/// database refuses, say), each request is run again alone, so one bad request never
/// takes its neighbours down with it.
pub(crate) async fn run_batch<Req, Res, E>(
    pool: PgPool,
    reqs: Vec<Req>,
    op: BatchTx<Req, Result<Res, E>>,
) -> Vec<Result<Res, E>>
where
    Req: Clone + Send + Sync + 'static,
    Res: Send + 'static,
    E: From<StoreError> + Send + 'static,
{
    let whole = run_tx::<_, StoreError, _>(&pool, |c| {
        let reqs = reqs.clone();
        Box::pin(async move { op(c, reqs).await.map_err(Fail::Db) })
    })
    .await;
    match whole {
        Ok(answers) => answers,
        Err(StoreError::Unavailable(cause)) => {
            let cause = seatkeeper_domain::error_chain(&*cause);
            reqs.iter()
                .map(|_| Err(StoreError::unavailable(cause.clone()).into()))
                .collect()
        }
        Err(e) if reqs.len() == 1 => vec![Err(e.into())],
        Err(e) => {
            tracing::warn!(
                requests = reqs.len(),
                error = %seatkeeper_domain::error_chain(&e),
                "a batch transaction failed; running its requests one by one"
            );
            let alone = reqs.into_iter().map(|req| {
                let pool = pool.clone();
                async move {
                    run_tx::<_, StoreError, _>(&pool, |c| {
                        let req = vec![req.clone()];
                        Box::pin(async move { op(c, req).await.map_err(Fail::Db) })
                    })
                    .await
                    .map(|mut answers| answers.pop().expect("one answer for one request"))
                    .unwrap_or_else(|e| Err(e.into()))
                }
            });
            futures::future::join_all(alone).await
        }
    }
}

pub(crate) fn lost_batch() -> StoreError {
    StoreError::internal("a batch transaction ended without answering")
}
