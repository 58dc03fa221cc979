//! The checkout repository: sessions that hold a seat while their customer pays, and the
//! deduplication of the payment provider's webhook events.
//!
//! Each method is one atomic step. Opening reads the session the key opened, the
//! customer's open sessions on the plan and the plan, lets [`OpenCheckout::decide`]
//! decide, and writes the hold; a change reads the session (and its plan when
//! [`CheckoutSession::needs_plan`]), lets [`CheckoutSession::apply`] decide, and writes
//! what it returns. Neither ever decides anything itself.

use async_trait::async_trait;

use super::StoreError;
use crate::model::{
    Applied, ChangeCheckout, CheckoutRefusal, CheckoutSession, CheckoutSessionId, OpenCheckout,
    OpenRefusal, Timestamp,
};

/// What [`CheckoutRepository::open_checkout`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// A seat is held by this new session (audited `seat_held`).
    New(CheckoutSession),
    /// The key opened this session with the same request before: nothing changed.
    Existing(CheckoutSession),
}

impl Opened {
    pub fn session(&self) -> &CheckoutSession {
        match self {
            Self::New(s) | Self::Existing(s) => s,
        }
    }
}

/// Errors of [`CheckoutRepository::open_checkout`].
#[derive(Debug, thiserror::Error)]
pub enum OpenCheckoutError {
    #[error("the checkout session cannot be opened: {0:?}")]
    Refused(OpenRefusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What [`CheckoutRepository::change_checkout`] did: the session after the change, and
/// what [`CheckoutSession::apply`] decided (its subscription and entries were written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub session: CheckoutSession,
    pub applied: Applied,
}

/// Errors of [`CheckoutRepository::change_checkout`].
#[derive(Debug, thiserror::Error)]
pub enum ChangeCheckoutError {
    #[error("no such checkout session")]
    NotFound,
    #[error(transparent)]
    Refused(#[from] CheckoutRefusal),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A webhook event as it arrived, for deduplication by its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEvent {
    /// The provider's event id (`evt_…`).
    pub id: String,
    /// The event's type (`payment_intent.succeeded`), kept for operators.
    pub kind: String,
    pub received_at: Timestamp,
}

/// How many ended sessions and old webhook events a purge deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Purged {
    pub sessions: u64,
    pub events: u64,
}

#[async_trait]
pub trait CheckoutRepository: Send + Sync {
    /// Opens a session, in one atomic step: if the customer's key opened one, answers it
    /// (`Existing`, same fingerprint) or refuses `KeyReused`; otherwise decides with
    /// [`OpenCheckout::decide`] on the plan and the customer's open sessions on it, and
    /// holds the seat: `seats_left - 1` and `seq + 1` on the plan, the new session, the
    /// `seat_held` entry. Of concurrent openings with one key exactly one holds a seat;
    /// the others answer `Existing` with its session (or `KeyReused`). Refusals change
    /// nothing.
    async fn open_checkout(&self, cmd: &OpenCheckout) -> Result<Opened, OpenCheckoutError>;

    /// The session with this id.
    async fn get_checkout(
        &self,
        id: CheckoutSessionId,
    ) -> Result<Option<CheckoutSession>, StoreError>;

    /// Applies one change to one session, in one atomic step: reads the session (and
    /// its plan, when [`CheckoutSession::needs_plan`](crate::model::CheckoutSession::needs_plan)),
    /// calls [`CheckoutSession::apply`], and writes the session, the new subscription
    /// and the plan with its audit entries, as it returned them. A refusal changes
    /// nothing. Concurrent changes of one session are serialised: each decides on the
    /// session as the previous one left it.
    async fn change_checkout(&self, cmd: &ChangeCheckout) -> Result<Changed, ChangeCheckoutError>;

    /// Sessions whose `check_at` has come (`<= now`), earliest first, at most `limit`.
    async fn checkouts_due(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<CheckoutSession>, StoreError>;

    /// Records a webhook event's id, in one atomic step: `true` if it is new, `false`
    /// if it was recorded before. Of concurrent records of one id exactly one is new.
    async fn claim_webhook_event(&self, event: &WebhookEvent) -> Result<bool, StoreError>;

    /// Forgets a claimed event whose handling failed, so that its redelivery is handled.
    async fn release_webhook_event(&self, id: &str) -> Result<(), StoreError>;

    /// Deletes sessions that ended (complete or expired, nothing left to check) before
    /// `ended_before`, and webhook events received before `events_before`.
    async fn purge_checkouts(
        &self,
        ended_before: Timestamp,
        events_before: Timestamp,
    ) -> Result<Purged, StoreError>;
}
