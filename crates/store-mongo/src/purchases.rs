//! [`PurchaseRepository`] for [`MongoStore`], and the glue between its three steps and the
//! batches of `batch.rs`: each step is submitted to the store's [`Coalescer`], which hands
//! the steps gathered meanwhile to a [`StepRunner`] as one batch, run in one transaction;
//! when a batch fails, its steps run again one by one, so that one step's failure is that
//! step's answer only.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use mongodb::{Client, Collection, Database};
use seatkeeper_coalesce::{Coalescer, RunBatch};
use seatkeeper_domain::ports::{
    CompleteError, CompletePurchase, Completion, NewKeyReservation, PurchaseRepository,
    Reservation, ReserveError, ReserveSeat, ReserveWithNewKey, StoreError,
};

use crate::{
    batch::{self, Done, Step},
    checkout_documents::CheckoutDoc,
    documents::{AuditDoc, KeyDoc, PlanDoc, SubscriptionDoc},
    errors::{classify, retry_claim, Facts, Retry},
    queries, transaction, MongoStore, TimeLimitExceeded,
};

/// The most purchase steps one transaction takes.
const MAX_BATCH: usize = 128;

/// The collections a purchase writes, cloned (cheap handles) into its transaction.
#[derive(Clone)]
pub(crate) struct StepCollections {
    pub(crate) db: Database,
    pub(crate) plans: Collection<PlanDoc>,
    pub(crate) subscriptions: Collection<SubscriptionDoc>,
    pub(crate) audit: Collection<AuditDoc>,
    pub(crate) keys: Collection<KeyDoc>,
    pub(crate) checkouts: Collection<CheckoutDoc>,
}

/// A queue of the store's steps (`name`, for the metrics): one batch (one transaction)
/// at a time, at most [`MAX_BATCH`] steps each.
pub(crate) fn coalescer(
    name: &'static str,
    client: &Client,
    db: &Database,
    time_limit: Duration,
) -> Coalescer<Step, Done> {
    let runner = StepRunner {
        client: client.clone(),
        c: StepCollections {
            db: db.clone(),
            plans: db.collection(queries::PLANS),
            subscriptions: db.collection(queries::SUBSCRIPTIONS),
            audit: db.collection(queries::AUDIT_ENTRIES),
            keys: db.collection(queries::IDEMPOTENCY_KEYS),
            checkouts: db.collection(queries::CHECKOUT_SESSIONS),
        },
        time_limit,
    };
    let run: RunBatch<Step, Done> = Arc::new(move |steps| Box::pin(runner.clone().run(steps)));
    Coalescer::new(name, MAX_BATCH, run, || {
        Done::Failed(StoreError::internal(
            "a purchase batch ended without answering",
        ))
    })
}

#[async_trait]
impl PurchaseRepository for MongoStore {
    #[tracing::instrument(skip_all, fields(plan_id = %cmd.plan_id))]
    async fn reserve_seat(&self, cmd: &ReserveSeat) -> Result<Reservation, ReserveError> {
        match self.steps.submit(Step::Held(cmd.clone())).await {
            Done::Reserved(reservation) => reservation,
            Done::Failed(e) => Err(e.into()),
            other => Err(StoreError::internal(format!(
                "a reservation under a held key was answered with {other:?}"
            ))
            .into()),
        }
    }

    #[tracing::instrument(skip_all, fields(plan_id = %cmd.seat().plan_id))]
    async fn reserve_with_new_key(
        &self,
        cmd: &ReserveWithNewKey,
    ) -> Result<NewKeyReservation, StoreError> {
        match self.steps.submit(Step::New(cmd.clone())).await {
            Done::Reserved(Ok(reservation)) => Ok(NewKeyReservation::Claimed(reservation)),
            Done::KeyExists => Ok(NewKeyReservation::KeyExists),
            Done::Reserved(Err(ReserveError::Store(e))) | Done::Failed(e) => Err(e),
            other => Err(StoreError::internal(format!(
                "a reservation under a new key was answered with {other:?}"
            ))),
        }
    }

    #[tracing::instrument(skip_all, fields(subscription_id = %cmd.subscription_id))]
    async fn complete_purchase(&self, cmd: &CompletePurchase) -> Result<Completion, CompleteError> {
        match self.steps.submit(Step::Complete(cmd.clone())).await {
            Done::Completed(completion) => completion,
            Done::Failed(e) => Err(e.into()),
            other => Err(
                StoreError::internal(format!("a completion was answered with {other:?}")).into(),
            ),
        }
    }
}

/// Runs the purchase steps of one batch in one transaction; when that fails for any
/// reason but unavailability and the batch holds more than one step, runs each step
/// alone, so that one step's failure (another instance's insert of the same new key, a
/// corrupt document) is that step's answer only.
#[derive(Clone)]
struct StepRunner {
    client: Client,
    c: StepCollections,
    time_limit: Duration,
}

impl StepRunner {
    /// One transaction for `steps`, within the time limit (retries included).
    async fn attempt(
        &self,
        steps: &[Step],
    ) -> Result<mongodb::error::Result<Vec<Done>>, StoreError> {
        let mut session = self.client.start_session().await.map_err(classify)?;
        let (c, steps) = (self.c.clone(), steps.to_vec());
        let run = transaction::run(&mut session, async move |s| batch::run(s, &c, &steps).await);
        tokio::time::timeout(self.time_limit, run)
            .await
            .map_err(|_| StoreError::unavailable(TimeLimitExceeded(self.time_limit)))
    }

    async fn run(self, steps: Vec<Step>) -> Vec<Done> {
        let failure = match self.attempt(&steps).await {
            Ok(Ok(done)) => return done,
            Ok(Err(e)) if steps.len() == 1 => return vec![failed(&steps[0], e)],
            Ok(Err(e)) => classify(e),
            Err(e) => e,
        };
        if let StoreError::Unavailable(cause) = &failure {
            let cause = seatkeeper_domain::error_chain(&**cause);
            return steps
                .iter()
                .map(|_| Done::Failed(StoreError::unavailable(cause.clone())))
                .collect();
        }
        tracing::warn!(
            steps = steps.len(),
            error = %seatkeeper_domain::error_chain(&failure),
            "a purchase batch failed; running its steps one by one"
        );
        let this = &self;
        let alone = steps.iter().map(|step| async move {
            match this.attempt(std::slice::from_ref(step)).await {
                Ok(Ok(mut done)) => done.pop().expect("one answer for one step"),
                Ok(Err(e)) => failed(step, e),
                Err(e) => Done::Failed(e),
            }
        });
        futures::future::join_all(alone).await
    }
}

/// The answer of a step whose transaction failed with `e`: a new key's insert that lost
/// to another instance's is `KeyExists`, as if the step had looked later; an opening's
/// session insert that lost to another opening of its key is `OpenRaced`.
fn failed(step: &Step, e: mongodb::error::Error) -> Done {
    let lost_insert = retry_claim(&Facts::of(&e)) == Retry::Claim;
    match step {
        Step::New(_) if lost_insert => {
            tracing::debug!("a concurrent claim inserted the new key first");
            Done::KeyExists
        }
        Step::Open(_) if lost_insert => Done::OpenRaced,
        _ => Done::Failed(classify(e)),
    }
}
