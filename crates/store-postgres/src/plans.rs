//! [`PlanRepository`]: creating, reading, listing and updating plans (each change with its
//! audit entries, in the same transaction), and a plan's statistics (with the seats its
//! open checkout sessions hold) read from one snapshot.

use async_trait::async_trait;
use seatkeeper_domain::{
    ports::{PlanRepository, StoreError, UpdatePlanError},
    AuditContext, AuditEntry, PatchRejection, Plan, PlanAvailability, PlanId, PlanPatch, PlanStats,
    Timestamp,
};
use sqlx::{PgConnection, Row};

use crate::{
    errors::{classify, corrupt, Fail},
    rows::{self, PLAN_COLUMNS},
    statements::{insert_audit, select_plan},
    PostgresStore,
};

#[async_trait]
impl PlanRepository for PostgresStore {
    #[tracing::instrument(skip_all, fields(plan_id = %plan.id()))]
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

    async fn plan_availability(&self, id: PlanId) -> Result<Option<PlanAvailability>, StoreError> {
        // One statement is one snapshot: the plan row, and its open sessions counted
        // through their partial index.
        let sql = format!(
            "SELECT {PLAN_COLUMNS}, (SELECT count(*) FROM checkout_sessions s \
               WHERE s.plan_id = plans.id AND s.status = 'open') AS held \
             FROM plans WHERE id = $1"
        );
        let row = sqlx::query(&sql)
            .bind(id.as_uuid())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let held: i64 = row.try_get("held").map_err(classify)?;
        Ok(Some(PlanAvailability {
            plan: rows::plan(&row).map_err(classify)?,
            held: u64::try_from(held).map_err(|e| classify(corrupt(e)))?,
        }))
    }
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
    .bind(plan.id().as_uuid())
    .bind(plan.name().as_str())
    .bind(plan.capacity().get() as i32)
    .bind(plan.seats_left() as i32)
    .bind(plan.unit_amount().get())
    .bind(plan.currency().as_str())
    .bind(plan.interval().as_str())
    .bind(plan.status().as_str())
    .bind(plan.created_at())
    .bind(plan.seq() as i64)
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
    .bind(plan.name().as_str())
    .bind(plan.capacity().get() as i32)
    .bind(plan.seats_left() as i32)
    .bind(plan.status().as_str())
    .bind(plan.seq() as i64)
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
    // One snapshot for the plan, the held seats and the counts.
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
    let counts = counts
        .iter()
        .map(|row| {
            let n = row.try_get::<i64, _>("n")? as u64;
            Ok((rows::subscription_status(row.try_get("status")?)?, n))
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
    // The seats held by open checkout sessions, in the same snapshot.
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM checkout_sessions WHERE plan_id = $1 AND status = 'open'",
    )
    .bind(id.as_uuid())
    .fetch_one(&mut *c)
    .await?;
    let held = u64::try_from(held).map_err(corrupt)?;
    Ok(Some(PlanStats::from_counts(&plan, held, counts)))
}
