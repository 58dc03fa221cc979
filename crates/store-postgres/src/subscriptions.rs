//! [`SubscriptionRepository`]: reading subscriptions (one, or a customer's page) and
//! cancelling one, which gives its seat back to the plan with an audit entry in the same
//! transaction.

use async_trait::async_trait;
use seatkeeper_domain::{
    ports::{CancelDecision, CancelError, Cancellation, StoreError, SubscriptionRepository},
    AuditContext, CustomerId, Subscription, SubscriptionId, Timestamp,
};
use sqlx::PgConnection;

use crate::{
    errors::{classify, Fail},
    rows::{self, SUBSCRIPTION_COLUMNS},
    statements::{bump_plan, insert_audit, select_subscription_for_update, update_subscription},
    PostgresStore,
};

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

// ----- the operation, run inside `PostgresStore::tx` -----

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
    let plan = bump_plan(c, sub.plan_id(), seat_move.delta.into()).await?;
    let entry = seat_move.entry_after(&plan, &ctx, now);
    insert_audit(c, &entry).await?;
    Ok(CancelDecision::answer(sub))
}
