//! [`AuditLog`]: reading a plan's audit log, a page at a time in `seq` order.

use async_trait::async_trait;
use seatkeeper_domain::{
    ports::{AuditLog, PlanRepository, StoreError},
    AuditEntry, PlanId,
};

use crate::{
    errors::classify,
    rows::{self, AUDIT_COLUMNS},
    PostgresStore,
};

#[async_trait]
impl AuditLog for PostgresStore {
    async fn plan_audit(
        &self,
        plan_id: PlanId,
        after_seq: Option<u64>,
        limit: u32,
    ) -> Result<Option<Vec<AuditEntry>>, StoreError> {
        let sql = format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_entries WHERE plan_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        );
        let rows = sqlx::query(&sql)
            .bind(plan_id.as_uuid())
            .bind(after_seq.unwrap_or(0) as i64)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        if rows.is_empty() && self.get_plan(plan_id).await?.is_none() {
            return Ok(None);
        }
        rows.iter()
            .map(rows::audit_entry)
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
            .map_err(classify)
    }
}
