//! Statements shared by several operations: the audit insert, reading and moving a plan,
//! reading (locked), inserting and writing a subscription, writing a whole idempotency key
//! record.

use seatkeeper_domain::{
    AuditEntry, IdempotencyRecord, KeyState, Plan, PlanId, RecoveryPoint, Subscription,
    SubscriptionId,
};
use sqlx::PgConnection;

use crate::{
    errors::corrupt,
    rows::{self, PLAN_COLUMNS, SUBSCRIPTION_COLUMNS},
};

pub(crate) async fn insert_audit(c: &mut PgConnection, e: &AuditEntry) -> Result<(), sqlx::Error> {
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

pub(crate) async fn select_plan(
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
pub(crate) async fn bump_plan(
    c: &mut PgConnection,
    id: PlanId,
    delta: i32,
) -> Result<Plan, sqlx::Error> {
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

/// Writes the seats and `seq` a domain decision left `plan` with (its row is locked).
pub(crate) async fn write_plan_seats(c: &mut PgConnection, plan: &Plan) -> Result<(), sqlx::Error> {
    let done = sqlx::query("UPDATE plans SET seats_left = $2, seq = $3 WHERE id = $1")
        .bind(plan.id().as_uuid())
        .bind(plan.seats_left() as i32)
        .bind(plan.seq() as i64)
        .execute(c)
        .await?;
    if done.rows_affected() != 1 {
        return Err(corrupt(format!("plan {} vanished", plan.id())));
    }
    Ok(())
}

pub(crate) async fn select_subscription_for_update(
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

pub(crate) async fn update_subscription(
    c: &mut PgConnection,
    s: &Subscription,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE subscriptions SET status = $2, payment_id = $3, current_period_start = $4, current_period_end = $5, \
         updated_at = $6, canceled_at = $7, failure_reason = $8 WHERE id = $1",
    )
    .bind(s.id().as_uuid())
    .bind(s.status().as_str())
    .bind(s.payment_id())
    .bind(s.current_period_start())
    .bind(s.current_period_end())
    .bind(s.updated_at())
    .bind(s.canceled_at())
    .bind(s.failure_reason())
    .execute(c)
    .await?;
    Ok(())
}

/// Inserts a whole subscription, in whatever status the domain made it.
pub(crate) async fn insert_subscription(
    c: &mut PgConnection,
    s: &Subscription,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO subscriptions (id, plan_id, customer_id, status, payment_method, payment_id, unit_amount, \
         currency, \"interval\", idempotency_key, current_period_start, current_period_end, created_at, updated_at, \
         canceled_at, failure_reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
    )
    .bind(s.id().as_uuid())
    .bind(s.plan_id().as_uuid())
    .bind(s.customer_id().as_str())
    .bind(s.status().as_str())
    .bind(s.payment_method().as_str())
    .bind(s.payment_id())
    .bind(s.unit_amount().get())
    .bind(s.currency().as_str())
    .bind(s.interval().as_str())
    .bind(s.idempotency_key().map(|k| k.as_str()))
    .bind(s.current_period_start())
    .bind(s.current_period_end())
    .bind(s.created_at())
    .bind(s.updated_at())
    .bind(s.canceled_at())
    .bind(s.failure_reason())
    .execute(c)
    .await?;
    Ok(())
}

/// Writes a whole key record over the stored one (or inserts it).
pub(crate) async fn upsert_key(
    c: &mut PgConnection,
    r: &IdempotencyRecord,
) -> Result<(), sqlx::Error> {
    let (state, owner, until, outcome, request_id, finished_at) = match &r.state() {
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
    let recovery = match r.recovery() {
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
    .bind(r.scope().as_str())
    .bind(r.key().as_str())
    .bind(r.fingerprint().as_str())
    .bind(state)
    .bind(owner)
    .bind(until)
    .bind(recovery)
    .bind(outcome)
    .bind(request_id)
    .bind(finished_at)
    .bind(r.created_at())
    .bind(r.expires_at())
    .execute(c)
    .await?;
    Ok(())
}
