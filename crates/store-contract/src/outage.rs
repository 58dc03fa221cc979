//! [`Switchable`]: any store behind a switch that makes every operation fail with
//! [`StoreError::Unavailable`], the way a database that cannot be reached does, without
//! touching the store itself. For tests of outage handling (503 answers, readiness) that
//! need no real database to go away; the stores themselves carry no such switch.

use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use seatkeeper_domain::{
    ports::{
        ApiKeyRepository, AuditLog, CancelError, Cancellation, ChangeCheckoutError, Changed,
        CheckoutRepository, ClaimRecovery, CompleteError, CompletePurchase, Completion,
        IdempotencyRepository, NewKeyReservation, OpenCheckoutError, Opened, PlanChanges, PlanFeed,
        PlanRepository, PoolUse, PurchaseRepository, Purged, RecoveryBacklog, RecoveryRepository,
        RecoveryTask, Reservation, ReserveError, ReserveSeat, ReserveWithNewKey, Store, StoreError,
        SubscriptionRepository, UpdatePlanError, WebhookEvent,
    },
    ApiKey, ApiKeyId, AuditContext, AuditEntry, ChangeCheckout, CheckoutSession, CheckoutSessionId,
    Claim, ClaimKey, CustomerId, IdempotencyKey, LockToken, OpenCheckout, Plan, PlanAvailability,
    PlanId, PlanPatch, PlanStats, SecretHash, Subscription, SubscriptionId, Timestamp,
};

/// A store whose operations all fail with [`StoreError::Unavailable`] while it is switched
/// off, and pass through to `S` otherwise.
#[derive(Debug, Default)]
pub struct Switchable<S> {
    inner: S,
    off: AtomicBool,
}

impl<S> Switchable<S> {
    /// `inner`, switched on.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            off: AtomicBool::new(false),
        }
    }

    /// Makes every operation fail as an unreachable database does (`true`), or work again.
    pub fn set_unavailable(&self, unavailable: bool) {
        self.off.store(unavailable, Ordering::SeqCst);
    }

    /// The store behind the switch.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn up(&self) -> Result<(), StoreError> {
        if self.off.load(Ordering::SeqCst) {
            Err(StoreError::unavailable("the store was switched off"))
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl<S: PlanRepository> PlanRepository for Switchable<S> {
    async fn create_plan(&self, plan: &Plan, ctx: &AuditContext) -> Result<(), StoreError> {
        self.up()?;
        self.inner.create_plan(plan, ctx).await
    }

    async fn get_plan(&self, id: PlanId) -> Result<Option<Plan>, StoreError> {
        self.up()?;
        self.inner.get_plan(id).await
    }

    async fn list_plans(&self, after: Option<PlanId>, limit: u32) -> Result<Vec<Plan>, StoreError> {
        self.up()?;
        self.inner.list_plans(after, limit).await
    }

    async fn update_plan(
        &self,
        id: PlanId,
        patch: &PlanPatch,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<Plan, UpdatePlanError> {
        self.up()?;
        self.inner.update_plan(id, patch, ctx, now).await
    }

    async fn plan_stats(&self, id: PlanId) -> Result<Option<PlanStats>, StoreError> {
        self.up()?;
        self.inner.plan_stats(id).await
    }

    async fn plan_availability(&self, id: PlanId) -> Result<Option<PlanAvailability>, StoreError> {
        self.up()?;
        self.inner.plan_availability(id).await
    }
}

#[async_trait]
impl<S: AuditLog> AuditLog for Switchable<S> {
    async fn plan_audit(
        &self,
        plan_id: PlanId,
        after_seq: Option<u64>,
        limit: u32,
    ) -> Result<Option<Vec<AuditEntry>>, StoreError> {
        self.up()?;
        self.inner.plan_audit(plan_id, after_seq, limit).await
    }
}

#[async_trait]
impl<S: SubscriptionRepository> SubscriptionRepository for Switchable<S> {
    async fn get_subscription(
        &self,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        self.up()?;
        self.inner.get_subscription(id).await
    }

    async fn customer_subscriptions(
        &self,
        customer: &CustomerId,
        after: Option<SubscriptionId>,
        limit: u32,
    ) -> Result<Vec<Subscription>, StoreError> {
        self.up()?;
        self.inner
            .customer_subscriptions(customer, after, limit)
            .await
    }

    async fn cancel_subscription(
        &self,
        id: SubscriptionId,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<Cancellation, CancelError> {
        self.up()?;
        self.inner.cancel_subscription(id, ctx, now).await
    }
}

#[async_trait]
impl<S: IdempotencyRepository> IdempotencyRepository for Switchable<S> {
    async fn claim_key(&self, claim: &ClaimKey) -> Result<Claim, StoreError> {
        self.up()?;
        self.inner.claim_key(claim).await
    }

    async fn release_key(
        &self,
        scope: &CustomerId,
        key: &IdempotencyKey,
        owner: LockToken,
    ) -> Result<bool, StoreError> {
        self.up()?;
        self.inner.release_key(scope, key, owner).await
    }

    async fn purge_expired_keys(&self, now: Timestamp) -> Result<u64, StoreError> {
        self.up()?;
        self.inner.purge_expired_keys(now).await
    }
}

#[async_trait]
impl<S: PurchaseRepository> PurchaseRepository for Switchable<S> {
    async fn reserve_seat(&self, cmd: &ReserveSeat) -> Result<Reservation, ReserveError> {
        self.up()?;
        self.inner.reserve_seat(cmd).await
    }

    async fn reserve_with_new_key(
        &self,
        cmd: &ReserveWithNewKey,
    ) -> Result<NewKeyReservation, StoreError> {
        self.up()?;
        self.inner.reserve_with_new_key(cmd).await
    }

    async fn complete_purchase(&self, cmd: &CompletePurchase) -> Result<Completion, CompleteError> {
        self.up()?;
        self.inner.complete_purchase(cmd).await
    }
}

#[async_trait]
impl<S: RecoveryRepository> RecoveryRepository for Switchable<S> {
    async fn claim_recovery(&self, claim: &ClaimRecovery) -> Result<Vec<RecoveryTask>, StoreError> {
        self.up()?;
        self.inner.claim_recovery(claim).await
    }

    async fn release_recovery(
        &self,
        id: SubscriptionId,
        owner: LockToken,
    ) -> Result<bool, StoreError> {
        self.up()?;
        self.inner.release_recovery(id, owner).await
    }

    async fn finish_verification(
        &self,
        id: SubscriptionId,
        owner: LockToken,
        refunded: Option<&str>,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.up()?;
        self.inner
            .finish_verification(id, owner, refunded, ctx, now)
            .await
    }

    async fn record_refund(
        &self,
        id: SubscriptionId,
        payment_id: &str,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.up()?;
        self.inner.record_refund(id, payment_id, ctx, now).await
    }

    async fn recovery_backlog(
        &self,
        stale_before: Timestamp,
    ) -> Result<RecoveryBacklog, StoreError> {
        self.up()?;
        self.inner.recovery_backlog(stale_before).await
    }
}

#[async_trait]
impl<S: ApiKeyRepository> ApiKeyRepository for Switchable<S> {
    async fn create_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        self.up()?;
        self.inner.create_key(key).await
    }

    async fn key_by_hash(&self, hash: &SecretHash) -> Result<Option<ApiKey>, StoreError> {
        self.up()?;
        self.inner.key_by_hash(hash).await
    }

    async fn list_keys(
        &self,
        after: Option<ApiKeyId>,
        limit: u32,
    ) -> Result<Vec<ApiKey>, StoreError> {
        self.up()?;
        self.inner.list_keys(after, limit).await
    }

    async fn revoke_key(&self, id: ApiKeyId, now: Timestamp) -> Result<Option<ApiKey>, StoreError> {
        self.up()?;
        self.inner.revoke_key(id, now).await
    }

    async fn record_key_use(&self, id: ApiKeyId, at: Timestamp) -> Result<(), StoreError> {
        self.up()?;
        self.inner.record_key_use(id, at).await
    }
}

#[async_trait]
impl<S: CheckoutRepository> CheckoutRepository for Switchable<S> {
    async fn open_checkout(&self, cmd: &OpenCheckout) -> Result<Opened, OpenCheckoutError> {
        self.up()?;
        self.inner.open_checkout(cmd).await
    }

    async fn get_checkout(
        &self,
        id: CheckoutSessionId,
    ) -> Result<Option<CheckoutSession>, StoreError> {
        self.up()?;
        self.inner.get_checkout(id).await
    }

    async fn change_checkout(&self, cmd: &ChangeCheckout) -> Result<Changed, ChangeCheckoutError> {
        self.up()?;
        self.inner.change_checkout(cmd).await
    }

    async fn checkouts_due(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<CheckoutSession>, StoreError> {
        self.up()?;
        self.inner.checkouts_due(now, limit).await
    }

    async fn claim_webhook_event(&self, event: &WebhookEvent) -> Result<bool, StoreError> {
        self.up()?;
        self.inner.claim_webhook_event(event).await
    }

    async fn release_webhook_event(&self, id: &str) -> Result<(), StoreError> {
        self.up()?;
        self.inner.release_webhook_event(id).await
    }

    async fn purge_checkouts(
        &self,
        ended_before: Timestamp,
        events_before: Timestamp,
    ) -> Result<Purged, StoreError> {
        self.up()?;
        self.inner
            .purge_checkouts(ended_before, events_before)
            .await
    }
}

/// Listening fails while switched off; a feed started before goes on (the switch stands
/// for a store that cannot be reached by new requests).
#[async_trait]
impl<S: PlanFeed> PlanFeed for Switchable<S> {
    async fn plan_changes(&self) -> Result<PlanChanges, StoreError> {
        self.up()?;
        self.inner.plan_changes().await
    }
}

#[async_trait]
impl<S: Store> Store for Switchable<S> {
    async fn ping(&self) -> Result<(), StoreError> {
        self.up()?;
        self.inner.ping().await
    }

    fn pool_use(&self) -> Option<PoolUse> {
        self.inner.pool_use()
    }
}
