//! The plans and their audit logs ([`PlanRepository`], [`AuditLog`]): each plan in its
//! cell, under its own lock.

use super::*;

#[async_trait]
impl PlanRepository for MemoryStore {
    async fn create_plan(&self, plan: &Plan, ctx: &AuditContext) -> Result<(), StoreError> {
        let mut cell = PlanCell {
            plan: plan.clone(),
            audit: AuditTrail::default(),
            feed: self.feed.clone(),
            counts: Counts::default(),
            holds: Default::default(),
        };
        cell.append([AuditEntry::plan_created(plan, ctx)]);
        let mut plans = self.plans.write();
        if plans.contains_key(&plan.id()) {
            return Err(StoreError::internal(format!(
                "plan {} already exists",
                plan.id()
            )));
        }
        plans.insert(plan.id(), Arc::new(Mutex::new(cell)));
        Ok(())
    }

    async fn get_plan(&self, id: PlanId) -> Result<Option<Plan>, StoreError> {
        Ok(self.cell(id).map(|c| c.lock().plan.clone()))
    }

    async fn list_plans(&self, after: Option<PlanId>, limit: u32) -> Result<Vec<Plan>, StoreError> {
        let plans = self.plans.read();
        let range = match after {
            Some(a) => plans.range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => plans.range(..),
        };
        Ok(range
            .take(limit as usize)
            .map(|(_, c)| c.lock().plan.clone())
            .collect())
    }

    async fn update_plan(
        &self,
        id: PlanId,
        patch: &PlanPatch,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<Plan, UpdatePlanError> {
        let cell = self.cell(id).ok_or(UpdatePlanError::NotFound(id))?;
        let mut cell = cell.lock();
        let changes = cell.plan.apply(patch).map_err(|r| match r {
            PatchRejection::CapacityBelowHeld { held, requested } => {
                UpdatePlanError::CapacityBelowHeld { held, requested }
            }
        })?;
        let entries = AuditEntry::plan_changes(&cell.plan, &changes, ctx, now);
        cell.append(entries);
        Ok(cell.plan.clone())
    }

    async fn plan_stats(&self, id: PlanId) -> Result<Option<PlanStats>, StoreError> {
        Ok(self.cell(id).map(|c| {
            let c = c.lock();
            PlanStats {
                plan_id: id,
                capacity: c.plan.capacity().get(),
                seats_left: c.plan.seats_left(),
                held: c.counts.held,
                incomplete: c.counts.incomplete,
                active: c.counts.active,
                canceled: c.counts.canceled,
                incomplete_expired: c.counts.incomplete_expired,
                sold_out: c.plan.is_sold_out(),
            }
        }))
    }

    async fn plan_availability(&self, id: PlanId) -> Result<Option<PlanAvailability>, StoreError> {
        Ok(self.cell(id).map(|c| {
            let c = c.lock();
            PlanAvailability {
                plan: c.plan.clone(),
                held: c.counts.held,
            }
        }))
    }
}

#[async_trait]
impl AuditLog for MemoryStore {
    async fn plan_audit(
        &self,
        plan_id: PlanId,
        after_seq: Option<u64>,
        limit: u32,
    ) -> Result<Option<Vec<AuditEntry>>, StoreError> {
        Ok(self.cell(plan_id).map(|c| {
            let c = c.lock();
            c.audit
                .iter_from(after_seq.unwrap_or(0) as usize)
                .take(limit as usize)
                .cloned()
                .collect()
        }))
    }
}
