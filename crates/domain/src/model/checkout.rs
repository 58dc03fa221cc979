//! Checkout sessions: a seat held for one customer while they pay in their own time.
//!
//! A session is opened by holding a seat (`seat_held`, out of `seats_left`), then paid
//! through a PaymentIntent the customer confirms — with the server, or in their browser
//! with 3-D Secure. Whatever learns of the payment first completes it (the confirm
//! answer, the provider's webhook, the worker asking the provider); completion turns the
//! held seat into an `active` subscription. A session that is not paid by `expires_at`,
//! or that the customer gives up, gives its seat back (`hold_expired`).
//!
//! A payment that succeeds after its session expired (its cancellation at the provider
//! failed or came too late) is **honoured when the plan still sells and has a free seat**:
//! the seat is taken again and the session completes, because the customer paid and the
//! seat exists. Otherwise it is **refunded**: the session records the late payment, the
//! worker refunds it, and the refund is audited once (`payment_refunded`).
//!
//! Every decision is made here, on a session and its plan that a store has read inside
//! its atomic step ([`CheckoutSession::apply`], [`OpenCheckout::decide`]); stores only
//! read, call, and write back what comes out.

use chrono::Duration;
use serde::{Deserialize, Serialize};

use super::{
    AuditContext, AuditEntry, CheckoutSessionId, Currency, CustomerId, Fingerprint, IdempotencyKey,
    InvalidValue, PaymentMethod, Plan, PlanId, PlanStatus, SeatMove, Subscription, SubscriptionId,
    Timestamp, UnitAmount,
};

mod open;
pub use open::*;

/// Where a checkout session is.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantNames,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum CheckoutStatus {
    /// A seat is held; the payment has not succeeded yet.
    Open,
    /// Paid: the seat is the active subscription's.
    Complete,
    /// Not paid in time, or given up: the seat was given back.
    Expired,
}

impl CheckoutStatus {
    pub const ALL: &'static [Self] = <Self as strum::VariantArray>::VARIANTS;

    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        InvalidValue::parse_name(s)
    }

    pub fn as_str(&self) -> &'static str {
        self.into()
    }
}

/// Why a session expired.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantNames,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ExpiryCause {
    /// `expires_at` passed.
    Timeout,
    /// The customer (or an operator) expired it.
    Request,
}

impl ExpiryCause {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        InvalidValue::parse_name(s)
    }

    pub fn as_str(&self) -> &'static str {
        self.into()
    }
}

/// The provider's PaymentIntent of a session: its id, and the secret a browser confirms
/// it with (Stripe.js).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentIntentRef {
    pub id: String,
    pub client_secret: String,
}

/// A payment that succeeded after its session expired, when no seat could take it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatePayment {
    pub payment_id: String,
    /// Whether its refund is done (and audited).
    pub refunded: bool,
}

/// A checkout session. Private fields: made by [`OpenCheckout::hold`], read back by
/// [`CheckoutSession::restore`], changed only by [`CheckoutSession::apply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutSession {
    s: StoredCheckoutSession,
}

/// A session as a store keeps it; [`CheckoutSession::restore`] checks it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredCheckoutSession {
    pub id: CheckoutSessionId,
    pub plan_id: PlanId,
    pub customer_id: CustomerId,
    /// The subscription a completion creates. It names the hold in the audit log and at
    /// the provider (`seatkeeper-sub-<id>`) from the start.
    pub subscription_id: SubscriptionId,
    /// The `Idempotency-Key` the session was opened with (scoped to the customer).
    pub idempotency_key: IdempotencyKey,
    pub fingerprint: Fingerprint,
    pub amount: UnitAmount,
    pub currency: Currency,
    pub status: CheckoutStatus,
    pub payment_intent: Option<PaymentIntentRef>,
    /// Why the last payment attempt failed, while the session is open.
    pub payment_error: Option<String>,
    /// Whether the provider has said the intent can charge no more (it succeeded or
    /// was cancelled).
    pub intent_closed: bool,
    pub late_payment: Option<LatePayment>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    pub updated_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    pub expiry: Option<ExpiryCause>,
    /// When the worker should look at the session next; `None`: never again.
    pub check_at: Option<Timestamp>,
}

impl CheckoutSession {
    /// The session a store kept, if its fields agree with its status.
    pub fn restore(s: StoredCheckoutSession) -> Result<Self, InvalidValue> {
        use CheckoutStatus::*;
        let bad = |what: &str| {
            Err(InvalidValue::new(format!(
                "a checkout session in status `{}` {what}",
                s.status.as_str()
            )))
        };
        if s.expires_at <= s.created_at {
            return Err(InvalidValue::new(
                "a checkout session expires after it was created",
            ));
        }
        match s.status {
            Open if s.ended_at.is_some() || s.expiry.is_some() => return bad("has ended"),
            Open if s.late_payment.is_some() => return bad("with a late payment"),
            Open if s.check_at.is_none() => return bad("without check_at"),
            Complete | Expired if s.ended_at.is_none() => return bad("without ended_at"),
            Complete if s.expiry.is_some() || s.late_payment.is_some() => {
                return bad("with an expiry")
            }
            Complete if s.payment_intent.is_none() => return bad("without a payment intent"),
            Expired if s.expiry.is_none() => return bad("without its cause"),
            _ => {}
        }
        Ok(Self { s })
    }

    pub fn stored(&self) -> &StoredCheckoutSession {
        &self.s
    }

    pub fn id(&self) -> CheckoutSessionId {
        self.s.id
    }

    pub fn plan_id(&self) -> PlanId {
        self.s.plan_id
    }

    pub fn customer_id(&self) -> &CustomerId {
        &self.s.customer_id
    }

    pub fn subscription_id(&self) -> SubscriptionId {
        self.s.subscription_id
    }

    pub fn status(&self) -> CheckoutStatus {
        self.s.status
    }

    pub fn amount(&self) -> UnitAmount {
        self.s.amount
    }

    pub fn currency(&self) -> Currency {
        self.s.currency
    }

    pub fn payment_intent(&self) -> Option<&PaymentIntentRef> {
        self.s.payment_intent.as_ref()
    }

    pub fn payment_error(&self) -> Option<&str> {
        self.s.payment_error.as_deref()
    }

    pub fn late_payment(&self) -> Option<&LatePayment> {
        self.s.late_payment.as_ref()
    }

    pub fn intent_closed(&self) -> bool {
        self.s.intent_closed
    }

    pub fn expires_at(&self) -> Timestamp {
        self.s.expires_at
    }

    pub fn created_at(&self) -> Timestamp {
        self.s.created_at
    }

    pub fn ended_at(&self) -> Option<Timestamp> {
        self.s.ended_at
    }

    pub fn expiry(&self) -> Option<ExpiryCause> {
        self.s.expiry
    }

    pub fn check_at(&self) -> Option<Timestamp> {
        self.s.check_at
    }

    /// The provider's idempotency key of this session's PaymentIntent.
    pub fn provider_key(&self) -> String {
        super::provider_key_for(self.s.subscription_id)
    }

    /// Whether the session holds a seat now.
    pub fn holds_seat(&self) -> bool {
        self.s.status == CheckoutStatus::Open
    }

    /// Whether the session can never change again: it is complete, and every change of a
    /// complete session leaves it unchanged or is refused (its intent is paid and closed,
    /// its seat is its subscription's, nothing reopens it). So a change of a final session
    /// decides the same on any copy read of it as in a store step, which it need not wait
    /// for: a provider's report of a payment the confirmation already recorded, say.
    pub fn is_final(&self) -> bool {
        self.s.status == CheckoutStatus::Complete
    }

    /// Applies `change` (one atomic step of a store, with the session's plan read in the
    /// same step when [`needs_plan`](Self::needs_plan)) and returns what the store writes.
    /// On a refusal nothing changed.
    pub fn apply(
        &mut self,
        cmd: &ChangeCheckout,
        plan: Option<&mut Plan>,
    ) -> Result<Applied, CheckoutRefusal> {
        let before = self.clone();
        let result = self.decide(cmd, plan);
        match &result {
            Ok(applied) if applied.effect != Effect::Unchanged => {
                self.s.updated_at = cmd.now;
                self.s.check_at = self.next_check(cmd);
            }
            Ok(_) => {}
            Err(_) => *self = before,
        }
        result
    }

    /// Whether applying `change` to the session as it is may move the plan's seats or
    /// number an audit entry, so that the store must read (and lock) the plan in the
    /// same step. Decided on the session the step read (and locked): a payment of a
    /// session already complete, a second refund or an expiry of an ended session
    /// change nothing and leave the plan alone, so that the provider's redeliveries do
    /// not queue behind a hot plan's sales.
    pub fn needs_plan(&self, change: &CheckoutChange) -> bool {
        if !change.may_need_plan() {
            return false;
        }
        match change {
            CheckoutChange::PaymentSucceeded { payment_id, .. } => {
                self.s.status != CheckoutStatus::Complete
                    && self.s.late_payment.is_none()
                    && self
                        .s
                        .payment_intent
                        .as_ref()
                        .is_some_and(|i| i.id == *payment_id)
            }
            CheckoutChange::Expire(_) => self.s.status == CheckoutStatus::Open,
            CheckoutChange::RefundRecorded => {
                self.s.late_payment.as_ref().is_some_and(|l| !l.refunded)
            }
            _ => false,
        }
    }

    fn decide(
        &mut self,
        cmd: &ChangeCheckout,
        plan: Option<&mut Plan>,
    ) -> Result<Applied, CheckoutRefusal> {
        use CheckoutStatus::*;
        let status = self.s.status;
        let unchanged = Ok(Applied::unchanged());
        match &cmd.change {
            CheckoutChange::AttachIntent(intent) => match &self.s.payment_intent {
                Some(had) if had.id == intent.id => unchanged,
                Some(_) => Err(CheckoutRefusal::IntentMismatch),
                None if status == Complete => Err(CheckoutRefusal::NotOpen { status }),
                // An expired session records the intent the provider made for it (its
                // recording was lost), so that it is cancelled like any expired
                // session's intent — by the worker until the provider answers — or,
                // should it have been paid, meets the late-payment rule.
                None => {
                    self.s.payment_intent = Some(intent.clone());
                    Ok(Applied::updated())
                }
            },
            CheckoutChange::PaymentFailed { reason } => {
                if status != Open || self.s.payment_error.as_deref() == Some(reason) {
                    return unchanged;
                }
                self.s.payment_error = Some(reason.clone());
                Ok(Applied::updated())
            }
            CheckoutChange::PaymentSucceeded {
                payment_id,
                payment_method,
            } => {
                match &self.s.payment_intent {
                    Some(intent) if intent.id == *payment_id => {}
                    _ => return Err(CheckoutRefusal::IntentMismatch),
                }
                if status == Complete || self.s.late_payment.is_some() {
                    return unchanged;
                }
                let plan = plan.expect("a payment's completion reads the plan");
                self.s.intent_closed = true;
                let mut entries = Vec::new();
                if status == Expired {
                    let sells = plan.status() == PlanStatus::Active && plan.seats_left() > 0;
                    if !sells {
                        self.s.late_payment = Some(LatePayment {
                            payment_id: payment_id.clone(),
                            refunded: false,
                        });
                        return Ok(Applied {
                            effect: Effect::RefundDue,
                            ..Applied::updated()
                        });
                    }
                    let reason = format!("late payment {payment_id} honoured: a seat was free");
                    entries.push(plan.move_seats(
                        SeatMove::hold(self.s.subscription_id, Some(reason)),
                        &cmd.ctx,
                        cmd.now,
                    ));
                    self.s.expiry = None;
                }
                entries.push(plan.move_seats(
                    SeatMove::checkout_completed(self.s.subscription_id),
                    &cmd.ctx,
                    cmd.now,
                ));
                self.s.status = Complete;
                self.s.payment_error = None;
                self.s.ended_at = Some(cmd.now);
                let mut subscription = Subscription::reserve(
                    self.s.subscription_id,
                    plan,
                    self.s.customer_id.clone(),
                    payment_method.clone(),
                    None,
                    cmd.now,
                );
                subscription.activate(payment_id.clone(), cmd.now);
                Ok(Applied {
                    effect: Effect::Completed,
                    subscription: Some(subscription),
                    entries,
                })
            }
            CheckoutChange::Expire(cause) => {
                if status != Open {
                    return Err(CheckoutRefusal::NotOpen { status });
                }
                if *cause == ExpiryCause::Timeout && cmd.now < self.s.expires_at {
                    return Err(CheckoutRefusal::NotDue);
                }
                let plan = plan.expect("an expiry reads the plan");
                let entry = plan.move_seats(
                    SeatMove::hold_expired(self.s.subscription_id, *cause),
                    &cmd.ctx,
                    cmd.now,
                );
                self.s.status = Expired;
                self.s.expiry = Some(*cause);
                self.s.ended_at = Some(cmd.now);
                Ok(Applied {
                    entries: vec![entry],
                    ..Applied::updated()
                })
            }
            CheckoutChange::IntentClosed => {
                if self.s.intent_closed || self.s.payment_intent.is_none() {
                    return unchanged;
                }
                self.s.intent_closed = true;
                Ok(Applied::updated())
            }
            CheckoutChange::RefundRecorded => match &mut self.s.late_payment {
                None => Err(CheckoutRefusal::NothingToRefund),
                Some(late) if late.refunded => unchanged,
                Some(late) => {
                    late.refunded = true;
                    let payment_id = late.payment_id.clone();
                    let plan = plan.expect("a refund's entry is numbered by the plan");
                    let entry = plan.move_seats(
                        SeatMove::late_refund(self.s.subscription_id, &payment_id),
                        &cmd.ctx,
                        cmd.now,
                    );
                    Ok(Applied {
                        entries: vec![entry],
                        ..Applied::updated()
                    })
                }
            },
            CheckoutChange::Checked => {
                if status != Open {
                    return unchanged;
                }
                Ok(Applied::updated())
            }
        }
    }

    /// When the worker looks next: an open session at its expiry, and before that every
    /// `recheck_after` while it has an intent whose outcome only the provider may know;
    /// an expired one at once while its intent may still charge or its late payment is
    /// not refunded; never otherwise. An expired session that records no intent counts
    /// as one whose intent may still charge: the provider may have made one whose
    /// recording was lost (the process died between the two), and only asking it under
    /// the session's provider key, which records what it answers, settles that.
    fn next_check(&self, cmd: &ChangeCheckout) -> Option<Timestamp> {
        match self.s.status {
            CheckoutStatus::Open => Some(match &self.s.payment_intent {
                Some(_) => (cmd.now + cmd.recheck_after).min(self.s.expires_at),
                None => self.s.expires_at,
            }),
            CheckoutStatus::Expired => {
                let cancel = !self.s.intent_closed;
                let refund = self.s.late_payment.as_ref().is_some_and(|l| !l.refunded);
                (cancel || refund).then_some(cmd.now)
            }
            CheckoutStatus::Complete => None,
        }
    }
}

/// Something that happened to a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutChange {
    /// The PaymentIntent made for it at the provider.
    AttachIntent(PaymentIntentRef),
    /// A payment attempt failed; an open session stays open for another card.
    PaymentFailed { reason: String },
    /// The provider says the session's intent succeeded.
    PaymentSucceeded {
        payment_id: String,
        payment_method: PaymentMethod,
    },
    /// Give the seat back: `expires_at` passed, or the customer asked.
    Expire(ExpiryCause),
    /// The provider says the intent can charge no more (it was cancelled).
    IntentClosed,
    /// The late payment was refunded at the provider.
    RefundRecorded,
    /// The worker asked the provider and learnt nothing new: look again later.
    Checked,
}

impl CheckoutChange {
    /// Whether a change of this kind can ever need the plan (see
    /// [`CheckoutSession::needs_plan`], which decides for a session as it is): a store may
    /// skip reading the session ahead of its step for the kinds that never do.
    pub fn may_need_plan(&self) -> bool {
        matches!(
            self,
            Self::PaymentSucceeded { .. } | Self::Expire(_) | Self::RefundRecorded
        )
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::AttachIntent(_) => "attach_intent",
            Self::PaymentFailed { .. } => "payment_failed",
            Self::PaymentSucceeded { .. } => "payment_succeeded",
            Self::Expire(_) => "expire",
            Self::IntentClosed => "intent_closed",
            Self::RefundRecorded => "refund_recorded",
            Self::Checked => "checked",
        }
    }
}

/// One change of one session, as a store's atomic step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeCheckout {
    pub session_id: CheckoutSessionId,
    pub change: CheckoutChange,
    pub ctx: AuditContext,
    pub now: Timestamp,
    /// How long an open session with an intent waits before the worker asks the provider.
    pub recheck_after: Duration,
}

/// What a change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Nothing: the change was already made, or no longer matters.
    Unchanged,
    /// The session changed.
    Updated,
    /// The session completed; its subscription is new.
    Completed,
    /// A payment landed after the session expired and no seat could take it: refund it.
    RefundDue,
}

/// What [`CheckoutSession::apply`] decided, for the store to write: the session (unless
/// unchanged), the new subscription, and the plan's audit entries (the plan moved with
/// them, through [`Plan::move_seats`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub effect: Effect,
    pub subscription: Option<Subscription>,
    pub entries: Vec<AuditEntry>,
}

impl Applied {
    fn unchanged() -> Self {
        Self {
            effect: Effect::Unchanged,
            subscription: None,
            entries: Vec::new(),
        }
    }

    fn updated() -> Self {
        Self {
            effect: Effect::Updated,
            ..Self::unchanged()
        }
    }
}

/// Why a change cannot be made; nothing changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CheckoutRefusal {
    #[error("the checkout session is {}, not open", status.as_str())]
    NotOpen { status: CheckoutStatus },
    #[error("the checkout session has not reached its expiry")]
    NotDue,
    #[error("the payment is not the session's payment intent")]
    IntentMismatch,
    #[error("the checkout session has no late payment to refund")]
    NothingToRefund,
}
