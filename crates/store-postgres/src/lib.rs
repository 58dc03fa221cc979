//! A PostgreSQL implementation of every Seatkeeper store port.
//!
//! Each store operation is one transaction (READ COMMITTED) made of guarded statements,
//! and a seat is only ever taken under its plan row's lock, with the schema's
//! `seats_left BETWEEN 0 AND capacity` behind it, never across a payment call. The two
//! steps of the purchase path — claiming a new key with its reservation, completing a
//! purchase — are coalesced: requests that arrive while a transaction of their kind runs
//! are taken together by the next one (`coalesce.rs`, `batch.rs`), each decided as if alone,
//! so one lock of a hot plan row and one commit serve many purchases. Rows are always
//! locked in the same order — idempotency keys, then subscriptions, then plans, each kind
//! sorted — and a transaction that loses a serialization or deadlock race is run again, a
//! bounded number of times. The schema (embedded migrations, applied at start-up) enforces
//! what it can: seat bounds, one record per (customer, key), references.
//!
//! Connection failures become [`StoreError::Unavailable`], which the server answers with
//! 503 `store_unavailable`: a failed operation is rolled back whole.

mod batch;
mod errors;
mod rows;
pub mod testing;

pub use seatkeeper_coalesce::BatchStats;

use std::{any::Any, sync::Arc, time::Duration};

use seatkeeper_coalesce::{Coalescer, RunBatch};

use crate::{
    errors::{classify, corrupt, is_retryable, Fail},
    rows::{AUDIT_COLUMNS, KEY_COLUMNS, PLAN_COLUMNS, SUBSCRIPTION_COLUMNS},
};
use async_trait::async_trait;
use futures::future::BoxFuture;
use seatkeeper_domain::{
    ports::{
        AuditLog, CancelDecision, CancelError, Cancellation, ClaimRecovery, CompleteError,
        CompletePurchase, Completion, IdempotencyRepository, NewKeyReservation, PlanRepository,
        PurchaseRepository, RecoveryBacklog, RecoveryPhase, RecoveryRepository, RecoveryTask,
        Reservation, ReserveError, ReserveSeat, ReserveWithNewKey, Store, StoreError,
        SubscriptionRepository, UpdatePlanError,
    },
    AuditContext, AuditEntry, Claim, ClaimKey, CustomerId, IdempotencyKey, IdempotencyRecord,
    KeyState, LockToken, PatchRejection, Plan, PlanId, PlanPatch, PlanStats, RecoveryPoint,
    SeatMove, Subscription, SubscriptionId, SubscriptionStatus, Timestamp,
};
use sqlx::{
    postgres::{PgConnectOptions, PgPoolOptions},
    PgConnection, PgPool, Row,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How a transaction that lost a serialization or deadlock race is retried.
const MAX_ATTEMPTS: u32 = 5;

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// `postgres://user:password@host:port/database`
    pub url: String,
    /// The most connections this process holds.
    pub max_connections: u32,
    /// How long an operation waits for a connection (and a new connection for its
    /// handshake) before the store counts as unavailable.
    pub acquire_timeout: Duration,
}

impl PostgresSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

/// Batches and requests of each coalesced purchase phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurchaseBatchStats {
    pub reservations: BatchStats,
    pub completions: BatchStats,
}

/// How many requests one batch transaction takes at most.
const MAX_BATCH: usize = 128;

type ReserveAnswer = Result<batch::Reserved, ReserveError>;
type CompleteAnswer = Result<Completion, CompleteError>;

/// The PostgreSQL store.
pub struct PostgresStore {
    pool: PgPool,
    /// Concurrent reservations share a transaction: one lock of each plan row for many,
    /// and one insert for the new keys they claim.
    reservations: Coalescer<batch::Reserve, ReserveAnswer>,
    /// Concurrent completions share a transaction.
    completions: Coalescer<CompletePurchase, CompleteAnswer>,
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
        let pool = PgPoolOptions::new()
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
        Self {
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
        }
    }

    /// How many reservations wait for the next batch.
    pub fn queued_reservations(&self) -> usize {
        self.reservations.queued()
    }

    /// How many completions wait for the next batch.
    pub fn queued_completions(&self) -> usize {
        self.completions.queued()
    }

    /// Runs `op` in a transaction, again from the start when it loses a serialization or
    /// deadlock race. `Fail::Rule` rolls back and returns the business error.
    async fn tx<T, E, F>(&self, op: F) -> Result<T, E>
    where
        E: From<StoreError>,
        F: for<'c> Fn(&'c mut PgConnection) -> BoxFuture<'c, Result<T, Fail<E>>>,
    {
        run_tx(&self.pool, op).await
    }
}

/// Runs `op` in a transaction, again from the start when it loses a serialization or
/// deadlock race. `Fail::Rule` rolls back and returns the business error.
async fn run_tx<T, E, F>(pool: &PgPool, op: F) -> Result<T, E>
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

// ----- batches -----

/// What a batch transaction does for its requests.
type BatchTx<Req, Res> =
    for<'c> fn(&'c mut PgConnection, Vec<Req>) -> BoxFuture<'c, Result<Vec<Res>, sqlx::Error>>;

fn batch_reserve(
    c: &mut PgConnection,
    cmds: Vec<batch::Reserve>,
) -> BoxFuture<'_, Result<Vec<ReserveAnswer>, sqlx::Error>> {
    Box::pin(batch::reserve_tx(c, cmds))
}

fn batch_complete(
    c: &mut PgConnection,
    cmds: Vec<CompletePurchase>,
) -> BoxFuture<'_, Result<Vec<CompleteAnswer>, sqlx::Error>> {
    Box::pin(batch::complete_tx(c, cmds))
}

/// Runs one batch in one transaction. When the database is unavailable every request
/// fails with that; when the batch fails for any other reason (one request the
/// database refuses, say), each request is run again alone, so one bad request never
/// takes its neighbours down with it.
async fn run_batch<Req, Res, E>(
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

fn lost_batch() -> StoreError {
    StoreError::internal("a batch transaction ended without answering")
}

// ----- statements shared by several operations -----

async fn insert_audit(c: &mut PgConnection, e: &AuditEntry) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_entries (plan_id, seq, id, at, action, subscription_id, actor, trace_id, seats_left_before, seats_left_after, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(e.plan_id.as_uuid())
    .bind(e.seq as i64)
    .bind(e.id.as_uuid())
    .bind(e.at)
    .bind(e.action.as_str())
    .bind(e.subscription_id.map(|s| s.as_uuid()))
    .bind(&*e.actor)
    .bind(&*e.trace_id)
    .bind(e.seats_left_before as i32)
    .bind(e.seats_left_after as i32)
    .bind(&e.reason)
    .execute(c)
    .await?;
    Ok(())
}

async fn select_plan(
    c: &mut PgConnection,
    id: PlanId,
    for_update: bool,
) -> Result<Option<Plan>, sqlx::Error> {
    let sql = format!(
        "SELECT {PLAN_COLUMNS} FROM plans WHERE id = $1{}",
        if for_update { " FOR UPDATE" } else { "" }
    );
    sqlx::query(&sql)
        .bind(id.as_uuid())
        .fetch_optional(c)
        .await?
        .map(|r| rows::plan(&r))
        .transpose()
}

/// Moves `seats_left` by `delta` and bumps `seq`; returns the plan after.
async fn bump_plan(c: &mut PgConnection, id: PlanId, delta: i32) -> Result<Plan, sqlx::Error> {
    let sql = format!(
        "UPDATE plans SET seats_left = seats_left + $2, seq = seq + 1 WHERE id = $1 RETURNING {PLAN_COLUMNS}"
    );
    let row = sqlx::query(&sql)
        .bind(id.as_uuid())
        .bind(delta)
        .fetch_optional(c)
        .await?
        .ok_or_else(|| corrupt(format!("plan {id} vanished")))?;
    rows::plan(&row)
}

async fn select_subscription_for_update(
    c: &mut PgConnection,
    id: SubscriptionId,
) -> Result<Option<Subscription>, sqlx::Error> {
    let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1 FOR UPDATE");
    sqlx::query(&sql)
        .bind(id.as_uuid())
        .fetch_optional(c)
        .await?
        .map(|r| rows::subscription(&r))
        .transpose()
}

async fn update_subscription(c: &mut PgConnection, s: &Subscription) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE subscriptions SET status = $2, payment_id = $3, current_period_start = $4, current_period_end = $5, \
         updated_at = $6, canceled_at = $7, failure_reason = $8 WHERE id = $1",
    )
    .bind(s.id.as_uuid())
    .bind(s.status.as_str())
    .bind(&s.payment_id)
    .bind(s.current_period_start)
    .bind(s.current_period_end)
    .bind(s.updated_at)
    .bind(s.canceled_at)
    .bind(&s.failure_reason)
    .execute(c)
    .await?;
    Ok(())
}

/// Writes a whole key record over the stored one (or inserts it).
async fn upsert_key(c: &mut PgConnection, r: &IdempotencyRecord) -> Result<(), sqlx::Error> {
    let (state, owner, until, outcome, request_id, finished_at) = match &r.state {
        KeyState::Open { lock } => (
            "open",
            lock.as_ref().map(|l| l.owner.as_uuid()),
            lock.as_ref().map(|l| l.until),
            None,
            None,
            None,
        ),
        KeyState::Finished {
            outcome,
            request_id,
            finished_at,
        } => (
            "finished",
            None,
            None,
            Some(serde_json::to_value(outcome).map_err(corrupt)?),
            Some(request_id.clone()),
            Some(*finished_at),
        ),
    };
    let recovery = match r.recovery {
        RecoveryPoint::Started => None,
        RecoveryPoint::Reserved { subscription_id } => Some(subscription_id.as_uuid()),
    };
    sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, state, lock_owner, lock_until, recovery_subscription_id, \
         outcome, outcome_request_id, finished_at, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (scope, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, state = EXCLUDED.state, \
         lock_owner = EXCLUDED.lock_owner, lock_until = EXCLUDED.lock_until, \
         recovery_subscription_id = EXCLUDED.recovery_subscription_id, outcome = EXCLUDED.outcome, \
         outcome_request_id = EXCLUDED.outcome_request_id, finished_at = EXCLUDED.finished_at, \
         created_at = EXCLUDED.created_at, expires_at = EXCLUDED.expires_at",
    )
    .bind(r.scope.as_str())
    .bind(r.key.as_str())
    .bind(r.fingerprint.as_str())
    .bind(state)
    .bind(owner)
    .bind(until)
    .bind(recovery)
    .bind(outcome)
    .bind(request_id)
    .bind(finished_at)
    .bind(r.created_at)
    .bind(r.expires_at)
    .execute(c)
    .await?;
    Ok(())
}

// ----- the operations, each run inside `PostgresStore::tx` -----

async fn create_plan_tx(
    c: &mut PgConnection,
    plan: Plan,
    ctx: AuditContext,
) -> Result<(), Fail<StoreError>> {
    sqlx::query(
        "INSERT INTO plans (id, name, capacity, seats_left, unit_amount, currency, \"interval\", status, created_at, seq) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(plan.id.as_uuid())
    .bind(plan.name.as_str())
    .bind(plan.capacity.get() as i32)
    .bind(plan.seats_left as i32)
    .bind(plan.unit_amount.get())
    .bind(plan.currency.as_str())
    .bind(plan.interval.as_str())
    .bind(plan.status.as_str())
    .bind(plan.created_at)
    .bind(plan.seq as i64)
    .execute(&mut *c)
    .await?;
    insert_audit(c, &AuditEntry::plan_created(&plan, &ctx)).await?;
    Ok(())
}

async fn update_plan_tx(
    c: &mut PgConnection,
    id: PlanId,
    patch: PlanPatch,
    ctx: AuditContext,
    now: Timestamp,
) -> Result<Plan, Fail<UpdatePlanError>> {
    let mut plan = select_plan(c, id, true)
        .await?
        .ok_or(Fail::Rule(UpdatePlanError::NotFound(id)))?;
    let changes = plan.apply(&patch).map_err(|r| match r {
        PatchRejection::CapacityBelowHeld { held, requested } => {
            Fail::Rule(UpdatePlanError::CapacityBelowHeld { held, requested })
        }
    })?;
    if changes.is_empty() {
        return Ok(plan);
    }
    sqlx::query(
        "UPDATE plans SET name = $2, capacity = $3, seats_left = $4, status = $5, seq = $6 WHERE id = $1",
    )
    .bind(id.as_uuid())
    .bind(plan.name.as_str())
    .bind(plan.capacity.get() as i32)
    .bind(plan.seats_left as i32)
    .bind(plan.status.as_str())
    .bind(plan.seq as i64)
    .execute(&mut *c)
    .await?;
    for entry in AuditEntry::plan_changes(&plan, &changes, &ctx, now) {
        insert_audit(c, &entry).await?;
    }
    Ok(plan)
}

async fn plan_stats_tx(
    c: &mut PgConnection,
    id: PlanId,
) -> Result<Option<PlanStats>, Fail<StoreError>> {
    // One snapshot for the plan and the counts.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *c)
        .await?;
    let Some(plan) = select_plan(c, id, false).await? else {
        return Ok(None);
    };
    let counts = sqlx::query(
        "SELECT status, count(*) AS n FROM subscriptions WHERE plan_id = $1 GROUP BY status",
    )
    .bind(id.as_uuid())
    .fetch_all(&mut *c)
    .await?;
    let mut stats = PlanStats {
        plan_id: id,
        capacity: plan.capacity.get(),
        seats_left: plan.seats_left,
        incomplete: 0,
        active: 0,
        canceled: 0,
        incomplete_expired: 0,
        sold_out: plan.is_sold_out(),
    };
    for row in counts {
        let n = row.try_get::<i64, _>("n")? as u64;
        match rows::subscription_status(row.try_get("status")?)? {
            SubscriptionStatus::Incomplete => stats.incomplete = n,
            SubscriptionStatus::Active => stats.active = n,
            SubscriptionStatus::Canceled => stats.canceled = n,
            SubscriptionStatus::IncompleteExpired => stats.incomplete_expired = n,
        }
    }
    Ok(Some(stats))
}

async fn cancel_tx(
    c: &mut PgConnection,
    id: SubscriptionId,
    ctx: AuditContext,
    now: Timestamp,
) -> Result<Cancellation, Fail<CancelError>> {
    let sub = select_subscription_for_update(c, id)
        .await?
        .ok_or(Fail::Rule(CancelError::NotFound(id)))?;
    let (sub, seat_move) = match CancelDecision::of(sub, now).map_err(Fail::Rule)? {
        CancelDecision::AlreadyCanceled(answer) => return Ok(answer),
        CancelDecision::Cancel {
            subscription,
            seat_move,
        } => (subscription, seat_move),
    };
    update_subscription(c, &sub).await?;
    let plan = bump_plan(c, sub.plan_id, seat_move.delta.into()).await?;
    let entry = seat_move.entry_after(&plan, &ctx, now);
    insert_audit(c, &entry).await?;
    Ok(CancelDecision::answer(sub))
}

/// Inserts the fresh record of `claim` unless the key has one; returns whether it did.
async fn insert_fresh_key<'c>(
    c: impl sqlx::PgExecutor<'c>,
    claim: &ClaimKey,
    fresh: &IdempotencyRecord,
) -> Result<bool, sqlx::Error> {
    let lock_until = match &fresh.state {
        KeyState::Open { lock: Some(l) } => Some(l.until),
        _ => None,
    };
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, state, lock_owner, lock_until, created_at, expires_at) \
         VALUES ($1, $2, $3, 'open', $4, $5, $6, $7) ON CONFLICT (scope, key) DO NOTHING",
    )
    .bind(fresh.scope.as_str())
    .bind(fresh.key.as_str())
    .bind(fresh.fingerprint.as_str())
    .bind(claim.owner.as_uuid())
    .bind(lock_until)
    .bind(fresh.created_at)
    .bind(fresh.expires_at)
    .execute(c)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

async fn claim_tx(c: &mut PgConnection, claim: ClaimKey) -> Result<Claim, Fail<StoreError>> {
    let fresh = claim.fresh_record();
    let select = format!(
        "SELECT {KEY_COLUMNS} FROM idempotency_keys WHERE scope = $1 AND key = $2 FOR UPDATE"
    );
    // Insert, or lock what is there. Under READ COMMITTED each statement sees the latest
    // commit, so a record swept between the two statements is simply inserted next time.
    for _ in 0..3 {
        if insert_fresh_key(&mut *c, &claim, &fresh).await? {
            return Ok(Claim::Acquired(fresh));
        }
        let Some(row) = sqlx::query(&select)
            .bind(claim.scope.as_str())
            .bind(claim.key.as_str())
            .fetch_optional(&mut *c)
            .await?
        else {
            continue;
        };
        let existing = rows::key_record(&row)?;
        let decision = claim.decide(&existing);
        if let Claim::Acquired(record) = &decision {
            upsert_key(c, record).await?;
        }
        return Ok(decision);
    }
    Err(Fail::Db(corrupt(
        "an idempotency key kept vanishing while it was claimed",
    )))
}

/// The `payment_refunded` entry of a subscription, once (the unique partial index
/// enforces it too). Locks the subscription, then its plan.
async fn audit_refund(
    c: &mut PgConnection,
    id: SubscriptionId,
    payment_id: String,
    ctx: &AuditContext,
    now: Timestamp,
) -> Result<bool, sqlx::Error> {
    let Some(sub) = select_subscription_for_update(c, id).await? else {
        return Err(corrupt(format!("no subscription {id} to refund")));
    };
    let already: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM audit_entries WHERE subscription_id = $1 AND action = 'payment_refunded'",
    )
    .bind(id.as_uuid())
    .fetch_optional(&mut *c)
    .await?;
    if already.is_some() {
        return Ok(false);
    }
    let seat_move = SeatMove::refund(id, &payment_id);
    let plan = bump_plan(c, sub.plan_id, seat_move.delta.into()).await?;
    let entry = seat_move.entry_after(&plan, ctx, now);
    insert_audit(c, &entry).await?;
    Ok(true)
}

async fn claim_recovery_tx(
    c: &mut PgConnection,
    claim: ClaimRecovery,
) -> Result<Vec<RecoveryTask>, Fail<StoreError>> {
    let complete: Vec<uuid::Uuid> = sqlx::query_scalar(
        "WITH candidates AS ( \
             SELECT s.id FROM subscriptions s \
             WHERE s.status = 'incomplete' AND s.updated_at <= $1 \
               AND NOT EXISTS (SELECT 1 FROM recovery_tasks r WHERE r.subscription_id = s.id AND r.lease_until > $2) \
             ORDER BY s.updated_at LIMIT $5 \
             FOR UPDATE OF s SKIP LOCKED) \
         INSERT INTO recovery_tasks (subscription_id, phase, lease_owner, lease_until) \
         SELECT id, 'complete', $3, $4 FROM candidates \
         ON CONFLICT (subscription_id) DO UPDATE SET lease_owner = EXCLUDED.lease_owner, lease_until = EXCLUDED.lease_until \
         WHERE recovery_tasks.lease_until IS NULL OR recovery_tasks.lease_until <= $2 \
         RETURNING subscription_id",
    )
    .bind(claim.stale_before)
    .bind(claim.now)
    .bind(claim.owner.as_uuid())
    .bind(claim.lease_until)
    .bind(i64::from(claim.limit))
    .fetch_all(&mut *c)
    .await?;
    let room = i64::from(claim.limit) - complete.len() as i64;
    let verify: Vec<uuid::Uuid> = if room > 0 {
        sqlx::query_scalar(
            "UPDATE recovery_tasks SET lease_owner = $2, lease_until = $3 WHERE subscription_id IN ( \
                 SELECT subscription_id FROM recovery_tasks \
                 WHERE phase = 'verify' AND verify_after <= $1 AND (lease_until IS NULL OR lease_until <= $1) \
                 ORDER BY verify_after LIMIT $4 FOR UPDATE SKIP LOCKED) \
             RETURNING subscription_id",
        )
        .bind(claim.now)
        .bind(claim.owner.as_uuid())
        .bind(claim.lease_until)
        .bind(room)
        .fetch_all(&mut *c)
        .await?
    } else {
        Vec::new()
    };
    let ids: Vec<uuid::Uuid> = complete.iter().chain(&verify).copied().collect();
    let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ANY($1)");
    let rows = sqlx::query(&sql).bind(&ids).fetch_all(&mut *c).await?;
    let mut tasks = Vec::with_capacity(rows.len());
    for row in rows {
        let subscription = rows::subscription(&row)?;
        let phase = if verify.contains(&subscription.id.as_uuid()) {
            RecoveryPhase::Verify
        } else {
            RecoveryPhase::Complete
        };
        tasks.push(RecoveryTask {
            subscription,
            phase,
        });
    }
    Ok(tasks)
}

async fn finish_verification_tx(
    c: &mut PgConnection,
    id: SubscriptionId,
    owner: LockToken,
    refunded: Option<String>,
    ctx: AuditContext,
    now: Timestamp,
) -> Result<bool, Fail<StoreError>> {
    let ended = sqlx::query(
        "DELETE FROM recovery_tasks WHERE subscription_id = $1 AND lease_owner = $2 AND phase = 'verify'",
    )
    .bind(id.as_uuid())
    .bind(owner.as_uuid())
    .execute(&mut *c)
    .await?
    .rows_affected();
    if ended == 0 {
        return Ok(false);
    }
    if let Some(payment_id) = refunded {
        audit_refund(c, id, payment_id, &ctx, now).await?;
    }
    Ok(true)
}

async fn record_refund_tx(
    c: &mut PgConnection,
    id: SubscriptionId,
    payment_id: String,
    ctx: AuditContext,
    now: Timestamp,
) -> Result<bool, Fail<StoreError>> {
    Ok(audit_refund(c, id, payment_id, &ctx, now).await?)
}

async fn release_recovery_tx(
    c: &mut PgConnection,
    id: SubscriptionId,
    owner: LockToken,
) -> Result<bool, Fail<StoreError>> {
    // A `complete` lease is only a lease: the task comes back from the subscription's
    // status. A `verify` task stays, free for the next run.
    let removed = sqlx::query(
        "DELETE FROM recovery_tasks WHERE subscription_id = $1 AND lease_owner = $2 AND phase = 'complete'",
    )
    .bind(id.as_uuid())
    .bind(owner.as_uuid())
    .execute(&mut *c)
    .await?
    .rows_affected();
    if removed == 1 {
        return Ok(true);
    }
    let freed = sqlx::query(
        "UPDATE recovery_tasks SET lease_owner = NULL, lease_until = NULL WHERE subscription_id = $1 AND lease_owner = $2",
    )
    .bind(id.as_uuid())
    .bind(owner.as_uuid())
    .execute(&mut *c)
    .await?
    .rows_affected();
    Ok(freed == 1)
}

// ----- the ports -----

#[async_trait]
impl PlanRepository for PostgresStore {
    #[tracing::instrument(skip_all, fields(plan_id = %plan.id))]
    async fn create_plan(&self, plan: &Plan, ctx: &AuditContext) -> Result<(), StoreError> {
        self.tx(|c| Box::pin(create_plan_tx(c, plan.clone(), ctx.clone())))
            .await
    }

    async fn get_plan(&self, id: PlanId) -> Result<Option<Plan>, StoreError> {
        let mut c = self.pool.acquire().await.map_err(classify)?;
        select_plan(&mut c, id, false).await.map_err(classify)
    }

    async fn list_plans(&self, after: Option<PlanId>, limit: u32) -> Result<Vec<Plan>, StoreError> {
        let sql = format!(
            "SELECT {PLAN_COLUMNS} FROM plans WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(after.map(|a| a.as_uuid()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(rows::plan)
            .collect::<Result<_, _>>()
            .map_err(classify)
    }

    #[tracing::instrument(skip_all, fields(plan_id = %id))]
    async fn update_plan(
        &self,
        id: PlanId,
        patch: &PlanPatch,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<Plan, UpdatePlanError> {
        self.tx(|c| Box::pin(update_plan_tx(c, id, patch.clone(), ctx.clone(), now)))
            .await
    }

    async fn plan_stats(&self, id: PlanId) -> Result<Option<PlanStats>, StoreError> {
        self.tx(|c| Box::pin(plan_stats_tx(c, id))).await
    }
}

#[async_trait]
impl AuditLog for PostgresStore {
    async fn plan_audit(
        &self,
        plan_id: PlanId,
        after_seq: Option<u64>,
        limit: u32,
    ) -> Result<Option<Vec<AuditEntry>>, StoreError> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_entries WHERE plan_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(plan_id.as_uuid())
            .bind(after_seq.unwrap_or(0) as i64)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        if rows.is_empty() && self.get_plan(plan_id).await?.is_none() {
            return Ok(None);
        }
        rows.iter()
            .map(rows::audit_entry)
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
            .map_err(classify)
    }
}

#[async_trait]
impl SubscriptionRepository for PostgresStore {
    async fn get_subscription(
        &self,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1");
        sqlx::query(&sql)
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?
            .map(|r| rows::subscription(&r))
            .transpose()
            .map_err(classify)
    }

    async fn customer_subscriptions(
        &self,
        customer: &CustomerId,
        after: Option<SubscriptionId>,
        limit: u32,
    ) -> Result<Vec<Subscription>, StoreError> {
        let sql = format!(
            "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE customer_id = $1 AND ($2::uuid IS NULL OR id > $2) \
             ORDER BY id LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(customer.as_str())
            .bind(after.map(|a| a.as_uuid()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(rows::subscription)
            .collect::<Result<_, _>>()
            .map_err(classify)
    }

    #[tracing::instrument(skip_all, fields(subscription_id = %id))]
    async fn cancel_subscription(
        &self,
        id: SubscriptionId,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<Cancellation, CancelError> {
        self.tx(|c| Box::pin(cancel_tx(c, id, ctx.clone(), now)))
            .await
    }
}

#[async_trait]
impl IdempotencyRepository for PostgresStore {
    async fn claim_key(&self, claim: &ClaimKey) -> Result<Claim, StoreError> {
        // A purchase claims a new key with its reservation (`reserve_with_new_key`); a
        // claim comes here for a key that has a record, decided alone.
        self.tx(|c| Box::pin(claim_tx(c, claim.clone()))).await
    }

    async fn release_key(
        &self,
        scope: &CustomerId,
        key: &IdempotencyKey,
        owner: LockToken,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE idempotency_keys SET lock_owner = NULL, lock_until = NULL \
             WHERE scope = $1 AND key = $2 AND state = 'open' AND lock_owner = $3",
        )
        .bind(scope.as_str())
        .bind(key.as_str())
        .bind(owner.as_uuid())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge_expired_keys(&self, now: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected())
    }
}

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

#[async_trait]
impl RecoveryRepository for PostgresStore {
    async fn claim_recovery(&self, claim: &ClaimRecovery) -> Result<Vec<RecoveryTask>, StoreError> {
        self.tx(|c| Box::pin(claim_recovery_tx(c, claim.clone())))
            .await
    }

    async fn release_recovery(
        &self,
        id: SubscriptionId,
        owner: LockToken,
    ) -> Result<bool, StoreError> {
        self.tx(|c| Box::pin(release_recovery_tx(c, id, owner)))
            .await
    }

    async fn finish_verification(
        &self,
        id: SubscriptionId,
        owner: LockToken,
        refunded: Option<&str>,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let refunded = refunded.map(str::to_owned);
        self.tx(|c| {
            Box::pin(finish_verification_tx(
                c,
                id,
                owner,
                refunded.clone(),
                ctx.clone(),
                now,
            ))
        })
        .await
    }

    async fn record_refund(
        &self,
        id: SubscriptionId,
        payment_id: &str,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.tx(|c| {
            Box::pin(record_refund_tx(
                c,
                id,
                payment_id.to_owned(),
                ctx.clone(),
                now,
            ))
        })
        .await
    }

    async fn recovery_backlog(
        &self,
        stale_before: Timestamp,
    ) -> Result<RecoveryBacklog, StoreError> {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM subscriptions WHERE status = 'incomplete' AND updated_at <= $1) AS stale, \
                    (SELECT count(*) FROM recovery_tasks WHERE phase = 'verify') AS verify",
        )
        .bind(stale_before)
        .fetch_one(&self.pool)
        .await
        .map_err(classify)?;
        let count = |name: &str| row.try_get::<i64, _>(name).map(|n| n.max(0) as u64);
        Ok(RecoveryBacklog {
            stale_incomplete: count("stale").map_err(classify)?,
            pending_verifications: count("verify").map_err(classify)?,
        })
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
}
