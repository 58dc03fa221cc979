//! [`PlanFeed`] for [`PostgresStore`]: `LISTEN seatkeeper_plan_changed` on a connection of
//! its own (a trigger on `plans` notifies at every committed change, with the plan's id;
//! see the migration `plan_changes`). A lost connection ends the feed with an error item:
//! notifications sent meanwhile are gone, so the listener starts again and reads every plan.

use async_trait::async_trait;
use seatkeeper_domain::{
    ports::{PlanChanges, PlanFeed, StoreError},
    PlanId,
};
use sqlx::postgres::PgListener;

use crate::{errors::classify, PostgresStore};

/// The channel the trigger notifies.
const CHANNEL: &str = "seatkeeper_plan_changed";

#[async_trait]
impl PlanFeed for PostgresStore {
    async fn plan_changes(&self) -> Result<PlanChanges, StoreError> {
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(classify)?;
        listener.listen(CHANNEL).await.map_err(classify)?;
        let changes = futures::stream::unfold(Some(listener), next);
        Ok(Box::pin(changes))
    }
}

/// The next change; after a lost connection, one error item and the end.
async fn next(
    listener: Option<PgListener>,
) -> Option<(Result<PlanId, StoreError>, Option<PgListener>)> {
    let mut listener = listener?;
    loop {
        return match listener.try_recv().await {
            Ok(Some(n)) => match n.payload().parse::<PlanId>() {
                Ok(id) => Some((Ok(id), Some(listener))),
                Err(_) => {
                    tracing::warn!(payload = n.payload(), "a plan change names no plan id");
                    continue;
                }
            },
            // `try_recv` answers `None` once when the connection was lost.
            Ok(None) => Some((
                Err(StoreError::unavailable(
                    "the connection listening for plan changes was lost",
                )),
                None,
            )),
            Err(e) => Some((Err(classify(e)), None)),
        };
    }
}
