//! The purchase phases as batches, for the [`Coalescer`](seatkeeper_coalesce::Coalescer): one
//! transaction reserves seats for many requests, or completes many purchases, of any
//! plans, with one lock of each plan row and one commit; the new keys that reservations
//! claim are inserted by one statement of the same transaction.
//!
//! Each request in a batch keeps the semantics of the port method it comes from: it is
//! checked, decided and written exactly as it would be alone, in queue order, as if the
//! requests had run one after another. A batch is all-or-nothing only in that a database
//! failure rolls all of it back (each request then fails, or is run again alone: see
//! `purchases::run_batch`). Locks are taken in the store's order: keys (sorted), subscriptions
//! (sorted), plans (sorted, last). A transaction reads and locks with a few statements
//! and then writes everything with one statement of data-modifying `WITH` parts, each
//! fed by arrays (`UNNEST`): the round trips of a batch do not grow with its size.

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use seatkeeper_domain::{
    ports::{
        ChargeResult, CompleteError, CompletePurchase, Completion, Reservation, ReserveError,
        ReserveSeat, ReserveWithNewKey,
    },
    AuditEntry, ClaimKey, KeyState, Plan, PlanId, PurchaseOutcome, RecoveryPoint, Subscription,
    SubscriptionStatus,
};
use sqlx::{postgres::PgArguments, query::Query, PgConnection, Postgres};
use uuid::Uuid;

use crate::{
    errors::corrupt,
    rows::{self, KEY_COLUMNS, PLAN_COLUMNS, SUBSCRIPTION_COLUMNS},
};

pub(crate) type Q<'q> = Query<'q, Postgres, PgArguments>;

// ----- one write statement made of parts -----

/// One part of a write statement: a statement over `UNNEST` of its arrays.
pub(crate) trait Part {
    /// The element types of its arrays, in bind order.
    const TYPES: &'static [&'static str];
    /// The statement, given the `UNNEST(...)` of its arrays.
    fn statement(unnest: &str) -> String;
    fn bind(self, q: Q<'_>) -> Q<'_>;
}

/// A part's array types and statement.
pub(crate) type PartSpec = (&'static [&'static str], fn(&str) -> String);

/// `WITH p0 AS (…), p1 AS (…) SELECT 1`: the parts as one statement, their arrays
/// numbered in the order of `parts`.
pub(crate) fn write_statement(parts: &[PartSpec]) -> String {
    let mut next = 1;
    let ctes: Vec<String> = parts
        .iter()
        .enumerate()
        .map(|(i, (types, statement))| {
            let arrays: Vec<String> = types
                .iter()
                .map(|t| {
                    next += 1;
                    format!("${}::{t}[]", next - 1)
                })
                .collect();
            format!(
                "p{i} AS ({})",
                statement(&format!("UNNEST({})", arrays.join(", ")))
            )
        })
        .collect();
    format!("WITH {} SELECT 1", ctes.join(", "))
}

macro_rules! part {
    ($t:ty) => {
        (
            <$t as Part>::TYPES,
            <$t as Part>::statement as fn(&str) -> String,
        )
    };
}
pub(crate) use part;

/// Plans whose seats and seq moved.
#[derive(Default)]
pub(crate) struct PlanWrites {
    id: Vec<Uuid>,
    seats_left: Vec<i32>,
    seq: Vec<i64>,
}

impl PlanWrites {
    /// Every plan of `plans` that moved since `before`.
    pub(crate) fn moved(plans: &BTreeMap<PlanId, Plan>, before: &BTreeMap<PlanId, Plan>) -> Self {
        let mut w = Self::default();
        for p in plans.values() {
            if before.get(&p.id()).is_none_or(|b| b.seq() != p.seq()) {
                w.id.push(p.id().as_uuid());
                w.seats_left.push(p.seats_left() as i32);
                w.seq.push(p.seq() as i64);
            }
        }
        w
    }
}

impl Part for PlanWrites {
    const TYPES: &'static [&'static str] = &["uuid", "int", "bigint"];
    fn statement(unnest: &str) -> String {
        format!(
            "UPDATE plans p SET seats_left = u.seats_left, seq = u.seq \
             FROM {unnest} AS u(id, seats_left, seq) WHERE p.id = u.id"
        )
    }
    fn bind(self, q: Q<'_>) -> Q<'_> {
        q.bind(self.id).bind(self.seats_left).bind(self.seq)
    }
}

/// Audit entries to append.
#[derive(Default)]
pub(crate) struct AuditInserts {
    plan_id: Vec<Uuid>,
    seq: Vec<i64>,
    id: Vec<Uuid>,
    at: Vec<DateTime<Utc>>,
    action: Vec<&'static str>,
    subscription_id: Vec<Option<Uuid>>,
    actor: Vec<String>,
    trace_id: Vec<String>,
    before: Vec<i32>,
    after: Vec<i32>,
    reason: Vec<Option<String>>,
}

impl AuditInserts {
    pub(crate) fn push(&mut self, e: AuditEntry) {
        self.plan_id.push(e.plan_id.as_uuid());
        self.seq.push(e.seq as i64);
        self.id.push(e.id.as_uuid());
        self.at.push(e.at);
        self.action.push(e.action.as_str());
        self.subscription_id
            .push(e.subscription_id.map(|s| s.as_uuid()));
        self.actor.push(e.actor.to_string());
        self.trace_id.push(e.trace_id.to_string());
        self.before.push(e.seats_left_before as i32);
        self.after.push(e.seats_left_after as i32);
        self.reason.push(e.reason);
    }
}

impl Part for AuditInserts {
    const TYPES: &'static [&'static str] = &[
        "uuid",
        "bigint",
        "uuid",
        "timestamptz",
        "text",
        "uuid",
        "text",
        "text",
        "int",
        "int",
        "text",
    ];
    fn statement(unnest: &str) -> String {
        format!(
            "INSERT INTO audit_entries (plan_id, seq, id, at, action, subscription_id, actor, trace_id, \
             seats_left_before, seats_left_after, reason) SELECT * FROM {unnest}"
        )
    }
    fn bind(self, q: Q<'_>) -> Q<'_> {
        q.bind(self.plan_id)
            .bind(self.seq)
            .bind(self.id)
            .bind(self.at)
            .bind(self.action)
            .bind(self.subscription_id)
            .bind(self.actor)
            .bind(self.trace_id)
            .bind(self.before)
            .bind(self.after)
            .bind(self.reason)
    }
}

/// What a subscription is made with and never changes, as arrays: its plan, customer,
/// payment method, price, key and creation time.
#[derive(Default)]
pub(crate) struct SubscriptionOrigins {
    plan_id: Vec<Uuid>,
    customer_id: Vec<String>,
    payment_method: Vec<String>,
    unit_amount: Vec<i64>,
    currency: Vec<String>,
    interval: Vec<String>,
    key: Vec<Option<String>>,
    created_at: Vec<DateTime<Utc>>,
}

impl SubscriptionOrigins {
    /// The arrays' element types, in bind order: the parts that embed these arrays list
    /// them in their own `TYPES`, which their tests compare with this.
    #[cfg(test)]
    pub(crate) const TYPES: [&'static str; 8] = [
        "uuid",
        "text",
        "text",
        "bigint",
        "text",
        "text",
        "text",
        "timestamptz",
    ];
    /// The columns they fill, in bind order.
    pub(crate) const COLUMNS: &'static str = "plan_id, customer_id, payment_method, unit_amount, \
         currency, \"interval\", idempotency_key, created_at";

    pub(crate) fn push(&mut self, s: &Subscription) {
        self.plan_id.push(s.plan_id().as_uuid());
        self.customer_id.push(s.customer_id().as_str().to_owned());
        self.payment_method
            .push(s.payment_method().as_str().to_owned());
        self.unit_amount.push(s.unit_amount().get());
        self.currency.push(s.currency().as_str().to_owned());
        self.interval.push(s.interval().as_str().to_owned());
        self.key
            .push(s.idempotency_key().as_ref().map(|k| k.as_str().to_owned()));
        self.created_at.push(s.created_at());
    }

    pub(crate) fn bind(self, q: Q<'_>) -> Q<'_> {
        q.bind(self.plan_id)
            .bind(self.customer_id)
            .bind(self.payment_method)
            .bind(self.unit_amount)
            .bind(self.currency)
            .bind(self.interval)
            .bind(self.key)
            .bind(self.created_at)
    }
}

/// Freshly reserved (`incomplete`) subscriptions to insert.
#[derive(Default)]
struct IncompleteInserts {
    id: Vec<Uuid>,
    origins: SubscriptionOrigins,
}

impl IncompleteInserts {
    fn push(&mut self, s: &Subscription) {
        self.id.push(s.id().as_uuid());
        self.origins.push(s);
    }
}

impl Part for IncompleteInserts {
    const TYPES: &'static [&'static str] = &[
        "uuid",
        // SubscriptionOrigins::TYPES:
        "uuid",
        "text",
        "text",
        "bigint",
        "text",
        "text",
        "text",
        "timestamptz",
    ];
    fn statement(unnest: &str) -> String {
        format!(
            "INSERT INTO subscriptions (id, {}, status, updated_at) \
             SELECT u.*, 'incomplete', u.created_at \
             FROM {unnest} AS u(id, plan_id, customer_id, method, amount, currency, interval, key, \
             created_at)",
            SubscriptionOrigins::COLUMNS
        )
    }
    fn bind(self, q: Q<'_>) -> Q<'_> {
        self.origins.bind(q.bind(self.id))
    }
}

/// Keys whose purchase reserved its subscription: their recovery point.
#[derive(Default)]
struct RecoveryPoints {
    scope: Vec<String>,
    key: Vec<String>,
    subscription_id: Vec<Uuid>,
}

impl Part for RecoveryPoints {
    const TYPES: &'static [&'static str] = &["text", "text", "uuid"];
    fn statement(unnest: &str) -> String {
        format!(
            "UPDATE idempotency_keys k SET recovery_subscription_id = u.sub \
             FROM {unnest} AS u(scope, key, sub) WHERE k.scope = u.scope AND k.key = u.key"
        )
    }
    fn bind(self, q: Q<'_>) -> Q<'_> {
        q.bind(self.scope).bind(self.key).bind(self.subscription_id)
    }
}

/// Keys to finish with an outcome. `purchase` narrows a row to the key whose recovery
/// point is that subscription: a record replaced by a newer purchase is left alone.
#[derive(Default)]
struct FinishedKeys {
    scope: Vec<String>,
    key: Vec<String>,
    outcome: Vec<serde_json::Value>,
    request_id: Vec<String>,
    at: Vec<DateTime<Utc>>,
    purchase: Vec<Option<Uuid>>,
}

impl FinishedKeys {
    fn push(
        &mut self,
        scope: &str,
        key: &str,
        outcome: &PurchaseOutcome,
        request_id: &str,
        at: DateTime<Utc>,
        purchase: Option<Uuid>,
    ) -> Result<(), sqlx::Error> {
        self.outcome
            .push(serde_json::to_value(outcome).map_err(corrupt)?);
        self.scope.push(scope.to_owned());
        self.key.push(key.to_owned());
        self.request_id.push(request_id.to_owned());
        self.at.push(at);
        self.purchase.push(purchase);
        Ok(())
    }
}

impl Part for FinishedKeys {
    const TYPES: &'static [&'static str] =
        &["text", "text", "jsonb", "text", "timestamptz", "uuid"];
    fn statement(unnest: &str) -> String {
        format!(
            "UPDATE idempotency_keys k SET state = 'finished', outcome = u.outcome, \
             outcome_request_id = u.request_id, finished_at = u.at, lock_owner = NULL, lock_until = NULL \
             FROM {unnest} AS u(scope, key, outcome, request_id, at, purchase) \
             WHERE k.scope = u.scope AND k.key = u.key AND k.state = 'open' \
             AND (u.purchase IS NULL OR k.recovery_subscription_id = u.purchase)"
        )
    }
    fn bind(self, q: Q<'_>) -> Q<'_> {
        q.bind(self.scope)
            .bind(self.key)
            .bind(self.outcome)
            .bind(self.request_id)
            .bind(self.at)
            .bind(self.purchase)
    }
}

/// Completed subscriptions: their new state (every column a change may write).
#[derive(Default)]
pub(crate) struct CompletedSubscriptions {
    id: Vec<Uuid>,
    status: Vec<&'static str>,
    payment_id: Vec<Option<String>>,
    period_start: Vec<Option<DateTime<Utc>>>,
    period_end: Vec<Option<DateTime<Utc>>>,
    updated_at: Vec<DateTime<Utc>>,
    canceled_at: Vec<Option<DateTime<Utc>>>,
    failure_reason: Vec<Option<String>>,
}

impl CompletedSubscriptions {
    pub(crate) fn push(&mut self, s: &Subscription) {
        self.id.push(s.id().as_uuid());
        self.status.push(s.status().as_str());
        self.payment_id.push(s.payment_id().map(str::to_owned));
        self.period_start.push(s.current_period_start());
        self.period_end.push(s.current_period_end());
        self.updated_at.push(s.updated_at());
        self.canceled_at.push(s.canceled_at());
        self.failure_reason
            .push(s.failure_reason().map(str::to_owned));
    }
}

impl Part for CompletedSubscriptions {
    const TYPES: &'static [&'static str] = &[
        "uuid",
        "text",
        "text",
        "timestamptz",
        "timestamptz",
        "timestamptz",
        "timestamptz",
        "text",
    ];
    fn statement(unnest: &str) -> String {
        format!(
            "UPDATE subscriptions s SET status = u.status, payment_id = u.payment_id, \
             current_period_start = u.period_start, current_period_end = u.period_end, \
             updated_at = u.updated_at, canceled_at = u.canceled_at, failure_reason = u.failure_reason \
             FROM {unnest} AS u(id, status, payment_id, period_start, period_end, updated_at, canceled_at, \
             failure_reason) WHERE s.id = u.id"
        )
    }
    fn bind(self, q: Q<'_>) -> Q<'_> {
        q.bind(self.id)
            .bind(self.status)
            .bind(self.payment_id)
            .bind(self.period_start)
            .bind(self.period_end)
            .bind(self.updated_at)
            .bind(self.canceled_at)
            .bind(self.failure_reason)
    }
}

/// Recovery tasks that end with their purchase's completion (their lease with them).
#[derive(Default)]
struct EndedTasks {
    subscription_id: Vec<Uuid>,
}

impl Part for EndedTasks {
    const TYPES: &'static [&'static str] = &["uuid"];
    fn statement(unnest: &str) -> String {
        format!(
            "DELETE FROM recovery_tasks t USING {unnest} AS u(id) WHERE t.subscription_id = u.id"
        )
    }
    fn bind(self, q: Q<'_>) -> Q<'_> {
        q.bind(self.subscription_id)
    }
}

/// Late-charge checks that completions schedule, each replacing any task of its
/// subscription (and ending its lease).
#[derive(Default)]
struct VerifyTasks {
    subscription_id: Vec<Uuid>,
    verify_after: Vec<DateTime<Utc>>,
}

impl Part for VerifyTasks {
    const TYPES: &'static [&'static str] = &["uuid", "timestamptz"];
    fn statement(unnest: &str) -> String {
        format!(
            "INSERT INTO recovery_tasks (subscription_id, phase, verify_after) \
             SELECT u.id, 'verify', u.at FROM {unnest} AS u(id, at) \
             ON CONFLICT (subscription_id) DO UPDATE SET phase = 'verify', \
             verify_after = EXCLUDED.verify_after, lease_owner = NULL, lease_until = NULL"
        )
    }
    fn bind(self, q: Q<'_>) -> Q<'_> {
        q.bind(self.subscription_id).bind(self.verify_after)
    }
}

// ----- reading and locking -----

/// Locks the listed keys in (scope, key) order and returns the records found.
async fn lock_keys(
    c: &mut PgConnection,
    keys: &[(String, String)],
) -> Result<HashMap<(String, String), seatkeeper_domain::IdempotencyRecord>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let (scopes, names): (Vec<&str>, Vec<&str>) =
        keys.iter().map(|(s, k)| (s.as_str(), k.as_str())).unzip();
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM idempotency_keys \
         WHERE (scope, key) IN (SELECT * FROM UNNEST($1::text[], $2::text[])) \
         ORDER BY scope, key FOR UPDATE"
    );
    let rows = sqlx::query(&sql)
        .bind(scopes)
        .bind(names)
        .fetch_all(&mut *c)
        .await?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in &rows {
        let record = rows::key_record(row)?;
        found.insert(
            (
                record.scope().as_str().to_owned(),
                record.key().as_str().to_owned(),
            ),
            record,
        );
    }
    Ok(found)
}

/// Locks the listed plans in id order and returns those that exist.
pub(crate) async fn lock_plans(
    c: &mut PgConnection,
    ids: impl IntoIterator<Item = PlanId>,
) -> Result<BTreeMap<PlanId, Plan>, sqlx::Error> {
    let ids: Vec<Uuid> = ids
        .into_iter()
        .map(|id| id.as_uuid())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let sql = format!("SELECT {PLAN_COLUMNS} FROM plans WHERE id = ANY($1) ORDER BY id FOR UPDATE");
    let mut plans = BTreeMap::new();
    for row in sqlx::query(&sql).bind(&ids).fetch_all(&mut *c).await? {
        let plan = rows::plan(&row)?;
        plans.insert(plan.id(), plan);
    }
    Ok(plans)
}

// ----- the phases -----

/// A reservation as a batch takes it.
#[derive(Debug, Clone)]
pub(crate) enum Reserve {
    /// [`PurchaseRepository::reserve_seat`](seatkeeper_domain::ports::PurchaseRepository::reserve_seat):
    /// under a key the caller holds.
    Held(ReserveSeat),
    /// [`PurchaseRepository::reserve_with_new_key`](seatkeeper_domain::ports::PurchaseRepository::reserve_with_new_key):
    /// under a key the same transaction claims.
    New(ReserveWithNewKey),
}

impl Reserve {
    fn seat(&self) -> &ReserveSeat {
        match self {
            Self::Held(seat) => seat,
            Self::New(cmd) => cmd.seat(),
        }
    }
}

/// What a batch did for one [`Reserve`].
#[allow(clippy::large_enum_variant)] // as `NewKeyReservation`: one per request, never kept
#[derive(Debug)]
pub(crate) enum Reserved {
    /// The reservation ran (under a new key: the key is claimed).
    Seat(Reservation),
    /// A new key had a record already: nothing was done for this request.
    KeyExists,
}

/// The reservations of `reqs`, of any plans, in one transaction: claim the new keys, lock
/// the held ones, lock the plans, write.
pub(crate) async fn reserve_tx(
    c: &mut PgConnection,
    reqs: Vec<Reserve>,
) -> Result<Vec<Result<Reserved, ReserveError>>, sqlx::Error> {
    let new_keys: Vec<&ClaimKey> = reqs
        .iter()
        .filter_map(|r| match r {
            Reserve::New(cmd) => Some(cmd.claim()),
            Reserve::Held(_) => None,
        })
        .collect();
    let claimed = insert_fresh_keys(c, &new_keys).await?;
    let wanted: Vec<(String, String)> = reqs
        .iter()
        .filter_map(|r| match r {
            Reserve::Held(cmd) => Some((
                cmd.customer_id.as_str().to_owned(),
                cmd.key.as_str().to_owned(),
            )),
            Reserve::New(_) => None,
        })
        .collect();
    let keys = lock_keys(c, &wanted).await?;
    // Who may reserve: a new key this transaction inserted for its owner; a held key
    // that is still its caller's and has reserved nothing. A key appears at most once.
    let mut taken = HashSet::new();
    let holds: Vec<Option<bool>> = reqs
        .iter()
        .map(|req| {
            let cmd = req.seat();
            let id = (cmd.customer_id.as_str(), cmd.key.as_str());
            match req {
                Reserve::New(_) if !claimed.contains(&cmd.owner.as_uuid()) => None,
                Reserve::New(_) => Some(taken.insert(id)),
                Reserve::Held(_) => Some(
                    keys.get(&(id.0.to_owned(), id.1.to_owned()))
                        .is_some_and(|k| {
                            k.is_locked_by(cmd.owner) && *k.recovery() == RecoveryPoint::Started
                        })
                        && taken.insert(id),
                ),
            }
        })
        .collect();
    let refused = |hold: &Option<bool>| match hold {
        None => Ok(Reserved::KeyExists),
        Some(_) => Err(ReserveError::LockLost),
    };
    if !holds.contains(&Some(true)) {
        return Ok(holds.iter().map(refused).collect());
    }
    let cmds: Vec<&ReserveSeat> = reqs.iter().map(Reserve::seat).collect();

    let held = cmds.iter().zip(&holds).filter(|(_, h)| **h == Some(true));
    let mut plans = lock_plans(c, held.map(|(cmd, _)| cmd.plan_id)).await?;
    let before = plans.clone();
    let mut answers = Vec::with_capacity(cmds.len());
    let mut subs = IncompleteInserts::default();
    let mut entries = AuditInserts::default();
    let mut points = RecoveryPoints::default();
    let mut finished = FinishedKeys::default();
    for (cmd, hold) in cmds.iter().zip(&holds) {
        if *hold != Some(true) {
            answers.push(refused(hold));
            continue;
        }
        let plan = plans.get_mut(&cmd.plan_id);
        if let Some(outcome) = cmd.rejection(plan.as_deref()) {
            finished.push(
                cmd.customer_id.as_str(),
                cmd.key.as_str(),
                &outcome,
                &cmd.request_id,
                cmd.now,
                None,
            )?;
            answers.push(Ok(Reserved::Seat(Reservation::Rejected(outcome))));
            continue;
        }
        let (sub, entry) = cmd.take_seat(plan.expect("a plan that gives a seat exists"));
        entries.push(entry);
        subs.push(&sub);
        points.scope.push(cmd.customer_id.as_str().to_owned());
        points.key.push(cmd.key.as_str().to_owned());
        points.subscription_id.push(sub.id().as_uuid());
        answers.push(Ok(Reserved::Seat(Reservation::Reserved(sub))));
    }

    let sql = write_statement(&[
        part!(PlanWrites),
        part!(IncompleteInserts),
        part!(AuditInserts),
        part!(RecoveryPoints),
        part!(FinishedKeys),
    ]);
    let q = PlanWrites::moved(&plans, &before).bind(sqlx::query(&sql));
    let q = finished.bind(points.bind(entries.bind(subs.bind(q))));
    q.execute(&mut *c).await?;
    Ok(answers)
}

/// [`PurchaseRepository::complete_purchase`](seatkeeper_domain::ports::PurchaseRepository::complete_purchase)
/// for every request of `cmds`, of any plans, in one transaction: lock the keys (found
/// through the subscriptions, whose customer and key never change) and the
/// subscriptions with one statement, write them, then lock the plans and write them with
/// the audit.
pub(crate) async fn complete_tx(
    c: &mut PgConnection,
    cmds: Vec<CompletePurchase>,
) -> Result<Vec<Result<Completion, CompleteError>>, sqlx::Error> {
    let mut ids: Vec<Uuid> = cmds.iter().map(|c| c.subscription_id.as_uuid()).collect();
    ids.sort_unstable();
    ids.dedup();
    // One statement, two locks in the store's order: the keys first (an init plan, run
    // once before the scan: `tests/indexes.rs` checks the plan), then the subscriptions.
    let sql = format!(
        "WITH k AS (SELECT 1 FROM idempotency_keys WHERE (scope, key) IN \
         (SELECT customer_id, idempotency_key FROM subscriptions WHERE id = ANY($1) AND idempotency_key IS NOT NULL) \
         ORDER BY scope, key FOR UPDATE) \
         SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions \
         WHERE id = ANY($1) AND (SELECT count(*) FROM k) >= 0 ORDER BY id FOR UPDATE"
    );
    let mut subs = HashMap::with_capacity(ids.len());
    for row in sqlx::query(&sql).bind(&ids).fetch_all(&mut *c).await? {
        let sub = rows::subscription(&row)?;
        subs.insert(sub.id(), sub);
    }

    // Decide each in queue order, as if alone.
    let mut answers: Vec<Result<Completion, CompleteError>> = Vec::with_capacity(cmds.len());
    let mut changes = Vec::new(); // per completed purchase: (its command, its plan, its seat move)
    let mut completed = CompletedSubscriptions::default();
    let mut ended = EndedTasks::default();
    let mut verify = VerifyTasks::default();
    let mut finished = FinishedKeys::default();
    for cmd in &cmds {
        let id = cmd.subscription_id;
        let Some(sub) = subs.get_mut(&id) else {
            answers.push(Err(CompleteError::NotFound(id)));
            continue;
        };
        if sub.status() != SubscriptionStatus::Incomplete {
            answers.push(Err(CompleteError::NotIncomplete(Box::new(sub.clone()))));
            continue;
        }
        let change = cmd.apply(sub);
        completed.push(sub);
        match (cmd.verify_after, &cmd.result) {
            (Some(at), ChargeResult::Declined { .. }) => {
                verify.subscription_id.push(id.as_uuid());
                verify.verify_after.push(at);
            }
            _ => ended.subscription_id.push(id.as_uuid()),
        }
        if let Some(key) = &sub.idempotency_key() {
            finished.push(
                sub.customer_id().as_str(),
                key.as_str(),
                &change.outcome,
                &cmd.request_id,
                cmd.now,
                Some(id.as_uuid()),
            )?;
        }
        changes.push((cmd, sub.plan_id(), change.seat_move(id)));
        answers.push(Ok(Completion {
            outcome: change.outcome,
        }));
    }
    if changes.is_empty() {
        return Ok(answers);
    }
    let sql = write_statement(&[
        part!(CompletedSubscriptions),
        part!(EndedTasks),
        part!(VerifyTasks),
        part!(FinishedKeys),
    ]);
    let q = completed.bind(sqlx::query(&sql));
    finished
        .bind(verify.bind(ended.bind(q)))
        .execute(&mut *c)
        .await?;

    // The plan rows last, in id order: locked for one statement and the commit.
    let mut plans = lock_plans(c, changes.iter().map(|(_, plan, ..)| *plan)).await?;
    let before = plans.clone();
    let mut entries = AuditInserts::default();
    for (cmd, plan_id, seat_move) in changes {
        let plan = plans
            .get_mut(&plan_id)
            .ok_or_else(|| corrupt(format!("plan {plan_id} vanished")))?;
        entries.push(plan.move_seats(seat_move, &cmd.ctx, cmd.now));
    }
    let sql = write_statement(&[part!(PlanWrites), part!(AuditInserts)]);
    let q = PlanWrites::moved(&plans, &before).bind(sqlx::query(&sql));
    entries.bind(q).execute(&mut *c).await?;
    Ok(answers)
}

/// Inserts the fresh record of each claim whose key has none, with one statement;
/// returns the owners of the claims it inserted. A key that has a record, or that an
/// earlier claim of the same call took, is not inserted.
async fn insert_fresh_keys(
    c: &mut PgConnection,
    claims: &[&ClaimKey],
) -> Result<HashSet<Uuid>, sqlx::Error> {
    if claims.is_empty() {
        return Ok(HashSet::new());
    }
    let n = claims.len();
    let mut first = HashSet::with_capacity(n);
    let (mut scope, mut key, mut fingerprint, mut owner) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut until, mut created, mut expires) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    // In (scope, key) order, so that two batches inserting the same keys (two
    // instances) wait for each other in one direction and never deadlock.
    let mut sorted: Vec<&ClaimKey> = claims.to_vec();
    sorted.sort_by(|a, b| {
        (a.scope.as_str(), a.key.as_str()).cmp(&(b.scope.as_str(), b.key.as_str()))
    });
    for claim in sorted {
        if !first.insert((claim.scope.as_str(), claim.key.as_str())) {
            continue;
        }
        let fresh = claim.fresh_record();
        let KeyState::Open { lock: Some(lock) } = &fresh.state() else {
            unreachable!("a fresh record is open and locked")
        };
        scope.push(claim.scope.as_str());
        key.push(claim.key.as_str());
        fingerprint.push(claim.fingerprint.as_str());
        owner.push(lock.owner.as_uuid());
        until.push(lock.until);
        created.push(fresh.created_at());
        expires.push(fresh.expires_at());
    }
    let rows = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, state, lock_owner, lock_until, created_at, expires_at) \
         SELECT u.scope, u.key, u.fingerprint, 'open', u.owner, u.until, u.created, u.expires \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::uuid[], $5::timestamptz[], $6::timestamptz[], \
         $7::timestamptz[]) AS u(scope, key, fingerprint, owner, until, created, expires) \
         ON CONFLICT (scope, key) DO NOTHING RETURNING lock_owner",
    )
    .bind(scope)
    .bind(key)
    .bind(fingerprint)
    .bind(owner)
    .bind(until)
    .bind(created)
    .bind(expires)
    .fetch_all(&mut *c)
    .await?;
    let mut inserted = HashSet::with_capacity(rows.len());
    for row in &rows {
        use sqlx::Row;
        inserted.insert(row.try_get::<Uuid, _>("lock_owner")?);
    }
    Ok(inserted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserved_subscription_s_arrays_are_its_id_and_then_its_origins() {
        assert_eq!(IncompleteInserts::TYPES[0], "uuid");
        assert_eq!(&IncompleteInserts::TYPES[1..], SubscriptionOrigins::TYPES);
    }
}
