//! A MongoDB implementation of every Seatkeeper store port.
//!
//! Every store operation that touches more than one document is one multi-document
//! transaction (read concern `snapshot`, write concern `majority`) run by the store's
//! runner (`transaction.rs`): it runs the body again when the server reports a conflict
//! with another transaction (a WriteConflict), with jittered backoff, and gives up at
//! once on anything else — an unreachable server answers 503 without spinning in retries
//! — and the store bounds the whole by [`MongoSettings::transaction_time_limit`].
//! Business outcomes (lock lost, not found, not incomplete, capacity below held) are never
//! driver errors: the body returns them, before writing anything, as the inner value of a
//! `Result<Result<T, E>, mongodb::error::Error>`, so they are neither retried nor
//! classified.
//!
//! Every step that moves seats is coalesced (`batch`): concurrent reservations,
//! completions, checkout openings and checkout changes share one transaction,
//! which moves the plans it touched with one `update` command of guarded statements
//! (`{_id, seats_left: <read>, seq: <read>}` → `$inc`), as the last write before the audit
//! insert and the commit, so that a hot plan document is written once per batch (see
//! docs/architecture.md, "The purchase steps: one batch at a time").
//!
//! # Layout
//!
//! - `lib.rs`: the [`MongoStore`] itself, its constructors and [`Store`];
//! - `settings`: [`MongoSettings`], the client built from them and the start-up failures;
//! - one module per port: `plans` ([`PlanRepository`]), `audit` ([`AuditLog`]),
//!   `subscriptions` ([`SubscriptionRepository`]), `idempotency`
//!   ([`IdempotencyRepository`]), `purchases` ([`PurchaseRepository`] and the glue to the
//!   batches), `recovery` ([`RecoveryRepository`]), `api_keys` ([`ApiKeyRepository`], with
//!   its document), `checkouts` ([`CheckoutRepository`]: checkout sessions, their openings
//!   and changes sent to the batches, and webhook events);
//! - `batch`: the steps that move seats (reserve, reserve under a new key, complete; and
//!   in `batch/checkout.rs`, open a checkout session and change one) as batches:
//!   concurrent steps share one transaction (see above);
//! - [`documents`]: the stored documents and their conversions (UUIDs as binary subtype
//!   4, BSON dates, `i64` money); [`checkout_documents`]: those of checkout sessions and
//!   webhook events;
//! - [`queries`]: every filter, update and pipeline, as pure functions;
//!   [`checkout_queries`]: those of the checkout steps;
//! - [`indexes`]: the collections and indexes created at start-up;
//! - [`upgrade`]: what earlier versions stored in another shape, changed at start-up
//!   (idempotency records under their `{ scope, key }` `_id`, plans with their
//!   subscription counts);
//! - [`errors`]: which failures are retried, unavailable or internal;
//! - `transaction`: the transaction runner: what is run again, what answers at once; and
//!   the helpers the ports' transactions share;
//! - [`topology`]: the start-up check that the server is a replica set or `mongos`;
//! - `testing` (behind the `testing` feature, for tests only): fresh databases for the
//!   contract suite.
//!
//! Transactions need a replica set: [`MongoStore::connect`] refuses a standalone server
//! with a message saying how to make one.
//!
//! [`PlanRepository`]: seatkeeper_domain::ports::PlanRepository
//! [`AuditLog`]: seatkeeper_domain::ports::AuditLog
//! [`SubscriptionRepository`]: seatkeeper_domain::ports::SubscriptionRepository
//! [`IdempotencyRepository`]: seatkeeper_domain::ports::IdempotencyRepository
//! [`PurchaseRepository`]: seatkeeper_domain::ports::PurchaseRepository
//! [`RecoveryRepository`]: seatkeeper_domain::ports::RecoveryRepository
//! [`ApiKeyRepository`]: seatkeeper_domain::ports::ApiKeyRepository
//! [`CheckoutRepository`]: seatkeeper_domain::ports::CheckoutRepository

mod api_keys;
mod audit;
mod batch;
pub mod checkout_documents;
pub mod checkout_queries;
mod checkouts;
pub mod documents;
pub mod errors;
mod feed;
mod idempotency;
pub mod indexes;
mod plans;
mod purchases;
pub mod queries;
mod recovery;
mod session_reads;
mod settings;
mod subscriptions;
#[cfg(feature = "testing")]
pub mod testing;
pub mod topology;
mod transaction;
pub mod upgrade;

pub use seatkeeper_coalesce::BatchStats;
pub use settings::{MongoSettings, Unreachable, DEFAULT_DATABASE};
pub use transaction::TimeLimitExceeded;

use std::{any::Any, sync::Arc, time::Duration};

use async_trait::async_trait;
use mongodb::{bson::doc, Client, Collection, Database};
use seatkeeper_coalesce::Coalescer;
use seatkeeper_domain::ports::{PoolUse, Store, StoreError};

use crate::{
    checkout_documents::{CheckoutDoc, WebhookEventDoc},
    documents::{AuditDoc, KeyDoc, PlanDoc, SubscriptionDoc},
    errors::classify,
    settings::PoolCounter,
};

/// The MongoDB store.
pub struct MongoStore {
    client: Client,
    db: Database,
    plans: Collection<PlanDoc>,
    subscriptions: Collection<SubscriptionDoc>,
    audit: Collection<AuditDoc>,
    keys: Collection<KeyDoc>,
    api_keys: Collection<api_keys::ApiKeyDoc>,
    checkouts: Collection<CheckoutDoc>,
    webhook_events: Collection<WebhookEventDoc>,
    time_limit: Duration,
    /// The driver's connections, counted from its pool events.
    pool: Arc<PoolCounter>,
    /// The purchase steps, and the checkout steps that may write a plan document, one
    /// batch (one transaction) at a time.
    steps: Coalescer<batch::Step, batch::Done>,
    /// The checkout changes that write their session only, in batches of their own,
    /// which never conflict with the plan documents' writers (`checkouts.rs`).
    session_changes: Coalescer<batch::Step, batch::Done>,
    /// Reads of checkout sessions by id, one `find` for those that arrive together
    /// (`session_reads.rs`).
    session_reads: Coalescer<seatkeeper_domain::CheckoutSessionId, session_reads::SessionRead>,
    /// Something to drop with the store (a test database to remove).
    _guard: Option<Box<dyn Any + Send + Sync>>,
}

impl MongoStore {
    /// Connects, checks that the server is a replica set member or `mongos` (else an
    /// error saying how to make a replica set), and creates the collections and indexes.
    /// Fails within the server-selection timeout when the server cannot be reached, with
    /// a message naming the URL's hosts (never its credentials).
    pub async fn connect(settings: &MongoSettings) -> Result<Self, StoreError> {
        let (client, database, deployment, pool) = settings::open(settings).await?;
        let db = client.database(&database);
        indexes::prepare(&db).await?;
        upgrade::run(&db).await?;
        tracing::info!(database, ?deployment, "MongoDB store ready");
        Ok(Self {
            steps: purchases::coalescer(
                "plan steps",
                &client,
                &db,
                settings.transaction_time_limit,
            ),
            session_changes: purchases::coalescer(
                "session changes",
                &client,
                &db,
                settings.transaction_time_limit,
            ),
            session_reads: session_reads::coalescer(db.collection(queries::CHECKOUT_SESSIONS)),
            plans: db.collection(queries::PLANS),
            subscriptions: db.collection(queries::SUBSCRIPTIONS),
            audit: db.collection(queries::AUDIT_ENTRIES),
            keys: db.collection(queries::IDEMPOTENCY_KEYS),
            api_keys: db.collection(queries::API_KEYS),
            checkouts: db.collection(queries::CHECKOUT_SESSIONS),
            webhook_events: db.collection(queries::WEBHOOK_EVENTS),
            client,
            db,
            time_limit: settings.transaction_time_limit,
            pool,
            _guard: None,
        })
    }

    /// Keeps `guard` alive as long as the store, and drops it after the client.
    pub fn with_guard(mut self, guard: impl Any + Send + Sync) -> Self {
        self._guard = Some(Box::new(guard));
        self
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// How much the purchase steps were coalesced so far.
    pub fn batch_stats(&self) -> BatchStats {
        self.steps.stats()
    }

    /// How many purchase steps wait for the next batch.
    pub fn queued_steps(&self) -> usize {
        self.steps.queued()
    }

    /// How much the session-only checkout changes were coalesced so far.
    pub fn session_change_stats(&self) -> BatchStats {
        self.session_changes.stats()
    }

    /// How much the reads of checkout sessions by id were coalesced so far.
    pub fn session_read_stats(&self) -> BatchStats {
        self.session_reads.stats()
    }

    /// How many session-only checkout changes wait for the next batch.
    pub fn queued_session_changes(&self) -> usize {
        self.session_changes.queued()
    }
}

#[async_trait]
impl Store for MongoStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .run_command(doc! { "ping": 1 })
            .await
            .map_err(classify)?;
        Ok(())
    }

    fn pool_use(&self) -> Option<PoolUse> {
        Some(self.pool.get())
    }
}
