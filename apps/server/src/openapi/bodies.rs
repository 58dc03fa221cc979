//! Response bodies that handlers write through the generic [`List`](crate::dto::List) or
//! with `json!`, declared here for the document only: each names its shape once, with
//! the descriptions a client needs.

use serde::Serialize;
use utoipa::ToSchema;

use super::schemas;
use crate::dto::{AuditEntryBody, PlanBody, SubscriptionBody};

/// One page of plans.
#[derive(Serialize, ToSchema)]
pub struct PlanList {
    #[schema(max_items = 100)]
    pub data: Vec<PlanBody>,
    /// The `cursor` of the next page; `null` on the last page.
    #[schema(required, format = Uuid)]
    pub next_cursor: Option<String>,
}

/// One page of a customer's subscriptions.
#[derive(Serialize, ToSchema)]
pub struct SubscriptionList {
    #[schema(max_items = 100)]
    pub data: Vec<SubscriptionBody<'static>>,
    /// The `cursor` of the next page; `null` on the last page.
    #[schema(required, format = Uuid)]
    pub next_cursor: Option<String>,
}

/// One page of API keys.
#[derive(Serialize, ToSchema)]
pub struct KeyList {
    #[schema(max_items = 100)]
    pub data: Vec<crate::dto::KeyBody>,
    /// The `cursor` of the next page; `null` on the last page.
    #[schema(required, format = Uuid)]
    pub next_cursor: Option<String>,
}

/// One page of a plan's audit log.
#[derive(Serialize, ToSchema)]
pub struct AuditEntryList {
    #[schema(max_items = 100)]
    pub data: Vec<AuditEntryBody>,
    /// The `cursor` of the next page (the `seq` of this page's last entry, in decimal);
    /// `null` on the last page.
    #[schema(required, pattern = "^[0-9]+$")]
    pub next_cursor: Option<String>,
}

/// The answer of the health endpoints.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` from `/health`, `ready` from `/health/ready`.
    #[schema(value_type = HealthStatus)]
    pub status: String,
    /// From `/health/ready`: each dependency's state.
    // Left out, never `null` (`skip_serializing_if`): not nullable, so generated clients
    // type it `Checks` when present, not `Checks | null` (or Rust's `Option<Option<_>>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(required = false, nullable = false)]
    pub checks: Option<Checks>,
}

/// The state of each dependency `/health/ready` checks.
#[derive(Serialize, ToSchema)]
pub struct Checks {
    /// The store answered a ping.
    pub store: Check,
}

/// One dependency's state.
#[derive(Serialize, ToSchema)]
pub struct Check {
    /// `up`: it answered.
    #[schema(value_type = CheckStatus)]
    pub status: &'static str,
    /// How long it took to answer, in milliseconds.
    pub latency_ms: f64,
}

/// The state of a dependency that answered.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Up,
}

/// The status a health endpoint reports.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Ready,
}

/// What the reconciler of this instance did lately, and what is still in doubt across
/// all instances.
#[derive(Serialize, ToSchema)]
pub struct Reconciliation {
    pub in_doubt: InDoubt,
    /// How long an `incomplete` purchase stays untouched before the reconciler takes it
    /// (setting `recovery.lease_ms`).
    pub lease_ms: u64,
    /// How long after giving a purchase up the reconciler checks for a late charge
    /// (setting `recovery.verify_delay_ms`).
    pub verify_delay_ms: u64,
    /// This instance's last runs, newest first.
    pub runs: Vec<ReconciliationRun>,
}

/// What is still in doubt, across all instances.
#[derive(Serialize, ToSchema)]
pub struct InDoubt {
    /// `incomplete` purchases untouched for longer than the lease.
    pub stale_incomplete: u64,
    /// Purchases given up as never charged whose late-charge check has not run yet.
    pub pending_verifications: u64,
}

/// One run of the reconciler.
#[derive(Serialize, ToSchema)]
pub struct ReconciliationRun {
    pub run_id: String,
    #[schema(value_type = schemas::Timestamp)]
    pub started_at: String,
    #[schema(value_type = schemas::Timestamp)]
    pub finished_at: String,
    /// Tasks leased by the run.
    pub found: u64,
    /// Purchases found charged and made `active`.
    pub activated: u64,
    /// Purchases found never charged (or refunded), expired with the seat released.
    pub expired: u64,
    /// Late charges refunded.
    pub refunded: u64,
    /// Late-charge checks that found nothing.
    pub verified: u64,
    /// Tasks left for a later run (the provider or the store did not answer).
    pub in_doubt: u64,
    /// Tasks someone else finished first.
    pub skipped: u64,
}
