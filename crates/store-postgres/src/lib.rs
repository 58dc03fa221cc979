//! A PostgreSQL implementation of every Seatkeeper store port.
//!
//! Each store operation is one transaction (READ COMMITTED) made of guarded statements,
//! and a seat is only ever taken under its plan row's lock, with the schema's
//! `seats_left BETWEEN 0 AND capacity` behind it, never across a payment call. The two
//! steps of the purchase path — claiming a new key with its reservation, completing a
//! purchase — are coalesced: requests that arrive while a transaction of their kind runs
//! are taken together by the next one (the `seatkeeper-coalesce` crate, `batch.rs`), each
//! decided as if alone, so one lock of a hot plan row and one commit serve many
//! purchases. So are the checkout steps (`checkout_batch.rs`). Rows are always locked in
//! the same order — idempotency keys, then subscriptions, then checkout sessions, then
//! plans, each kind sorted — and a transaction that loses a serialization or deadlock race
//! is run again, a bounded number of times. The schema (embedded migrations, applied at
//! start-up) enforces what it can: seat bounds, one record per (customer, key),
//! references.
//!
//! Connection failures become [`StoreError::Unavailable`], which the server answers with
//! 503 `store_unavailable`: a failed operation is rolled back whole.
//!
//! # Layout
//!
//! - `settings`: how to reach the database ([`PostgresSettings`]);
//! - `transaction`: the transaction runner: what is run again, what is returned at once;
//! - `statements`: statements shared by several operations;
//! - one module per port: `plans`, `audit`, `subscriptions`, `idempotency`, `purchases`
//!   (with the glue that runs the coalesced batches), `recovery`, `api_keys` and
//!   `checkouts` (checkout sessions and webhook event ids);
//! - `batch`: the purchase steps as batch transactions; `checkout_batch`: the checkout
//!   openings and changes as batch transactions;
//! - `rows`: reading rows back into domain values;
//! - `errors`: which failures are retried, unavailable or internal;
//! - `testing` (behind the `testing` feature, for tests only): fresh databases for the
//!   contract suite.

mod api_keys;
mod audit;
mod batch;
mod checkout_batch;
mod checkouts;
mod errors;
mod feed;
mod idempotency;
mod plans;
mod purchases;
mod recovery;
mod rows;
mod session_batch;
mod settings;
mod statements;
mod subscriptions;
#[cfg(feature = "testing")]
pub mod testing;
mod transaction;

pub use purchases::PurchaseBatchStats;
pub use seatkeeper_coalesce::BatchStats;
pub use settings::PostgresSettings;

use std::{any::Any, sync::Arc};

use async_trait::async_trait;
use seatkeeper_coalesce::{Coalescer, RunBatch, Start};
use seatkeeper_domain::ports::{CompletePurchase, PoolUse, Store, StoreError};
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    PgPool,
};

use crate::{
    checkout_batch::{CheckoutDone, CheckoutStep},
    errors::classify,
    purchases::{
        batch_complete, batch_reserve, lost_batch, run_batch, CompleteAnswer, ReserveAnswer,
        MAX_BATCH,
    },
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: PgPool,
    /// Concurrent reservations share a transaction: one lock of each plan row for many,
    /// and one insert for the new keys they claim.
    reservations: Coalescer<batch::Reserve, ReserveAnswer>,
    /// Concurrent completions share a transaction.
    completions: Coalescer<CompletePurchase, CompleteAnswer>,
    /// Concurrent checkout openings and seat-moving changes share a transaction.
    checkouts: Coalescer<CheckoutStep, CheckoutDone>,
    /// Concurrent checkout changes that write their session only share a read and a
    /// guarded write of their own, which lock no plan: they never queue behind a hot
    /// plan's steps (`session_batch.rs`).
    session_changes: Coalescer<CheckoutStep, CheckoutDone>,
    /// Something to drop with the store (a test database to remove).
    _guard: Option<Box<dyn Any + Send + Sync>>,
}

impl PostgresStore {
    /// Connects and applies the embedded migrations (safe with several instances starting
    /// at once: the migrator takes an advisory lock).
    pub async fn connect(settings: &PostgresSettings) -> Result<Self, StoreError> {
        let options: PgConnectOptions = settings.url.parse().map_err(StoreError::internal)?;
        // Plan each statement once per connection (a generic plan), and never with a
        // sequential scan where an index serves. Planning every execution for its
        // parameters cost ~0.2 ms per batch statement — a quarter of a completion batch's
        // database time — and the batches make the same few statements over and over. A
        // generic plan is made from the table sizes of its moment, though: made on a young
        // database by cost alone, it joined the batches' arrays to the key and
        // subscription tables with sequential scans and kept doing so when they held
        // millions of rows (measured: batches 20 times slower after 30,000 purchases).
        // With sequential scans off the planner takes the index whatever the statistics
        // say; every query of the store has one (`tests/indexes.rs`).
        let options = options.options([
            ("plan_cache_mode", "force_generic_plan"),
            ("enable_seqscan", "off"),
        ]);
        // No ping before each use of a pooled connection: it cost every transaction and
        // every read one more round trip. A connection that died is found by its first
        // statement instead, which fails as unavailable (a 503 to retry) and is dropped.
        let pool = PgPoolOptions::new()
            .test_before_acquire(false)
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(classify)?;
        MIGRATOR.run(&pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(e) => classify(e),
            other => StoreError::internal(other),
        })?;
        Ok(Self::with_pool(pool))
    }

    fn with_pool(pool: PgPool) -> Self {
        let reserve: RunBatch<batch::Reserve, ReserveAnswer> = {
            let pool = pool.clone();
            Arc::new(move |cmds| Box::pin(run_batch(pool.clone(), cmds, batch_reserve)))
        };
        let complete: RunBatch<CompletePurchase, CompleteAnswer> = {
            let pool = pool.clone();
            Arc::new(move |cmds| Box::pin(run_batch(pool.clone(), cmds, batch_complete)))
        };
        let checkout: RunBatch<CheckoutStep, CheckoutDone> = {
            let pool = pool.clone();
            Arc::new(move |steps| Box::pin(checkouts::run_batch(pool.clone(), steps)))
        };
        let session: RunBatch<CheckoutStep, CheckoutDone> = {
            let pool = pool.clone();
            Arc::new(move |steps| Box::pin(session_batch::run_batch(pool.clone(), steps)))
        };
        Self {
            // A checkout's next step goes to another lane or comes after an HTTP round
            // trip: its batches start back to back (see `seatkeeper_coalesce::Start`).
            checkouts: Coalescer::starting(
                Start::BackToBack,
                "checkout steps",
                MAX_BATCH,
                checkout,
                || CheckoutDone::Failed(lost_batch()),
            ),
            session_changes: Coalescer::starting(
                Start::BackToBack,
                "session changes",
                MAX_BATCH,
                session,
                || CheckoutDone::Failed(lost_batch()),
            ),
            reservations: Coalescer::new("reservations", MAX_BATCH, reserve, || {
                Err(lost_batch().into())
            }),
            completions: Coalescer::new("completions", MAX_BATCH, complete, || {
                Err(lost_batch().into())
            }),
            pool,
            _guard: None,
        }
    }

    /// Keeps `guard` alive as long as the store, and drops it after the pool.
    pub fn with_guard(mut self, guard: impl Any + Send + Sync) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How much the purchase phases were coalesced so far.
    pub fn batch_stats(&self) -> PurchaseBatchStats {
        PurchaseBatchStats {
            reservations: self.reservations.stats(),
            completions: self.completions.stats(),
            checkouts: self.checkouts.stats(),
            session_changes: self.session_changes.stats(),
        }
    }

    /// How many checkout steps wait for the next batch.
    pub fn queued_checkout_steps(&self) -> usize {
        self.checkouts.queued()
    }

    /// How many session-only checkout changes wait for the next batch.
    pub fn queued_session_changes(&self) -> usize {
        self.session_changes.queued()
    }

    /// How many reservations wait for the next batch.
    pub fn queued_reservations(&self) -> usize {
        self.reservations.queued()
    }

    /// How many completions wait for the next batch.
    pub fn queued_completions(&self) -> usize {
        self.completions.queued()
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    fn pool_use(&self) -> Option<PoolUse> {
        let (open, idle) = (u64::from(self.pool.size()), self.pool.num_idle() as u64);
        Some(PoolUse {
            in_use: open.saturating_sub(idle),
            idle,
        })
    }
}
