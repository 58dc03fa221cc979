//! The store's steps as batches, for the [`Coalescer`](seatkeeper_coalesce::Coalescer):
//! one transaction reserves seats, completes purchases, opens and changes checkout
//! sessions (`checkout.rs`) for many requests, of any plans, and moves each plan document
//! it touched with one guarded statement of one `update` command.
//!
//! Why: MongoDB aborts a transaction at once when it writes a document that another open
//! transaction wrote (`WriteConflict`), where PostgreSQL would queue it behind a lock. A
//! transaction per purchase step on one hot plan document makes concurrent buyers abort
//! each other until the time limit. So each store runs its purchase steps one batch at a
//! time (requests arriving meanwhile gather for the next batch), and a batch reads
//! everything it needs first, decides in memory, and writes with a handful of statements
//! whose count does not grow with the batch: the hot document is written once per batch,
//! near the commit. Instances sharing a database still conflict with each other, once per
//! batch instead of once per buyer; the driver retries those with jittered back-off.
//!
//! Each request keeps the semantics of its port method: it is checked, decided and
//! written as it would be alone, in queue order, as if the requests had run one after
//! another (a decline's released seat can go to a later reservation of the same batch).
//! A batch is all-or-nothing only in that a failure rolls all of it back; the store then
//! answers each request alone (`StepRunner::run`, in `purchases.rs`).
//!
//! Round trips of a batch: find subscriptions, find keys (the reservations' and the
//! completions'), find checkout sessions, mark and find plans (one `findOneAndUpdate` when
//! there is one plan), insert new sessions, update changed sessions, insert new keys (in
//! their final state: reserved, or finished with a rejection), update held and completed
//! keys (one `update` command of many statements, each by `_id`), insert subscriptions,
//! update subscriptions, update the moved plans (one `update` command), insert audit
//! entries, commit — each only when the batch has something for it.

use std::collections::{BTreeMap, HashMap, HashSet};

use futures::TryStreamExt;
use mongodb::{
    bson::{doc, Bson, Document},
    options::ReturnDocument,
    ClientSession,
};
use seatkeeper_domain::{
    ports::{
        ChangeCheckoutError, Changed, ChargeResult, CheckoutBatch, CompleteError, CompletePurchase,
        Completion, OpenCheckoutError, Opened, Reservation, ReserveError, ReserveSeat,
        ReserveWithNewKey, StoreError,
    },
    ChangeCheckout, IdempotencyRecord, OpenCheckout, Plan, PlanId, PurchaseOutcome, RecoveryPoint,
    Subscription, SubscriptionId, SubscriptionStatus,
};

mod checkout;

use crate::{
    documents::{uuid, AuditDoc, Corrupt, CountsDoc, KeyDoc, SubscriptionDoc},
    errors::corrupt,
    purchases::StepCollections,
    queries,
    transaction::unmatched,
};

/// A step as a batch takes it.
#[derive(Debug, Clone)]
pub(crate) enum Step {
    /// [`PurchaseRepository::reserve_seat`](seatkeeper_domain::ports::PurchaseRepository::reserve_seat):
    /// under a key the caller holds.
    Held(ReserveSeat),
    /// [`PurchaseRepository::reserve_with_new_key`](seatkeeper_domain::ports::PurchaseRepository::reserve_with_new_key):
    /// under a key the same transaction claims.
    New(ReserveWithNewKey),
    /// [`PurchaseRepository::complete_purchase`](seatkeeper_domain::ports::PurchaseRepository::complete_purchase).
    Complete(CompletePurchase),
    /// [`CheckoutRepository::open_checkout`](seatkeeper_domain::ports::CheckoutRepository::open_checkout).
    Open(OpenCheckout),
    /// [`CheckoutRepository::change_checkout`](seatkeeper_domain::ports::CheckoutRepository::change_checkout).
    Change(ChangeCheckout),
}

impl Step {
    fn seat(&self) -> Option<&ReserveSeat> {
        match self {
            Self::Held(seat) => Some(seat),
            Self::New(cmd) => Some(cmd.seat()),
            Self::Complete(_) | Self::Open(_) | Self::Change(_) => None,
        }
    }
}

/// What a batch did for one [`Step`].
#[allow(clippy::large_enum_variant)] // one per request, never kept
#[derive(Debug)]
pub(crate) enum Done {
    /// A reservation ran (under a new key: the key is claimed).
    Reserved(Result<Reservation, ReserveError>),
    /// A new key had a record already: nothing was done for this request.
    KeyExists,
    Completed(Result<Completion, CompleteError>),
    Opened(Result<Opened, OpenCheckoutError>),
    /// An opening's session insert lost to another opening of its key (on another plan,
    /// by another instance): nothing was done; opening again decides against that one.
    OpenRaced,
    Changed(Result<Changed, ChangeCheckoutError>),
    /// The step's transaction failed (or its batch was lost): nothing was done for it.
    Failed(StoreError),
}

/// Writes the batch collects while it decides.
#[derive(Default)]
pub(super) struct Writes {
    new_keys: Vec<KeyDoc>,
    /// Updates of records the batch read (held keys, and the keys of completed purchases),
    /// each by `_id`: each must match its record.
    key_updates: Vec<Document>,
    pub(super) new_subs: Vec<SubscriptionDoc>,
    completed_subs: Vec<Document>,
    pub(super) audit: Vec<AuditDoc>,
    /// How each plan's subscription counts move (`CountsDoc`): with the plan's update.
    pub(super) counts: BTreeMap<PlanId, CountsDoc>,
}

/// One statement of an `update` command.
pub(super) fn statement(q: Document, u: Document) -> Document {
    doc! { "q": q, "u": u }
}

/// The batch's reads: the subscriptions its completions name, the keys its reservations
/// and those subscriptions name, the sessions its checkout steps depend on, and the plans
/// of them all. Sessions are read by sets, so they may hold a few more, which no step
/// looks up.
struct Reads {
    keys: HashMap<(String, String), IdempotencyRecord>,
    subs: HashMap<SubscriptionId, Subscription>,
    sessions: CheckoutBatch,
    plans: BTreeMap<PlanId, Plan>,
}

async fn read(
    s: &mut ClientSession,
    c: &StepCollections,
    steps: &[Step],
) -> mongodb::error::Result<Reads> {
    let sub_ids: Vec<Bson> = steps
        .iter()
        .filter_map(|st| match st {
            Step::Complete(cmd) => Some(uuid(cmd.subscription_id.as_uuid()).into()),
            _ => None,
        })
        .collect();
    let mut subs = HashMap::new();
    if !sub_ids.is_empty() {
        let mut found = c
            .subscriptions
            .find(doc! { "_id": { "$in": sub_ids } })
            .session(&mut *s)
            .await?;
        while let Some(d) = found.next(&mut *s).await.transpose()? {
            let sub = Subscription::try_from(d).map_err(corrupt)?;
            subs.insert(sub.id(), sub);
        }
    }
    let seats = steps
        .iter()
        .filter_map(Step::seat)
        .map(|cmd| (&cmd.customer_id, &cmd.key));
    let purchases = subs
        .values()
        .filter_map(|sub| Some((sub.customer_id(), sub.idempotency_key()?)));
    let pairs: Vec<_> = seats.chain(purchases).collect();
    let mut keys = HashMap::new();
    if !pairs.is_empty() {
        let mut found = c
            .keys
            .find(queries::keys_of(pairs))
            .session(&mut *s)
            .await?;
        while let Some(d) = found.next(&mut *s).await.transpose()? {
            let r = IdempotencyRecord::try_from(d).map_err(corrupt)?;
            keys.insert(
                (r.scope().as_str().to_owned(), r.key().as_str().to_owned()),
                r,
            );
        }
    }
    let sessions = checkout::read(s, c, steps).await?;
    let plan_ids: HashSet<PlanId> = steps
        .iter()
        .filter_map(|st| match st {
            Step::Open(cmd) => Some(cmd.plan_id),
            _ => st.seat().map(|cmd| cmd.plan_id),
        })
        .chain(subs.values().map(|sub| sub.plan_id()))
        .chain(checkout::plans_of_changes(&sessions, steps))
        .collect();
    let mut plans = BTreeMap::new();
    if !plan_ids.is_empty() {
        let ids: Vec<Bson> = plan_ids
            .iter()
            .map(|id| uuid(id.as_uuid()).into())
            .collect();
        // Write the plans first, then read them: a batch of another instance that got
        // there first makes this one conflict now, before it has done any work, instead
        // of at its last write; and from here on no other batch can move these plans
        // until this one commits or aborts.
        let mark = queries::mark_batch(uuid::Uuid::new_v4());
        let found: Vec<_> = if let [id] = &ids[..] {
            // One plan (a hot plan's batches): marked and read in one round trip.
            c.plans
                .find_one_and_update(doc! { "_id": id }, mark)
                .return_document(ReturnDocument::After)
                .session(&mut *s)
                .await?
                .into_iter()
                .collect()
        } else {
            c.plans
                .update_many(doc! { "_id": { "$in": ids.clone() } }, mark)
                .session(&mut *s)
                .await?;
            c.plans
                .find(doc! { "_id": { "$in": ids } })
                .session(&mut *s)
                .await?
                .stream(&mut *s)
                .try_collect()
                .await?
        };
        for d in found {
            let plan = Plan::try_from(d).map_err(corrupt)?;
            plans.insert(plan.id(), plan);
        }
    }
    Ok(Reads {
        keys,
        subs,
        sessions,
        plans,
    })
}

/// Every step of `steps`, in one transaction (the body the transaction runner may run again).
pub(crate) async fn run(
    s: &mut ClientSession,
    c: &StepCollections,
    steps: &[Step],
) -> mongodb::error::Result<Vec<Done>> {
    let Reads {
        keys,
        mut subs,
        mut sessions,
        mut plans,
    } = read(s, c, steps).await?;
    let before: BTreeMap<PlanId, Plan> = plans.clone();
    let mut w = Writes::default();
    // Keys a reservation of this batch took: a key serves one reservation.
    let mut taken: HashSet<(&str, &str)> = HashSet::new();
    let mut answers = Vec::with_capacity(steps.len());
    for step in steps {
        let answer = match step {
            Step::Held(cmd) => {
                let id = (cmd.customer_id.as_str(), cmd.key.as_str());
                let ours = keys
                    .get(&(id.0.to_owned(), id.1.to_owned()))
                    .is_some_and(|r| {
                        r.is_locked_by(cmd.owner) && *r.recovery() == RecoveryPoint::Started
                    });
                if ours && taken.insert(id) {
                    let held = queries::key(&cmd.customer_id, &cmd.key);
                    Done::Reserved(Ok(reserve(cmd, Key::Held(held), &mut plans, &mut w)?))
                } else {
                    Done::Reserved(Err(ReserveError::LockLost))
                }
            }
            Step::New(cmd) => {
                let claim = cmd.claim();
                let id = (claim.scope.as_str(), claim.key.as_str());
                if keys.contains_key(&(id.0.to_owned(), id.1.to_owned())) || !taken.insert(id) {
                    Done::KeyExists
                } else {
                    let key = Key::New(claim.fresh_record());
                    Done::Reserved(Ok(reserve(cmd.seat(), key, &mut plans, &mut w)?))
                }
            }
            Step::Complete(cmd) => {
                Done::Completed(complete(cmd, &mut subs, &keys, &mut plans, &mut w)?)
            }
            Step::Open(cmd) => Done::Opened(checkout::open(cmd, &mut sessions, &mut plans, &mut w)),
            Step::Change(cmd) => {
                Done::Changed(checkout::change(cmd, &mut sessions, &mut plans, &mut w))
            }
        };
        answers.push(answer);
    }
    // The sessions first: their unique key index settles a key opened on two plans
    // before anything else is written.
    checkout::write(s, c, sessions).await?;
    write(s, c, w, &plans, &before).await?;
    Ok(answers)
}

/// The key a reservation runs under.
enum Key {
    /// Stored already, read by the batch as held at `Started`: this filter (its `_id`)
    /// matches it.
    Held(Document),
    /// Claimed by this batch: inserted once the reservation is decided, in its final state.
    New(IdempotencyRecord),
}

impl Key {
    /// Records a rejection: the key is finished with `outcome`.
    fn finish(
        self,
        cmd: &ReserveSeat,
        outcome: &PurchaseOutcome,
        w: &mut Writes,
    ) -> mongodb::error::Result<()> {
        match self {
            Self::Held(held) => {
                let finish =
                    queries::finish_key(outcome, &cmd.request_id, cmd.now).map_err(corrupt)?;
                w.key_updates.push(statement(held, finish));
            }
            Self::New(mut record) => {
                record.finish(outcome.clone(), cmd.request_id.clone(), cmd.now);
                w.new_keys.push(KeyDoc::from(&record));
            }
        }
        Ok(())
    }

    /// Records a reservation: the key points at `subscription`.
    fn reserved(self, subscription: SubscriptionId, w: &mut Writes) {
        match self {
            Self::Held(held) => w
                .key_updates
                .push(statement(held, queries::record_reservation(subscription))),
            Self::New(mut record) => {
                record.record_reservation(subscription);
                w.new_keys.push(KeyDoc::from(&record));
            }
        }
    }
}

/// Decides the reservation of `cmd`, under `key`, on `plans`.
fn reserve(
    cmd: &ReserveSeat,
    key: Key,
    plans: &mut BTreeMap<PlanId, Plan>,
    w: &mut Writes,
) -> mongodb::error::Result<Reservation> {
    let plan = plans.get_mut(&cmd.plan_id);
    if let Some(outcome) = cmd.rejection(plan.as_deref()) {
        key.finish(cmd, &outcome, w)?;
        return Ok(Reservation::Rejected(outcome));
    }
    let p = plan.ok_or_else(|| corrupt(Corrupt("a missing plan was not rejected".into())))?;
    let (sub, entry) = cmd.take_seat(p);
    w.audit.push(AuditDoc::from(&entry));
    w.counts
        .entry(sub.plan_id())
        .or_default()
        .add(sub.status(), 1);
    key.reserved(sub.id(), w);
    w.new_subs.push(SubscriptionDoc::from(&sub));
    Ok(Reservation::Reserved(sub))
}

/// Decides the completion of `cmd` on `subs`, `keys` and `plans`.
fn complete(
    cmd: &CompletePurchase,
    subs: &mut HashMap<SubscriptionId, Subscription>,
    keys: &HashMap<(String, String), IdempotencyRecord>,
    plans: &mut BTreeMap<PlanId, Plan>,
    w: &mut Writes,
) -> mongodb::error::Result<Result<Completion, CompleteError>> {
    let id = cmd.subscription_id;
    let Some(sub) = subs.get_mut(&id) else {
        return Ok(Err(CompleteError::NotFound(id)));
    };
    if sub.status() != SubscriptionStatus::Incomplete {
        return Ok(Err(CompleteError::NotIncomplete(Box::new(sub.clone()))));
    }
    let change = cmd.apply(sub);
    // Any recovery lease ends; a decline by the reconciler schedules the late-charge check.
    let verify_after = match cmd.result {
        ChargeResult::Declined { .. } => cmd.verify_after,
        ChargeResult::Charged { .. } => None,
    };
    // By `_id` alone, the server's fastest path (no query planning): this transaction
    // read the subscription as incomplete, and a change another one commits after that
    // read makes this write conflict, so a status guard would add nothing.
    w.completed_subs.push(statement(
        queries::subscription_by_id(id),
        queries::complete_subscription(sub, verify_after),
    ));
    // The purchase's key, if the batch read it still open for this purchase (a record
    // replaced by a newer purchase under the same key is left alone).
    if let Some(key) = sub.idempotency_key() {
        let id_of_key = (
            sub.customer_id().as_str().to_owned(),
            key.as_str().to_owned(),
        );
        if keys
            .get(&id_of_key)
            .is_some_and(|r| r.awaits_completion_of(id))
        {
            let finish =
                queries::finish_key(&change.outcome, &cmd.request_id, cmd.now).map_err(corrupt)?;
            w.key_updates
                .push(statement(queries::key(sub.customer_id(), key), finish));
        }
    }
    let plan = plans.get_mut(&sub.plan_id()).ok_or_else(|| {
        corrupt(Corrupt(format!(
            "plan {} of a subscription is missing",
            sub.plan_id()
        )))
    })?;
    w.counts
        .entry(sub.plan_id())
        .or_default()
        .moved(SubscriptionStatus::Incomplete, sub.status());
    let entry = plan.move_seats(change.seat_move(id), &cmd.ctx, cmd.now);
    w.audit.push(AuditDoc::from(&entry));
    Ok(Ok(Completion {
        outcome: change.outcome,
    }))
}

/// Writes what the batch decided; the plan documents last, each with one guarded
/// `findOneAndUpdate` that matches only the document as the batch read it.
async fn write(
    s: &mut ClientSession,
    c: &StepCollections,
    mut w: Writes,
    plans: &BTreeMap<PlanId, Plan>,
    before: &BTreeMap<PlanId, Plan>,
) -> mongodb::error::Result<()> {
    if !w.new_keys.is_empty() {
        c.keys.insert_many(w.new_keys).session(&mut *s).await?;
    }
    let read = w.key_updates.len();
    if update(s, c, queries::IDEMPOTENCY_KEYS, w.key_updates).await? != read {
        return Err(unmatched("a key the batch read"));
    }
    if !w.new_subs.is_empty() {
        c.subscriptions
            .insert_many(w.new_subs)
            .session(&mut *s)
            .await?;
    }
    let completed = w.completed_subs.len();
    if update(s, c, queries::SUBSCRIPTIONS, w.completed_subs).await? != completed {
        return Err(unmatched("an incomplete subscription's completion"));
    }
    // Every moved plan in one `update` command (one round trip however many plans), each
    // statement matching only the seats and `seq` the batch read: when all match, each
    // document moved from exactly that state by the batch's delta, to what it decided.
    let moves: Vec<Document> = plans
        .values()
        .filter_map(|plan| {
            let was = before
                .get(&plan.id())
                .filter(|was| was.seq() != plan.seq())?;
            let delta = i64::from(plan.seats_left()) - i64::from(was.seats_left());
            let counts = w.counts.remove(&plan.id()).unwrap_or_default();
            Some(statement(
                queries::plan_as_read(was),
                queries::move_plan(delta, plan.seq() - was.seq(), &counts),
            ))
        })
        .collect();
    // Every subscription created or changed comes with an audit entry of its plan.
    if let Some(plan) = w.counts.keys().next() {
        return Err(corrupt(Corrupt(format!(
            "subscriptions of plan {plan} changed without an entry of the plan"
        ))));
    }
    let moved = moves.len();
    if update(s, c, queries::PLANS, moves).await? != moved {
        return Err(unmatched("the guarded plan update"));
    }
    if !w.audit.is_empty() {
        c.audit.insert_many(w.audit).session(&mut *s).await?;
    }
    Ok(())
}

/// Runs `statements` as one `update` command; returns how many documents they matched.
pub(super) async fn update(
    s: &mut ClientSession,
    c: &StepCollections,
    collection: &str,
    statements: Vec<Document>,
) -> mongodb::error::Result<usize> {
    if statements.is_empty() {
        return Ok(0);
    }
    let reply =
        c.db.run_command(doc! { "update": collection, "updates": statements, "ordered": true })
            .session(&mut *s)
            .await?;
    if let Ok(errors) = reply.get_array("writeErrors") {
        return Err(corrupt(Corrupt(format!(
            "an update of {collection} failed: {errors:?}"
        ))));
    }
    let n = match reply.get("n") {
        Some(Bson::Int32(n)) => i64::from(*n),
        Some(Bson::Int64(n)) => *n,
        other => {
            return Err(corrupt(Corrupt(format!(
                "an update of {collection} answered n = {other:?}"
            ))))
        }
    };
    Ok(n as usize)
}
