//! The checkout worker's run: the sessions whose `check_at` has come are expired,
//! asked about at the provider (a lost webhook), have their intent cancelled, or their
//! late payment refunded; and the purge of ended sessions.

use futures::StreamExt;
use serde::Serialize;

use super::CheckoutError;
use super::CheckoutService;
use crate::{
    model::{
        AuditContext, CheckoutChange, CheckoutSession, CheckoutSessionId, CheckoutStatus, Effect,
        ExpiryCause,
    },
    ports::{IntentStatus, Purged, StoreError},
};

/// What one worker run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CheckoutRun {
    pub found: u64,
    pub expired: u64,
    pub completed: u64,
    pub intents_canceled: u64,
    pub refunded: u64,
    /// Sessions left for a later run (the provider did not answer).
    pub deferred: u64,
}

impl CheckoutRun {
    fn add(&mut self, visit: &CheckoutRun) {
        self.expired += visit.expired;
        self.completed += visit.completed;
        self.intents_canceled += visit.intents_canceled;
        self.refunded += visit.refunded;
        self.deferred += visit.deferred;
    }
}

impl CheckoutService {
    /// One worker run: every session whose `check_at` has come, up to the batch size.
    pub async fn run_due(&self) -> Result<CheckoutRun, StoreError> {
        let now = self.clock.now();
        let due = self.store.checkouts_due(now, self.settings.batch).await?;
        let ctx = AuditContext {
            actor: "checkout-worker".into(),
            trace_id: format!("checkout-run-{}", uuid::Uuid::now_v7()).into(),
        };
        let mut run = CheckoutRun {
            found: due.len() as u64,
            ..CheckoutRun::default()
        };
        // Up to `concurrency` sessions at once: each visit is atomic steps on its own
        // session (and the provider's calls for it), as two workers' visits may be, so
        // only the plan's lock orders the ones that give seats back to one plan.
        let ctx = &ctx;
        let visits: Vec<CheckoutRun> = futures::stream::iter(due)
            .map(|session| async move {
                let mut visit = CheckoutRun::default();
                if let Err(e) = self.visit(session, ctx, &mut visit).await {
                    visit.deferred += 1;
                    tracing::warn!(error = %e, "a checkout session was left for the next run");
                }
                visit
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        for visit in &visits {
            run.add(visit);
        }
        Ok(run)
    }

    /// Deletes ended sessions and webhook event ids older than the retention.
    pub async fn purge(&self) -> Result<Purged, StoreError> {
        let before = self.clock.now() - self.settings.retention;
        self.store.purge_checkouts(before, before).await
    }

    async fn visit(
        &self,
        session: CheckoutSession,
        ctx: &AuditContext,
        run: &mut CheckoutRun,
    ) -> Result<(), CheckoutError> {
        let now = self.clock.now();
        let id = session.id();
        match session.status() {
            CheckoutStatus::Open => {
                let Some(intent) = session.payment_intent().cloned() else {
                    // No intent recorded: nothing can have been paid through it, but the
                    // provider may hold one whose recording was lost.
                    if now >= session.expires_at() {
                        self.expire_due(id, ctx, run).await?;
                        if !self.cancel_unrecorded(&session, ctx).await {
                            run.deferred += 1;
                        }
                    } else {
                        self.change(id, CheckoutChange::Checked, ctx).await?;
                    }
                    return Ok(());
                };
                let expired = now >= session.expires_at();
                let asked = if expired {
                    self.intents.cancel_intent(&intent.id).await
                } else {
                    self.intents.retrieve_intent(&intent.id).await
                };
                match asked {
                    Ok(pi) => match pi.status {
                        IntentStatus::Succeeded { payment_method } => {
                            let change = CheckoutChange::PaymentSucceeded {
                                payment_id: pi.id,
                                payment_method,
                            };
                            self.settle(id, change, ctx, run).await?;
                        }
                        IntentStatus::Canceled if expired => {
                            self.expire_due(id, ctx, run).await?;
                            self.change(id, CheckoutChange::IntentClosed, ctx).await?;
                            run.intents_canceled += 1;
                        }
                        IntentStatus::RequiresPaymentMethod {
                            last_error: Some(reason),
                        } if !expired => {
                            self.change(id, CheckoutChange::PaymentFailed { reason }, ctx)
                                .await?;
                            self.change(id, CheckoutChange::Checked, ctx).await?;
                        }
                        _ if expired => self.expire_due(id, ctx, run).await?,
                        _ => {
                            self.change(id, CheckoutChange::Checked, ctx).await?;
                        }
                    },
                    // The hold ends on time whatever the provider says; the expired
                    // session's intent is cancelled by a later run.
                    Err(_) if expired => {
                        self.expire_due(id, ctx, run).await?;
                        run.deferred += 1;
                    }
                    Err(e) => {
                        self.change(id, CheckoutChange::Checked, ctx).await?;
                        return Err(CheckoutError::PaymentUnavailable(e.to_string()));
                    }
                }
            }
            CheckoutStatus::Expired => {
                if session.late_payment().is_some_and(|l| !l.refunded) {
                    if self.refund_late(session, ctx).await {
                        run.refunded += 1;
                    } else {
                        run.deferred += 1;
                    }
                } else if session.payment_intent().is_none() {
                    // Its intent was never looked for: the process died after the expiry.
                    match self.cancel_unrecorded(&session, ctx).await {
                        true => run.intents_canceled += 1,
                        false => run.deferred += 1,
                    }
                } else if !session.intent_closed() {
                    match self.close_intent(session, ctx).await {
                        Ok(s) if s.status() == CheckoutStatus::Complete => run.completed += 1,
                        Ok(s) if s.late_payment().is_some_and(|l| l.refunded) => run.refunded += 1,
                        Ok(_) => run.intents_canceled += 1,
                        Err(_) => run.deferred += 1,
                    }
                }
            }
            CheckoutStatus::Complete => {}
        }
        Ok(())
    }

    async fn expire_due(
        &self,
        id: CheckoutSessionId,
        ctx: &AuditContext,
        run: &mut CheckoutRun,
    ) -> Result<(), CheckoutError> {
        match self
            .change(id, CheckoutChange::Expire(ExpiryCause::Timeout), ctx)
            .await
        {
            Ok(_) => {
                run.expired += 1;
                Ok(())
            }
            // Completed or expired by someone else meanwhile.
            Err(CheckoutError::NotOpen { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn settle(
        &self,
        id: CheckoutSessionId,
        change: CheckoutChange,
        ctx: &AuditContext,
        run: &mut CheckoutRun,
    ) -> Result<(), CheckoutError> {
        let changed = self.change(id, change, ctx).await?;
        match changed.applied.effect {
            Effect::Completed => run.completed += 1,
            Effect::RefundDue => {
                if self.refund_late(changed.session, ctx).await {
                    run.refunded += 1;
                } else {
                    run.deferred += 1;
                }
            }
            Effect::Updated | Effect::Unchanged => {}
        }
        Ok(())
    }

    /// Cancels the intent the provider may hold for a session that ended with none
    /// recorded: the store failed after the provider made it (and the customer never came
    /// back to have it recorded). The provider makes intents idempotently per provider
    /// key, so asking it to make the session's intent answers that one (or makes one);
    /// the expired session records it, and it is cancelled at once or, when the provider
    /// does not answer, by the worker's later runs (the session is due until then). A
    /// provider that cannot even be asked leaves it as it is (logged): nobody was given
    /// its client secret, so nobody can pay it but this service, which would record it.
    ///
    /// `false` when that is left for a later run: the expired session stays due until its
    /// intent is recorded and closed, so that a process that dies before this call, or
    /// during it, leaves the intent to the worker rather than uncancelled.
    pub(super) async fn cancel_unrecorded(
        &self,
        session: &CheckoutSession,
        ctx: &AuditContext,
    ) -> bool {
        if session.payment_intent().is_some() {
            return true;
        }
        let failed = match self.attach_intent(session, ctx).await {
            Ok(recorded) => {
                if recorded.status() == CheckoutStatus::Expired && !recorded.intent_closed() {
                    // Err: the provider did not answer; the session stays due.
                    return self.close_intent(recorded, ctx).await.is_ok();
                }
                return true;
            }
            Err(super::AttachError::Gateway(e)) => e.to_string(),
            Err(super::AttachError::Store(e)) => e.to_string(),
        };
        tracing::warn!(error = %failed, session_id = %session.id(), "could not look for an unrecorded intent");
        false
    }

    /// Cancels an expired session's intent. `Err` gives the session back unchanged when
    /// the provider did not answer (the worker tries again).
    pub(super) async fn close_intent(
        &self,
        session: CheckoutSession,
        ctx: &AuditContext,
    ) -> Result<CheckoutSession, CheckoutSession> {
        let Some(intent) = session.payment_intent().cloned() else {
            return Ok(session);
        };
        if session.intent_closed() {
            return Ok(session);
        }
        let pi = match self.intents.cancel_intent(&intent.id).await {
            Ok(pi) => pi,
            Err(e) => {
                tracing::warn!(error = %e, "the intent of an expired session is not cancelled yet");
                return Err(session);
            }
        };
        let change = match pi.status {
            // Paid before the cancellation arrived: a late payment.
            IntentStatus::Succeeded { payment_method } => CheckoutChange::PaymentSucceeded {
                payment_id: pi.id,
                payment_method,
            },
            _ => CheckoutChange::IntentClosed,
        };
        match self.change(session.id(), change, ctx).await {
            Ok(changed) if changed.applied.effect == Effect::RefundDue => {
                let id = changed.session.id();
                self.refund_late(changed.session.clone(), ctx).await;
                Ok(self.get(id).await.ok().flatten().unwrap_or(changed.session))
            }
            Ok(changed) => Ok(changed.session),
            Err(e) => {
                tracing::warn!(error = %e, "could not record the intent's cancellation");
                Err(session)
            }
        }
    }

    /// Refunds a late payment and records it; `false` when that must wait for a later
    /// run (the provider or the store did not answer).
    pub(super) async fn refund_late(&self, session: CheckoutSession, ctx: &AuditContext) -> bool {
        let Some(late) = session.late_payment().filter(|l| !l.refunded) else {
            return true;
        };
        if let Err(e) = self.payments.refund(&late.payment_id).await {
            tracing::warn!(error = %e, "a late payment's refund failed; retried later");
            return false;
        }
        match self
            .change(session.id(), CheckoutChange::RefundRecorded, ctx)
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "a late payment's refund was not recorded; retried later");
                false
            }
        }
    }
}
