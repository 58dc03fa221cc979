//! [`CheckoutRepository`] for [`MongoStore`]: checkout sessions in `checkout_sessions`
//! and the webhook events seen in `webhook_events`.
//!
//! **Openings and changes are steps of the purchase batches.** An opening and a change
//! that may move a seat (a payment, an expiry, a refund: [`CheckoutChange::may_need_plan`])
//! write the plan document, as reservations and completions do, and MongoDB aborts the
//! second of two transactions that write one document instead of queueing it. So they
//! are steps of the store's one queue of steps (`batch/checkout.rs`): they wait behind the
//! running batch and share the next one, decided in queue order with the domain's rules on
//! the sessions and plans as the batch read and left them. Before, each took a per-plan
//! turn around a transaction of its own, which queued checkout steps among themselves but
//! not behind the purchase batches of the same plan, with which they kept conflicting.
//! The changes that write the session only (an intent attached, a failed payment) are
//! batched apart, in a second queue of the same steps: their transactions write no plan
//! document, so they need not wait for a hot plan's batches, and run beside them. (A
//! session written by both at once is a WriteConflict, and the batch runs again.)
//!
//! One key opened on two plans at once meets on the unique `(customer_id,
//! idempotency_key)` index: within one store the batch's reads see an earlier opening of
//! the key; across instances the loser's insert fails (a WriteConflict, which runs the
//! batch again, or a duplicate key, which runs the opening again alone, up to
//! [`OPEN_ATTEMPTS`] times), and it then decides `Existing` or `KeyReused` against the
//! winner's session (`tests/checkouts.rs` races it from three stores). A webhook event is
//! claimed by inserting it under its id: a duplicate key means it was seen before.
//!
//! Reads of a session by id (the confirmation's, each webhook's) share one `find` with
//! the reads that arrive together (`session_reads.rs`).
//!
//! [`CheckoutChange::may_need_plan`]: seatkeeper_domain::CheckoutChange::may_need_plan

use async_trait::async_trait;
use futures::TryStreamExt;
use seatkeeper_domain::{
    ports::{
        ChangeCheckoutError, Changed, CheckoutRepository, OpenCheckoutError, Opened, Purged,
        StoreError, WebhookEvent,
    },
    ChangeCheckout, CheckoutSession, CheckoutSessionId, OpenCheckout, Timestamp,
};

use crate::{
    batch::{Done, Step},
    checkout_documents::{CheckoutDoc, WebhookEventDoc},
    checkout_queries as q,
    errors::{classify, duplicate_key, Facts},
    MongoStore,
};

/// How many times an opening runs when its session insert loses the race for its key.
const OPEN_ATTEMPTS: u32 = 3;

/// The session a document holds (one the domain would not restore is an internal error).
pub(crate) fn session_of(d: CheckoutDoc) -> Result<CheckoutSession, StoreError> {
    CheckoutSession::try_from(d).map_err(StoreError::internal)
}

#[async_trait]
impl CheckoutRepository for MongoStore {
    #[tracing::instrument(skip_all, fields(plan_id = %cmd.plan_id))]
    async fn open_checkout(&self, cmd: &OpenCheckout) -> Result<Opened, OpenCheckoutError> {
        for attempt in 1..=OPEN_ATTEMPTS {
            match self.steps.submit(Step::Open(cmd.clone())).await {
                Done::Opened(outcome) => return outcome,
                Done::OpenRaced if attempt < OPEN_ATTEMPTS => tracing::debug!(
                    attempt,
                    "a concurrent opening inserted a session under the key first; opening again"
                ),
                Done::OpenRaced => break,
                Done::Failed(e) => return Err(e.into()),
                other => {
                    return Err(StoreError::internal(format!(
                        "an opening was answered with {other:?}"
                    ))
                    .into())
                }
            }
        }
        Err(StoreError::internal(format!(
            "a checkout key kept being opened by other instances ({OPEN_ATTEMPTS} attempts)"
        ))
        .into())
    }

    async fn get_checkout(
        &self,
        id: CheckoutSessionId,
    ) -> Result<Option<CheckoutSession>, StoreError> {
        self.session_reads.submit(id).await
    }

    #[tracing::instrument(skip_all, fields(session_id = %cmd.session_id, change = cmd.change.kind()))]
    async fn change_checkout(&self, cmd: &ChangeCheckout) -> Result<Changed, ChangeCheckoutError> {
        // A change that can never move a seat writes no plan document: it goes to batches
        // of its own, which never conflict with (or wait for) a hot plan's.
        let lane = match cmd.change.may_need_plan() {
            true => &self.steps,
            false => &self.session_changes,
        };
        match lane.submit(Step::Change(cmd.clone())).await {
            Done::Changed(outcome) => outcome,
            Done::Failed(e) => Err(e.into()),
            other => Err(StoreError::internal(format!(
                "a checkout change was answered with {other:?}"
            ))
            .into()),
        }
    }

    async fn checkouts_due(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<CheckoutSession>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let (filter, sort) = q::due_checkouts(now);
        let docs: Vec<CheckoutDoc> = self
            .checkouts
            .find(filter)
            .sort(sort)
            .limit(i64::from(limit))
            .await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)?;
        docs.into_iter().map(session_of).collect()
    }

    async fn claim_webhook_event(&self, event: &WebhookEvent) -> Result<bool, StoreError> {
        let doc = WebhookEventDoc::new(&event.id, &event.kind, event.received_at);
        match self.webhook_events.insert_one(doc).await {
            Ok(_) => Ok(true),
            Err(e) if duplicate_key(&Facts::of(&e)) => Ok(false),
            Err(e) => Err(classify(e)),
        }
    }

    async fn release_webhook_event(&self, id: &str) -> Result<(), StoreError> {
        self.webhook_events
            .delete_one(q::webhook_event(id))
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn purge_checkouts(
        &self,
        ended_before: Timestamp,
        events_before: Timestamp,
    ) -> Result<Purged, StoreError> {
        let sessions = self
            .checkouts
            .delete_many(q::purgeable_checkouts(ended_before))
            .await
            .map_err(classify)?;
        let events = self
            .webhook_events
            .delete_many(q::old_webhook_events(events_before))
            .await
            .map_err(classify)?;
        Ok(Purged {
            sessions: sessions.deleted_count,
            events: events.deleted_count,
        })
    }
}
