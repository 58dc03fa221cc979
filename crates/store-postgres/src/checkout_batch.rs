//! The checkout steps as batches, for the store's third coalescer: openings
//! ([`CheckoutRepository::open_checkout`]) and changes
//! ([`CheckoutRepository::change_checkout`]).
//!
//! An opening and a change that may move a seat ([`CheckoutChange::may_need_plan`]: a
//! payment, an expiry, a refund) lock their plan row, so one at a time they queue on a hot
//! plan: a lock, four to six statements and a commit each. A batch takes every step that
//! arrived while the previous batch ran, with one lock of each plan row and one commit;
//! the changes that write the session only (an intent attached, a failed payment) come
//! along for the commit, which a transaction of their own would pay alone (measured:
//! +29 to +83 % checkouts/s on 16 plans with them in the batches, the hot plan no worse). It locks the
//! sessions its changes name (sorted), then the plans (sorted) — the crate's lock order —
//! and under the plan locks reads the session each opening's key opened and each opening
//! customer's open sessions on its plan, which only a step holding that plan's lock can
//! change (one statement: two index lookups joined to the steps' arrays, `UNION ALL`; an
//! `OR` of the two conditions would walk the whole table). The domain's [`CheckoutBatch`] decides the steps in queue order on those rows,
//! and the batch writes with a fixed number of statements: the new sessions (one
//! `INSERT … SELECT FROM UNNEST`), then one statement of `WITH` parts for the changed
//! sessions, the new subscriptions, the plans and the audit entries.
//!
//! One key opened on two plans at once is not serialised by any plan lock: the loser's
//! session insert waits for the winner's commit and fails on the unique `(customer_id,
//! idempotency_key)` constraint, the batch rolls back, and its steps run again alone
//! (`checkouts.rs`), where an opening decides against the winner's session.
//!
//! [`CheckoutRepository::open_checkout`]: seatkeeper_domain::ports::CheckoutRepository::open_checkout
//! [`CheckoutRepository::change_checkout`]: seatkeeper_domain::ports::CheckoutRepository::change_checkout
//! [`CheckoutChange::may_need_plan`]: seatkeeper_domain::CheckoutChange::may_need_plan

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use seatkeeper_domain::{
    ports::{ChangeCheckoutError, Changed, CheckoutBatch, OpenCheckoutError, Opened, StoreError},
    ChangeCheckout, CheckoutSession, OpenCheckout, Subscription,
};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    batch::{
        lock_plans, part, write_statement, AuditInserts, CompletedSubscriptions, Part, PlanWrites,
        SubscriptionOrigins, Q,
    },
    rows::{self, CHECKOUT_COLUMNS},
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
    let sql = sessions_where("id = ANY($1) ORDER BY id FOR UPDATE");
    let mut sessions = select_sessions(c, sqlx::query(&sql).bind(changed_ids)).await?;
    let opens: Vec<&OpenCheckout> = steps
        .iter()
        .filter_map(|st| match st {
            CheckoutStep::Open(cmd) => Some(cmd),
            CheckoutStep::Change(_) => None,
        })
        .collect();
    // The plans of the openings and of the sessions whose change may move a seat.
    let movers: HashSet<_> = steps
        .iter()
        .filter_map(|st| match st {
            CheckoutStep::Change(cmd) if cmd.change.may_need_plan() => Some(cmd.session_id),
            _ => None,
        })
        .collect();
    let plan_ids: Vec<_> = opens
        .iter()
        .map(|cmd| cmd.plan_id)
        .chain(
            sessions
                .iter()
                .filter(|s| movers.contains(&s.id()))
                .map(CheckoutSession::plan_id),
        )
        .collect();
    let mut plans = lock_plans(c, plan_ids).await?;
    if !opens.is_empty() {
        let customers: Vec<&str> = opens.iter().map(|cmd| cmd.customer_id.as_str()).collect();
        let keys: Vec<&str> = opens.iter().map(|cmd| cmd.key.as_str()).collect();
        let plan_of: Vec<Uuid> = opens.iter().map(|cmd| cmd.plan_id.as_uuid()).collect();
        let sql = format!(
            "{} UNION ALL {}",
            sessions_where(
                "(customer_id, idempotency_key) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))"
            ),
            sessions_where(
                "status = 'open' AND (plan_id, customer_id) IN \
                 (SELECT * FROM UNNEST($3::uuid[], $1::text[]))"
            )
        );
        let q = sqlx::query(&sql).bind(customers).bind(keys).bind(plan_of);
        // A session may come twice, or be one the changes locked: the first copy stays.
        let mut seen: HashSet<_> = sessions.iter().map(CheckoutSession::id).collect();
        let more = select_sessions(c, q).await?;
        sessions.extend(more.into_iter().filter(|s| seen.insert(s.id())));
    }
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
    if !writes.new.is_empty() {
        let mut new = SessionRows::default();
        writes.new.iter().for_each(|s| new.push(s));
        let sql = format!(
            "INSERT INTO checkout_sessions ({CHECKOUT_COLUMNS}) SELECT * FROM {}",
            new.unnest()
        );
        new.bind(sqlx::query(&sql)).execute(&mut *c).await?;
    }
    let mut changed = SessionRows::default();
    writes.changed.iter().for_each(|(_, now)| changed.push(now));
    let sql = write_statement(&[
        part!(SessionUpdates),
        part!(SubscriptionInserts),
        part!(PlanWrites),
        part!(AuditInserts),
    ]);
    let q = SessionUpdates(changed).bind(sqlx::query(&sql));
    let q = entries.bind(PlanWrites::moved(&plans, &before).bind(subs.bind(q)));
    q.execute(&mut *c).await?;
    Ok(answers)
}

/// The query of the sessions matching `condition`.
fn sessions_where(condition: &str) -> String {
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
struct SessionRows {
    id: Vec<Uuid>,
    plan_id: Vec<Uuid>,
    customer_id: Vec<String>,
    subscription_id: Vec<Uuid>,
    idempotency_key: Vec<String>,
    fingerprint: Vec<String>,
    amount: Vec<i64>,
    currency: Vec<String>,
    status: Vec<&'static str>,
    payment_intent_id: Vec<Option<String>>,
    client_secret: Vec<Option<String>>,
    payment_error: Vec<Option<String>>,
    intent_closed: Vec<bool>,
    late_payment_id: Vec<Option<String>>,
    late_payment_refunded: Vec<Option<bool>>,
    created_at: Vec<DateTime<Utc>>,
    expires_at: Vec<DateTime<Utc>>,
    updated_at: Vec<DateTime<Utc>>,
    ended_at: Vec<Option<DateTime<Utc>>>,
    expiry: Vec<Option<&'static str>>,
    check_at: Vec<Option<DateTime<Utc>>>,
}

impl SessionRows {
    fn push(&mut self, s: &CheckoutSession) {
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

    /// `UNNEST` of every column's array, `$1` to `$21`.
    fn unnest(&self) -> String {
        const TYPES: [&str; 21] = [
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
        let arrays: Vec<String> = TYPES
            .iter()
            .enumerate()
            .map(|(i, t)| format!("${}::{t}[]", i + 1))
            .collect();
        format!("UNNEST({})", arrays.join(", "))
    }

    fn bind(self, q: Q<'_>) -> Q<'_> {
        q.bind(self.id)
            .bind(self.plan_id)
            .bind(self.customer_id)
            .bind(self.subscription_id)
            .bind(self.idempotency_key)
            .bind(self.fingerprint)
            .bind(self.amount)
            .bind(self.currency)
            .bind(self.status)
            .bind(self.payment_intent_id)
            .bind(self.client_secret)
            .bind(self.payment_error)
            .bind(self.intent_closed)
            .bind(self.late_payment_id)
            .bind(self.late_payment_refunded)
            .bind(self.created_at)
            .bind(self.expires_at)
            .bind(self.updated_at)
            .bind(self.ended_at)
            .bind(self.expiry)
            .bind(self.check_at)
    }
}

/// Changed sessions: every field a change may make (a session's identity never changes).
struct SessionUpdates(SessionRows);

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
            "UPDATE checkout_sessions s SET status = u.status, payment_intent_id = u.intent_id, \
             client_secret = u.secret, payment_error = u.error, intent_closed = u.closed, \
             late_payment_id = u.late_id, late_payment_refunded = u.refunded, \
             updated_at = u.updated_at, ended_at = u.ended_at, expiry = u.expiry, \
             check_at = u.check_at \
             FROM {unnest} AS u(id, status, intent_id, secret, error, closed, late_id, refunded, \
             updated_at, ended_at, expiry, check_at) WHERE s.id = u.id"
        )
    }
    fn bind(self, q: Q<'_>) -> Q<'_> {
        let r = self.0;
        q.bind(r.id)
            .bind(r.status)
            .bind(r.payment_intent_id)
            .bind(r.client_secret)
            .bind(r.payment_error)
            .bind(r.intent_closed)
            .bind(r.late_payment_id)
            .bind(r.late_payment_refunded)
            .bind(r.updated_at)
            .bind(r.ended_at)
            .bind(r.expiry)
            .bind(r.check_at)
    }
}

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
