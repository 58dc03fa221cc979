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

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::model::{
        AuditContext, Capacity, CheckoutChange, Currency, ExpiryCause, Fingerprint, Interval,
        NewPlan, OpenRefusal, PlanName, SubscriptionId, Timestamp, UnitAmount,
    };

    fn plans(capacity: i64) -> (PlanId, BTreeMap<PlanId, Plan>) {
        let plan = Plan::create(
            NewPlan {
                name: PlanName::parse("Starter").unwrap(),
                capacity: Capacity::new(capacity).unwrap(),
                unit_amount: UnitAmount::new(1000).unwrap(),
                currency: Currency::parse("usd").unwrap(),
                interval: Interval::Month,
            },
            chrono::Utc::now(),
        );
        (plan.id(), BTreeMap::from([(plan.id(), plan)]))
    }

    fn opening(plan_id: PlanId, customer: &str, key: &str, now: Timestamp) -> OpenCheckout {
        let customer_id = CustomerId::parse(customer).unwrap();
        OpenCheckout {
            session_id: CheckoutSessionId::generate(),
            subscription_id: SubscriptionId::generate(),
            fingerprint: Fingerprint::of_checkout(plan_id, &customer_id, None),
            ctx: AuditContext::customer(&customer_id, format!("open-{key}")),
            key: IdempotencyKey::parse(key).unwrap(),
            customer_id,
            plan_id,
            expires_in: Duration::minutes(30),
            max_open: 1,
            now,
        }
    }

    fn expiry(session: &CheckoutSession, now: Timestamp) -> ChangeCheckout {
        ChangeCheckout {
            session_id: session.id(),
            change: CheckoutChange::Expire(ExpiryCause::Request),
            ctx: AuditContext::admin("expire"),
            now,
            recheck_after: Duration::seconds(60),
        }
    }

    fn new_session(
        opened: Result<(Opened, Option<crate::model::AuditEntry>), OpenCheckoutError>,
    ) -> CheckoutSession {
        match opened {
            Ok((Opened::New(session), Some(_))) => session,
            other => panic!("the opening should hold a seat, got {other:?}"),
        }
    }

    #[test]
    fn an_opening_behind_the_expiry_of_its_customers_session_holds_a_seat_and_one_ahead_of_it_does_not(
    ) {
        let (plan_id, mut plans) = plans(10);
        let now = chrono::Utc::now();
        let held = new_session(
            CheckoutBatch::default().open(&opening(plan_id, "cus_a", "k1", now), &mut plans),
        );
        let mut batch = CheckoutBatch::new([held.clone()]);

        let ahead = batch.open(&opening(plan_id, "cus_a", "k2", now), &mut plans);
        assert!(
            matches!(ahead, Err(OpenCheckoutError::Refused(OpenRefusal::TooManyOpen { open })) if open == held.id())
        );
        batch.change(&expiry(&held, now), &mut plans).unwrap();
        new_session(batch.open(&opening(plan_id, "cus_a", "k3", now), &mut plans));
        // 10 − 1 held − 1 opened + 1 expired, the audit numbered in that order.
        assert_eq!(plans[&plan_id].seats_left(), 9);
    }

    #[test]
    fn a_key_opened_twice_in_one_batch_answers_its_first_session_and_holds_one_seat() {
        let (plan_id, mut plans) = plans(10);
        let now = chrono::Utc::now();
        let mut batch = CheckoutBatch::default();
        let cmd = opening(plan_id, "cus_a", "k", now);
        let first = new_session(batch.open(&cmd, &mut plans));
        let again = opening(plan_id, "cus_a", "k", now);
        match batch.open(&again, &mut plans) {
            Ok((Opened::Existing(s), None)) => assert_eq!(s, first),
            other => panic!("the second opening should answer the first session, got {other:?}"),
        }
        assert_eq!(plans[&plan_id].seats_left(), 9);
        assert_eq!(batch.writes().new, vec![first]);
    }

    #[test]
    fn writes_insert_a_new_session_as_last_changed_and_guard_a_read_one_by_its_state_as_read() {
        let (plan_id, mut plans) = plans(10);
        let now = chrono::Utc::now();
        let read = new_session(
            CheckoutBatch::default().open(&opening(plan_id, "cus_r", "k", now), &mut plans),
        );
        let mut batch = CheckoutBatch::new([read.clone()]);
        let made = new_session(batch.open(&opening(plan_id, "cus_n", "k", now), &mut plans));
        let made_expired = batch
            .change(&expiry(&made, now), &mut plans)
            .unwrap()
            .session;
        let read_expired = batch
            .change(&expiry(&read, now), &mut plans)
            .unwrap()
            .session;
        // Expiring again changes nothing.
        let _ = batch.change(&expiry(&read, now), &mut plans);

        let writes = batch.writes();
        assert_eq!(writes.new, vec![made_expired]);
        assert_eq!(writes.changed, vec![(read, read_expired)]);
    }

    #[test]
    fn a_change_of_a_session_the_batch_did_not_read_or_make_is_not_found() {
        let (plan_id, mut plans) = plans(10);
        let now = chrono::Utc::now();
        let elsewhere = new_session(
            CheckoutBatch::default().open(&opening(plan_id, "cus_a", "k", now), &mut plans),
        );
        let mut batch = CheckoutBatch::default();
        assert!(matches!(
            batch.change(&expiry(&elsewhere, now), &mut plans),
            Err(ChangeCheckoutError::NotFound)
        ));
        assert_eq!(batch.writes(), SessionWrites::default());
    }
}
