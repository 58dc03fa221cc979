//! [`PlanFeed`] for [`MongoStore`]: a change stream on `plans` (the replica set's oplog),
//! of inserts, updates and replacements, projected to the document's `_id`. Every change a
//! live view may show writes its plan document (seats, seq, status or capacity), so each is
//! announced once it is committed (majority). A change stream the driver cannot resume
//! ends the feed with an error item, and the listener starts again.

use async_trait::async_trait;
use futures::StreamExt;
use mongodb::{
    bson::{doc, Bson, Document},
    change_stream::event::ChangeStreamEvent,
};
use seatkeeper_domain::{
    ports::{PlanChanges, PlanFeed, StoreError},
    PlanId,
};

use crate::{documents::from_uuid, errors::classify, MongoStore};

#[async_trait]
impl PlanFeed for MongoStore {
    async fn plan_changes(&self) -> Result<PlanChanges, StoreError> {
        let pipeline = [
            doc! { "$match": { "operationType": { "$in": ["insert", "update", "replace"] } } },
            doc! { "$project": { "documentKey": 1, "operationType": 1 } },
        ];
        let stream = self
            .plans
            .clone_with_type::<Document>()
            .watch()
            .pipeline(pipeline)
            .await
            .map_err(classify)?;
        let changes = stream.filter_map(|event| async move {
            match event {
                Ok(event) => plan_of(&event).map(Ok),
                Err(e) => Some(Err(classify(e))),
            }
        });
        Ok(Box::pin(changes))
    }
}

/// The plan a change stream event is about.
fn plan_of(event: &ChangeStreamEvent<Document>) -> Option<PlanId> {
    match event.document_key.as_ref()?.get("_id")? {
        Bson::Binary(b) => {
            let u = b.to_uuid().ok()?;
            Some(PlanId::from_uuid(from_uuid(u)))
        }
        _ => None,
    }
}
