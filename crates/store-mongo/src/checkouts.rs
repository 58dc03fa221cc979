//! [`CheckoutRepository`] for [`MongoStore`]: checkout sessions in `checkout_sessions`
//! and the webhook events seen in `webhook_events`. Opening a session and a change that
//! moves seats are each one transaction that reads what the domain needs, lets it decide
//! ([`OpenCheckout::decide`] and [`OpenCheckout::hold`], [`CheckoutSession::apply`]) and
//! writes back exactly what it returned: the session (guarded by the status and
//! `updated_at` it was read with), the new subscription, the plan's `seats_left` and `seq`
//! (guarded by the `seq` read) and the audit entries. Every document a decision depends
//! on is written with a filter repeating what was read, so a decision on data another
//! transaction changed meanwhile conflicts (WriteConflict) and is made again on a new
//! snapshot; a guard that matches nothing is corruption. A refusal writes nothing.
//!
//! **Hot plans.** Every opening writes its plan document, and so do the payments and
//! expiries of its sessions; MongoDB aborts the second of two transactions that write one
//! document instead of queueing it. The store therefore takes a turn on the plan (a
//! per-store async lock, one of [`TURN_STRIPES`] chosen by the plan id) around the whole
//! transaction of `open_checkout` and of each `change_checkout` that reads the plan: in
//! one store instance those steps queue instead of conflicting. Across instances sharing
//! a database (and against the purchase batches, which write the same document) the
//! WriteConflict and the runner's retry remain the safety net; the lock is never needed
//! for correctness. Waiting for the turn counts against the store's time limit.
//! Measured on the single-node replica set (mongod 6.0.5, debug build, the 2-core machine
//! shared with other builds, load average 2.6–4; each case alone, five runs, fresh
//! database included): the contract case of 60 openings of one plan for 10 seats took
//! 1.6–2.5 s without the turns (every conflict costs the loser a jittered back-off that
//! grows) and 0.45–0.80 s with them; 20 payments and expiries racing 10 openings of one
//! plan 1.4–2.4 s and 0.54–1.0 s. The stripes keep the memory bounded; two plans that
//! share one only queue behind each other. A change that does not read the plan (an
//! intent attached, a failed payment, an intent closed, a check) takes no turn: changes
//! of one session are serialised by the session's guard, a loser running again (a turn
//! per session as well gained ~10 % on twelve changes of one session at once: not kept).
//!
//! One key opened on two plans at once (different turns) meets on the unique
//! `(customer_id, idempotency_key)` index: the server reports the loser's insert as a
//! WriteConflict and the runner runs it again, so that it decides `Existing` or
//! `KeyReused` against the winner's session (`tests/checkouts.rs` races it from three
//! stores). Should the clash come back as a duplicate key instead, the opening is run
//! again too, as a claim of a new idempotency key is. A webhook event is claimed by
//! inserting it under its id: a duplicate key means it was seen before.

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::{ClientSession, Collection};
use seatkeeper_domain::{
    ports::{
        ChangeCheckoutError, Changed, CheckoutRepository, OpenCheckoutError, Opened, Purged,
        StoreError, WebhookEvent,
    },
    ChangeCheckout, CheckoutSession, CheckoutSessionId, Effect, OpenCheckout, OpenDecision, Plan,
    PlanId, Timestamp,
};
use tokio::sync::Mutex;

use crate::{
    checkout_documents::{CheckoutDoc, SessionIdDoc, WebhookEventDoc},
    checkout_queries as q,
    documents::{AuditDoc, Corrupt, PlanDoc, SubscriptionDoc},
    errors::{classify, corrupt, duplicate_key, retry_claim, Facts, Retry},
    queries,
    transaction::{self, refuse, unmatched},
    MongoStore,
};

/// How many locks the plans share (see the module's doc).
pub(crate) const TURN_STRIPES: usize = 64;

/// The store's turns on its plans: the checkout steps that write a plan document take
/// the plan's, so that within one store they queue instead of conflicting.
pub(crate) struct PlanTurns(Box<[Mutex<()>]>);

impl PlanTurns {
    pub(crate) fn new() -> Self {
        Self((0..TURN_STRIPES).map(|_| Mutex::new(())).collect())
    }

    fn of(&self, plan: PlanId) -> &Mutex<()> {
        let n = plan.as_uuid().as_u128();
        // Both halves: a v7 id's high bits are its time, its low bits random.
        let mixed = (n ^ (n >> 64)) as u64;
        &self.0[(mixed % self.0.len() as u64) as usize]
    }
}

/// How many times an opening runs when its session insert loses the race for its key.
const OPEN_ATTEMPTS: u32 = 3;

/// The collections a checkout step touches (cheap handles, cloned into its transaction).
#[derive(Clone)]
struct Collections {
    plans: Collection<PlanDoc>,
    subscriptions: Collection<SubscriptionDoc>,
    audit: Collection<AuditDoc>,
    checkouts: Collection<CheckoutDoc>,
    session_ids: Collection<SessionIdDoc>,
}

type Step<T, E> = mongodb::error::Result<Result<T, E>>;

impl MongoStore {
    fn checkout_collections(&self) -> Collections {
        Collections {
            plans: self.plans.clone(),
            subscriptions: self.subscriptions.clone(),
            audit: self.audit.clone(),
            checkouts: self.checkouts.clone(),
            session_ids: self.checkouts.clone_with_type(),
        }
    }

    /// One run of an opening: its transaction, in the plan's turn, within the time limit.
    async fn open_once(
        &self,
        cmd: &OpenCheckout,
    ) -> Result<Step<Opened, OpenCheckoutError>, StoreError> {
        let (c, cmd) = (self.checkout_collections(), cmd.clone());
        let turn = self.turns.of(cmd.plan_id);
        let mut session = self.session().await?;
        self.limited(async {
            let _turn = turn.lock().await;
            transaction::run(&mut session, async move |s| open(&c, &cmd, s).await).await
        })
        .await
    }
}

/// Reads the plan, the session the key opened and the customer's open sessions on the
/// plan; lets the domain decide; on a hold writes the session, the plan and the entry.
async fn open(
    c: &Collections,
    cmd: &OpenCheckout,
    s: &mut ClientSession,
) -> Step<Opened, OpenCheckoutError> {
    let plan = c
        .plans
        .find_one(queries::plan_by_id(cmd.plan_id))
        .session(&mut *s)
        .await?
        .map(Plan::try_from)
        .transpose()
        .map_err(corrupt)?;
    let by_key = c
        .checkouts
        .find_one(q::checkout_by_key(&cmd.customer_id, &cmd.key))
        .session(&mut *s)
        .await?
        .map(CheckoutSession::try_from)
        .transpose()
        .map_err(corrupt)?;
    let open_on_plan: Vec<CheckoutSessionId> = c
        .session_ids
        .find(q::open_checkouts_of(cmd.plan_id, &cmd.customer_id))
        .projection(q::ids_only())
        .session(&mut *s)
        .await?
        .stream(&mut *s)
        .map_ok(CheckoutSessionId::from)
        .try_collect()
        .await?;
    match cmd.decide(by_key.as_ref(), &open_on_plan, plan.as_ref()) {
        Err(refusal) => refuse(s, OpenCheckoutError::Refused(refusal)).await,
        Ok(OpenDecision::Existing(session)) => Ok(Ok(Opened::Existing(session))),
        Ok(OpenDecision::Hold) => {
            let mut plan = plan.ok_or_else(|| corrupt(Corrupt("a hold without a plan".into())))?;
            let read_seq = plan.seq();
            let (session, entry) = cmd.hold(&mut plan);
            // The unique (customer_id, idempotency_key) index settles one key on two plans.
            c.checkouts
                .insert_one(CheckoutDoc::from(&session))
                .session(&mut *s)
                .await?;
            // The hot plan document last but for its entry.
            write_plan(&c.plans, s, &plan, read_seq).await?;
            c.audit
                .insert_one(AuditDoc::from(&entry))
                .session(&mut *s)
                .await?;
            Ok(Ok(Opened::New(session)))
        }
    }
}

/// Reads the session (and its plan when the change needs it), lets the domain apply the
/// change, and writes what it returned.
async fn change(
    c: &Collections,
    cmd: &ChangeCheckout,
    s: &mut ClientSession,
) -> Step<Changed, ChangeCheckoutError> {
    let Some(found) = c
        .checkouts
        .find_one(q::checkout_by_id(cmd.session_id))
        .session(&mut *s)
        .await?
    else {
        return refuse(s, ChangeCheckoutError::NotFound).await;
    };
    let read = CheckoutSession::try_from(found).map_err(corrupt)?;
    let mut plan = None;
    if read.needs_plan(&cmd.change) {
        let found = c
            .plans
            .find_one(queries::plan_by_id(read.plan_id()))
            .session(&mut *s)
            .await?
            .ok_or_else(|| {
                corrupt(Corrupt(format!(
                    "plan {} of checkout session {} is missing",
                    read.plan_id(),
                    read.id()
                )))
            })?;
        plan = Some(Plan::try_from(found).map_err(corrupt)?);
    }
    let read_seq = plan.as_ref().map(Plan::seq);
    let mut session = read.clone();
    let applied = match session.apply(cmd, plan.as_mut()) {
        Ok(applied) => applied,
        Err(refusal) => return refuse(s, ChangeCheckoutError::Refused(refusal)).await,
    };
    if applied.effect == Effect::Unchanged {
        return Ok(Ok(Changed { session, applied }));
    }
    let written = c
        .checkouts
        .replace_one(q::checkout_as_read(&read), CheckoutDoc::from(&session))
        .session(&mut *s)
        .await?;
    if written.matched_count != 1 {
        return Err(unmatched("the checkout session update"));
    }
    if let Some(sub) = &applied.subscription {
        c.subscriptions
            .insert_one(SubscriptionDoc::from(sub))
            .session(&mut *s)
            .await?;
    }
    if !applied.entries.is_empty() {
        let (Some(plan), Some(read_seq)) = (&plan, read_seq) else {
            return Err(corrupt(Corrupt(
                "a checkout change numbered audit entries without its plan".into(),
            )));
        };
        write_plan(&c.plans, s, plan, read_seq).await?;
        let entries: Vec<AuditDoc> = applied.entries.iter().map(AuditDoc::from).collect();
        c.audit.insert_many(&entries).session(&mut *s).await?;
    }
    Ok(Ok(Changed { session, applied }))
}

/// Writes the plan's seats and `seq` as a checkout step left them, only while it has the
/// `seq` the step read.
async fn write_plan(
    plans: &Collection<PlanDoc>,
    s: &mut ClientSession,
    plan: &Plan,
    read_seq: u64,
) -> mongodb::error::Result<()> {
    let written = plans
        .update_one(
            queries::plan_at_seq(plan.id(), read_seq),
            q::set_plan_seats(plan),
        )
        .session(s)
        .await?;
    if written.matched_count != 1 {
        return Err(unmatched("the plan's seat move"));
    }
    Ok(())
}

fn session_of(d: CheckoutDoc) -> Result<CheckoutSession, StoreError> {
    CheckoutSession::try_from(d).map_err(StoreError::internal)
}

#[async_trait]
impl CheckoutRepository for MongoStore {
    #[tracing::instrument(skip_all, fields(plan_id = %cmd.plan_id))]
    async fn open_checkout(&self, cmd: &OpenCheckout) -> Result<Opened, OpenCheckoutError> {
        let mut attempt = 1;
        loop {
            match self.open_once(cmd).await? {
                Ok(outcome) => return outcome,
                Err(e)
                    if attempt < OPEN_ATTEMPTS && retry_claim(&Facts::of(&e)) == Retry::Claim =>
                {
                    tracing::debug!(
                        attempt,
                        "a concurrent opening inserted a session under the key first; opening again"
                    );
                    attempt += 1;
                }
                Err(e) => return Err(classify(e).into()),
            }
        }
    }

    async fn get_checkout(
        &self,
        id: CheckoutSessionId,
    ) -> Result<Option<CheckoutSession>, StoreError> {
        self.checkouts
            .find_one(q::checkout_by_id(id))
            .await
            .map_err(classify)?
            .map(session_of)
            .transpose()
    }

    #[tracing::instrument(skip_all, fields(session_id = %cmd.session_id, change = cmd.change.kind()))]
    async fn change_checkout(&self, cmd: &ChangeCheckout) -> Result<Changed, ChangeCheckoutError> {
        let (c, cmd) = (self.checkout_collections(), cmd.clone());
        let mut session = self.session().await?;
        let run = async {
            // The plan's turn, for a change that will write the plan as the session
            // is: its id from the session (which never changes plan), read before the
            // transaction, which reads the session again (and, should it have changed
            // meanwhile, decides on that; the turn only spares conflicts).
            let ahead = match cmd.change.may_need_plan() {
                true => self.get_checkout(cmd.session_id).await.map(Some),
                false => Ok(None),
            };
            let _turn = match ahead {
                Ok(None) => None,
                Ok(Some(Some(read))) if read.needs_plan(&cmd.change) => {
                    Some(self.turns.of(read.plan_id()).lock().await)
                }
                Ok(Some(Some(_))) => None,
                Ok(Some(None)) => return Ok(Err(ChangeCheckoutError::NotFound)),
                Err(e) => return Ok(Err(e.into())),
            };
            transaction::run(&mut session, async move |s| change(&c, &cmd, s).await).await
        };
        self.settle(run).await
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
