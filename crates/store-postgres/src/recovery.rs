//! [`RecoveryRepository`]: leasing the purchases to recover (stale incomplete ones to
//! complete, payments to verify), releasing and finishing those leases, recording refunds
//! (once, with their seat and audit entry), and the size of the backlog.

use async_trait::async_trait;
use seatkeeper_domain::{
    ports::{
        ClaimRecovery, RecoveryBacklog, RecoveryPhase, RecoveryRepository, RecoveryTask, StoreError,
    },
    AuditContext, LockToken, SeatMove, SubscriptionId, Timestamp,
};
use sqlx::{PgConnection, Row};

use crate::{
    errors::{classify, corrupt, Fail},
    rows::{self, SUBSCRIPTION_COLUMNS},
    statements::{bump_plan, insert_audit, select_subscription_for_update},
    PostgresStore,
};

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

// ----- the operations, each run inside `PostgresStore::tx` -----

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
    let plan = bump_plan(c, sub.plan_id(), seat_move.delta.into()).await?;
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
        let phase = if verify.contains(&subscription.id().as_uuid()) {
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
