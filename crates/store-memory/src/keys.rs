//! Idempotency records as the in-memory store keeps them.
//!
//! The domain's [`IdempotencyRecord`] is what crosses the port; held in memory for a
//! day, a million of them would repeat what the map already has. So the store keeps a
//! [`KeyEntry`]: the scope and key live only in the map's key, and a finished outcome
//! shares the subscription snapshot with the subscription map (an `Arc`, copied on
//! write: a later cancellation replaces the map's copy, never the snapshot a replay
//! answers with). Records are rebuilt for the domain only where it needs one: a claim.

use std::{
    borrow::Borrow,
    hash::{Hash, Hasher},
    sync::Arc,
};

use seatkeeper_domain::{
    CustomerId, Fingerprint, IdempotencyKey, IdempotencyRecord, KeyLock, KeyState, LockToken,
    PlanId, PurchaseOutcome, RecoveryPoint, StoredIdempotencyRecord, Subscription, Timestamp,
};

/// The key map's key: the scope (customer) and the idempotency key.
///
/// Lookups borrow it as a [`KeyRef`], so that finding a record (every reservation and
/// completion does) never copies its two strings; only a claim that inserts one owns them.
#[derive(Debug)]
pub(crate) struct KeyId {
    scope: CustomerId,
    key: IdempotencyKey,
}

impl KeyId {
    pub(crate) fn new(scope: &CustomerId, key: &IdempotencyKey) -> Self {
        Self {
            scope: scope.clone(),
            key: key.clone(),
        }
    }
}

/// A scope and key, owned ([`KeyId`]) or borrowed (`(&CustomerId, &IdempotencyKey)`),
/// hashed and compared by their text alone, so that either finds the other in a map.
pub(crate) trait KeyRef {
    fn parts(&self) -> (&str, &str);
}

impl KeyRef for KeyId {
    fn parts(&self) -> (&str, &str) {
        (self.scope.as_str(), self.key.as_str())
    }
}

impl KeyRef for (&CustomerId, &IdempotencyKey) {
    fn parts(&self) -> (&str, &str) {
        (self.0.as_str(), self.1.as_str())
    }
}

impl Hash for dyn KeyRef + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let (scope, key) = self.parts();
        scope.hash(state);
        key.hash(state);
    }
}

impl PartialEq for dyn KeyRef + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn KeyRef + '_ {}

// The owned key hashes and compares exactly as its borrowed form, as `Borrow` requires.
impl Hash for KeyId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (self as &dyn KeyRef).hash(state);
    }
}

impl PartialEq for KeyId {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for KeyId {}

impl<'a> Borrow<dyn KeyRef + 'a> for KeyId {
    fn borrow(&self) -> &(dyn KeyRef + 'a) {
        self
    }
}

/// A purchase outcome as stored on a finished key.
#[derive(Debug, Clone)]
pub(crate) enum StoredOutcome {
    Created(Arc<Subscription>),
    Declined {
        subscription: Arc<Subscription>,
        reason: String,
    },
    SoldOut(PlanId),
    PlanNotFound(PlanId),
    PlanInactive(PlanId),
}

impl StoredOutcome {
    pub(crate) fn to_outcome(&self) -> PurchaseOutcome {
        match self {
            Self::Created(sub) => PurchaseOutcome::Created {
                subscription: Subscription::clone(sub),
            },
            Self::Declined {
                subscription,
                reason,
            } => PurchaseOutcome::Declined {
                subscription: Subscription::clone(subscription),
                reason: reason.clone(),
            },
            Self::SoldOut(plan_id) => PurchaseOutcome::SoldOut { plan_id: *plan_id },
            Self::PlanNotFound(plan_id) => PurchaseOutcome::PlanNotFound { plan_id: *plan_id },
            Self::PlanInactive(plan_id) => PurchaseOutcome::PlanInactive { plan_id: *plan_id },
        }
    }

    /// Stores `outcome`, sharing `shared` when the outcome's subscription equals it,
    /// without copying anything else of the outcome.
    pub(crate) fn of_ref(outcome: &PurchaseOutcome, shared: &Arc<Subscription>) -> Self {
        let share = |subscription: &Subscription| {
            if **shared == *subscription {
                Arc::clone(shared)
            } else {
                Arc::new(subscription.clone())
            }
        };
        match outcome {
            PurchaseOutcome::Created { subscription } => Self::Created(share(subscription)),
            PurchaseOutcome::Declined {
                subscription,
                reason,
            } => Self::Declined {
                subscription: share(subscription),
                reason: reason.clone(),
            },
            PurchaseOutcome::SoldOut { plan_id } => Self::SoldOut(*plan_id),
            PurchaseOutcome::PlanNotFound { plan_id } => Self::PlanNotFound(*plan_id),
            PurchaseOutcome::PlanInactive { plan_id } => Self::PlanInactive(*plan_id),
        }
    }

    /// Stores an outcome that shares nothing (read from elsewhere, or without a
    /// subscription).
    pub(crate) fn of(outcome: PurchaseOutcome) -> Self {
        match outcome {
            PurchaseOutcome::Created { subscription } => Self::Created(Arc::new(subscription)),
            PurchaseOutcome::Declined {
                subscription,
                reason,
            } => Self::Declined {
                subscription: Arc::new(subscription),
                reason,
            },
            PurchaseOutcome::SoldOut { plan_id } => Self::SoldOut(plan_id),
            PurchaseOutcome::PlanNotFound { plan_id } => Self::PlanNotFound(plan_id),
            PurchaseOutcome::PlanInactive { plan_id } => Self::PlanInactive(plan_id),
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum EntryState {
    Open {
        lock: Option<KeyLock>,
    },
    Finished {
        outcome: StoredOutcome,
        request_id: String,
        finished_at: Timestamp,
    },
}

/// An [`IdempotencyRecord`] without its scope and key (the map's key holds them).
#[derive(Debug, Clone)]
pub(crate) struct KeyEntry {
    fingerprint: Fingerprint,
    pub(crate) state: EntryState,
    pub(crate) recovery: RecoveryPoint,
    created_at: Timestamp,
    pub(crate) expires_at: Timestamp,
}

impl KeyEntry {
    pub(crate) fn of_record(record: IdempotencyRecord) -> Self {
        let record = StoredIdempotencyRecord::from(record);
        Self {
            fingerprint: record.fingerprint,
            state: match record.state {
                KeyState::Open { lock } => EntryState::Open { lock },
                KeyState::Finished {
                    outcome,
                    request_id,
                    finished_at,
                } => EntryState::Finished {
                    outcome: StoredOutcome::of(*outcome),
                    request_id,
                    finished_at,
                },
            },
            recovery: record.recovery,
            created_at: record.created_at,
            expires_at: record.expires_at,
        }
    }

    /// The entry of a record just made by [`ClaimKey::fresh_record`]: open, so only
    /// its fingerprint and lock are copied.
    ///
    /// [`ClaimKey::fresh_record`]: seatkeeper_domain::ClaimKey::fresh_record
    pub(crate) fn of_open(record: &IdempotencyRecord) -> Self {
        let KeyState::Open { lock } = &record.state() else {
            return Self::of_record(record.clone());
        };
        Self {
            fingerprint: record.fingerprint().clone(),
            state: EntryState::Open { lock: lock.clone() },
            recovery: record.recovery().clone(),
            created_at: record.created_at(),
            expires_at: record.expires_at(),
        }
    }

    /// The record this entry keeps. It was made from a record the domain made, so it is
    /// one `IdempotencyRecord::restore` takes.
    pub(crate) fn to_record(&self, scope: &CustomerId, key: &IdempotencyKey) -> IdempotencyRecord {
        let stored = StoredIdempotencyRecord {
            scope: scope.clone(),
            key: key.clone(),
            fingerprint: self.fingerprint.clone(),
            state: match &self.state {
                EntryState::Open { lock } => KeyState::Open { lock: lock.clone() },
                EntryState::Finished {
                    outcome,
                    request_id,
                    finished_at,
                } => KeyState::Finished {
                    outcome: Box::new(outcome.to_outcome()),
                    request_id: request_id.clone(),
                    finished_at: *finished_at,
                },
            },
            recovery: self.recovery.clone(),
            created_at: self.created_at,
            expires_at: self.expires_at,
        };
        IdempotencyRecord::restore(stored).expect("an entry keeps a record the domain made")
    }

    /// Whether `owner` holds a lock on this key (see [`IdempotencyRecord::is_locked_by`]).
    pub(crate) fn is_locked_by(&self, owner: LockToken) -> bool {
        matches!(&self.state, EntryState::Open { lock: Some(l) } if l.owner == owner)
    }

    pub(crate) fn is_finished(&self) -> bool {
        matches!(self.state, EntryState::Finished { .. })
    }

    pub(crate) fn finish(&mut self, outcome: StoredOutcome, request_id: String, now: Timestamp) {
        self.state = EntryState::Finished {
            outcome,
            request_id,
            finished_at: now,
        };
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use seatkeeper_domain::{ClaimKey, PaymentMethod, SubscriptionId};

    use super::*;

    fn claim() -> ClaimKey {
        ClaimKey {
            scope: CustomerId::parse("cus_1").unwrap(),
            key: IdempotencyKey::parse("k1").unwrap(),
            fingerprint: Fingerprint::from_stored("f".repeat(64)),
            owner: LockToken::generate(),
            now: chrono::Utc::now(),
            lease: Duration::from_secs(30),
            retention: Duration::from_secs(86_400),
        }
    }

    fn subscription() -> Subscription {
        let plan = seatkeeper_store_contract::support::new_plan("Starter", 10);
        Subscription::reserve(
            SubscriptionId::generate(),
            &plan,
            CustomerId::parse("cus_1").unwrap(),
            PaymentMethod::parse("pm_card_visa").unwrap(),
            Some(IdempotencyKey::parse("k1").unwrap()),
            plan.created_at(),
        )
    }

    #[test]
    fn a_record_survives_the_round_trip_through_an_entry_open_or_finished() {
        let c = claim();
        let open = c.fresh_record();
        assert_eq!(
            KeyEntry::of_record(open.clone()).to_record(&c.scope, &c.key),
            open
        );

        let declined = subscription();
        let mut finished = open;
        finished.record_reservation(declined.id());
        finished.finish(
            PurchaseOutcome::Declined {
                subscription: declined,
                reason: "card_declined: no".into(),
            },
            "req-1".into(),
            c.now,
        );
        assert_eq!(
            KeyEntry::of_record(finished.clone()).to_record(&c.scope, &c.key),
            finished
        );
    }

    #[test]
    fn a_finished_outcome_shares_the_subscription_it_equals_and_copies_one_it_does_not() {
        let shared = Arc::new(subscription());
        let same = StoredOutcome::of_ref(
            &PurchaseOutcome::Created {
                subscription: Subscription::clone(&shared),
            },
            &shared,
        );
        assert!(matches!(&same, StoredOutcome::Created(s) if Arc::ptr_eq(s, &shared)));

        let mut other = Subscription::clone(&shared);
        other.cancel(chrono::Utc::now());
        let copied = StoredOutcome::of_ref(
            &PurchaseOutcome::Created {
                subscription: other.clone(),
            },
            &shared,
        );
        assert!(matches!(&copied, StoredOutcome::Created(s) if !Arc::ptr_eq(s, &shared)));
        assert_eq!(
            copied.to_outcome(),
            PurchaseOutcome::Created {
                subscription: other
            }
        );
    }

    #[test]
    fn a_borrowed_scope_and_key_find_the_owned_one_and_nothing_else() {
        let scope = CustomerId::parse("cus_1").unwrap();
        let key = IdempotencyKey::parse("k1").unwrap();
        let hasher = ahash::RandomState::new();
        let owned = KeyId::new(&scope, &key);
        let borrowed: &dyn KeyRef = &(&scope, &key);
        assert_eq!(
            hasher.hash_one(&owned),
            hasher.hash_one(borrowed),
            "Borrow needs equal hashes"
        );
        let map = dashmap::DashMap::with_hasher(hasher);
        map.insert(owned, 7);
        assert_eq!(map.get(borrowed).map(|v| *v), Some(7));
        // The parts are not concatenated: ("cus_1", "k1") is not ("cus_1k", "1").
        let (other_scope, other_key) = (
            CustomerId::parse("cus_1k").unwrap(),
            IdempotencyKey::parse("1").unwrap(),
        );
        assert!(map
            .get(&(&other_scope, &other_key) as &dyn KeyRef)
            .is_none());
        assert!(map
            .get(&(&scope, &IdempotencyKey::parse("k2").unwrap()) as &dyn KeyRef)
            .is_none());
    }
}
