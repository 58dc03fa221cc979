//! The checkout steps as batches, for the store's third coalescer: openings
//! ([`CheckoutRepository::open_checkout`]) and changes
//! ([`CheckoutRepository::change_checkout`]).
//!
//! An opening and a change that may move a seat ([`CheckoutChange::may_need_plan`]: a
//! payment, an expiry, a refund) lock their plan row, so one at a time they queue on a hot
//! plan: a lock, four to six statements and a commit each. A batch takes every step that
//! arrived while the previous batch ran, with one lock of each plan row and one commit.
//! The changes that write their session only (an intent attached, a failed payment) have
//! a coalescer of their own, whose batches lock nothing (`session_batch.rs`); those of
//! them whose session changed under them come back here.
//!
//! Under load a batch's time is its round trips, each a wake-up of the server and of
//! this process on busy cores, far more than its rows: measured on the hot plan at 64
//! connections, batches of 4.4 session changes took as long as batches of 9.3 (3.4 ms,
//! four round trips). So a batch makes as few as it can, whatever its size:
//! - `BEGIN`;
//! - one statement locks the sessions its changes name (sorted), then the plans of its
//!   openings and seat-moving changes (sorted) — the crate's lock order;
//! - under the plan locks, one statement reads the changed sessions, the session each
//!   opening's key opened and each opening customer's open sessions on its plan, which
//!   only a step holding that plan's lock can change (three index lookups joined to the
//!   steps' arrays, `UNION ALL`; an `OR` would walk the whole table);
//! - the domain's [`CheckoutBatch`] decides the steps in queue order on those rows, and
//!   one statement of `WITH` parts writes the new sessions, the changed sessions, the new
//!   subscriptions, the plans and the audit entries;
//! - `COMMIT`.
//!
//! A batch of session changes only (those `session_batch.rs` sends back) locks and reads
//! its sessions with one statement: `BEGIN`, that, the write and `COMMIT`.
//!
//! One key opened on two plans at once is not serialised by any plan lock: the loser's
//! session insert waits for the winner's commit and fails on the unique `(customer_id,
//! idempotency_key)` constraint, the batch rolls back, and its steps run again alone
//! (`checkouts.rs`), where an opening decides against the winner's session.
//!
//! [`CheckoutRepository::open_checkout`]: seatkeeper_domain::ports::CheckoutRepository::open_checkout
//! [`CheckoutRepository::change_checkout`]: seatkeeper_domain::ports::CheckoutRepository::change_checkout
//! [`CheckoutChange::may_need_plan`]: seatkeeper_domain::CheckoutChange::may_need_plan

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, Utc};
use seatkeeper_domain::{
    ports::{ChangeCheckoutError, Changed, CheckoutBatch, OpenCheckoutError, Opened, StoreError},
    ChangeCheckout, CheckoutSession, OpenCheckout, Plan, PlanId, Subscription,
};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    batch::{
        part, write_statement, AuditInserts, CompletedSubscriptions, Part, PlanWrites,
        SubscriptionOrigins, Q,
    },
    rows::{self, CHECKOUT_COLUMNS, PLAN_COLUMNS},
};

/// A checkout step as a batch takes it.
#[derive(Debug, Clone)]
pub(crate) enum CheckoutStep {
    Open(OpenCheckout),
    Change(ChangeCheckout),
}

/// What a batch did for one [`CheckoutStep`].
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // one per request, never kept
pub(crate) enum CheckoutDone {
    Opened(Result<Opened, OpenCheckoutError>),
    Changed(Result<Changed, ChangeCheckoutError>),
    /// The step's batch was lost (its task died): nothing is known of it.
    Failed(StoreError),
}

/// Every step of `steps`, in one transaction.
pub(crate) async fn checkout_tx(
    c: &mut PgConnection,
    steps: Vec<CheckoutStep>,
) -> Result<Vec<CheckoutDone>, sqlx::Error> {
    let mut changed_ids: Vec<Uuid> = steps
        .iter()
        .filter_map(|st| match st {
            CheckoutStep::Change(cmd) => Some(cmd.session_id.as_uuid()),
            CheckoutStep::Open(_) => None,
        })
        .collect();
    changed_ids.sort();
    changed_ids.dedup();
    let opens: Vec<&OpenCheckout> = steps
        .iter()
        .filter_map(|st| match st {
            CheckoutStep::Open(cmd) => Some(cmd),
            CheckoutStep::Change(_) => None,
        })
        .collect();
    // The sessions whose change may move a seat: their plans are locked with the openings'.
    let mut movers: Vec<Uuid> = steps
        .iter()
        .filter_map(|st| match st {
            CheckoutStep::Change(cmd) if cmd.change.may_need_plan() => {
                Some(cmd.session_id.as_uuid())
            }
            _ => None,
        })
        .collect();
    movers.sort();
    movers.dedup();
    let (sessions, mut plans) = match opens.is_empty() && movers.is_empty() {
        // Changes of sessions only: their lock is their read.
        true => {
            let sql = sessions_where("id = ANY($1) ORDER BY id FOR UPDATE");
            let q = sqlx::query(&sql).bind(changed_ids);
            (select_sessions(c, q).await?, BTreeMap::new())
        }
        false => {
            let plans = lock_sessions_then_plans(c, &changed_ids, &opens, &movers).await?;
            (read_sessions(c, changed_ids, &opens).await?, plans)
        }
    };
    let before = plans.clone();
    let mut batch = CheckoutBatch::new(sessions);
    let mut subs = SubscriptionInserts::default();
    let mut entries = AuditInserts::default();
    let mut answers = Vec::with_capacity(steps.len());
    for step in &steps {
        answers.push(match step {
            CheckoutStep::Open(cmd) => {
                CheckoutDone::Opened(batch.open(cmd, &mut plans).map(|(opened, entry)| {
                    entry.into_iter().for_each(|e| entries.push(e));
                    opened
                }))
            }
            CheckoutStep::Change(cmd) => {
                let changed = batch.change(cmd, &mut plans);
                if let Ok(changed) = &changed {
                    if let Some(sub) = &changed.applied.subscription {
                        subs.push(sub);
                    }
                    for entry in &changed.applied.entries {
                        entries.push(entry.clone());
                    }
                }
                CheckoutDone::Changed(changed)
            }
        });
    }
    let writes = batch.writes();
    let mut new = SessionRows::default();
    writes.new.iter().for_each(|s| new.push(s));
    let mut changed = SessionRows::default();
    writes.changed.iter().for_each(|(_, now)| changed.push(now));
    let sql = write_statement(&[
        part!(SessionInserts),
        part!(SessionUpdates),
        part!(SubscriptionInserts),
        part!(PlanWrites),
        part!(AuditInserts),
    ]);
    let q = SessionInserts(new).bind(sqlx::query(&sql));
    let q = SessionUpdates(changed).bind(q);
    let q = entries.bind(PlanWrites::moved(&plans, &before).bind(subs.bind(q)));
    q.execute(&mut *c).await?;
    Ok(answers)
}

/// Locks the changed sessions (in id order), then the plans of the openings and of the
/// sessions whose change may move a seat (in id order), with one statement, and answers
/// the plans. The sessions' lock is an init plan behind a one-time filter, which runs
/// before the plans are scanned (`tests/indexes.rs` checks the plan); a session's plan
/// never changes, so it is read from the session without waiting for its lock.
async fn lock_sessions_then_plans(
    c: &mut PgConnection,
    changed: &[Uuid],
    opens: &[&OpenCheckout],
    movers: &[Uuid],
) -> Result<BTreeMap<PlanId, Plan>, sqlx::Error> {
    let mut opened: Vec<Uuid> = opens.iter().map(|cmd| cmd.plan_id.as_uuid()).collect();
    opened.sort();
    opened.dedup();
    let sql = format!(
        "WITH s AS (SELECT 1 FROM checkout_sessions WHERE id = ANY($1) ORDER BY id FOR UPDATE) \
         SELECT {PLAN_COLUMNS} FROM plans WHERE id = ANY($2::uuid[] || \
         ARRAY(SELECT plan_id FROM checkout_sessions WHERE id = ANY($3))) \
         AND (SELECT count(*) FROM s) >= 0 ORDER BY id FOR UPDATE"
    );
    let rows = sqlx::query(&sql)
        .bind(changed)
        .bind(opened)
        .bind(movers)
        .fetch_all(&mut *c)
        .await?;
    let mut plans = BTreeMap::new();
    for row in &rows {
        let plan = rows::plan(row)?;
        plans.insert(plan.id(), plan);
    }
    Ok(plans)
}

/// Under the plans' locks, with one statement: the changed sessions (locked before), the
/// session each opening's key opened, and each opening customer's open sessions on its
/// plan, which only a step holding that plan's lock can change. Three index lookups,
/// `UNION ALL` (an `OR` would walk the whole table); a session found twice keeps its
/// first copy.
async fn read_sessions(
    c: &mut PgConnection,
    changed: Vec<Uuid>,
    opens: &[&OpenCheckout],
) -> Result<Vec<CheckoutSession>, sqlx::Error> {
    let customers: Vec<&str> = opens.iter().map(|cmd| cmd.customer_id.as_str()).collect();
    let keys: Vec<&str> = opens.iter().map(|cmd| cmd.key.as_str()).collect();
    let plan_of: Vec<Uuid> = opens.iter().map(|cmd| cmd.plan_id.as_uuid()).collect();
    let sql = format!(
        "{} UNION ALL {} UNION ALL {}",
        sessions_where("id = ANY($1)"),
        sessions_where(
            "(customer_id, idempotency_key) IN (SELECT * FROM UNNEST($2::text[], $3::text[]))"
        ),
        sessions_where(
            "status = 'open' AND (plan_id, customer_id) IN \
             (SELECT * FROM UNNEST($4::uuid[], $2::text[]))"
        )
    );
    let q = sqlx::query(&sql)
        .bind(changed)
        .bind(customers)
        .bind(keys)
        .bind(plan_of);
    let mut seen = HashSet::new();
    let mut sessions = select_sessions(c, q).await?;
    sessions.retain(|s| seen.insert(s.id()));
    Ok(sessions)
}

/// The query of the sessions matching `condition`.
pub(crate) fn sessions_where(condition: &str) -> String {
    format!("SELECT {CHECKOUT_COLUMNS} FROM checkout_sessions WHERE {condition}")
}

/// The sessions a query of [`sessions_where`] finds.
async fn select_sessions(
    c: &mut PgConnection,
    q: Q<'_>,
) -> Result<Vec<CheckoutSession>, sqlx::Error> {
    q.fetch_all(&mut *c)
        .await?
        .iter()
        .map(rows::checkout_session)
        .collect()
}

/// Sessions as arrays, one per column of [`CHECKOUT_COLUMNS`].
#[derive(Default)]
pub(crate) struct SessionRows {
    pub(crate) id: Vec<Uuid>,
    pub(crate) plan_id: Vec<Uuid>,
    pub(crate) customer_id: Vec<String>,
    pub(crate) subscription_id: Vec<Uuid>,
    pub(crate) idempotency_key: Vec<String>,
    pub(crate) fingerprint: Vec<String>,
    pub(crate) amount: Vec<i64>,
    pub(crate) currency: Vec<String>,
    pub(crate) status: Vec<&'static str>,
    pub(crate) payment_intent_id: Vec<Option<String>>,
    pub(crate) client_secret: Vec<Option<String>>,
    pub(crate) payment_error: Vec<Option<String>>,
    pub(crate) intent_closed: Vec<bool>,
    pub(crate) late_payment_id: Vec<Option<String>>,
    pub(crate) late_payment_refunded: Vec<Option<bool>>,
    pub(crate) created_at: Vec<DateTime<Utc>>,
    pub(crate) expires_at: Vec<DateTime<Utc>>,
    pub(crate) updated_at: Vec<DateTime<Utc>>,
    pub(crate) ended_at: Vec<Option<DateTime<Utc>>>,
    pub(crate) expiry: Vec<Option<&'static str>>,
    pub(crate) check_at: Vec<Option<DateTime<Utc>>>,
}

impl SessionRows {
    /// Binds the arrays of every field a change may make ([`SessionUpdates`]'s but the id).
    pub(crate) fn bind_state(self, q: Q<'_>) -> Q<'_> {
        q.bind(self.status)
            .bind(self.payment_intent_id)
            .bind(self.client_secret)
            .bind(self.payment_error)
            .bind(self.intent_closed)
            .bind(self.late_payment_id)
            .bind(self.late_payment_refunded)
            .bind(self.updated_at)
            .bind(self.ended_at)
            .bind(self.expiry)
            .bind(self.check_at)
    }

    pub(crate) fn push(&mut self, s: &CheckoutSession) {
        let s = s.stored();
        self.id.push(s.id.as_uuid());
        self.plan_id.push(s.plan_id.as_uuid());
        self.customer_id.push(s.customer_id.as_str().to_owned());
        self.subscription_id.push(s.subscription_id.as_uuid());
        self.idempotency_key
            .push(s.idempotency_key.as_str().to_owned());
        self.fingerprint.push(s.fingerprint.as_str().to_owned());
        self.amount.push(s.amount.get());
        self.currency.push(s.currency.as_str().to_owned());
        self.status.push(s.status.as_str());
        self.payment_intent_id
            .push(s.payment_intent.as_ref().map(|i| i.id.clone()));
        self.client_secret
            .push(s.payment_intent.as_ref().map(|i| i.client_secret.clone()));
        self.payment_error.push(s.payment_error.clone());
        self.intent_closed.push(s.intent_closed);
        self.late_payment_id
            .push(s.late_payment.as_ref().map(|l| l.payment_id.clone()));
        self.late_payment_refunded
            .push(s.late_payment.as_ref().map(|l| l.refunded));
        self.created_at.push(s.created_at);
        self.expires_at.push(s.expires_at);
        self.updated_at.push(s.updated_at);
        self.ended_at.push(s.ended_at);
        self.expiry.push(s.expiry.map(|e| e.as_str()));
        self.check_at.push(s.check_at);
    }
}

/// New sessions, every column of [`CHECKOUT_COLUMNS`].
struct SessionInserts(SessionRows);

impl Part for SessionInserts {
    const TYPES: &'static [&'static str] = &[
        "uuid",
        "uuid",
        "text",
        "uuid",
        "text",
        "text",
        "bigint",
        "text",
        "text",
        "text",
        "text",
        "text",
        "boolean",
        "text",
        "boolean",
        "timestamptz",
        "timestamptz",
        "timestamptz",
        "timestamptz",
        "text",
        "timestamptz",
    ];
    fn statement(unnest: &str) -> String {
        format!("INSERT INTO checkout_sessions ({CHECKOUT_COLUMNS}) SELECT * FROM {unnest}")
    }
    fn bind(self, q: Q<'_>) -> Q<'_> {
        let s = self.0;
        q.bind(s.id)
            .bind(s.plan_id)
            .bind(s.customer_id)
            .bind(s.subscription_id)
            .bind(s.idempotency_key)
            .bind(s.fingerprint)
            .bind(s.amount)
            .bind(s.currency)
            .bind(s.status)
            .bind(s.payment_intent_id)
            .bind(s.client_secret)
            .bind(s.payment_error)
            .bind(s.intent_closed)
            .bind(s.late_payment_id)
            .bind(s.late_payment_refunded)
            .bind(s.created_at)
            .bind(s.expires_at)
            .bind(s.updated_at)
            .bind(s.ended_at)
            .bind(s.expiry)
            .bind(s.check_at)
    }
}

/// Changed sessions: every field a change may make (a session's identity never changes).
pub(crate) struct SessionUpdates(pub(crate) SessionRows);

impl Part for SessionUpdates {
    const TYPES: &'static [&'static str] = &[
        "uuid",
        "text",
        "text",
        "text",
        "text",
        "boolean",
        "text",
        "boolean",
        "timestamptz",
        "timestamptz",
        "text",
        "timestamptz",
    ];
    fn statement(unnest: &str) -> String {
        format!(
            "UPDATE checkout_sessions s SET {SESSION_SET} FROM {unnest} AS u({SESSION_UPDATE_NAMES}) \
             WHERE s.id = u.id"
        )
    }
    fn bind(self, q: Q<'_>) -> Q<'_> {
        let mut r = self.0;
        let id = std::mem::take(&mut r.id);
        r.bind_state(q.bind(id))
    }
}

/// Every field a change may make, set from [`SessionUpdates`]'s arrays (`u`).
pub(crate) const SESSION_SET: &str = "status = u.status, payment_intent_id = u.intent_id, \
    client_secret = u.secret, payment_error = u.error, intent_closed = u.closed, \
    late_payment_id = u.late_id, late_payment_refunded = u.refunded, \
    updated_at = u.updated_at, ended_at = u.ended_at, expiry = u.expiry, check_at = u.check_at";

/// The names of [`SessionUpdates`]'s arrays.
pub(crate) const SESSION_UPDATE_NAMES: &str = "id, status, intent_id, secret, error, closed, \
    late_id, refunded, updated_at, ended_at, expiry, check_at";

/// The subscriptions completed checkouts made, every column: those a completion writes
/// ([`CompletedSubscriptions`]), then those it never changes ([`SubscriptionOrigins`]).
#[derive(Default)]
struct SubscriptionInserts {
    state: CompletedSubscriptions,
    origins: SubscriptionOrigins,
}

impl SubscriptionInserts {
    fn push(&mut self, s: &Subscription) {
        self.state.push(s);
        self.origins.push(s);
    }
}

impl Part for SubscriptionInserts {
    const TYPES: &'static [&'static str] = &[
        // CompletedSubscriptions::TYPES:
        "uuid",
        "text",
        "text",
        "timestamptz",
        "timestamptz",
        "timestamptz",
        "timestamptz",
        "text",
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
            "INSERT INTO subscriptions (id, status, payment_id, current_period_start, \
             current_period_end, updated_at, canceled_at, failure_reason, {}) \
             SELECT * FROM {unnest}",
            SubscriptionOrigins::COLUMNS
        )
    }
    fn bind(self, q: Q<'_>) -> Q<'_> {
        self.origins.bind(self.state.bind(q))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_subscription_s_arrays_start_with_those_of_a_completed_one() {
        let n = CompletedSubscriptions::TYPES.len();
        assert_eq!(
            &SubscriptionInserts::TYPES[..n],
            CompletedSubscriptions::TYPES
        );
    }
}
