//! [`PlanRepository`] for [`MongoStore`]: creating, reading, listing and patching plans
//! and their stats (the held seats are the plan's open checkout sessions, counted in the
//! same snapshot), each write together with its audit entries in one transaction. Also
//! [`bump_plan`], the seat move that a cancellation and a refund make on the hot plan
//! document, last before their audit entry.

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::{options::ReturnDocument, ClientSession, Collection};
use seatkeeper_domain::{
    ports::{PlanRepository, StoreError, UpdatePlanError},
    AuditContext, AuditEntry, PatchRejection, Plan, PlanAvailability, PlanId, PlanPatch, PlanStats,
    Timestamp,
};

use crate::{
    checkout_documents::CheckoutDoc,
    checkout_queries,
    documents::{self, AuditDoc, Corrupt, CountsDoc, PlanDoc},
    errors::{classify, corrupt},
    queries,
    transaction::{self, refuse, unmatched},
    MongoStore,
};

#[async_trait]
impl PlanRepository for MongoStore {
    #[tracing::instrument(skip_all, fields(plan_id = %plan.id()))]
    async fn create_plan(&self, plan: &Plan, ctx: &AuditContext) -> Result<(), StoreError> {
        let plan_doc = PlanDoc::from(plan);
        let created = AuditDoc::from(&AuditEntry::plan_created(plan, ctx));
        let (plans, audit) = (self.plans.clone(), self.audit.clone());
        let mut session = self.session().await?;
        let run = transaction::run(&mut session, async move |s| {
            plans.insert_one(&plan_doc).session(&mut *s).await?;
            audit.insert_one(&created).session(&mut *s).await?;
            Ok(Ok::<_, StoreError>(()))
        });
        self.settle(run).await
    }

    async fn get_plan(&self, id: PlanId) -> Result<Option<Plan>, StoreError> {
        self.plans
            .find_one(queries::plan_by_id(id))
            .await
            .map_err(classify)?
            .map(|d| Plan::try_from(d).map_err(StoreError::internal))
            .transpose()
    }

    async fn list_plans(&self, after: Option<PlanId>, limit: u32) -> Result<Vec<Plan>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (filter, sort) = queries::plans_page(after);
        let docs: Vec<PlanDoc> = self
            .plans
            .find(filter)
            .sort(sort)
            .limit(i64::from(limit))
            .await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)?;
        docs.into_iter()
            .map(|d| Plan::try_from(d).map_err(StoreError::internal))
            .collect()
    }

    #[tracing::instrument(skip_all, fields(plan_id = %id))]
    async fn update_plan(
        &self,
        id: PlanId,
        patch: &PlanPatch,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<Plan, UpdatePlanError> {
        let (patch, ctx) = (patch.clone(), ctx.clone());
        let (plans, audit) = (self.plans.clone(), self.audit.clone());
        let mut session = self.session().await?;
        let run = transaction::run(&mut session, async move |s| {
            let Some(found) = plans
                .find_one(queries::plan_by_id(id))
                .session(&mut *s)
                .await?
            else {
                return refuse(s, UpdatePlanError::NotFound(id)).await;
            };
            let mut plan = Plan::try_from(found).map_err(corrupt)?;
            let read_seq = plan.seq();
            let changes = match plan.apply(&patch) {
                Ok(changes) => changes,
                Err(PatchRejection::CapacityBelowHeld { held, requested }) => {
                    return refuse(s, UpdatePlanError::CapacityBelowHeld { held, requested }).await;
                }
            };
            if changes.is_empty() {
                return Ok(Ok(plan));
            }
            let written = plans
                .update_one(
                    queries::plan_at_seq(id, read_seq),
                    queries::patch_plan(&plan),
                )
                .session(&mut *s)
                .await?;
            if written.matched_count != 1 {
                return Err(unmatched("the plan update"));
            }
            let entries: Vec<AuditDoc> = AuditEntry::plan_changes(&plan, &changes, &ctx, now)
                .iter()
                .map(AuditDoc::from)
                .collect();
            audit.insert_many(&entries).session(&mut *s).await?;
            Ok(Ok(plan))
        });
        self.settle(run).await
    }

    async fn plan_stats(&self, id: PlanId) -> Result<Option<PlanStats>, StoreError> {
        let (plans, checkouts) = (self.plans.clone(), self.checkouts.clone());
        let mut session = self.session().await?;
        // A read-only transaction: the plan with its subscription counts, and its open
        // sessions (held seats), from one snapshot.
        let run = transaction::run(&mut session, async move |s| {
            let Some(found) = plans
                .find_one(queries::plan_by_id(id))
                .session(&mut *s)
                .await?
            else {
                return Ok(Ok(None));
            };
            let held = checkouts
                .count_documents(checkout_queries::open_checkouts(id))
                .session(&mut *s)
                .await?;
            let stats = documents::stats(found, held).map_err(corrupt)?;
            Ok(Ok::<_, StoreError>(Some(stats)))
        });
        self.settle(run).await
    }

    async fn plan_availability(&self, id: PlanId) -> Result<Option<PlanAvailability>, StoreError> {
        let (plans, checkouts) = (self.plans.clone(), self.checkouts.clone());
        let mut session = self.session().await?;
        // A read-only transaction: the plan and its open sessions (their index) from one
        // snapshot; no subscription is counted.
        let run = transaction::run(&mut session, async move |s| {
            let availability = read_availability(s, &plans, &checkouts, id).await?;
            Ok(Ok::<_, StoreError>(availability))
        });
        self.settle(run).await
    }
}

/// The plan and how many seats its open checkout sessions hold (their index), read in the
/// caller's transaction; `None` for an unknown plan.
async fn read_availability(
    s: &mut ClientSession,
    plans: &Collection<PlanDoc>,
    checkouts: &Collection<CheckoutDoc>,
    id: PlanId,
) -> mongodb::error::Result<Option<PlanAvailability>> {
    let Some(found) = plans
        .find_one(queries::plan_by_id(id))
        .session(&mut *s)
        .await?
    else {
        return Ok(None);
    };
    let plan = Plan::try_from(found).map_err(corrupt)?;
    let held = checkouts
        .count_documents(checkout_queries::open_checkouts(id))
        .session(&mut *s)
        .await?;
    Ok(Some(PlanAvailability { plan, held }))
}

/// Moves the plan's seats by `delta`, bumps its `seq` and moves its subscription counts by
/// `counts`; the plan after.
pub(crate) async fn bump_plan(
    plans: &Collection<PlanDoc>,
    s: &mut ClientSession,
    id: PlanId,
    delta: i64,
    counts: &CountsDoc,
) -> mongodb::error::Result<Plan> {
    let after = plans
        .find_one_and_update(
            queries::plan_by_id(id),
            queries::move_seats_counting(delta, counts),
        )
        .return_document(ReturnDocument::After)
        .session(s)
        .await?
        .ok_or_else(|| corrupt(Corrupt(format!("plan {id} of a subscription is missing"))))?;
    Plan::try_from(after).map_err(corrupt)
}
