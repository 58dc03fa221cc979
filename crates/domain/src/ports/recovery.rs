//! The recovery repository: what the reconciler needs to finish purchases nobody will
//! finish (a crash, a client that never retried) and to catch charges that landed after
//! their purchase was given up.
//!
//! Work is handed out under leases, so several reconcilers (one per server instance) can
//! run at once without working on the same purchase.

use async_trait::async_trait;

use super::StoreError;
use crate::model::{AuditContext, LockToken, Subscription, SubscriptionId, Timestamp};

/// What the reconciler is asked to do with a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryPhase {
    /// The subscription is `incomplete` and has not changed since `stale_before`: find out
    /// what became of its charge and complete it.
    Complete,
    /// The reconciler expired it because its charge never happened; check again, after a
    /// delay, that no charge landed late (a late one is refunded).
    Verify,
}

/// One piece of recovery work, leased to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryTask {
    pub subscription: Subscription,
    pub phase: RecoveryPhase,
}

/// Ask for recovery work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRecovery {
    pub owner: LockToken,
    pub now: Timestamp,
    /// `incomplete` subscriptions last changed at or before this are stale.
    pub stale_before: Timestamp,
    /// The lease on each task handed out; another reconciler may take it after this.
    pub lease_until: Timestamp,
    pub limit: u32,
}

/// What is still in doubt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecoveryBacklog {
    /// `incomplete` subscriptions last changed at or before `stale_before`.
    pub stale_incomplete: u64,
    /// Expirations whose late-charge check has not happened yet.
    pub pending_verifications: u64,
}

#[async_trait]
pub trait RecoveryRepository: Send + Sync {
    /// Leases up to `limit` tasks, in one atomic step: `Complete` tasks for `incomplete`
    /// subscriptions last updated at or before `stale_before`, and `Verify` tasks whose
    /// time has come (see [`super::CompletePurchase::verify_after`]); a task whose lease
    /// is live (held by anyone, until after `now`) is never handed out twice.
    async fn claim_recovery(&self, claim: &ClaimRecovery) -> Result<Vec<RecoveryTask>, StoreError>;

    /// Gives a task back unfinished (its lease ends now), if `owner` still holds it.
    async fn release_recovery(
        &self,
        id: SubscriptionId,
        owner: LockToken,
    ) -> Result<bool, StoreError>;

    /// Ends a `Verify` task held by `owner`. With `refunded`, in the same atomic step,
    /// appends a `payment_refunded` audit entry (no seat moves) naming the payment — at
    /// most once per subscription. Returns whether `owner` held the task.
    async fn finish_verification(
        &self,
        id: SubscriptionId,
        owner: LockToken,
        refunded: Option<&str>,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// Appends a `payment_refunded` audit entry for a charge of this subscription that was
    /// refunded outside a `Verify` task (a retry that charged after the reconciler gave
    /// the purchase up), at most once per subscription. Returns whether it appended one.
    async fn record_refund(
        &self,
        id: SubscriptionId,
        payment_id: &str,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<bool, StoreError>;

    /// How much recovery work is waiting.
    async fn recovery_backlog(
        &self,
        stale_before: Timestamp,
    ) -> Result<RecoveryBacklog, StoreError>;
}
