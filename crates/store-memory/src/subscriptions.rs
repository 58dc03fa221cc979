//! [`SubscriptionRepository`]: reading subscriptions, and cancelling one under its plan's
//! lock (the domain decides; the store applies).

use super::*;

#[async_trait]
impl SubscriptionRepository for MemoryStore {
    async fn get_subscription(
        &self,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        Ok(self.subscriptions.get(&id).map(|s| Subscription::clone(&s)))
    }

    async fn customer_subscriptions(
        &self,
        customer: &CustomerId,
        after: Option<SubscriptionId>,
        limit: u32,
    ) -> Result<Vec<Subscription>, StoreError> {
        let ids: Vec<SubscriptionId> = match self.by_customer.get(customer) {
            None => return Ok(Vec::new()),
            Some(ids) => {
                let start = after.map_or(0, |a| ids.partition_point(|id| *id <= a));
                ids[start..].iter().take(limit as usize).copied().collect()
            }
        };
        Ok(ids
            .into_iter()
            .filter_map(|id| self.subscriptions.get(&id).map(|s| Subscription::clone(&s)))
            .collect())
    }

    async fn cancel_subscription(
        &self,
        id: SubscriptionId,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<Cancellation, CancelError> {
        let plan_id = self
            .subscriptions
            .get(&id)
            .map(|s| s.plan_id())
            .ok_or(CancelError::NotFound(id))?;
        let cell = self
            .cell(plan_id)
            .ok_or_else(|| StoreError::internal(format!("subscription {id} has no plan")))?;
        let mut cell = cell.lock();
        let mut sub = self
            .subscriptions
            .get_mut(&id)
            .ok_or(CancelError::NotFound(id))?;
        let (canceled, seat_move) = match CancelDecision::of(Subscription::clone(&sub), now)? {
            CancelDecision::AlreadyCanceled(answer) => return Ok(answer),
            CancelDecision::Cancel {
                subscription,
                seat_move,
            } => (subscription, seat_move),
        };
        // A new `Arc`: a finished key that still shares the old one replays the
        // purchase's answer, which did not say `canceled`.
        *sub = Arc::new(canceled);
        cell.counts
            .moved(SubscriptionStatus::Active, SubscriptionStatus::Canceled);
        cell.record(seat_move, ctx, now);
        Ok(CancelDecision::answer(Subscription::clone(&sub)))
    }
}
