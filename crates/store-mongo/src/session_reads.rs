//! [`CheckoutRepository::get_checkout`] as batches: concurrent reads of checkout sessions
//! by id share one `find` of `{_id: {$in: [...]}}`.
//!
//! Why: a completed checkout reads its session twice outside any transaction (the
//! confirmation, and the webhook that follows), and those point reads were most of the
//! commands mongod answered in a checkout run — each cheap inside the collection (about
//! 40 µs on an idle server), but each a command to receive, parse, authorise and answer
//! on a server that shares two cores with the application. One `find` for every read that
//! arrived while the last one ran answers them with one command.
//!
//! What a read sees is unchanged: a read queued after a write was acknowledged is sent in
//! a `find` that starts after it was queued (a batch never takes a read that arrived
//! after it was sent), at the collection's read concern (`majority`, as every write is
//! acknowledged), so it sees that write. Reads run back to back, one `find` at a time: a
//! lone read is sent at once, alone.
//!
//! [`CheckoutRepository::get_checkout`]: seatkeeper_domain::ports::CheckoutRepository::get_checkout

use std::{collections::HashMap, sync::Arc};

use futures::TryStreamExt;
use mongodb::Collection;
use seatkeeper_coalesce::{Coalescer, RunBatch, Start};
use seatkeeper_domain::{ports::StoreError, CheckoutSession, CheckoutSessionId};

use crate::{
    checkout_documents::CheckoutDoc, checkout_queries as q, checkouts::session_of,
    documents::from_uuid, errors::classify,
};

/// The most reads one `find` answers.
const MAX_READS: usize = 256;

/// What a read answers.
pub(crate) type SessionRead = Result<Option<CheckoutSession>, StoreError>;

/// The queue of session reads (`session reads`, for the metrics).
pub(crate) fn coalescer(
    checkouts: Collection<CheckoutDoc>,
) -> Coalescer<CheckoutSessionId, SessionRead> {
    let run: RunBatch<CheckoutSessionId, SessionRead> =
        Arc::new(move |ids| Box::pin(read(checkouts.clone(), ids)));
    Coalescer::starting(Start::BackToBack, "session reads", MAX_READS, run, || {
        Err(StoreError::internal(
            "a batch of checkout session reads ended without answering",
        ))
    })
}

/// One `find` for `ids`; each read is answered with its session, or none, or the failure
/// (a document that does not read back as a session fails only the reads naming it).
async fn read(checkouts: Collection<CheckoutDoc>, ids: Vec<CheckoutSessionId>) -> Vec<SessionRead> {
    let found: mongodb::error::Result<Vec<CheckoutDoc>> = async {
        checkouts
            .find(q::checkouts_by_ids(ids.iter().copied()))
            .await?
            .try_collect()
            .await
    }
    .await;
    let docs = match found {
        Ok(docs) => docs,
        Err(e) => return ids.iter().map(|_| Err(classify(e.clone()))).collect(),
    };
    let by_id: HashMap<CheckoutSessionId, CheckoutDoc> = docs
        .into_iter()
        .map(|d| (CheckoutSessionId::from_uuid(from_uuid(d.id)), d))
        .collect();
    ids.iter()
        .map(|id| by_id.get(id).cloned().map(session_of).transpose())
        .collect()
}
