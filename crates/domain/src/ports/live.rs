//! [`PlanFeed`]: notice of every committed change of a plan's seats, holds, capacity or
//! status, from whichever instance made it, so that live views (the server's
//! Server-Sent Events streams) can show availability without asking the store in a
//! loop.

use async_trait::async_trait;
use futures::stream::BoxStream;

use super::StoreError;
use crate::model::PlanId;

/// The ids of plans as their changes commit. An error item, or the end of the stream,
/// means the feed was lost (the connection to the store dropped): changes may have been
/// missed since, and the listener subscribes again and reads every plan afresh.
pub type PlanChanges = BoxStream<'static, Result<PlanId, StoreError>>;

#[async_trait]
pub trait PlanFeed: Send + Sync {
    /// Starts listening. Every change to a plan committed after this returns — a sale,
    /// a hold or its end, a cancellation, a capacity or status change, by any instance
    /// sharing the store — is announced by the plan's id at least once, soon after its
    /// commit (changes close together may be announced once). The id says only that the
    /// plan changed: the listener reads the plan to learn how.
    async fn plan_changes(&self) -> Result<PlanChanges, StoreError>;
}
