//! Plan administration and queries.

use std::sync::Arc;

use crate::{
    model::{
        AuditContext, AuditEntry, Limit, NewPlan, Page, PageRequest, Plan, PlanId, PlanPatch,
        PlanStats, PlanStatus,
    },
    ports::{Clock, Store, StoreError, UpdatePlanError},
};

/// Errors of the plan queries.
#[derive(Debug, thiserror::Error)]
pub enum PlanQueryError {
    #[error("no plan with id {0}")]
    NotFound(PlanId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates, changes and reads plans.
#[derive(Clone)]
pub struct PlanService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl PlanService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Creates a plan with every seat free, audited as `plan_created`.
    #[tracing::instrument(skip_all, fields(name = new.name.as_str(), capacity = new.capacity.get()))]
    pub async fn create(&self, new: NewPlan, ctx: &AuditContext) -> Result<Plan, StoreError> {
        let plan = Plan::create(new, self.clock.now());
        self.store.create_plan(&plan, ctx).await?;
        tracing::info!(plan_id = %plan.id(), "plan created");
        Ok(plan)
    }

    pub async fn get(&self, id: PlanId) -> Result<Plan, PlanQueryError> {
        self.store
            .get_plan(id)
            .await?
            .ok_or(PlanQueryError::NotFound(id))
    }

    pub async fn list(&self, page: PageRequest<PlanId>) -> Result<Page<Plan, PlanId>, StoreError> {
        let items = self
            .store
            .list_plans(page.after, page.limit.get() + 1)
            .await?;
        Ok(Page::from_overfetch(items, page.limit, |p| p.id()))
    }

    /// Every plan on sale (status `active`), in the store's order: what a storefront
    /// lists and what the availability stream follows.
    pub async fn on_sale(&self) -> Result<Vec<Plan>, StoreError> {
        let mut on_sale = Vec::new();
        let mut after = None;
        loop {
            let page = self.store.list_plans(after, Limit::MAX).await?;
            let full = page.len() == Limit::MAX as usize;
            after = page.last().map(Plan::id);
            on_sale.extend(
                page.into_iter()
                    .filter(|p| p.status() == PlanStatus::Active),
            );
            if !full {
                return Ok(on_sale);
            }
        }
    }

    /// Changes a plan; see [`crate::ports::PlanRepository::update_plan`].
    #[tracing::instrument(skip_all, fields(plan_id = %id))]
    pub async fn update(
        &self,
        id: PlanId,
        patch: &PlanPatch,
        ctx: &AuditContext,
    ) -> Result<Plan, UpdatePlanError> {
        self.store
            .update_plan(id, patch, ctx, self.clock.now())
            .await
    }

    pub async fn stats(&self, id: PlanId) -> Result<PlanStats, PlanQueryError> {
        self.store
            .plan_stats(id)
            .await?
            .ok_or(PlanQueryError::NotFound(id))
    }

    /// One page of the plan's audit log, in the order the changes took effect.
    pub async fn audit(
        &self,
        id: PlanId,
        page: PageRequest<u64>,
    ) -> Result<Page<AuditEntry, u64>, PlanQueryError> {
        let items = self
            .store
            .plan_audit(id, page.after, page.limit.get() + 1)
            .await?
            .ok_or(PlanQueryError::NotFound(id))?;
        Ok(Page::from_overfetch(items, page.limit, |e| e.seq))
    }
}
