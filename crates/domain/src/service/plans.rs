//! Plan administration and queries.

use std::sync::Arc;

use crate::{
    invariants::replay_audit,
    model::{
        AuditContext, AuditEntry, Limit, NewPlan, Page, PageRequest, Plan, PlanId, PlanPatch,
        PlanStats, PlanStatus,
    },
    ports::{Clock, Store, StoreError, UpdatePlanError},
};

/// How many audit entries [`PlanService::check_audit`] reads per store call.
const AUDIT_CHECK_PAGE: u32 = 1000;

/// What replaying a plan's whole audit log found ([`PlanService::check_audit`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCheck {
    /// The plan's `seq` when it was read: the log was replayed up to this entry.
    pub seq: u64,
    /// How many entries were replayed.
    pub entries: u64,
    /// The `seats_left` the replay arrives at; `None` when the replay failed.
    pub replayed_seats_left: Option<u32>,
    /// The plan's `seats_left` when it was read.
    pub seats_left: u32,
    /// Why the log does not replay to the plan's seats (a broken chain, a gap, a missing
    /// entry, or a different count); `None` when it does.
    pub error: Option<String>,
}

impl AuditCheck {
    /// The log replays, entry by entry, to the plan's `seats_left`.
    pub fn consistent(&self) -> bool {
        self.error.is_none()
    }
}

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

    /// Reads the plan, then its audit log from entry 1 up to the plan's `seq`, and
    /// replays it with [`replay_audit`]: the log must arrive at the plan's `seats_left`.
    ///
    /// Each change is written with its audit entry in one atomic step, so the entries up
    /// to the plan's `seq` describe exactly the plan that was read, even while purchases
    /// go on: entries written after the plan was read are not replayed.
    #[tracing::instrument(skip_all, fields(plan_id = %id))]
    pub async fn check_audit(&self, id: PlanId) -> Result<AuditCheck, PlanQueryError> {
        let plan = self.get(id).await?;
        let seq = plan.seq();
        let mut entries: Vec<AuditEntry> = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .plan_audit(id, after, AUDIT_CHECK_PAGE)
                .await?
                .ok_or(PlanQueryError::NotFound(id))?;
            let full = page.len() == AUDIT_CHECK_PAGE as usize;
            after = page.last().map(|e| e.seq);
            let past_the_plan = after.is_some_and(|last| last >= seq);
            entries.extend(page.into_iter().filter(|e| e.seq <= seq));
            if !full || past_the_plan {
                break;
            }
        }
        let replayed = replay_audit(&entries);
        let error = match &replayed {
            Err(e) => Some(e.clone()),
            Ok(_) if entries.last().map(|e| e.seq) != Some(seq) => Some(format!(
                "the plan is at seq {seq} but the log ends at {}",
                entries.last().map_or(0, |e| e.seq)
            )),
            Ok(n) if *n != plan.seats_left() => Some(format!(
                "the audit log replays to {n} seats left, the plan has {}",
                plan.seats_left()
            )),
            Ok(_) => None,
        };
        Ok(AuditCheck {
            seq,
            entries: entries.len() as u64,
            replayed_seats_left: replayed.ok(),
            seats_left: plan.seats_left(),
            error,
        })
    }
}
