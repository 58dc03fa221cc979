//! The audit log: every change of a plan's seats or settings, in the order it took effect.

use async_trait::async_trait;

use super::StoreError;
use crate::model::{AuditEntry, PlanId};

#[async_trait]
pub trait AuditLog: Send + Sync {
    /// At most `limit` audit entries of the plan ordered by `seq`, starting after
    /// `after_seq`; `None` when the plan does not exist. Entries are written only by the
    /// store operations whose changes they record, in the same atomic step.
    async fn plan_audit(
        &self,
        plan_id: PlanId,
        after_seq: Option<u64>,
        limit: u32,
    ) -> Result<Option<Vec<AuditEntry>>, StoreError>;
}
