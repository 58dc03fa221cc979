//! [`SubscriptionRepository`] for [`MongoStore`]: reading a subscription and a customer's
//! subscriptions, and cancelling one: the domain decides ([`CancelDecision`]), and one
//! transaction writes the subscription, gives the seat back to the plan and appends the
//! audit entry.

use async_trait::async_trait;
use futures::TryStreamExt;
use seatkeeper_domain::{
    ports::{CancelDecision, CancelError, Cancellation, StoreError, SubscriptionRepository},
    AuditContext, CustomerId, Subscription, SubscriptionId, SubscriptionStatus, Timestamp,
};

use crate::{
    documents::{AuditDoc, CountsDoc, SubscriptionDoc},
    errors::{classify, corrupt},
    plans::bump_plan,
    queries,
    transaction::{self, refuse, unmatched},
    MongoStore,
};

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
            let mut counts = CountsDoc::default();
            counts.moved(SubscriptionStatus::Active, sub.status());
            let plan = bump_plan(&plans, s, sub.plan_id(), seat_move.delta.into(), &counts).await?;
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
