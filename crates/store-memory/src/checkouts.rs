//! [`CheckoutRepository`]: checkout sessions, each changed under its plan's lock (the
//! domain decides, the store applies), with an index of the sessions the worker must look
//! at, and the webhook event ids seen.
//!
//! Lock order, as in the rest of the store: the plan cell, then the key index, then the
//! sessions, then the due index, then the subscription maps.

use std::collections::{BTreeSet, HashMap};

use seatkeeper_domain::{
    ports::{
        ChangeCheckoutError, Changed, CheckoutRepository, OpenCheckoutError, Opened, Purged,
        WebhookEvent,
    },
    ChangeCheckout, CheckoutSession, CheckoutSessionId, Effect, OpenCheckout, OpenDecision,
};

use super::*;

/// Everything about checkout sessions that is not a plan's.
pub(crate) struct Checkouts {
    sessions: DashMap<CheckoutSessionId, CheckoutSession>,
    by_key: DashMap<(CustomerId, IdempotencyKey), CheckoutSessionId>,
    /// `(check_at, id)` of every session with a `check_at`.
    due: Mutex<BTreeSet<(Timestamp, CheckoutSessionId)>>,
    events: DashMap<String, Timestamp>,
}

impl Default for Checkouts {
    fn default() -> Self {
        Self {
            sessions: map(),
            by_key: map(),
            due: Mutex::default(),
            events: map(),
        }
    }
}

impl Checkouts {
    /// Files `session` (new or changed) in the due index, replacing `before`'s place.
    fn index(&self, before: Option<&CheckoutSession>, session: &CheckoutSession) {
        let mut due = self.due.lock();
        if let Some(at) = before.and_then(CheckoutSession::check_at) {
            due.remove(&(at, session.id()));
        }
        if let Some(at) = session.check_at() {
            due.insert((at, session.id()));
        }
    }
}

/// A plan's open sessions, by customer.
pub(crate) type Holds = HashMap<CustomerId, Vec<CheckoutSessionId>>;

fn release_hold(holds: &mut Holds, session: &CheckoutSession) {
    if let Some(ids) = holds.get_mut(session.customer_id()) {
        ids.retain(|id| *id != session.id());
        if ids.is_empty() {
            holds.remove(session.customer_id());
        }
    }
}

#[async_trait]
impl CheckoutRepository for MemoryStore {
    async fn open_checkout(&self, cmd: &OpenCheckout) -> Result<Opened, OpenCheckoutError> {
        let c = &self.checkouts;
        let cell = self.cell(cmd.plan_id);
        let mut guard = cell.as_ref().map(|cell| cell.lock());
        let entry = c.by_key.entry((cmd.customer_id.clone(), cmd.key.clone()));
        let existing = match &entry {
            Entry::Occupied(o) => c.sessions.get(o.get()).map(|s| s.clone()),
            Entry::Vacant(_) => None,
        };
        let open: Vec<CheckoutSessionId> = guard
            .as_ref()
            .and_then(|cell| cell.holds.get(&cmd.customer_id).cloned())
            .unwrap_or_default();
        let plan = guard.as_ref().map(|cell| &cell.plan);
        match cmd
            .decide(existing.as_ref(), &open, plan)
            .map_err(OpenCheckoutError::Refused)?
        {
            OpenDecision::Existing(session) => Ok(Opened::Existing(session)),
            OpenDecision::Hold => {
                let cell = guard.as_mut().expect("a hold has a plan");
                let (session, entry_) = cmd.hold(&mut cell.plan);
                cell.append([entry_]);
                cell.counts.held += 1;
                cell.holds
                    .entry(cmd.customer_id.clone())
                    .or_default()
                    .push(session.id());
                // The session before its key: an opening of the same key on another plan,
                // waiting for this entry, must find the session the key names.
                c.sessions.insert(session.id(), session.clone());
                c.index(None, &session);
                match entry {
                    Entry::Vacant(v) => {
                        v.insert(session.id());
                    }
                    // The key of a session the purge removed and has not let go of yet: the
                    // key is free (the purge lets go only of the id it removed).
                    Entry::Occupied(mut o) => {
                        o.insert(session.id());
                    }
                }
                Ok(Opened::New(session))
            }
        }
    }

    async fn get_checkout(
        &self,
        id: CheckoutSessionId,
    ) -> Result<Option<CheckoutSession>, StoreError> {
        Ok(self.checkouts.sessions.get(&id).map(|s| s.clone()))
    }

    async fn change_checkout(&self, cmd: &ChangeCheckout) -> Result<Changed, ChangeCheckoutError> {
        let c = &self.checkouts;
        let plan_id = c
            .sessions
            .get(&cmd.session_id)
            .map(|s| s.plan_id())
            .ok_or(ChangeCheckoutError::NotFound)?;
        let cell = self.cell(plan_id).ok_or_else(|| {
            StoreError::internal(format!("session {} has no plan", cmd.session_id))
        })?;
        let mut cell = cell.lock();
        let mut slot = c
            .sessions
            .get_mut(&cmd.session_id)
            .ok_or(ChangeCheckoutError::NotFound)?;
        let before = slot.clone();
        let mut session = before.clone();
        let applied = session.apply(cmd, Some(&mut cell.plan))?;
        if applied.effect == Effect::Unchanged {
            return Ok(Changed { session, applied });
        }
        *slot = session.clone();
        drop(slot);
        c.index(Some(&before), &session);
        if before.holds_seat() && !session.holds_seat() {
            cell.counts.held -= 1;
            release_hold(&mut cell.holds, &session);
        }
        if let Some(sub) = &applied.subscription {
            *cell.counts.slot(sub.status()) += 1;
            self.file_subscription(sub);
        }
        cell.append(applied.entries.iter().cloned());
        Ok(Changed { session, applied })
    }

    async fn checkouts_due(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<CheckoutSession>, StoreError> {
        let ids: Vec<CheckoutSessionId> = self
            .checkouts
            .due
            .lock()
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit as usize)
            .map(|(_, id)| *id)
            .collect();
        Ok(ids
            .into_iter()
            .filter_map(|id| self.checkouts.sessions.get(&id).map(|s| s.clone()))
            .collect())
    }

    async fn claim_webhook_event(&self, event: &WebhookEvent) -> Result<bool, StoreError> {
        Ok(match self.checkouts.events.entry(event.id.clone()) {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                v.insert(event.received_at);
                true
            }
        })
    }

    async fn release_webhook_event(&self, id: &str) -> Result<(), StoreError> {
        self.checkouts.events.remove(id);
        Ok(())
    }

    async fn purge_checkouts(
        &self,
        ended_before: Timestamp,
        events_before: Timestamp,
    ) -> Result<Purged, StoreError> {
        let c = &self.checkouts;
        let mut purged = Purged::default();
        let gone: Vec<CheckoutSession> = c
            .sessions
            .iter()
            .filter(|s| s.check_at().is_none() && s.ended_at().is_some_and(|at| at < ended_before))
            .map(|s| s.clone())
            .collect();
        for s in gone {
            // Removed only if still ended: nothing reopens a session, but be exact.
            let removed = c
                .sessions
                .remove_if(&s.id(), |_, now| now.check_at().is_none());
            if removed.is_some() {
                c.by_key.remove_if(
                    &(s.customer_id().clone(), s.stored().idempotency_key.clone()),
                    |_, id| *id == s.id(),
                );
                purged.sessions += 1;
            }
        }
        let before = c.events.len();
        c.events.retain(|_, at| *at >= events_before);
        purged.events = (before - c.events.len()) as u64;
        Ok(purged)
    }
}
