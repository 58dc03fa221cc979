//! The checkout steps as steps of a batch: openings ([`CheckoutRepository::open_checkout`])
//! and changes ([`CheckoutRepository::change_checkout`]).
//!
//! Why in the purchase steps' batches: an opening and a change that may move a seat
//! ([`CheckoutChange::may_need_plan`]: a payment, an expiry, a refund) write the plan
//! document (the seat, and the audit's `seq`), as reservations and completions do, and MongoDB aborts the
//! second of two transactions writing one document instead of queueing it. In a
//! transaction of their own they conflicted with every purchase batch of the plan, and
//! with each other; in the batches they queue behind the running one and share the next,
//! so a hot plan's openings and payments cost one plan write per batch, like its
//! purchases. The other changes (an intent attached, a failed payment) share the batch's
//! commit instead of paying for one of their own.
//!
//! A batch reads, with one `find`, every session its steps can depend on: the session
//! each opening's key opened, each opening customer's open sessions on its plan, and the
//! session each change names (and sessions of one of its customers under another's key
//! or on another's plan, which the decisions do not look at and the batch leaves as
//! read). The domain's [`CheckoutBatch`] decides the steps in queue order on those
//! sessions as the batch has left them so far. The batch then inserts the
//! new sessions (the unique `(customer_id, idempotency_key)` index settles one key opened
//! on two plans by two instances) and patches each changed one by `_id` (its
//! transaction read it: a change committed since makes the write conflict).
//!
//! [`CheckoutRepository::open_checkout`]: seatkeeper_domain::ports::CheckoutRepository::open_checkout
//! [`CheckoutRepository::change_checkout`]: seatkeeper_domain::ports::CheckoutRepository::change_checkout
//! [`CheckoutChange::may_need_plan`]: seatkeeper_domain::CheckoutChange::may_need_plan

use std::collections::BTreeMap;

use futures::TryStreamExt;
use mongodb::ClientSession;
use seatkeeper_domain::{
    ports::{ChangeCheckoutError, Changed, CheckoutBatch, OpenCheckoutError, Opened},
    ChangeCheckout, CheckoutSession, OpenCheckout, Plan, PlanId,
};

use super::{statement, update, Step, StepCollections, Writes};
use crate::{
    checkout_documents::CheckoutDoc,
    checkout_queries as q,
    documents::{to_document, AuditDoc, SubscriptionDoc},
    errors::corrupt,
    queries,
    transaction::unmatched,
};

/// Reads, in the transaction, every session the batch's checkout steps can depend on
/// (one `find`, only when the batch has such steps; [`q::sessions_of_batch`]).
pub(super) async fn read(
    s: &mut ClientSession,
    c: &StepCollections,
    steps: &[Step],
) -> mongodb::error::Result<CheckoutBatch> {
    let openings = steps.iter().filter_map(|st| match st {
        Step::Open(cmd) => Some((&cmd.customer_id, &cmd.key, cmd.plan_id)),
        _ => None,
    });
    let changed = steps.iter().filter_map(|st| match st {
        Step::Change(cmd) => Some(cmd.session_id),
        _ => None,
    });
    let Some(filter) = q::sessions_of_batch(openings, changed) else {
        return Ok(CheckoutBatch::default());
    };
    let mut found = c.checkouts.find(filter).session(&mut *s).await?;
    let docs: Vec<CheckoutDoc> = found.stream(&mut *s).try_collect().await?;
    let sessions: Vec<CheckoutSession> = docs
        .into_iter()
        .map(CheckoutSession::try_from)
        .collect::<Result<_, _>>()
        .map_err(corrupt)?;
    Ok(CheckoutBatch::new(sessions))
}

/// The plans of the sessions whose change may move a seat (openings name theirs).
pub(super) fn plans_of_changes<'a>(
    batch: &'a CheckoutBatch,
    steps: &'a [Step],
) -> impl Iterator<Item = PlanId> + 'a {
    batch.plans_of(steps.iter().filter_map(|st| match st {
        Step::Change(cmd) if cmd.change.may_need_plan() => Some(cmd),
        _ => None,
    }))
}

/// Decides an opening; a hold's entry joins the batch's.
pub(super) fn open(
    cmd: &OpenCheckout,
    batch: &mut CheckoutBatch,
    plans: &mut BTreeMap<PlanId, Plan>,
    w: &mut Writes,
) -> Result<Opened, OpenCheckoutError> {
    let (opened, entry) = batch.open(cmd, plans)?;
    w.audit.extend(entry.as_ref().map(AuditDoc::from));
    Ok(opened)
}

/// Decides a change; its subscription and entries join the batch's.
pub(super) fn change(
    cmd: &ChangeCheckout,
    batch: &mut CheckoutBatch,
    plans: &mut BTreeMap<PlanId, Plan>,
    w: &mut Writes,
) -> Result<Changed, ChangeCheckoutError> {
    let changed = batch.change(cmd, plans)?;
    if let Some(sub) = &changed.applied.subscription {
        w.counts
            .entry(sub.plan_id())
            .or_default()
            .add(sub.status(), 1);
    }
    w.new_subs.extend(
        changed
            .applied
            .subscription
            .iter()
            .map(SubscriptionDoc::from),
    );
    w.audit
        .extend(changed.applied.entries.iter().map(AuditDoc::from));
    Ok(changed)
}

/// Writes the sessions the batch made or changed: one `insertMany` of the new ones, one
/// `update` command patching each changed one by `_id` with the fields that changed
/// ([`q::session_patch`]; every statement must match).
pub(super) async fn write(
    s: &mut ClientSession,
    c: &StepCollections,
    batch: CheckoutBatch,
) -> mongodb::error::Result<()> {
    let writes = batch.writes();
    let changed = writes
        .changed
        .iter()
        .map(|(read, now)| {
            let before = to_document(&CheckoutDoc::from(read)).map_err(corrupt)?;
            let after = to_document(&CheckoutDoc::from(now)).map_err(corrupt)?;
            Ok(statement(
                q::checkout_by_id(read.id()),
                q::session_patch(&before, &after),
            ))
        })
        .collect::<mongodb::error::Result<Vec<_>>>()?;
    if !writes.new.is_empty() {
        let new: Vec<CheckoutDoc> = writes.new.iter().map(CheckoutDoc::from).collect();
        c.checkouts.insert_many(new).session(&mut *s).await?;
    }
    let n = changed.len();
    if update(s, c, queries::CHECKOUT_SESSIONS, changed).await? != n {
        return Err(unmatched("a checkout session's change"));
    }
    Ok(())
}
