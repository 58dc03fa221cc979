use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{AuditEntryId, Plan, PlanChange, PlanId, SubscriptionId, Timestamp};

/// What an audit entry records.
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
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum AuditAction {
    /// The plan was created with every seat free.
    PlanCreated,
    /// A purchase reserved a seat (subscription `incomplete`).
    SeatReserved,
    /// The charge succeeded (subscription `active`); no seat moves.
    PurchaseActivated,
    /// The charge failed or never happened; the reserved seat was released.
    SeatReleased,
    /// An active subscription was cancelled; its seat was released.
    SubscriptionCanceled,
    /// An administrator changed the capacity; `seats_left` moved by the difference.
    CapacityChanged,
    /// An administrator changed another attribute (the name).
    PlanUpdated,
    /// An administrator archived the plan: it sells nothing more.
    PlanArchived,
    /// An administrator made an archived plan sell again.
    PlanActivated,
    /// A charge that landed after its purchase had been given up (seat already released),
    /// or after its checkout session expired with no seat free, was refunded; no seat moves.
    PaymentRefunded,
    /// A checkout session holds a seat while its customer pays.
    SeatHeld,
    /// A checkout session ended unpaid (it expired, or was expired); its seat came back.
    HoldExpired,
    /// A checkout session was paid: its held seat is the active subscription's; no seat
    /// moves.
    CheckoutCompleted,
}

impl AuditAction {
    /// Every action, for stores that read them back by name.
    pub const ALL: &'static [Self] = <Self as strum::VariantArray>::VARIANTS;

    /// The action with this name.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }

    pub fn as_str(&self) -> &'static str {
        self.into()
    }

    /// How this action moves `seats_left`, when the move is fixed.
    pub fn fixed_seat_delta(&self) -> Option<i64> {
        match self {
            Self::SeatReserved | Self::SeatHeld => Some(-1),
            Self::SeatReleased | Self::SubscriptionCanceled | Self::HoldExpired => Some(1),
            Self::PurchaseActivated
            | Self::CheckoutCompleted
            | Self::PlanUpdated
            | Self::PlanArchived
            | Self::PlanActivated
            | Self::PaymentRefunded => Some(0),
            Self::PlanCreated | Self::CapacityChanged => None,
        }
    }
}

/// Who made a change and under which request, carried into its audit entry.
///
/// Shared strings: a purchase writes two entries with the same actor and trace id, and
/// the in-memory store keeps every entry, so each is one allocation, not one per entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditContext {
    /// `admin`, `customer:<id>` or `reconciler`.
    pub actor: Arc<str>,
    /// The request id (or job id) the change was made under.
    pub trace_id: Arc<str>,
}

impl AuditContext {
    pub fn admin(trace_id: impl Into<Arc<str>>) -> Self {
        Self {
            actor: "admin".into(),
            trace_id: trace_id.into(),
        }
    }

    pub fn reconciler(trace_id: impl Into<Arc<str>>) -> Self {
        Self {
            actor: "reconciler".into(),
            trace_id: trace_id.into(),
        }
    }

    pub fn customer(customer: &super::CustomerId, trace_id: impl Into<Arc<str>>) -> Self {
        Self {
            actor: ["customer:", customer.as_str()].concat().into(),
            trace_id: trace_id.into(),
        }
    }
}

/// One change of a plan, in the order changes took effect (`seq`, per plan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub id: AuditEntryId,
    pub plan_id: PlanId,
    pub seq: u64,
    pub at: Timestamp,
    pub action: AuditAction,
    pub subscription_id: Option<SubscriptionId>,
    /// Shared with the [`AuditContext`] it was recorded under.
    pub actor: Arc<str>,
    pub trace_id: Arc<str>,
    pub seats_left_before: u32,
    pub seats_left_after: u32,
    pub reason: Option<String>,
}

impl AuditEntry {
    /// The entry for a change that has just been applied to `plan` (whose `seq` is
    /// already bumped to this entry's number).
    pub fn record(
        plan: &Plan,
        action: AuditAction,
        seats_left_before: u32,
        subscription_id: Option<SubscriptionId>,
        reason: Option<String>,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Self {
        Self {
            id: AuditEntryId::generate(),
            plan_id: plan.id(),
            seq: plan.seq(),
            at: now,
            action,
            subscription_id,
            actor: ctx.actor.clone(),
            trace_id: ctx.trace_id.clone(),
            seats_left_before,
            seats_left_after: plan.seats_left(),
            reason,
        }
    }

    /// The creation entry of a freshly created plan (seq 1).
    pub fn plan_created(plan: &Plan, ctx: &AuditContext) -> Self {
        Self::record(
            plan,
            AuditAction::PlanCreated,
            0,
            None,
            None,
            ctx,
            plan.created_at(),
        )
    }

    /// The entries for the changes a patch made, numbered up to `plan.seq`.
    pub fn plan_changes(
        plan: &Plan,
        changes: &[PlanChange],
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Vec<Self> {
        let first = plan.seq() + 1 - changes.len() as u64;
        changes
            .iter()
            .enumerate()
            .map(|(i, c)| Self {
                id: AuditEntryId::generate(),
                plan_id: plan.id(),
                seq: first + i as u64,
                at: now,
                action: c.action,
                subscription_id: None,
                actor: ctx.actor.clone(),
                trace_id: ctx.trace_id.clone(),
                seats_left_before: c.seats_left_before,
                seats_left_after: c.seats_left_after,
                reason: c.reason.clone(),
            })
            .collect()
    }
}
