//! Checkout sessions: open one (hold a seat, then create its PaymentIntent), confirm it
//! with a card, expire it; learn of payments from webhooks; and the worker that expires
//! sessions past their time, asks the provider about payments nobody reported, cancels
//! the intents of expired sessions and refunds late payments no seat could take.
//!
//! Every step that changes a session is one store step deciding with
//! [`CheckoutSession::apply`]; calls to the provider happen between them, never inside.
//! Whoever learns of a payment first completes the session; the others find it complete
//! and change nothing.

use std::sync::Arc;

use chrono::Duration;

mod worker;
pub use worker::CheckoutRun;

use crate::{
    model::{
        AuditContext, ChangeCheckout, CheckoutChange, CheckoutRefusal, CheckoutSession,
        CheckoutSessionId, CheckoutStatus, CustomerId, Effect, ExpiryCause, Fingerprint,
        IdempotencyKey, OpenCheckout, OpenRefusal, PaymentIntentRef, PaymentMethod, PlanId, Reach,
        Subscription, SubscriptionId,
    },
    ports::{
        ChangeCheckoutError, Changed, ChargeError, Clock, GatewayError, IntentGateway,
        IntentRequest, IntentStatus, NextAction, OpenCheckoutError, Opened, PaymentGateway,
        PaymentIntent, Store, StoreError, WebhookEvent,
    },
};

/// How checkout sessions behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckoutSettings {
    /// A session's life when the request names none (30 minutes).
    pub default_expires_in: Duration,
    /// Open sessions one customer may have on one plan (1).
    pub max_open_per_plan: u32,
    /// How long an open session with an intent waits before the worker asks the provider
    /// about it (a webhook may have been lost).
    pub recheck_after: Duration,
    /// How long ended sessions and webhook event ids are kept (24 h).
    pub retention: Duration,
    /// Sessions the worker takes per run.
    pub batch: u32,
    /// Sessions the worker visits at once within a run (32).
    pub concurrency: usize,
}

impl Default for CheckoutSettings {
    fn default() -> Self {
        Self {
            default_expires_in: Duration::minutes(30),
            max_open_per_plan: 1,
            recheck_after: Duration::seconds(60),
            retention: Duration::hours(24),
            batch: 100,
            concurrency: 32,
        }
    }
}

/// A validated request to open a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCommand {
    pub customer_id: CustomerId,
    pub key: IdempotencyKey,
    pub plan_id: PlanId,
    /// The life asked for, in seconds (already within the server's bounds).
    pub expires_in_secs: Option<u32>,
    pub ctx: AuditContext,
}

/// An opened session, with whether an earlier request with the key opened it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReceipt {
    pub session: CheckoutSession,
    pub replayed: bool,
}

/// Errors of [`CheckoutService::open`].
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("the session cannot be opened")]
    Refused(OpenRefusal),
    /// The seat is held but the provider did not answer: a retry with the same key
    /// resumes by creating the intent.
    #[error("the payment provider is unavailable")]
    PaymentUnavailable(#[source] GatewayError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a confirmation came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirmation {
    /// Paid: the session is complete and this is its active subscription.
    Complete {
        session: CheckoutSession,
        subscription: Subscription,
    },
    /// The customer must authenticate (3-D Secure) first.
    RequiresAction {
        session: CheckoutSession,
        next_action: NextAction,
    },
    /// The card was refused; the session stays open for another.
    PaymentFailed {
        session: CheckoutSession,
        reason: String,
    },
    /// The provider is still working on it; a webhook (or the worker) will finish it.
    Processing { session: CheckoutSession },
}

/// Errors of confirming and expiring sessions.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("no such checkout session")]
    NotFound,
    #[error("the checkout session is {}, not open", status.as_str())]
    NotOpen { status: CheckoutStatus },
    /// No definitive answer from the provider; the session is unchanged (open), and the
    /// worker asks the provider later.
    #[error("the payment provider is unavailable")]
    PaymentUnavailable(String),
    /// The change does not fit the session (a payment of another intent, say).
    #[error(transparent)]
    Conflict(CheckoutRefusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A payment event a webhook reported (already verified and parsed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentEvent {
    pub event: WebhookEvent,
    pub session_id: CheckoutSessionId,
    pub intent_id: String,
    pub kind: PaymentEventKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentEventKind {
    Succeeded { payment_method: PaymentMethod },
    Failed { reason: String },
    Canceled,
}

/// What handling an event did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventOutcome {
    /// Its id was seen before: nothing done.
    Duplicate,
    /// It names no session of ours: nothing to do.
    Ignored,
    /// Applied (or found already applied) to its session.
    Handled(Effect),
}

/// Runs checkout sessions.
#[derive(Clone)]
pub struct CheckoutService {
    store: Arc<dyn Store>,
    intents: Arc<dyn IntentGateway>,
    payments: Arc<dyn PaymentGateway>,
    clock: Arc<dyn Clock>,
    settings: CheckoutSettings,
}

impl CheckoutService {
    pub fn new(
        store: Arc<dyn Store>,
        intents: Arc<dyn IntentGateway>,
        payments: Arc<dyn PaymentGateway>,
        clock: Arc<dyn Clock>,
        settings: CheckoutSettings,
    ) -> Self {
        Self {
            store,
            intents,
            payments,
            clock,
            settings,
        }
    }

    pub fn provider(&self) -> &'static str {
        self.intents.provider()
    }

    /// Sessions the worker takes per run.
    pub fn batch(&self) -> u32 {
        self.settings.batch
    }

    /// Now, by the service's clock.
    pub fn now(&self) -> crate::model::Timestamp {
        self.clock.now()
    }

    /// Opens a session once per `(customer, key)`: holds a seat, then creates the intent.
    /// A retry with the key answers the same session (creating its intent if the first
    /// request could not).
    #[tracing::instrument(skip_all, fields(plan_id = %cmd.plan_id, customer_id = %cmd.customer_id))]
    pub async fn open(&self, cmd: &OpenCommand) -> Result<OpenReceipt, OpenError> {
        let now = self.clock.now();
        let expires_in = cmd
            .expires_in_secs
            .map(|s| Duration::seconds(s.into()))
            .unwrap_or(self.settings.default_expires_in);
        let open = OpenCheckout {
            session_id: CheckoutSessionId::generate(),
            subscription_id: SubscriptionId::generate(),
            customer_id: cmd.customer_id.clone(),
            key: cmd.key.clone(),
            fingerprint: Fingerprint::of_checkout(
                cmd.plan_id,
                &cmd.customer_id,
                cmd.expires_in_secs,
            ),
            plan_id: cmd.plan_id,
            expires_in,
            max_open: self.settings.max_open_per_plan.max(1),
            ctx: cmd.ctx.clone(),
            now,
        };
        let opened = match self.store.open_checkout(&open).await {
            Ok(opened) => opened,
            Err(OpenCheckoutError::Refused(r)) => return Err(OpenError::Refused(r)),
            Err(OpenCheckoutError::Store(e)) => return Err(e.into()),
        };
        let replayed = matches!(opened, Opened::Existing(_));
        let mut session = match opened {
            Opened::New(s) | Opened::Existing(s) => s,
        };
        if session.payment_intent().is_none() && session.status() == CheckoutStatus::Open {
            session = self
                .attach_intent(&session, &cmd.ctx)
                .await
                .map_err(|e| match e {
                    AttachError::Gateway(g) => OpenError::PaymentUnavailable(g),
                    AttachError::Store(s) => OpenError::Store(s),
                })?;
        }
        Ok(OpenReceipt { session, replayed })
    }

    /// The session with this id.
    pub async fn get(&self, id: CheckoutSessionId) -> Result<Option<CheckoutSession>, StoreError> {
        self.store.get_checkout(id).await
    }

    /// The subscription a complete session made.
    pub async fn subscription_of(
        &self,
        session: &CheckoutSession,
    ) -> Result<Option<Subscription>, StoreError> {
        self.store.get_subscription(session.subscription_id()).await
    }

    /// Confirms the session's intent with `payment_method` on the customer's behalf.
    /// A complete session answers `Complete` again; an expired one `NotOpen`; one of a
    /// customer outside `reach` is `NotFound`, as if it did not exist.
    #[tracing::instrument(skip_all, fields(session_id = %id))]
    pub async fn confirm(
        &self,
        id: CheckoutSessionId,
        reach: Reach<'_>,
        payment_method: &PaymentMethod,
        ctx: &AuditContext,
    ) -> Result<Confirmation, CheckoutError> {
        let mut session = self
            .get(id)
            .await?
            .filter(|s| reach.covers(s.customer_id()))
            .ok_or(CheckoutError::NotFound)?;
        match session.status() {
            CheckoutStatus::Complete => return self.completed(session).await,
            CheckoutStatus::Expired => {
                return Err(CheckoutError::NotOpen {
                    status: CheckoutStatus::Expired,
                })
            }
            CheckoutStatus::Open => {}
        }
        if session.payment_intent().is_none() {
            session = self
                .attach_intent(&session, ctx)
                .await
                .map_err(|e| match e {
                    AttachError::Gateway(g) => CheckoutError::PaymentUnavailable(g.to_string()),
                    AttachError::Store(s) => CheckoutError::Store(s),
                })?;
        }
        // Expired while its intent was made: the worker cancels the intent it recorded.
        if session.status() != CheckoutStatus::Open {
            return Err(CheckoutError::NotOpen {
                status: session.status(),
            });
        }
        let Some(intent) = session.payment_intent() else {
            return Err(CheckoutError::Store(StoreError::internal(
                "a session's intent was attached but is not recorded",
            )));
        };
        let intent_id = intent.id.clone();
        match self
            .intents
            .confirm_intent(&intent_id, payment_method)
            .await
        {
            Ok(intent) => self.after_confirm(session, intent, ctx).await,
            Err(ChargeError::Declined { code, message }) => {
                let reason = format!("{code}: {message}");
                let changed = self
                    .change(id, CheckoutChange::PaymentFailed { reason }, ctx)
                    .await?;
                self.settled(changed).await
            }
            Err(ChargeError::Unknown(why)) => Err(CheckoutError::PaymentUnavailable(why)),
        }
    }

    /// Gives the session's seat back now, then cancels its intent at the provider (or
    /// leaves that to the worker when the provider does not answer).
    #[tracing::instrument(skip_all, fields(session_id = %id))]
    pub async fn expire(
        &self,
        id: CheckoutSessionId,
        ctx: &AuditContext,
    ) -> Result<CheckoutSession, CheckoutError> {
        let changed = self
            .change(id, CheckoutChange::Expire(ExpiryCause::Request), ctx)
            .await?;
        let session = changed.session;
        if session.payment_intent().is_none() {
            self.cancel_unrecorded(&session, ctx).await;
            return Ok(session);
        }
        Ok(self.close_intent(session, ctx).await.unwrap_or_else(|s| s))
    }

    /// Handles a verified webhook event once per event id. An event about a complete
    /// session is decided on the session as read: a complete session is
    /// [final](CheckoutSession::is_final), so the event changes nothing whether or not it
    /// was seen before, and neither claims its id nor takes a store step. Any other event
    /// claims its id first, so that a redelivery is a duplicate.
    #[tracing::instrument(skip_all, fields(event_id = %ev.event.id, session_id = %ev.session_id))]
    pub async fn on_event(&self, ev: &PaymentEvent) -> Result<EventOutcome, StoreError> {
        let Some(session) = self.store.get_checkout(ev.session_id).await? else {
            return Ok(EventOutcome::Ignored);
        };
        let cmd = self.event_cmd(ev);
        if session.is_final() && !session.needs_plan(&cmd.change) {
            return event_outcome(settle_final(session, &cmd));
        }
        if !self.store.claim_webhook_event(&ev.event).await? {
            return Ok(EventOutcome::Duplicate);
        }
        let result = event_outcome(self.run_change(&cmd).await);
        if result.is_err() {
            // Let the provider's redelivery be handled; a failed release leaves the
            // session to the worker, which asks the provider.
            if let Err(e) = self.store.release_webhook_event(&ev.event.id).await {
                tracing::warn!(error = %e, "could not release a webhook event");
            }
        }
        result
    }

    fn event_cmd(&self, ev: &PaymentEvent) -> ChangeCheckout {
        let ctx = AuditContext {
            actor: "webhook".into(),
            trace_id: ev.event.id.as_str().into(),
        };
        let change = match &ev.kind {
            PaymentEventKind::Succeeded { payment_method } => CheckoutChange::PaymentSucceeded {
                payment_id: ev.intent_id.clone(),
                payment_method: payment_method.clone(),
            },
            PaymentEventKind::Failed { reason } => CheckoutChange::PaymentFailed {
                reason: reason.clone(),
            },
            PaymentEventKind::Canceled => CheckoutChange::IntentClosed,
        };
        self.change_cmd(ev.session_id, change, &ctx)
    }

    async fn after_confirm(
        &self,
        session: CheckoutSession,
        intent: PaymentIntent,
        ctx: &AuditContext,
    ) -> Result<Confirmation, CheckoutError> {
        let id = session.id();
        let change = match intent.status {
            IntentStatus::Succeeded { payment_method } => CheckoutChange::PaymentSucceeded {
                payment_id: intent.id,
                payment_method,
            },
            IntentStatus::RequiresAction { next_action } => {
                return Ok(Confirmation::RequiresAction {
                    session,
                    next_action,
                })
            }
            IntentStatus::Processing => return Ok(Confirmation::Processing { session }),
            IntentStatus::RequiresPaymentMethod { last_error } => CheckoutChange::PaymentFailed {
                reason: last_error.unwrap_or_else(|| "the payment failed".to_owned()),
            },
            IntentStatus::Canceled => {
                // Only an expiry cancels an intent: the session expired meanwhile.
                let status = self
                    .get(id)
                    .await?
                    .map_or(CheckoutStatus::Expired, |s| s.status());
                return Err(CheckoutError::NotOpen { status });
            }
        };
        let changed = self.change(id, change, ctx).await?;
        if changed.applied.effect == Effect::RefundDue {
            let status = changed.session.status();
            self.refund_late(changed.session, ctx).await;
            return Err(CheckoutError::NotOpen { status });
        }
        self.settled(changed).await
    }

    /// The confirmation answer for a session after its change.
    async fn settled(&self, changed: Changed) -> Result<Confirmation, CheckoutError> {
        let session = changed.session;
        match session.status() {
            // Completed by this change: its subscription is the one the change made.
            CheckoutStatus::Complete => match changed.applied.subscription {
                Some(subscription) => Ok(Confirmation::Complete {
                    session,
                    subscription,
                }),
                None => self.completed(session).await,
            },
            CheckoutStatus::Expired => Err(CheckoutError::NotOpen {
                status: CheckoutStatus::Expired,
            }),
            CheckoutStatus::Open => {
                let reason = session
                    .payment_error()
                    .unwrap_or("the payment failed")
                    .to_owned();
                Ok(Confirmation::PaymentFailed { session, reason })
            }
        }
    }

    async fn completed(&self, session: CheckoutSession) -> Result<Confirmation, CheckoutError> {
        let subscription = self.subscription_of(&session).await?.ok_or_else(|| {
            StoreError::internal(format!(
                "complete checkout session {} without its subscription",
                session.id()
            ))
        })?;
        Ok(Confirmation::Complete {
            session,
            subscription,
        })
    }

    async fn attach_intent(
        &self,
        session: &CheckoutSession,
        ctx: &AuditContext,
    ) -> Result<CheckoutSession, AttachError> {
        let req = IntentRequest {
            provider_key: session.provider_key(),
            checkout_session_id: session.id(),
            subscription_id: session.subscription_id(),
            customer_id: session.customer_id().clone(),
            amount: session.amount(),
            currency: session.currency(),
        };
        let intent = self
            .intents
            .create_intent(&req)
            .await
            .map_err(AttachError::Gateway)?;
        let attach = CheckoutChange::AttachIntent(PaymentIntentRef {
            id: intent.id.clone(),
            client_secret: intent.client_secret.clone(),
        });
        match self.change(session.id(), attach, ctx).await {
            Ok(changed) => Ok(changed.session),
            // Expired while the intent was made: it must not charge.
            Err(CheckoutError::NotOpen { .. }) => {
                if let Err(e) = self.intents.cancel_intent(&intent.id).await {
                    tracing::warn!(error = %e, "an unattached intent could not be cancelled");
                }
                Ok(self
                    .get(session.id())
                    .await
                    .map_err(AttachError::Store)?
                    .unwrap_or_else(|| session.clone()))
            }
            Err(CheckoutError::Store(e)) => Err(AttachError::Store(e)),
            Err(e) => Err(AttachError::Store(StoreError::internal(e.to_string()))),
        }
    }

    async fn change(
        &self,
        id: CheckoutSessionId,
        change: CheckoutChange,
        ctx: &AuditContext,
    ) -> Result<Changed, CheckoutError> {
        self.run_change(&self.change_cmd(id, change, ctx)).await
    }

    fn change_cmd(
        &self,
        id: CheckoutSessionId,
        change: CheckoutChange,
        ctx: &AuditContext,
    ) -> ChangeCheckout {
        ChangeCheckout {
            session_id: id,
            change,
            ctx: ctx.clone(),
            now: self.clock.now(),
            recheck_after: self.settings.recheck_after,
        }
    }

    async fn run_change(&self, cmd: &ChangeCheckout) -> Result<Changed, CheckoutError> {
        self.store.change_checkout(cmd).await.map_err(|e| match e {
            ChangeCheckoutError::NotFound => CheckoutError::NotFound,
            ChangeCheckoutError::Refused(r) => refusal_error(r),
            ChangeCheckoutError::Store(e) => CheckoutError::Store(e),
        })
    }
}

/// `cmd` decided on a [final](CheckoutSession::is_final) session as read — what its store
/// step would decide, without one.
fn settle_final(
    mut session: CheckoutSession,
    cmd: &ChangeCheckout,
) -> Result<Changed, CheckoutError> {
    match session.apply(cmd, None) {
        Ok(applied) if applied.effect == Effect::Unchanged => Ok(Changed { session, applied }),
        Ok(_) => Err(CheckoutError::Store(StoreError::internal(
            "a final checkout session was changed",
        ))),
        Err(refusal) => Err(refusal_error(refusal)),
    }
}

/// What a webhook's change did, as the provider is answered.
fn event_outcome(changed: Result<Changed, CheckoutError>) -> Result<EventOutcome, StoreError> {
    match changed {
        // A refund it makes due is the worker's (the session is due at once), so that the
        // provider gets its answer without waiting for another call.
        Ok(changed) => Ok(EventOutcome::Handled(changed.applied.effect)),
        Err(CheckoutError::NotFound) => Ok(EventOutcome::Ignored),
        Err(CheckoutError::NotOpen { .. }) => Ok(EventOutcome::Handled(Effect::Unchanged)),
        Err(CheckoutError::Conflict(r)) => {
            tracing::warn!(refusal = %r, "a webhook event does not fit its session");
            Ok(EventOutcome::Ignored)
        }
        Err(CheckoutError::PaymentUnavailable(_)) => unreachable!("no provider call"),
        Err(CheckoutError::Store(e)) => Err(e),
    }
}

fn refusal_error(refusal: CheckoutRefusal) -> CheckoutError {
    match refusal {
        CheckoutRefusal::NotOpen { status } => CheckoutError::NotOpen { status },
        r => CheckoutError::Conflict(r),
    }
}

enum AttachError {
    Gateway(GatewayError),
    Store(StoreError),
}
