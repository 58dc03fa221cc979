//! The purchase repository: the two atomic phases around the charge.
//!
//! [`PurchaseRepository::reserve_seat`] takes a seat and records the recovery point;
//! [`PurchaseRepository::complete_purchase`] records what the charge did. The charge
//! itself happens between them, outside any transaction or lock. For a key the store has
//! never seen — nearly every purchase — [`PurchaseRepository::reserve_with_new_key`]
//! claims the key and reserves in one step, one transaction instead of two.

use async_trait::async_trait;

use super::StoreError;
use crate::model::{
    AuditAction, AuditContext, AuditEntry, ClaimKey, CustomerId, IdempotencyKey, LockToken,
    PaymentMethod, Plan, PlanId, PurchaseOutcome, SeatMove, SeatRefusal, Subscription,
    SubscriptionId, Timestamp,
};

/// Reserve a seat of `plan_id` for the purchase that holds `(customer_id, key)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveSeat {
    pub customer_id: CustomerId,
    pub key: IdempotencyKey,
    pub owner: LockToken,
    pub plan_id: PlanId,
    pub subscription_id: SubscriptionId,
    pub payment_method: PaymentMethod,
    pub request_id: String,
    pub ctx: AuditContext,
    pub now: Timestamp,
}

impl ReserveSeat {
    /// Why `plan` (or its absence) cannot give a seat now, if it cannot.
    pub fn rejection(&self, plan: Option<&Plan>) -> Option<PurchaseOutcome> {
        let plan_id = self.plan_id;
        SeatRefusal::of(plan).map(|refusal| match refusal {
            SeatRefusal::PlanNotFound => PurchaseOutcome::PlanNotFound { plan_id },
            SeatRefusal::PlanInactive => PurchaseOutcome::PlanInactive { plan_id },
            SeatRefusal::SoldOut => PurchaseOutcome::SoldOut { plan_id },
        })
    }

    /// Takes a seat of `plan` (one [`Self::rejection`] let through) for this purchase:
    /// the seat moves, and the new `incomplete` subscription and the move's audit entry
    /// come back for the store to write.
    pub fn take_seat(&self, plan: &mut Plan) -> (Subscription, AuditEntry) {
        let entry = plan.move_seats(SeatMove::reserve(self.subscription_id), &self.ctx, self.now);
        let subscription = Subscription::reserve(
            self.subscription_id,
            plan,
            self.customer_id.clone(),
            self.payment_method.clone(),
            Some(self.key.clone()),
            self.now,
        );
        (subscription, entry)
    }
}

/// What a reservation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// A seat is held by this new `incomplete` subscription.
    Reserved(Subscription),
    /// No seat could be had; the key was finished with this outcome.
    Rejected(PurchaseOutcome),
}

/// Errors of [`PurchaseRepository::reserve_seat`].
#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    /// The caller no longer holds the key's lock (it expired and was taken over).
    #[error("the idempotency key's lock was taken over by another request")]
    LockLost,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Claim a key that has no record yet and reserve a seat under it: the first two phases
/// of a purchase, for the usual case of a new key. The claim and the reservation name the
/// same customer, key and owner ([`ReserveWithNewKey::new`] checks it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReserveWithNewKey {
    claim: ClaimKey,
    seat: ReserveSeat,
}

impl ReserveWithNewKey {
    /// # Panics
    /// If `claim` and `seat` differ in customer, key or owner: a programming error, never
    /// the caller's input.
    pub fn new(claim: ClaimKey, seat: ReserveSeat) -> Self {
        assert!(
            claim.scope == seat.customer_id && claim.key == seat.key && claim.owner == seat.owner,
            "a reservation with a new key claims the key it reserves under"
        );
        Self { claim, seat }
    }

    /// The claim: its fresh record ([`ClaimKey::fresh_record`]) is what the key starts as.
    pub fn claim(&self) -> &ClaimKey {
        &self.claim
    }

    /// The reservation made under the new key.
    pub fn seat(&self) -> &ReserveSeat {
        &self.seat
    }
}

/// What [`PurchaseRepository::reserve_with_new_key`] did.
// Returned once per purchase and never stored: boxing the reservation would allocate on
// every purchase to save stack space for a moment.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewKeyReservation {
    /// The key was new: it is now held by the caller, and this is what the reservation
    /// under it did (`Reserved`: recovery point `Reserved`; `Rejected`: key finished).
    Claimed(Reservation),
    /// The key has a record (live, finished, abandoned or past its retention): nothing
    /// changed. [`IdempotencyRepository::claim_key`](super::IdempotencyRepository::claim_key)
    /// decides what it means.
    KeyExists,
}

/// What the charge of a reserved subscription did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeResult {
    Charged { payment_id: String },
    Declined { reason: String },
}

/// Record the charge result of an `incomplete` subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletePurchase {
    pub subscription_id: SubscriptionId,
    pub result: ChargeResult,
    pub request_id: String,
    pub ctx: AuditContext,
    pub now: Timestamp,
    /// Set by the reconciler when it declines a purchase because the charge never
    /// happened: the store schedules a `Verify` recovery task at that time, in the same
    /// atomic step, so that a charge landing late is found and refunded.
    pub verify_after: Option<Timestamp>,
}

/// What completing a purchase changes, as every store applies it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletionChange {
    pub outcome: PurchaseOutcome,
    /// How `seats_left` moves: 0 when charged, +1 when the seat is released.
    pub seat_delta: u32,
    pub action: AuditAction,
    pub reason: Option<String>,
}

impl CompletionChange {
    /// The seat move the completion of `subscription` makes: none when charged (the
    /// activation is recorded), its seat given back when declined.
    pub fn seat_move(&self, subscription: SubscriptionId) -> SeatMove {
        SeatMove {
            delta: i8::try_from(self.seat_delta).expect("a completion gives back one seat at most"),
            action: self.action,
            subscription_id: Some(subscription),
            reason: self.reason.clone(),
        }
    }
}

impl CompletePurchase {
    /// Applies the charge result to the `incomplete` subscription (`activate` or
    /// `expire`) and says what else the store must change in the same atomic step.
    pub fn apply(&self, sub: &mut Subscription) -> CompletionChange {
        match &self.result {
            ChargeResult::Charged { payment_id } => {
                sub.activate(payment_id.clone(), self.now);
                CompletionChange {
                    outcome: PurchaseOutcome::Created {
                        subscription: sub.clone(),
                    },
                    seat_delta: 0,
                    action: AuditAction::PurchaseActivated,
                    reason: None,
                }
            }
            ChargeResult::Declined { reason } => {
                sub.expire(reason.clone(), self.now);
                CompletionChange {
                    outcome: PurchaseOutcome::Declined {
                        subscription: sub.clone(),
                        reason: reason.clone(),
                    },
                    seat_delta: 1,
                    action: AuditAction::SeatReleased,
                    reason: Some(reason.clone()),
                }
            }
        }
    }
}

/// What a completion did: its definitive outcome, `Created` or `Declined`, which carries
/// the subscription as the completion left it (`active` or `incomplete_expired`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    pub outcome: PurchaseOutcome,
}

impl Completion {
    /// The completed subscription.
    ///
    /// # Panics
    /// If a store built a completion from an outcome without a subscription, which
    /// [`CompletePurchase::apply`] never gives.
    pub fn subscription(&self) -> &Subscription {
        self.outcome
            .subscription()
            .expect("a completion's outcome carries its subscription")
    }
}

/// Errors of [`PurchaseRepository::complete_purchase`].
#[derive(Debug, thiserror::Error)]
pub enum CompleteError {
    #[error("no subscription with id {0}")]
    NotFound(SubscriptionId),
    /// Somebody else completed it first; nothing changed. Carries it as it is.
    #[error("the subscription is no longer incomplete")]
    NotIncomplete(Box<Subscription>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[async_trait]
pub trait PurchaseRepository: Send + Sync {
    /// In one atomic step: checks that `owner` still holds the key and that the key has
    /// reserved nothing yet (recovery point `Started`; else `LockLost`, nothing changes,
    /// so one key never holds two seats); if [`ReserveSeat::rejection`] gives an outcome for the plan as
    /// it is now, finishes the key with it and returns `Rejected`; otherwise decrements
    /// `seats_left` (guarded: never below 0), bumps the plan's `seq`, inserts the
    /// `incomplete` subscription built by [`Subscription::reserve`], appends a
    /// `seat_reserved` audit entry and sets the key's recovery point to `Reserved`.
    async fn reserve_seat(&self, cmd: &ReserveSeat) -> Result<Reservation, ReserveError>;

    /// In one atomic step, only if `cmd.claim()`'s `(scope, key)` has no record at all:
    /// inserts [`ClaimKey::fresh_record`] and does with it what [`Self::reserve_seat`]
    /// does, so the key is never seen claimed without its reservation (`Claimed`).
    /// Otherwise changes nothing and returns `KeyExists`, whatever the record is — one
    /// past its retention and not yet purged included. Of many concurrent calls for one
    /// new key, at most one gets `Claimed`, and never alongside a `claim_key` that
    /// acquired the same new key.
    async fn reserve_with_new_key(
        &self,
        cmd: &ReserveWithNewKey,
    ) -> Result<NewKeyReservation, StoreError>;

    /// In one atomic step, only if the subscription is `incomplete`: `Charged` makes it
    /// `active` ([`Subscription::activate`]) with a `purchase_activated` audit entry;
    /// `Declined` makes it `incomplete_expired`, gives its seat back
    /// (`seats_left + 1`) with a `seat_released` audit entry carrying the reason. Either
    /// way the purchase's idempotency key — the record whose recovery point is this
    /// subscription, if it is still open — is finished with the outcome under
    /// `request_id`; a record since replaced by a newer purchase is left alone. Any
    /// recovery lease on the subscription ends, and `verify_after` (with `Declined`)
    /// schedules the late-charge check. MUST
    /// return `NotIncomplete` (changing nothing) when the subscription was already
    /// completed, so a purchase is completed at most once.
    async fn complete_purchase(&self, cmd: &CompletePurchase) -> Result<Completion, CompleteError>;
}
