//! Checkout steps decided one after another in memory, for a store that runs many of them
//! in one transaction (a batch): [`CheckoutBatch`].
//!
//! A batching store reads, in its transaction, every session the batch's steps can depend
//! on — the session each opening's key opened, each opening customer's open sessions on
//! its plan, the session each change names — and the plans they touch. It then lets this
//! decide each step in queue order, as if the steps had run one after another: an opening
//! sees the session an earlier opening of its key made and the sessions an earlier expiry
//! ended; a change sees the session as an earlier change left it; a seat an expiry gives
//! back can go to a later opening. The rules are the ones a single step uses
//! ([`OpenCheckout::decide`], [`OpenCheckout::hold`], [`CheckoutSession::apply`]); what
//! is decided here is only the order. The store then writes [`CheckoutBatch::writes`]:
//! the new sessions, and each changed one guarded by the state it was read in.

use std::collections::{BTreeMap, HashMap};

use super::{ChangeCheckoutError, Changed, OpenCheckoutError, Opened, StoreError};
use crate::model::{
    ChangeCheckout, CheckoutSession, CheckoutSessionId, CheckoutStatus, CustomerId, Effect,
    IdempotencyKey, OpenCheckout, OpenDecision, Plan, PlanId,
};

/// The sessions of one batch: as read, and as its steps have left them so far.
#[derive(Debug, Default)]
pub struct CheckoutBatch {
    /// As stored when the batch read them: the guards of their writes.
    read: HashMap<CheckoutSessionId, CheckoutSession>,
    /// Every session the batch knows, as its steps have left it (new ones included).
    now: BTreeMap<CheckoutSessionId, CheckoutSession>,
}

/// What a batch writes for its sessions.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SessionWrites {
    /// Sessions the batch opened, to insert.
    pub new: Vec<CheckoutSession>,
    /// Sessions it changed: each as read (the guard) and as it is to be written.
    pub changed: Vec<(CheckoutSession, CheckoutSession)>,
}

impl CheckoutBatch {
    /// A batch that read `sessions`.
    pub fn new(sessions: impl IntoIterator<Item = CheckoutSession>) -> Self {
        let mut batch = Self::default();
        for s in sessions {
            batch.read.insert(s.id(), s.clone());
            batch.now.insert(s.id(), s);
        }
        batch
    }

    /// The session as the batch has it now.
    pub fn session(&self, id: CheckoutSessionId) -> Option<&CheckoutSession> {
        self.now.get(&id)
    }

    fn by_key(&self, customer: &CustomerId, key: &IdempotencyKey) -> Option<&CheckoutSession> {
        self.now
            .values()
            .find(|s| s.customer_id() == customer && s.stored().idempotency_key == *key)
    }

    /// The customer's open sessions on the plan, by id (`now` is ordered by id).
    fn open_on_plan(&self, plan: PlanId, customer: &CustomerId) -> Vec<CheckoutSessionId> {
        self.now
            .values()
            .filter(|s| {
                s.plan_id() == plan
                    && s.customer_id() == customer
                    && s.status() == CheckoutStatus::Open
            })
            .map(CheckoutSession::id)
            .collect()
    }

    /// Decides an opening on the sessions and `plans` as the batch has left them; on a
    /// hold, the seat moves in `plans` and the `seat_held` entry is the answer's
    /// session's (read it with [`Opened::session`]) — returned beside it for the store.
    pub fn open(
        &mut self,
        cmd: &OpenCheckout,
        plans: &mut BTreeMap<PlanId, Plan>,
    ) -> Result<(Opened, Option<crate::model::AuditEntry>), OpenCheckoutError> {
        let decision = cmd
            .decide(
                self.by_key(&cmd.customer_id, &cmd.key),
                &self.open_on_plan(cmd.plan_id, &cmd.customer_id),
                plans.get(&cmd.plan_id),
            )
            .map_err(OpenCheckoutError::Refused)?;
        match decision {
            OpenDecision::Existing(session) => Ok((Opened::Existing(session), None)),
            OpenDecision::Hold => {
                let plan = plans.get_mut(&cmd.plan_id).ok_or_else(|| {
                    StoreError::internal("a hold was decided without its plan in the batch")
                })?;
                let (session, entry) = cmd.hold(plan);
                self.now.insert(session.id(), session.clone());
                Ok((Opened::New(session), Some(entry)))
            }
        }
    }

    /// Decides a change on the session and its plan (in `plans`, when
    /// [`CheckoutSession::needs_plan`]) as the batch has left them.
    pub fn change(
        &mut self,
        cmd: &ChangeCheckout,
        plans: &mut BTreeMap<PlanId, Plan>,
    ) -> Result<Changed, ChangeCheckoutError> {
        let mut session = self
            .now
            .get(&cmd.session_id)
            .cloned()
            .ok_or(ChangeCheckoutError::NotFound)?;
        let plan = match session.needs_plan(&cmd.change) {
            true => Some(plans.get_mut(&session.plan_id()).ok_or_else(|| {
                StoreError::internal(format!(
                    "plan {} of checkout session {} is not in the batch",
                    session.plan_id(),
                    session.id()
                ))
            })?),
            false => None,
        };
        let applied = session.apply(cmd, plan)?;
        if applied.effect != Effect::Unchanged {
            self.now.insert(session.id(), session.clone());
        }
        Ok(Changed { session, applied })
    }

    /// The plans of the sessions `changes` name, as read.
    pub fn plans_of<'a>(
        &'a self,
        changes: impl IntoIterator<Item = &'a ChangeCheckout> + 'a,
    ) -> impl Iterator<Item = PlanId> + 'a {
        changes
            .into_iter()
            .filter_map(|cmd| self.read.get(&cmd.session_id).map(CheckoutSession::plan_id))
    }

    /// What the batch's steps made of its sessions.
    pub fn writes(self) -> SessionWrites {
        let mut w = SessionWrites::default();
        for (id, session) in self.now {
            match self.read.get(&id) {
                None => w.new.push(session),
                Some(read) if *read != session => w.changed.push((read.clone(), session)),
                Some(_) => {}
            }
        }
        w
    }
}
