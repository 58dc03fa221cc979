//! [`PlanFeed`] for [`MemoryStore`]: every append to a plan's audit trail is announced on
//! a broadcast channel (`PlanCell::append`), under the plan's lock; a listener that falls
//! more than the channel's backlog behind is told so (an error item) and starts again.

use async_trait::async_trait;
use seatkeeper_domain::{
    ports::{PlanChanges, PlanFeed, StoreError},
    PlanId,
};
use tokio::sync::broadcast::{error::RecvError, Receiver};

use crate::MemoryStore;

#[async_trait]
impl PlanFeed for MemoryStore {
    async fn plan_changes(&self) -> Result<PlanChanges, StoreError> {
        let changes = futures::stream::unfold(self.feed.subscribe(), next);
        Ok(Box::pin(changes))
    }
}

async fn next(mut rx: Receiver<PlanId>) -> Option<(Result<PlanId, StoreError>, Receiver<PlanId>)> {
    match rx.recv().await {
        Ok(id) => Some((Ok(id), rx)),
        Err(RecvError::Lagged(missed)) => Some((
            Err(StoreError::unavailable(format!(
                "the plan feed's listener fell {missed} changes behind"
            ))),
            rx,
        )),
        Err(RecvError::Closed) => None,
    }
}
