//! [`RecoveryRepository`]: the reconciler's leases on purchases in doubt, its late-charge
//! checks, and the refund entries.

use super::*;

impl MemoryStore {
    /// Appends the `payment_refunded` entry of a subscription, once.
    fn audit_refund(
        &self,
        id: SubscriptionId,
        payment_id: &str,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let plan_id = self
            .subscriptions
            .get(&id)
            .map(|s| s.plan_id())
            .ok_or_else(|| StoreError::internal(format!("no subscription {id} to refund")))?;
        let cell = self
            .cell(plan_id)
            .ok_or_else(|| StoreError::internal(format!("subscription {id} has no plan")))?;
        let mut cell = cell.lock();
        let already = cell
            .audit
            .iter()
            .any(|e| e.action == AuditAction::PaymentRefunded && e.subscription_id == Some(id));
        if already {
            return Ok(false);
        }
        cell.record(SeatMove::refund(id, payment_id), ctx, now);
        Ok(true)
    }
}

#[async_trait]
impl RecoveryRepository for MemoryStore {
    async fn claim_recovery(&self, claim: &ClaimRecovery) -> Result<Vec<RecoveryTask>, StoreError> {
        let mut tasks = Vec::new();
        let lease = Some((claim.owner, claim.lease_until));
        let stale: Vec<SubscriptionId> = self.incomplete.iter().map(|e| *e.key()).collect();
        for id in stale {
            if tasks.len() >= claim.limit as usize {
                return Ok(tasks);
            }
            let Some(sub) = self.subscriptions.get(&id).map(|s| Subscription::clone(&s)) else {
                continue;
            };
            if sub.status() != SubscriptionStatus::Incomplete
                || sub.updated_at() > claim.stale_before
            {
                continue;
            }
            let taken = match self.recovery.entry(id) {
                Entry::Vacant(v) => {
                    v.insert(RecoveryRow {
                        phase: RecoveryPhase::Complete,
                        lease,
                        verify_after: None,
                    });
                    true
                }
                Entry::Occupied(mut o) if o.get().free_at(claim.now) => {
                    o.get_mut().lease = lease;
                    true
                }
                Entry::Occupied(_) => false,
            };
            if taken {
                tasks.push(RecoveryTask {
                    subscription: sub,
                    phase: RecoveryPhase::Complete,
                });
            }
        }
        let due: Vec<SubscriptionId> = self
            .recovery
            .iter()
            .filter(|r| {
                r.phase == RecoveryPhase::Verify
                    && r.verify_after.is_some_and(|t| t <= claim.now)
                    && r.free_at(claim.now)
            })
            .map(|r| *r.key())
            .collect();
        for id in due {
            if tasks.len() >= claim.limit as usize {
                break;
            }
            let taken = match self.recovery.get_mut(&id) {
                Some(mut row) if row.phase == RecoveryPhase::Verify && row.free_at(claim.now) => {
                    row.lease = lease;
                    true
                }
                _ => false,
            };
            if let (true, Some(sub)) = (
                taken,
                self.subscriptions.get(&id).map(|s| Subscription::clone(&s)),
            ) {
                tasks.push(RecoveryTask {
                    subscription: sub,
                    phase: RecoveryPhase::Verify,
                });
            }
        }
        Ok(tasks)
    }

    async fn release_recovery(
        &self,
        id: SubscriptionId,
        owner: LockToken,
    ) -> Result<bool, StoreError> {
        let held = |row: &RecoveryRow| row.lease.is_some_and(|(o, _)| o == owner);
        let removed = self.recovery.remove_if(&id, |_, row| {
            row.phase == RecoveryPhase::Complete && held(row)
        });
        if removed.is_some() {
            return Ok(true);
        }
        Ok(match self.recovery.get_mut(&id) {
            Some(mut row) if held(&row) => {
                row.lease = None;
                true
            }
            _ => false,
        })
    }

    async fn finish_verification(
        &self,
        id: SubscriptionId,
        owner: LockToken,
        refunded: Option<&str>,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let removed = self.recovery.remove_if(&id, |_, row| {
            row.phase == RecoveryPhase::Verify && row.lease.is_some_and(|(o, _)| o == owner)
        });
        if removed.is_none() {
            return Ok(false);
        }
        if let Some(payment_id) = refunded {
            self.audit_refund(id, payment_id, ctx, now)?;
        }
        Ok(true)
    }

    async fn record_refund(
        &self,
        id: SubscriptionId,
        payment_id: &str,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.audit_refund(id, payment_id, ctx, now)
    }

    async fn recovery_backlog(
        &self,
        stale_before: Timestamp,
    ) -> Result<RecoveryBacklog, StoreError> {
        let stale_incomplete = self
            .incomplete
            .iter()
            .filter(|e| {
                self.subscriptions
                    .get(e.key())
                    .is_some_and(|s| s.updated_at() <= stale_before)
            })
            .count() as u64;
        let pending_verifications = self
            .recovery
            .iter()
            .filter(|r| r.phase == RecoveryPhase::Verify)
            .count() as u64;
        Ok(RecoveryBacklog {
            stale_incomplete,
            pending_verifications,
        })
    }
}
