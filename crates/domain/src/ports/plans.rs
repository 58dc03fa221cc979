//! The plan repository: creating, reading and changing plans.

use async_trait::async_trait;

use super::StoreError;
use crate::model::{AuditContext, Plan, PlanAvailability, PlanId, PlanPatch, PlanStats, Timestamp};

/// Errors of [`PlanRepository::update_plan`].
#[derive(Debug, thiserror::Error)]
pub enum UpdatePlanError {
    #[error("no plan with id {0}")]
    NotFound(PlanId),
    #[error("capacity {requested} is below the {held} seats held by subscriptions")]
    CapacityBelowHeld { held: u32, requested: u32 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[async_trait]
pub trait PlanRepository: Send + Sync {
    /// Stores a new plan (as built by [`Plan::create`]) and its `plan_created` audit
    /// entry (seq 1), atomically.
    async fn create_plan(&self, plan: &Plan, ctx: &AuditContext) -> Result<(), StoreError>;

    /// The plan with this id, or `None`.
    async fn get_plan(&self, id: PlanId) -> Result<Option<Plan>, StoreError>;

    /// At most `limit` plans ordered by id, starting after `after`.
    async fn list_plans(&self, after: Option<PlanId>, limit: u32) -> Result<Vec<Plan>, StoreError>;

    /// Applies `patch` with [`Plan::apply`] to the current plan and appends one audit
    /// entry per change, atomically with respect to reservations and cancellations.
    /// MUST return `NotFound` for an unknown plan and `CapacityBelowHeld` (changing
    /// nothing) when the new capacity is below the seats held at that moment.
    async fn update_plan(
        &self,
        id: PlanId,
        patch: &PlanPatch,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<Plan, UpdatePlanError>;

    /// The plan's seats and its subscriptions counted by status, from one consistent
    /// snapshot (`capacity == seats_left + incomplete + active`), or `None`.
    async fn plan_stats(&self, id: PlanId) -> Result<Option<PlanStats>, StoreError>;

    /// The plan and the seats its open checkout sessions hold, from one consistent
    /// snapshot, or `None`. SHOULD cost the same however many subscriptions the plan has
    /// (an index on open sessions, not a count of subscriptions): live availability reads
    /// it after every change.
    async fn plan_availability(&self, id: PlanId) -> Result<Option<PlanAvailability>, StoreError>;
}
