//! [`AuditLog`] for [`MongoStore`]: a plan's audit entries, a page at a time in `seq`
//! order. The entries themselves are written by the transactions that change the plan
//! (`plans.rs`, `subscriptions.rs`, `recovery.rs` and the purchase batches).

use async_trait::async_trait;
use futures::TryStreamExt;
use seatkeeper_domain::{
    ports::{AuditLog, PlanRepository, StoreError},
    AuditEntry, PlanId,
};

use crate::{documents::AuditDoc, errors::classify, queries, MongoStore};

#[async_trait]
impl AuditLog for MongoStore {
    async fn plan_audit(
        &self,
        plan_id: PlanId,
        after_seq: Option<u64>,
        limit: u32,
    ) -> Result<Option<Vec<AuditEntry>>, StoreError> {
        let docs: Vec<AuditDoc> = if limit == 0 {
            Vec::new()
        } else {
            let (filter, sort) = queries::audit_page(plan_id, after_seq);
            self.audit
                .find(filter)
                .sort(sort)
                .limit(i64::from(limit))
                .await
                .map_err(classify)?
                .try_collect()
                .await
                .map_err(classify)?
        };
        if docs.is_empty() && self.get_plan(plan_id).await?.is_none() {
            return Ok(None);
        }
        docs.into_iter()
            .map(|d| AuditEntry::try_from(d).map_err(StoreError::internal))
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }
}
