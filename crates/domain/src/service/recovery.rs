//! The reconciler: finishes purchases that nobody will finish (the process holding them
//! crashed, the client never retried) and refunds charges that landed after their purchase
//! was given up. Safe with several reconcilers at once: every task is leased first.
//!
//! | what the gateway says of the provider key | `Complete` task | `Verify` task |
//! | --- | --- | --- |
//! | charged | `active` (the customer paid) | refund, audit `payment_refunded` |
//! | never charged, or failed | `incomplete_expired`, seat released, late-charge check scheduled | done |
//! | refunded | `incomplete_expired`, seat released | done (audit the refund once) |
//! | no answer | stays in doubt; retried next run | stays; retried next run |

use std::{sync::Arc, time::Duration};

use serde::Serialize;

use crate::{
    model::{AuditContext, LockToken, PurchaseOutcome, Subscription, Timestamp},
    ports::{
        ChargeResult, ChargeStatus, ClaimRecovery, Clock, CompleteError, CompletePurchase,
        PaymentGateway, RecoveryBacklog, RecoveryPhase, RecoveryTask, Store, StoreError,
    },
};

/// How the reconciler works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoverySettings {
    /// An `incomplete` subscription untouched this long is recovered; also how long a
    /// reconciler holds a task. Longer than the idempotency lock lease, so a purchase a
    /// live request is still working on is left alone.
    pub lease: Duration,
    /// How long after giving a purchase up its late-charge check runs.
    pub verify_delay: Duration,
    /// Tasks per run.
    pub batch: u32,
}

impl Default for RecoverySettings {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(60),
            verify_delay: Duration::from_secs(60),
            batch: 100,
        }
    }
}

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecoveryReport {
    pub run_id: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// Tasks leased.
    pub found: u64,
    /// Purchases found charged and activated.
    pub activated: u64,
    /// Purchases found never charged (or refunded), expired with their seat released.
    pub expired: u64,
    /// Late charges refunded.
    pub refunded: u64,
    /// Late-charge checks that found nothing.
    pub verified: u64,
    /// Tasks left for a later run: the gateway did not answer, or the store failed.
    pub in_doubt: u64,
    /// Tasks someone else finished first.
    pub skipped: u64,
}

/// Runs recovery.
#[derive(Clone)]
pub struct Reconciler {
    store: Arc<dyn Store>,
    gateway: Arc<dyn PaymentGateway>,
    clock: Arc<dyn Clock>,
    settings: RecoverySettings,
}

fn chrono(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

enum Done {
    Activated,
    Expired,
    Refunded,
    Verified,
    InDoubt,
    Skipped,
}

impl Reconciler {
    pub fn new(
        store: Arc<dyn Store>,
        gateway: Arc<dyn PaymentGateway>,
        clock: Arc<dyn Clock>,
        settings: RecoverySettings,
    ) -> Self {
        Self {
            store,
            gateway,
            clock,
            settings,
        }
    }

    pub fn settings(&self) -> RecoverySettings {
        self.settings
    }

    /// What is waiting for recovery now.
    pub async fn backlog(&self) -> Result<RecoveryBacklog, StoreError> {
        let stale_before = self.clock.now() - chrono(self.settings.lease);
        self.store.recovery_backlog(stale_before).await
    }

    /// One pass: lease a batch of tasks and work through them.
    #[tracing::instrument(skip_all)]
    pub async fn run_once(&self) -> Result<RecoveryReport, StoreError> {
        let run_id = format!("reconcile-{}", uuid::Uuid::new_v4());
        let owner = LockToken::generate();
        let started_at = self.clock.now();
        let tasks = self
            .store
            .claim_recovery(&ClaimRecovery {
                owner,
                now: started_at,
                stale_before: started_at - chrono(self.settings.lease),
                lease_until: started_at + chrono(self.settings.lease),
                limit: self.settings.batch,
            })
            .await?;
        let mut report = RecoveryReport {
            run_id: run_id.clone(),
            started_at,
            finished_at: started_at,
            found: tasks.len() as u64,
            activated: 0,
            expired: 0,
            refunded: 0,
            verified: 0,
            in_doubt: 0,
            skipped: 0,
        };
        let ctx = AuditContext::reconciler(run_id.as_str());
        for task in tasks {
            let id = task.subscription.id();
            let done = match self.work(&task, owner, &ctx).await {
                Ok(done) => done,
                Err(e) => {
                    tracing::warn!(subscription_id = %id, error = %e, "recovery task failed; left for a later run");
                    let _ = self.store.release_recovery(id, owner).await;
                    Done::InDoubt
                }
            };
            match done {
                Done::Activated => report.activated += 1,
                Done::Expired => report.expired += 1,
                Done::Refunded => report.refunded += 1,
                Done::Verified => report.verified += 1,
                Done::InDoubt => report.in_doubt += 1,
                Done::Skipped => report.skipped += 1,
            }
        }
        report.finished_at = self.clock.now();
        if report.found > 0 {
            tracing::info!(
                found = report.found,
                activated = report.activated,
                expired = report.expired,
                refunded = report.refunded,
                verified = report.verified,
                in_doubt = report.in_doubt,
                skipped = report.skipped,
                "reconciliation run"
            );
        }
        Ok(report)
    }

    async fn work(
        &self,
        task: &RecoveryTask,
        owner: LockToken,
        ctx: &AuditContext,
    ) -> Result<Done, StoreError> {
        let sub = &task.subscription;
        let status = match self.gateway.lookup(&sub.provider_key()).await {
            Ok(status) => status,
            Err(e) => {
                tracing::warn!(subscription_id = %sub.id(), error = %e, "the gateway could not say what became of a charge");
                self.store.release_recovery(sub.id(), owner).await?;
                return Ok(Done::InDoubt);
            }
        };
        match task.phase {
            RecoveryPhase::Complete => self.complete(sub, status, ctx).await,
            RecoveryPhase::Verify => self.verify(sub, status, owner, ctx).await,
        }
    }

    async fn complete(
        &self,
        sub: &Subscription,
        status: ChargeStatus,
        ctx: &AuditContext,
    ) -> Result<Done, StoreError> {
        let now = self.clock.now();
        let (result, verify_after, done) = match status {
            ChargeStatus::Succeeded { payment_id } => {
                (ChargeResult::Charged { payment_id }, None, Done::Activated)
            }
            ChargeStatus::NotFound => (
                ChargeResult::Declined {
                    reason: "recovery: the charge never happened".into(),
                },
                Some(now + chrono(self.settings.verify_delay)),
                Done::Expired,
            ),
            ChargeStatus::Failed { reason } => (
                ChargeResult::Declined {
                    reason: format!("recovery: the charge failed ({reason})"),
                },
                None,
                Done::Expired,
            ),
            ChargeStatus::Refunded { .. } => (
                ChargeResult::Declined {
                    reason: "recovery: the charge was refunded".into(),
                },
                None,
                Done::Expired,
            ),
        };
        let cmd = CompletePurchase {
            subscription_id: sub.id(),
            result: result.clone(),
            request_id: ctx.trace_id.to_string(),
            ctx: ctx.clone(),
            now,
            verify_after,
        };
        match self.store.complete_purchase(&cmd).await {
            Ok(_) => Ok(done),
            Err(CompleteError::NotIncomplete(finished)) => {
                // Someone finished it first. If it was given up while money was taken,
                // give the money back.
                if let (
                    ChargeResult::Charged { payment_id },
                    Some(PurchaseOutcome::Declined { .. }),
                ) = (&result, PurchaseOutcome::of_finished(*finished))
                {
                    return self.refund(sub, payment_id, ctx).await;
                }
                Ok(Done::Skipped)
            }
            Err(CompleteError::NotFound(id)) => Err(StoreError::internal(format!(
                "recovery task for subscription {id}, which does not exist"
            ))),
            Err(CompleteError::Store(e)) => Err(e),
        }
    }

    async fn verify(
        &self,
        sub: &Subscription,
        status: ChargeStatus,
        owner: LockToken,
        ctx: &AuditContext,
    ) -> Result<Done, StoreError> {
        let now = self.clock.now();
        match status {
            ChargeStatus::Succeeded { payment_id } => {
                if let Err(e) = self.gateway.refund(&payment_id).await {
                    tracing::warn!(subscription_id = %sub.id(), error = %e, "could not refund a late charge; will retry");
                    self.store.release_recovery(sub.id(), owner).await?;
                    return Ok(Done::InDoubt);
                }
                self.store
                    .finish_verification(sub.id(), owner, Some(&payment_id), ctx, now)
                    .await?;
                tracing::warn!(subscription_id = %sub.id(), payment_id, "a charge landed after its purchase was given up; refunded");
                Ok(Done::Refunded)
            }
            ChargeStatus::Refunded { payment_id } => {
                self.store
                    .finish_verification(sub.id(), owner, Some(&payment_id), ctx, now)
                    .await?;
                Ok(Done::Verified)
            }
            ChargeStatus::NotFound | ChargeStatus::Failed { .. } => {
                self.store
                    .finish_verification(sub.id(), owner, None, ctx, now)
                    .await?;
                Ok(Done::Verified)
            }
        }
    }

    async fn refund(
        &self,
        sub: &Subscription,
        payment_id: &str,
        ctx: &AuditContext,
    ) -> Result<Done, StoreError> {
        if let Err(e) = self.gateway.refund(payment_id).await {
            tracing::warn!(subscription_id = %sub.id(), error = %e, "could not refund a late charge; its check will retry");
            return Ok(Done::InDoubt);
        }
        self.store
            .record_refund(sub.id(), payment_id, ctx, self.clock.now())
            .await?;
        Ok(Done::Refunded)
    }
}
