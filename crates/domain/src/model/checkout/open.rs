//! Opening a checkout session: the decision on what a store read (the session the key
//! opened, the customer's open sessions on the plan, the plan), the hold itself, and the
//! seat moves of checkouts.

use chrono::Duration;

use super::{CheckoutSession, CheckoutStatus, StoredCheckoutSession};
use crate::model::{
    AuditAction, AuditContext, AuditEntry, CheckoutSessionId, CustomerId, ExpiryCause, Fingerprint,
    IdempotencyKey, Plan, PlanId, PlanStatus, SeatMove, SubscriptionId, Timestamp,
};

/// Why a plan cannot give a seat now: the refusals a purchase and a checkout share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeatRefusal {
    PlanNotFound,
    PlanInactive,
    SoldOut,
}

impl SeatRefusal {
    /// Why `plan` (or its absence) cannot give a seat now, if it cannot.
    pub fn of(plan: Option<&Plan>) -> Option<Self> {
        match plan {
            None => Some(Self::PlanNotFound),
            Some(p) if p.status() != PlanStatus::Active => Some(Self::PlanInactive),
            Some(p) if p.seats_left() == 0 => Some(Self::SoldOut),
            Some(_) => None,
        }
    }
}

/// Open a checkout session: hold a seat of `plan_id` for `customer_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenCheckout {
    pub session_id: CheckoutSessionId,
    pub subscription_id: SubscriptionId,
    pub customer_id: CustomerId,
    pub key: IdempotencyKey,
    pub fingerprint: Fingerprint,
    pub plan_id: PlanId,
    pub expires_in: Duration,
    /// How many open sessions one customer may have on one plan (1 by default).
    pub max_open: u32,
    pub ctx: AuditContext,
    pub now: Timestamp,
}

/// Why a session cannot be opened; nothing changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenRefusal {
    /// The key opened a session with a different request.
    KeyReused,
    /// The customer already has `max_open` open sessions on the plan (this one first).
    TooManyOpen {
        open: CheckoutSessionId,
    },
    Seat(SeatRefusal),
}

/// What [`OpenCheckout::decide`] lets the store do.
// Returned once per opening and never kept: boxing would allocate on every replay.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenDecision {
    /// The key opened this session with the same request: answer it again.
    Existing(CheckoutSession),
    /// Hold a seat ([`OpenCheckout::hold`]).
    Hold,
}

impl OpenCheckout {
    /// Decides on what the store read in its atomic step: the session the key opened, if
    /// any; the customer's open sessions on the plan; the plan.
    pub fn decide(
        &self,
        by_key: Option<&CheckoutSession>,
        open_on_plan: &[CheckoutSessionId],
        plan: Option<&Plan>,
    ) -> Result<OpenDecision, OpenRefusal> {
        if let Some(existing) = by_key {
            return if existing.s.fingerprint == self.fingerprint {
                Ok(OpenDecision::Existing(existing.clone()))
            } else {
                Err(OpenRefusal::KeyReused)
            };
        }
        if let Some(r @ (SeatRefusal::PlanNotFound | SeatRefusal::PlanInactive)) =
            SeatRefusal::of(plan)
        {
            return Err(OpenRefusal::Seat(r));
        }
        if open_on_plan.len() >= self.max_open as usize {
            let open = *open_on_plan.iter().min().expect("max_open is at least 1");
            return Err(OpenRefusal::TooManyOpen { open });
        }
        match SeatRefusal::of(plan) {
            Some(r) => Err(OpenRefusal::Seat(r)),
            None => Ok(OpenDecision::Hold),
        }
    }

    /// Holds a seat of `plan` (one [`Self::decide`] let through): the seat moves, and the
    /// new open session and the move's audit entry come back for the store to write.
    pub fn hold(&self, plan: &mut Plan) -> (CheckoutSession, AuditEntry) {
        let entry = plan.move_seats(
            SeatMove::hold(self.subscription_id, None),
            &self.ctx,
            self.now,
        );
        let expires_at = self.now + self.expires_in;
        let session = CheckoutSession {
            s: StoredCheckoutSession {
                id: self.session_id,
                plan_id: plan.id(),
                customer_id: self.customer_id.clone(),
                subscription_id: self.subscription_id,
                idempotency_key: self.key.clone(),
                fingerprint: self.fingerprint.clone(),
                amount: plan.unit_amount(),
                currency: plan.currency(),
                status: CheckoutStatus::Open,
                payment_intent: None,
                payment_error: None,
                intent_closed: false,
                late_payment: None,
                created_at: self.now,
                expires_at,
                updated_at: self.now,
                ended_at: None,
                expiry: None,
                check_at: Some(expires_at),
            },
        };
        (session, entry)
    }
}

impl SeatMove {
    /// A checkout holds a seat for the subscription it may become.
    pub fn hold(subscription: SubscriptionId, reason: Option<String>) -> Self {
        Self {
            delta: -1,
            action: AuditAction::SeatHeld,
            subscription_id: Some(subscription),
            reason,
        }
    }

    /// A hold ends unpaid: its seat comes back.
    pub fn hold_expired(subscription: SubscriptionId, cause: ExpiryCause) -> Self {
        let reason = match cause {
            ExpiryCause::Timeout => "the checkout session expired",
            ExpiryCause::Request => "the checkout session was expired on request",
        };
        Self {
            delta: 1,
            action: AuditAction::HoldExpired,
            subscription_id: Some(subscription),
            reason: Some(reason.to_owned()),
        }
    }

    /// A paid checkout: the held seat is the active subscription's; no seat moves.
    pub fn checkout_completed(subscription: SubscriptionId) -> Self {
        Self {
            delta: 0,
            action: AuditAction::CheckoutCompleted,
            subscription_id: Some(subscription),
            reason: None,
        }
    }

    /// The refund of a payment that landed after its session expired with no seat free.
    pub fn late_refund(subscription: SubscriptionId, payment_id: &str) -> Self {
        Self {
            delta: 0,
            action: AuditAction::PaymentRefunded,
            subscription_id: Some(subscription),
            reason: Some(format!(
                "refunded {payment_id}: paid after the checkout session expired, no seat free"
            )),
        }
    }
}
