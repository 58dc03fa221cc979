//! [`RecoveryRepository`] for [`MongoStore`]: what the reconciler works on. Claiming
//! leases stale `incomplete` purchases and due late-charge checks in one transaction;
//! finishing a check and recording a refund append the subscription's `payment_refunded`
//! entry at most once ([`audit_refund`]), giving the seat back to the plan.

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::{ClientSession, Collection};
use seatkeeper_domain::{
    ports::{
        ClaimRecovery, RecoveryBacklog, RecoveryPhase, RecoveryRepository, RecoveryTask, StoreError,
    },
    AuditContext, LockToken, SeatMove, Subscription, SubscriptionId, Timestamp,
};

use crate::{
    documents::{AuditDoc, Corrupt, CountsDoc, PlanDoc, SubscriptionDoc},
    errors::{classify, corrupt},
    plans::bump_plan,
    queries,
    transaction::{self, unmatched},
    MongoStore,
};

impl MongoStore {
    /// What [`audit_refund`] writes to, cloned (cheap handles) into its transaction.
    fn refund_collections(&self) -> RefundCollections {
        (
            self.plans.clone(),
            self.subscriptions.clone(),
            self.audit.clone(),
        )
    }
}

/// What [`audit_refund`] writes to.
type RefundCollections = (
    Collection<PlanDoc>,
    Collection<SubscriptionDoc>,
    Collection<AuditDoc>,
);

/// Appends the subscription's `payment_refunded` entry, once: the `refund_recorded` mark
/// on the subscription is set in the same transaction, guarded by its absence.
async fn audit_refund(
    (plans, subscriptions, audit): &RefundCollections,
    s: &mut ClientSession,
    id: SubscriptionId,
    payment_id: &str,
    ctx: &AuditContext,
    now: Timestamp,
) -> mongodb::error::Result<bool> {
    let Some(found) = subscriptions
        .find_one(queries::subscription_by_id(id))
        .session(&mut *s)
        .await?
    else {
        return Err(corrupt(Corrupt(format!("no subscription {id} to refund"))));
    };
    let sub = Subscription::try_from(found).map_err(corrupt)?;
    let marked = subscriptions
        .update_one(queries::refund_not_recorded(id), queries::record_refund())
        .session(&mut *s)
        .await?;
    if marked.matched_count == 0 {
        return Ok(false);
    }
    // The hot plan document last.
    let seat_move = SeatMove::refund(id, payment_id);
    // A refund changes no subscription's status.
    let unchanged = CountsDoc::default();
    let plan = bump_plan(plans, s, sub.plan_id(), seat_move.delta.into(), &unchanged).await?;
    let entry = seat_move.entry_after(&plan, ctx, now);
    audit
        .insert_one(AuditDoc::from(&entry))
        .session(&mut *s)
        .await?;
    Ok(true)
}

#[async_trait]
impl RecoveryRepository for MongoStore {
    async fn claim_recovery(&self, claim: &ClaimRecovery) -> Result<Vec<RecoveryTask>, StoreError> {
        if claim.limit == 0 {
            return Ok(Vec::new());
        }
        let claim = claim.clone();
        let subscriptions = self.subscriptions.clone();
        let mut session = self.session().await?;
        let run = transaction::run(&mut session, async move |s| {
            let mut tasks = Vec::new();
            let (filter, sort) = queries::stale_incomplete(claim.stale_before, claim.now);
            let mut cursor = subscriptions
                .find(filter)
                .sort(sort)
                .limit(i64::from(claim.limit))
                .session(&mut *s)
                .await?;
            let stale: Vec<SubscriptionDoc> = cursor.stream(&mut *s).try_collect().await?;
            for found in stale {
                let sub = Subscription::try_from(found).map_err(corrupt)?;
                let leased = subscriptions
                    .update_one(
                        queries::stale_incomplete_one(sub.id(), claim.stale_before, claim.now),
                        queries::lease_completion(claim.owner, claim.lease_until),
                    )
                    .session(&mut *s)
                    .await?;
                if leased.matched_count != 1 {
                    return Err(unmatched("leasing a stale purchase"));
                }
                tasks.push(RecoveryTask {
                    subscription: sub,
                    phase: RecoveryPhase::Complete,
                });
            }
            let room = i64::from(claim.limit) - tasks.len() as i64;
            if room > 0 {
                let (filter, sort) = queries::due_verifications(claim.now);
                let mut cursor = subscriptions
                    .find(filter)
                    .sort(sort)
                    .limit(room)
                    .session(&mut *s)
                    .await?;
                let due: Vec<SubscriptionDoc> = cursor.stream(&mut *s).try_collect().await?;
                for found in due {
                    let sub = Subscription::try_from(found).map_err(corrupt)?;
                    let leased = subscriptions
                        .update_one(
                            queries::due_verification_one(sub.id(), claim.now),
                            queries::lease_verification(claim.owner, claim.lease_until),
                        )
                        .session(&mut *s)
                        .await?;
                    if leased.matched_count != 1 {
                        return Err(unmatched("leasing a due verification"));
                    }
                    tasks.push(RecoveryTask {
                        subscription: sub,
                        phase: RecoveryPhase::Verify,
                    });
                }
            }
            Ok(Ok::<_, StoreError>(tasks))
        });
        self.settle(run).await
    }

    async fn release_recovery(
        &self,
        id: SubscriptionId,
        owner: LockToken,
    ) -> Result<bool, StoreError> {
        // One guarded single-document write: a `complete` task comes back from the
        // subscription's status anyway, a `verify` task stays scheduled, free.
        let freed = self
            .subscriptions
            .update_one(queries::task_held(id, owner, None), queries::free_task())
            .await
            .map_err(classify)?;
        Ok(freed.matched_count == 1)
    }

    async fn finish_verification(
        &self,
        id: SubscriptionId,
        owner: LockToken,
        refunded: Option<&str>,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (refunded, ctx) = (refunded.map(str::to_owned), ctx.clone());
        let collections = self.refund_collections();
        let subscriptions = self.subscriptions.clone();
        let mut session = self.session().await?;
        let run = transaction::run(&mut session, async move |s| {
            let ended = subscriptions
                .update_one(
                    queries::task_held(id, owner, Some("verify")),
                    queries::end_task(),
                )
                .session(&mut *s)
                .await?;
            if ended.matched_count == 0 {
                // Not (or no longer) ours: nothing was written.
                return Ok(Ok(false));
            }
            if let Some(payment_id) = &refunded {
                audit_refund(&collections, s, id, payment_id, &ctx, now).await?;
            }
            Ok(Ok::<_, StoreError>(true))
        });
        self.settle(run).await
    }

    async fn record_refund(
        &self,
        id: SubscriptionId,
        payment_id: &str,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let (payment_id, ctx) = (payment_id.to_owned(), ctx.clone());
        let collections = self.refund_collections();
        let mut session = self.session().await?;
        let run = transaction::run(&mut session, async move |s| {
            let appended = audit_refund(&collections, s, id, &payment_id, &ctx, now).await?;
            Ok(Ok::<_, StoreError>(appended))
        });
        self.settle(run).await
    }

    async fn recovery_backlog(
        &self,
        stale_before: Timestamp,
    ) -> Result<RecoveryBacklog, StoreError> {
        let stale_incomplete = self
            .subscriptions
            .count_documents(queries::stale_incomplete_all(stale_before))
            .await
            .map_err(classify)?;
        let pending_verifications = self
            .subscriptions
            .count_documents(queries::pending_verifications())
            .await
            .map_err(classify)?;
        Ok(RecoveryBacklog {
            stale_incomplete,
            pending_verifications,
        })
    }
}
