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
//! The purchase steps are coalesced (`batch.rs`): concurrent reservations and completions
//! share one transaction, which moves each plan with one guarded
//! `findOneAndUpdate({_id, seq: <seq read>}, {$inc: {seats_left, seq}})` returning the
//! document after, as the last write before the audit insert and the commit, so that the
//! hot plan document is written once per batch and held for as short a time as possible
//! (see docs/architecture.md, "The purchase steps: one batch at a time").
//!
//! # Layout
//!
//! - `batch`: the purchase steps (reserve, reserve under a new key, complete) as
//!   batches: concurrent steps share one transaction (see "Purchase steps" below);
//! - [`documents`]: the stored documents and their conversions (UUIDs as binary subtype
//!   4, BSON dates, `i64` money);
//! - [`queries`]: every filter, update and pipeline, as pure functions;
//! - [`indexes`]: the indexes created at start-up;
//! - [`errors`]: which failures are retried, unavailable or internal;
//! - `transaction`: the transaction runner: what is run again, what answers at once;
//! - [`topology`]: the start-up check that the server is a replica set or `mongos`;
//! - [`testing`]: fresh databases for the contract suite.
//!
//! Transactions need a replica set: [`MongoStore::connect`] refuses a standalone server
//! with a message saying how to make one.

mod batch;
pub mod documents;
pub mod errors;
pub mod indexes;
pub mod queries;
pub mod testing;
pub mod topology;
mod transaction;

pub use seatkeeper_coalesce::BatchStats;

use std::{any::Any, future::Future, sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::{
    bson::{doc, Document},
    options::{ClientOptions, ReadConcern, ReturnDocument, TransactionOptions, WriteConcern},
    Client, ClientSession, Collection, Database,
};
use seatkeeper_domain::{
    ports::{
        AuditLog, CancelDecision, CancelError, Cancellation, ClaimRecovery, CompleteError,
        CompletePurchase, Completion, IdempotencyRepository, NewKeyReservation, PlanRepository,
        PurchaseRepository, RecoveryBacklog, RecoveryPhase, RecoveryRepository, RecoveryTask,
        Reservation, ReserveError, ReserveSeat, ReserveWithNewKey, Store, StoreError,
        SubscriptionRepository, UpdatePlanError,
    },
    AuditContext, AuditEntry, Claim, ClaimKey, CustomerId, IdempotencyKey, IdempotencyRecord,
    LockToken, PatchRejection, Plan, PlanId, PlanPatch, PlanStats, SeatMove, Subscription,
    SubscriptionId, SubscriptionStatus, Timestamp,
};

use seatkeeper_coalesce::{Coalescer, RunBatch};

use crate::{
    batch::{Done, Step},
    documents::{AuditDoc, Corrupt, KeyDoc, PlanDoc, SubscriptionDoc},
    errors::{classify, corrupt, retry_claim, Facts, Retry},
    topology::{hosts_of, Deployment},
};

/// The most purchase steps one transaction takes.
const MAX_BATCH: usize = 128;

/// How many times a claim runs when its insert of a new key loses to another claim's.
const CLAIM_ATTEMPTS: u32 = 3;

/// The database used when neither the settings nor the URL name one.
pub const DEFAULT_DATABASE: &str = "seatkeeper";

/// How to reach MongoDB.
#[derive(Debug, Clone)]
pub struct MongoSettings {
    /// `mongodb://[user:password@]host[:port][,host…]/[database]?replicaSet=rs0` or
    /// `mongodb+srv://…`. Must reach a replica set or `mongos`.
    pub url: String,
    /// The database; `None` takes the URL's, else [`DEFAULT_DATABASE`].
    pub database: Option<String>,
    /// The most connections per server this process holds.
    pub max_pool_size: u32,
    /// How long an operation waits for a usable server before the store counts as
    /// unavailable; also bounds start-up against an unreachable server.
    pub server_selection_timeout: Duration,
    /// How long one store operation may take, transaction retries included, before it
    /// answers "unavailable" (the driver's own limit is 120 s).
    pub transaction_time_limit: Duration,
}

impl MongoSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            database: None,
            max_pool_size: 16,
            server_selection_timeout: Duration::from_secs(5),
            transaction_time_limit: Duration::from_secs(30),
        }
    }
}

/// A store operation that ran past [`MongoSettings::transaction_time_limit`].
#[derive(Debug, thiserror::Error)]
#[error("the MongoDB operation did not finish within {0:?} (transaction retries included)")]
pub struct TimeLimitExceeded(pub Duration);

/// MongoDB could not be reached at start-up.
#[derive(Debug, thiserror::Error)]
#[error("could not reach MongoDB at {hosts} within the server-selection timeout ({timeout:?})")]
pub struct Unreachable {
    pub hosts: String,
    pub timeout: Duration,
    #[source]
    pub cause: mongodb::error::Error,
}

/// The MongoDB store.
pub struct MongoStore {
    client: Client,
    db: Database,
    plans: Collection<PlanDoc>,
    subscriptions: Collection<SubscriptionDoc>,
    audit: Collection<AuditDoc>,
    keys: Collection<KeyDoc>,
    time_limit: Duration,
    /// The purchase steps, one batch (one transaction) at a time.
    steps: Coalescer<batch::Step, batch::Done>,
    /// Something to drop with the store (a test database to remove).
    _guard: Option<Box<dyn Any + Send + Sync>>,
}

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
async fn refuse<T, E>(_: &mut ClientSession, outcome: E) -> mongodb::error::Result<Result<T, E>> {
    Ok(Err(outcome))
}

/// A write that the transaction's own reads guaranteed would match, and did not.
fn unmatched(what: &str) -> mongodb::error::Error {
    corrupt(Corrupt(format!(
        "{what} matched no document although this transaction just read it"
    )))
}

/// The collections a purchase writes, cloned (cheap handles) into its transaction.
#[derive(Clone)]
struct PurchaseCollections {
    db: Database,
    plans: Collection<PlanDoc>,
    subscriptions: Collection<SubscriptionDoc>,
    audit: Collection<AuditDoc>,
    keys: Collection<KeyDoc>,
}

impl MongoStore {
    /// Connects, checks that the server is a replica set member or `mongos` (else an
    /// error saying how to make a replica set), and creates the collections and indexes.
    /// Fails within the server-selection timeout when the server cannot be reached, with
    /// a message naming the URL's hosts (never its credentials).
    pub async fn connect(settings: &MongoSettings) -> Result<Self, StoreError> {
        let (client, database, deployment) = open(settings).await?;
        let db = client.database(&database);
        prepare(&db).await?;
        tracing::info!(database, ?deployment, "MongoDB store ready");
        let runner = StepRunner {
            client: client.clone(),
            c: PurchaseCollections {
                db: db.clone(),
                plans: db.collection(queries::PLANS),
                subscriptions: db.collection(queries::SUBSCRIPTIONS),
                audit: db.collection(queries::AUDIT_ENTRIES),
                keys: db.collection(queries::IDEMPOTENCY_KEYS),
            },
            time_limit: settings.transaction_time_limit,
        };
        let run: RunBatch<Step, Done> = Arc::new(move |steps| Box::pin(runner.clone().run(steps)));
        Ok(Self {
            steps: Coalescer::new("purchase steps", MAX_BATCH, run, || {
                Done::Failed(StoreError::internal(
                    "a purchase batch ended without answering",
                ))
            }),
            plans: db.collection(queries::PLANS),
            subscriptions: db.collection(queries::SUBSCRIPTIONS),
            audit: db.collection(queries::AUDIT_ENTRIES),
            keys: db.collection(queries::IDEMPOTENCY_KEYS),
            client,
            db,
            time_limit: settings.transaction_time_limit,
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

    fn refund_collections(&self) -> RefundCollections {
        (
            self.plans.clone(),
            self.subscriptions.clone(),
            self.audit.clone(),
        )
    }

    /// How much the purchase steps were coalesced so far.
    pub fn batch_stats(&self) -> BatchStats {
        self.steps.stats()
    }

    /// How many purchase steps wait for the next batch.
    pub fn queued_steps(&self) -> usize {
        self.steps.queued()
    }

    async fn session(&self) -> Result<ClientSession, StoreError> {
        self.client.start_session().await.map_err(classify)
    }

    /// Awaits a transaction within the time limit.
    async fn limited<R>(
        &self,
        run: impl Future<Output = mongodb::error::Result<R>>,
    ) -> Result<mongodb::error::Result<R>, StoreError> {
        tokio::time::timeout(self.time_limit, run)
            .await
            .map_err(|_| StoreError::unavailable(TimeLimitExceeded(self.time_limit)))
    }

    /// Awaits a transaction whose body returns business outcomes as values.
    async fn settle<T, E: From<StoreError>>(
        &self,
        run: impl Future<Output = mongodb::error::Result<Result<T, E>>>,
    ) -> Result<T, E> {
        match self.limited(run).await? {
            Ok(result) => result,
            Err(e) => Err(E::from(classify(e))),
        }
    }
}

/// Builds the client and checks the deployment: `(client, database name, deployment)`.
async fn open(settings: &MongoSettings) -> Result<(Client, String, Deployment), StoreError> {
    let hosts = hosts_of(&settings.url);
    let mut options = ClientOptions::parse(&settings.url).await.map_err(|e| {
        let what = format!("the MongoDB URL for {hosts} could not be used");
        match errors::verdict(&Facts::of(&e)) {
            // An SRV or DNS lookup that failed: the hosts cannot be reached.
            errors::Verdict::Unavailable => StoreError::unavailable(Unreachable {
                hosts: hosts.clone(),
                timeout: settings.server_selection_timeout,
                cause: e,
            }),
            errors::Verdict::Internal => StoreError::internal(Invalid(what, e)),
        }
    })?;
    options.app_name.get_or_insert_with(|| "seatkeeper".into());
    options.server_selection_timeout = Some(settings.server_selection_timeout);
    options
        .connect_timeout
        .get_or_insert(settings.server_selection_timeout);
    options.max_pool_size = Some(settings.max_pool_size);
    options
        .read_concern
        .get_or_insert_with(ReadConcern::majority);
    options
        .write_concern
        .get_or_insert_with(WriteConcern::majority);
    let database = settings
        .database
        .clone()
        .or_else(|| options.default_database.clone())
        .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
    let client = Client::with_options(options).map_err(|e| {
        StoreError::internal(Invalid(
            format!("the MongoDB client for {hosts} could not be built"),
            e,
        ))
    })?;
    let hello = client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .map_err(|e| match errors::verdict(&Facts::of(&e)) {
            errors::Verdict::Unavailable => StoreError::unavailable(Unreachable {
                hosts: hosts.clone(),
                timeout: settings.server_selection_timeout,
                cause: e,
            }),
            errors::Verdict::Internal => StoreError::internal(Invalid(
                format!("MongoDB at {hosts} refused the `hello` command"),
                e,
            )),
        })?;
    let deployment = topology::deployment(&hello, &hosts).map_err(StoreError::internal)?;
    Ok((client, database, deployment))
}

/// A start-up failure with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Invalid(String, #[source] mongodb::error::Error);

/// Creates the collections (so that no transaction ever creates one implicitly) and the
/// indexes.
async fn prepare(db: &Database) -> Result<(), StoreError> {
    const NAMESPACE_EXISTS: i32 = 48;
    for name in queries::COLLECTIONS {
        if let Err(e) = db.create_collection(*name).await {
            if Facts::of(&e).code != Some(NAMESPACE_EXISTS) {
                return Err(classify(e));
            }
        }
    }
    for (collection, model) in indexes::indexes() {
        db.collection::<Document>(collection)
            .create_index(model)
            .await
            .map_err(classify)?;
    }
    Ok(())
}

// ----- the ports -----

#[async_trait]
impl PlanRepository for MongoStore {
    #[tracing::instrument(skip_all, fields(plan_id = %plan.id))]
    async fn create_plan(&self, plan: &Plan, ctx: &AuditContext) -> Result<(), StoreError> {
        let plan_doc = PlanDoc::from(plan);
        let created = AuditDoc::from(&AuditEntry::plan_created(plan, ctx));
        let (plans, audit) = (self.plans.clone(), self.audit.clone());
        let mut session = self.session().await?;
        let run = transaction::run(&mut session, async move |s| {
            plans.insert_one(&plan_doc).session(&mut *s).await?;
            audit.insert_one(&created).session(&mut *s).await?;
            Ok(Ok::<_, StoreError>(()))
        });
        self.settle(run).await
    }

    async fn get_plan(&self, id: PlanId) -> Result<Option<Plan>, StoreError> {
        self.plans
            .find_one(queries::plan_by_id(id))
            .await
            .map_err(classify)?
            .map(|d| Plan::try_from(d).map_err(StoreError::internal))
            .transpose()
    }

    async fn list_plans(&self, after: Option<PlanId>, limit: u32) -> Result<Vec<Plan>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (filter, sort) = queries::plans_page(after);
        let docs: Vec<PlanDoc> = self
            .plans
            .find(filter)
            .sort(sort)
            .limit(i64::from(limit))
            .await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)?;
        docs.into_iter()
            .map(|d| Plan::try_from(d).map_err(StoreError::internal))
            .collect()
    }

    #[tracing::instrument(skip_all, fields(plan_id = %id))]
    async fn update_plan(
        &self,
        id: PlanId,
        patch: &PlanPatch,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<Plan, UpdatePlanError> {
        let (patch, ctx) = (patch.clone(), ctx.clone());
        let (plans, audit) = (self.plans.clone(), self.audit.clone());
        let mut session = self.session().await?;
        let run = transaction::run(&mut session, async move |s| {
            let Some(found) = plans
                .find_one(queries::plan_by_id(id))
                .session(&mut *s)
                .await?
            else {
                return refuse(s, UpdatePlanError::NotFound(id)).await;
            };
            let mut plan = Plan::try_from(found).map_err(corrupt)?;
            let read_seq = plan.seq;
            let changes = match plan.apply(&patch) {
                Ok(changes) => changes,
                Err(PatchRejection::CapacityBelowHeld { held, requested }) => {
                    return refuse(s, UpdatePlanError::CapacityBelowHeld { held, requested }).await;
                }
            };
            if changes.is_empty() {
                return Ok(Ok(plan));
            }
            let written = plans
                .update_one(
                    queries::plan_at_seq(id, read_seq),
                    queries::patch_plan(&plan),
                )
                .session(&mut *s)
                .await?;
            if written.matched_count != 1 {
                return Err(unmatched("the plan update"));
            }
            let entries: Vec<AuditDoc> = AuditEntry::plan_changes(&plan, &changes, &ctx, now)
                .iter()
                .map(AuditDoc::from)
                .collect();
            audit.insert_many(&entries).session(&mut *s).await?;
            Ok(Ok(plan))
        });
        self.settle(run).await
    }

    async fn plan_stats(&self, id: PlanId) -> Result<Option<PlanStats>, StoreError> {
        let (plans, subscriptions) = (self.plans.clone(), self.subscriptions.clone());
        let mut session = self.session().await?;
        // A read-only transaction: the plan and the counts from one snapshot.
        let run = transaction::run(&mut session, async move |s| {
            let Some(found) = plans
                .find_one(queries::plan_by_id(id))
                .session(&mut *s)
                .await?
            else {
                return Ok(Ok(None));
            };
            let plan = Plan::try_from(found).map_err(corrupt)?;
            let mut cursor = subscriptions
                .aggregate(queries::count_by_status(id))
                .session(&mut *s)
                .await?;
            let counts: Vec<Document> = cursor.stream(&mut *s).try_collect().await?;
            let stats = documents::stats(&plan, &counts).map_err(corrupt)?;
            Ok(Ok::<_, StoreError>(Some(stats)))
        });
        self.settle(run).await
    }
}

#[async_trait]
impl AuditLog for MongoStore {
    async fn plan_audit(
        &self,
        plan_id: PlanId,
        after_seq: Option<u64>,
        limit: u32,
    ) -> Result<Option<Vec<AuditEntry>>, StoreError> {
        let docs: Vec<AuditDoc> = if limit == 0 {
            Vec::new()
        } else {
            let (filter, sort) = queries::audit_page(plan_id, after_seq);
            self.audit
                .find(filter)
                .sort(sort)
                .limit(i64::from(limit))
                .await
                .map_err(classify)?
                .try_collect()
                .await
                .map_err(classify)?
        };
        if docs.is_empty() && self.get_plan(plan_id).await?.is_none() {
            return Ok(None);
        }
        docs.into_iter()
            .map(|d| AuditEntry::try_from(d).map_err(StoreError::internal))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}

#[async_trait]
impl SubscriptionRepository for MongoStore {
    async fn get_subscription(
        &self,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        self.subscriptions
            .find_one(queries::subscription_by_id(id))
            .await
            .map_err(classify)?
            .map(|d| Subscription::try_from(d).map_err(StoreError::internal))
            .transpose()
    }

    async fn customer_subscriptions(
        &self,
        customer: &CustomerId,
        after: Option<SubscriptionId>,
        limit: u32,
    ) -> Result<Vec<Subscription>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (filter, sort) = queries::customer_page(customer, after);
        let docs: Vec<SubscriptionDoc> = self
            .subscriptions
            .find(filter)
            .sort(sort)
            .limit(i64::from(limit))
            .await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)?;
        docs.into_iter()
            .map(|d| Subscription::try_from(d).map_err(StoreError::internal))
            .collect()
    }

    #[tracing::instrument(skip_all, fields(subscription_id = %id))]
    async fn cancel_subscription(
        &self,
        id: SubscriptionId,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<Cancellation, CancelError> {
        let ctx = ctx.clone();
        let (plans, subscriptions, audit) = (
            self.plans.clone(),
            self.subscriptions.clone(),
            self.audit.clone(),
        );
        let mut session = self.session().await?;
        let run = transaction::run(&mut session, async move |s| {
            let Some(found) = subscriptions
                .find_one(queries::subscription_by_id(id))
                .session(&mut *s)
                .await?
            else {
                return refuse(s, CancelError::NotFound(id)).await;
            };
            let sub = Subscription::try_from(found).map_err(corrupt)?;
            let (sub, seat_move) = match CancelDecision::of(sub, now) {
                Err(refusal) => return refuse(s, refusal).await,
                Ok(CancelDecision::AlreadyCanceled(answer)) => return Ok(Ok(answer)),
                Ok(CancelDecision::Cancel {
                    subscription,
                    seat_move,
                }) => (subscription, seat_move),
            };
            let written = subscriptions
                .update_one(
                    queries::subscription_in(id, SubscriptionStatus::Active),
                    queries::change_subscription(&sub),
                )
                .session(&mut *s)
                .await?;
            if written.matched_count != 1 {
                return Err(unmatched("the cancellation"));
            }
            // The hot plan document last.
            let plan = bump_plan(&plans, s, sub.plan_id, seat_move.delta.into()).await?;
            let entry = seat_move.entry_after(&plan, &ctx, now);
            audit
                .insert_one(AuditDoc::from(&entry))
                .session(&mut *s)
                .await?;
            Ok(Ok(CancelDecision::answer(sub)))
        });
        self.settle(run).await
    }
}

/// Moves the plan's seats by `delta` and bumps its `seq`; the plan after.
async fn bump_plan(
    plans: &Collection<PlanDoc>,
    s: &mut ClientSession,
    id: PlanId,
    delta: i64,
) -> mongodb::error::Result<Plan> {
    let after = plans
        .find_one_and_update(queries::plan_by_id(id), queries::move_seats(delta))
        .return_document(ReturnDocument::After)
        .session(s)
        .await?
        .ok_or_else(|| corrupt(Corrupt(format!("plan {id} of a subscription is missing"))))?;
    Plan::try_from(after).map_err(corrupt)
}

#[async_trait]
impl IdempotencyRepository for MongoStore {
    async fn claim_key(&self, claim: &ClaimKey) -> Result<Claim, StoreError> {
        let mut attempt = 1;
        loop {
            let claim = claim.clone();
            let keys = self.keys.clone();
            let mut session = self.session().await?;
            let run = transaction::run(&mut session, async move |s| {
                let filter = queries::key(&claim.scope, &claim.key);
                let Some(found) = keys.find_one(filter.clone()).session(&mut *s).await? else {
                    // The unique (scope, key) index settles a race between two inserts.
                    let fresh = claim.fresh_record();
                    keys.insert_one(KeyDoc::from(&fresh))
                        .session(&mut *s)
                        .await?;
                    return Ok(Claim::Acquired(fresh));
                };
                let existing = IdempotencyRecord::try_from(found).map_err(corrupt)?;
                let decision = claim.decide(&existing);
                if let Claim::Acquired(record) = &decision {
                    let written = keys
                        .replace_one(filter, KeyDoc::from(record))
                        .session(&mut *s)
                        .await?;
                    if written.matched_count != 1 {
                        return Err(unmatched("the key takeover"));
                    }
                }
                Ok(decision)
            });
            match self.limited(run).await? {
                Ok(claim) => return Ok(claim),
                Err(e)
                    if attempt < CLAIM_ATTEMPTS && retry_claim(&Facts::of(&e)) == Retry::Claim =>
                {
                    tracing::debug!(
                        attempt,
                        "a concurrent claim inserted the key first; claiming again"
                    );
                    attempt += 1;
                }
                Err(e) => return Err(classify(e)),
            }
        }
    }

    async fn release_key(
        &self,
        scope: &CustomerId,
        key: &IdempotencyKey,
        owner: LockToken,
    ) -> Result<bool, StoreError> {
        let written = self
            .keys
            .update_one(
                queries::key_held(scope, key, owner),
                queries::release_lock(),
            )
            .await
            .map_err(classify)?;
        Ok(written.matched_count == 1)
    }

    async fn purge_expired_keys(&self, now: Timestamp) -> Result<u64, StoreError> {
        let deleted = self
            .keys
            .delete_many(queries::expired_keys(now))
            .await
            .map_err(classify)?;
        Ok(deleted.deleted_count)
    }
}

#[async_trait]
impl PurchaseRepository for MongoStore {
    #[tracing::instrument(skip_all, fields(plan_id = %cmd.plan_id))]
    async fn reserve_seat(&self, cmd: &ReserveSeat) -> Result<Reservation, ReserveError> {
        match self.steps.submit(Step::Held(cmd.clone())).await {
            Done::Reserved(reservation) => reservation,
            Done::Failed(e) => Err(e.into()),
            other => Err(StoreError::internal(format!(
                "a reservation under a held key was answered with {other:?}"
            ))
            .into()),
        }
    }

    #[tracing::instrument(skip_all, fields(plan_id = %cmd.seat().plan_id))]
    async fn reserve_with_new_key(
        &self,
        cmd: &ReserveWithNewKey,
    ) -> Result<NewKeyReservation, StoreError> {
        match self.steps.submit(Step::New(cmd.clone())).await {
            Done::Reserved(Ok(reservation)) => Ok(NewKeyReservation::Claimed(reservation)),
            Done::KeyExists => Ok(NewKeyReservation::KeyExists),
            Done::Reserved(Err(ReserveError::Store(e))) | Done::Failed(e) => Err(e),
            other => Err(StoreError::internal(format!(
                "a reservation under a new key was answered with {other:?}"
            ))),
        }
    }

    #[tracing::instrument(skip_all, fields(subscription_id = %cmd.subscription_id))]
    async fn complete_purchase(&self, cmd: &CompletePurchase) -> Result<Completion, CompleteError> {
        match self.steps.submit(Step::Complete(cmd.clone())).await {
            Done::Completed(completion) => completion,
            Done::Failed(e) => Err(e.into()),
            other => Err(
                StoreError::internal(format!("a completion was answered with {other:?}")).into(),
            ),
        }
    }
}

/// Runs the purchase steps of one batch in one transaction; when that fails for any
/// reason but unavailability and the batch holds more than one step, runs each step
/// alone, so that one step's failure (another instance's insert of the same new key, a
/// corrupt document) is that step's answer only.
#[derive(Clone)]
struct StepRunner {
    client: Client,
    c: PurchaseCollections,
    time_limit: Duration,
}

impl StepRunner {
    /// One transaction for `steps`, within the time limit (retries included).
    async fn attempt(
        &self,
        steps: &[Step],
    ) -> Result<mongodb::error::Result<Vec<Done>>, StoreError> {
        let mut session = self.client.start_session().await.map_err(classify)?;
        let (c, steps) = (self.c.clone(), steps.to_vec());
        let run = transaction::run(&mut session, async move |s| batch::run(s, &c, &steps).await);
        tokio::time::timeout(self.time_limit, run)
            .await
            .map_err(|_| StoreError::unavailable(TimeLimitExceeded(self.time_limit)))
    }

    async fn run(self, steps: Vec<Step>) -> Vec<Done> {
        let failure = match self.attempt(&steps).await {
            Ok(Ok(done)) => return done,
            Ok(Err(e)) if steps.len() == 1 => return vec![failed(&steps[0], e)],
            Ok(Err(e)) => classify(e),
            Err(e) => e,
        };
        if let StoreError::Unavailable(cause) = &failure {
            let cause = seatkeeper_domain::error_chain(&**cause);
            return steps
                .iter()
                .map(|_| Done::Failed(StoreError::unavailable(cause.clone())))
                .collect();
        }
        tracing::warn!(
            steps = steps.len(),
            error = %seatkeeper_domain::error_chain(&failure),
            "a purchase batch failed; running its steps one by one"
        );
        let this = &self;
        let alone = steps.iter().map(|step| async move {
            match this.attempt(std::slice::from_ref(step)).await {
                Ok(Ok(mut done)) => done.pop().expect("one answer for one step"),
                Ok(Err(e)) => failed(step, e),
                Err(e) => Done::Failed(e),
            }
        });
        futures::future::join_all(alone).await
    }
}

/// The answer of a step whose transaction failed with `e`: a new key's insert that lost
/// to another instance's is `KeyExists`, as if the step had looked later.
fn failed(step: &Step, e: mongodb::error::Error) -> Done {
    if matches!(step, Step::New(_)) && retry_claim(&Facts::of(&e)) == Retry::Claim {
        tracing::debug!("a concurrent claim inserted the new key first");
        return Done::KeyExists;
    }
    Done::Failed(classify(e))
}

/// What [`audit_refund`] writes to.
type RefundCollections = (
    Collection<PlanDoc>,
    Collection<SubscriptionDoc>,
    Collection<AuditDoc>,
);

/// Appends the subscription's `payment_refunded` entry, once: the `refund_recorded` mark
/// on the subscription is set in the same transaction, guarded by its absence.
async fn audit_refund(
    (plans, subscriptions, audit): &RefundCollections,
    s: &mut ClientSession,
    id: SubscriptionId,
    payment_id: &str,
    ctx: &AuditContext,
    now: Timestamp,
) -> mongodb::error::Result<bool> {
    let Some(found) = subscriptions
        .find_one(queries::subscription_by_id(id))
        .session(&mut *s)
        .await?
    else {
        return Err(corrupt(Corrupt(format!("no subscription {id} to refund"))));
    };
    let sub = Subscription::try_from(found).map_err(corrupt)?;
    let marked = subscriptions
        .update_one(queries::refund_not_recorded(id), queries::record_refund())
        .session(&mut *s)
        .await?;
    if marked.matched_count == 0 {
        return Ok(false);
    }
    // The hot plan document last.
    let seat_move = SeatMove::refund(id, payment_id);
    let plan = bump_plan(plans, s, sub.plan_id, seat_move.delta.into()).await?;
    let entry = seat_move.entry_after(&plan, ctx, now);
    audit
        .insert_one(AuditDoc::from(&entry))
        .session(&mut *s)
        .await?;
    Ok(true)
}

#[async_trait]
impl RecoveryRepository for MongoStore {
    async fn claim_recovery(&self, claim: &ClaimRecovery) -> Result<Vec<RecoveryTask>, StoreError> {
        if claim.limit == 0 {
            return Ok(Vec::new());
        }
        let claim = claim.clone();
        let subscriptions = self.subscriptions.clone();
        let mut session = self.session().await?;
        let run = transaction::run(&mut session, async move |s| {
            let mut tasks = Vec::new();
            let (filter, sort) = queries::stale_incomplete(claim.stale_before, claim.now);
            let mut cursor = subscriptions
                .find(filter)
                .sort(sort)
                .limit(i64::from(claim.limit))
                .session(&mut *s)
                .await?;
            let stale: Vec<SubscriptionDoc> = cursor.stream(&mut *s).try_collect().await?;
            for found in stale {
                let sub = Subscription::try_from(found).map_err(corrupt)?;
                let leased = subscriptions
                    .update_one(
                        queries::stale_incomplete_one(sub.id, claim.stale_before, claim.now),
                        queries::lease_completion(claim.owner, claim.lease_until),
                    )
                    .session(&mut *s)
                    .await?;
                if leased.matched_count != 1 {
                    return Err(unmatched("leasing a stale purchase"));
                }
                tasks.push(RecoveryTask {
                    subscription: sub,
                    phase: RecoveryPhase::Complete,
                });
            }
            let room = i64::from(claim.limit) - tasks.len() as i64;
            if room > 0 {
                let (filter, sort) = queries::due_verifications(claim.now);
                let mut cursor = subscriptions
                    .find(filter)
                    .sort(sort)
                    .limit(room)
                    .session(&mut *s)
                    .await?;
                let due: Vec<SubscriptionDoc> = cursor.stream(&mut *s).try_collect().await?;
                for found in due {
                    let sub = Subscription::try_from(found).map_err(corrupt)?;
                    let leased = subscriptions
                        .update_one(
                            queries::due_verification_one(sub.id, claim.now),
                            queries::lease_verification(claim.owner, claim.lease_until),
                        )
                        .session(&mut *s)
                        .await?;
                    if leased.matched_count != 1 {
                        return Err(unmatched("leasing a due verification"));
                    }
                    tasks.push(RecoveryTask {
                        subscription: sub,
                        phase: RecoveryPhase::Verify,
                    });
                }
            }
            Ok(Ok::<_, StoreError>(tasks))
        });
        self.settle(run).await
    }

    async fn release_recovery(
        &self,
        id: SubscriptionId,
        owner: LockToken,
    ) -> Result<bool, StoreError> {
        // One guarded single-document write: a `complete` task comes back from the
        // subscription's status anyway, a `verify` task stays scheduled, free.
        let freed = self
            .subscriptions
            .update_one(queries::task_held(id, owner, None), queries::free_task())
            .await
            .map_err(classify)?;
        Ok(freed.matched_count == 1)
    }

    async fn finish_verification(
        &self,
        id: SubscriptionId,
        owner: LockToken,
        refunded: Option<&str>,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (refunded, ctx) = (refunded.map(str::to_owned), ctx.clone());
        let collections = self.refund_collections();
        let subscriptions = self.subscriptions.clone();
        let mut session = self.session().await?;
        let run = transaction::run(&mut session, async move |s| {
            let ended = subscriptions
                .update_one(
                    queries::task_held(id, owner, Some("verify")),
                    queries::end_task(),
                )
                .session(&mut *s)
                .await?;
            if ended.matched_count == 0 {
                // Not (or no longer) ours: nothing was written.
                return Ok(Ok(false));
            }
            if let Some(payment_id) = &refunded {
                audit_refund(&collections, s, id, payment_id, &ctx, now).await?;
            }
            Ok(Ok::<_, StoreError>(true))
        });
        self.settle(run).await
    }

    async fn record_refund(
        &self,
        id: SubscriptionId,
        payment_id: &str,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (payment_id, ctx) = (payment_id.to_owned(), ctx.clone());
        let collections = self.refund_collections();
        let mut session = self.session().await?;
        let run = transaction::run(&mut session, async move |s| {
            let appended = audit_refund(&collections, s, id, &payment_id, &ctx, now).await?;
            Ok(Ok::<_, StoreError>(appended))
        });
        self.settle(run).await
    }

    async fn recovery_backlog(
        &self,
        stale_before: Timestamp,
    ) -> Result<RecoveryBacklog, StoreError> {
        let stale_incomplete = self
            .subscriptions
            .count_documents(queries::stale_incomplete_all(stale_before))
            .await
            .map_err(classify)?;
        let pending_verifications = self
            .subscriptions
            .count_documents(queries::pending_verifications())
            .await
            .map_err(classify)?;
        Ok(RecoveryBacklog {
            stale_incomplete,
            pending_verifications,
        })
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
}
