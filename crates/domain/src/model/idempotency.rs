use std::{fmt, time::Duration};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{
    CustomerId, InvalidValue, PaymentMethod, PlanId, Subscription, SubscriptionId, Timestamp,
};

/// A client's `Idempotency-Key`: 1 to 255 printable ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 255;

    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        if s.is_empty() {
            return Err(InvalidValue::new("must not be empty"));
        }
        if s.len() > Self::MAX_LEN {
            return Err(InvalidValue::new(format!(
                "must be at most {} characters",
                Self::MAX_LEN
            )));
        }
        if !s.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(InvalidValue::new("must be printable ASCII"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for IdempotencyKey {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<IdempotencyKey> for String {
    fn from(k: IdempotencyKey) -> Self {
        k.0
    }
}

/// The hash of a request: method, path and canonical body. Two requests with one key
/// and different fingerprints are a client bug (the key was reused).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// The fingerprint of a purchase: `POST /api/subscriptions/purchase` with the
    /// canonical body (fields in a fixed order, values already validated).
    pub fn of_purchase(
        plan_id: PlanId,
        customer_id: &CustomerId,
        payment_method: &PaymentMethod,
    ) -> Self {
        let mut h = Sha256::new();
        h.update(b"POST /api/subscriptions/purchase\n");
        // `customer_id={}\npayment_method={}\nplan_id={}\n`, fed piece by piece.
        h.update(b"customer_id=");
        h.update(customer_id.as_str());
        h.update(b"\npayment_method=");
        h.update(payment_method.as_str());
        h.update(b"\nplan_id=");
        h.update(
            plan_id
                .as_uuid()
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                .as_bytes(),
        );
        h.update(b"\n");
        let mut hex = [0u8; 64];
        hex::encode_to_slice(h.finalize(), &mut hex).expect("32 bytes are 64 hex digits");
        Self(String::from_utf8(hex.to_vec()).expect("hex digits are ASCII"))
    }

    /// The fingerprint of a checkout session's opening: `POST /api/checkout_sessions`
    /// with the canonical body (`expires_in` as the seconds asked for, or empty).
    pub fn of_checkout(
        plan_id: PlanId,
        customer_id: &CustomerId,
        expires_in_secs: Option<u32>,
    ) -> Self {
        let mut h = Sha256::new();
        h.update(b"POST /api/checkout_sessions\n");
        h.update(b"customer_id=");
        h.update(customer_id.as_str());
        h.update(b"\nexpires_in=");
        if let Some(secs) = expires_in_secs {
            h.update(secs.to_string());
        }
        h.update(b"\nplan_id=");
        h.update(plan_id.to_string());
        h.update(b"\n");
        Self(hex::encode(h.finalize()))
    }

    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Identifies the request that holds an idempotency key's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LockToken(Uuid);

impl LockToken {
    pub fn generate() -> Self {
        Self(Uuid::new_v4())
    }

    pub fn from_uuid(u: Uuid) -> Self {
        Self(u)
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

/// A lease on an idempotency key: `owner` may work on the purchase until `until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLock {
    pub owner: LockToken,
    pub until: Timestamp,
}

/// How far the purchase behind a key got: where a retry resumes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum RecoveryPoint {
    /// Claimed; no seat reserved yet.
    Started,
    /// A seat is reserved for this subscription; the charge may or may not have happened.
    Reserved { subscription_id: SubscriptionId },
}

impl RecoveryPoint {
    /// Whether a record at this point, `finished` or not, is the open record of the
    /// purchase that reserved `subscription_id`: the record that purchase's completion
    /// finishes. One finished already, or replaced by a newer purchase under the same key
    /// (the old record passed its retention and the key started afresh), is not. The rule
    /// of [`IdempotencyRecord::awaits_completion_of`], for a store that keeps a record in
    /// a shape of its own.
    pub fn awaits_completion_of(&self, finished: bool, subscription_id: SubscriptionId) -> bool {
        !finished && *self == RecoveryPoint::Reserved { subscription_id }
    }
}

/// The definitive result of a purchase, stored on its key and replayed to retries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PurchaseOutcome {
    /// Charged: the subscription as it was when the purchase completed.
    Created { subscription: Subscription },
    /// The charge was declined; the seat was released.
    Declined {
        subscription: Subscription,
        reason: String,
    },
    /// No seat was left.
    SoldOut { plan_id: PlanId },
    /// No such plan.
    PlanNotFound { plan_id: PlanId },
    /// The plan is archived and sells nothing.
    PlanInactive { plan_id: PlanId },
}

impl PurchaseOutcome {
    /// The outcome that a subscription already finished by someone else stands for.
    pub fn of_finished(subscription: Subscription) -> Option<Self> {
        use super::SubscriptionStatus::*;
        match subscription.status() {
            Active | Canceled => Some(Self::Created { subscription }),
            IncompleteExpired => {
                let reason = subscription
                    .failure_reason()
                    .unwrap_or("payment failed")
                    .to_owned();
                Some(Self::Declined {
                    subscription,
                    reason,
                })
            }
            Incomplete => None,
        }
    }

    /// The subscription of a `Created` or `Declined` outcome.
    pub fn subscription(&self) -> Option<&Subscription> {
        match self {
            Self::Created { subscription } | Self::Declined { subscription, .. } => {
                Some(subscription)
            }
            Self::SoldOut { .. } | Self::PlanNotFound { .. } | Self::PlanInactive { .. } => None,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Created { .. } => "created",
            Self::Declined { .. } => "declined",
            Self::SoldOut { .. } => "sold_out",
            Self::PlanNotFound { .. } => "plan_not_found",
            Self::PlanInactive { .. } => "plan_inactive",
        }
    }
}

/// The state of an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum KeyState {
    /// The purchase has not finished. `lock` is the live or expired lease of the request
    /// working on it, or `None` when the last one let go (outcome unknown: retry).
    Open { lock: Option<KeyLock> },
    /// Finished with a definitive outcome, produced under request `request_id`.
    Finished {
        outcome: Box<PurchaseOutcome>,
        request_id: String,
        finished_at: Timestamp,
    },
}

/// A customer's idempotency key and what became of the purchase it started.
///
/// The fields are private: a record is made by [`ClaimKey::fresh_record`] or taken over
/// by [`ClaimKey::decide`], read back from a store by [`IdempotencyRecord::restore`]
/// (which checks it), and moves on only by [`IdempotencyRecord::record_reservation`] and
/// [`IdempotencyRecord::finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    scope: CustomerId,
    key: IdempotencyKey,
    fingerprint: Fingerprint,
    state: KeyState,
    recovery: RecoveryPoint,
    created_at: Timestamp,
    expires_at: Timestamp,
}

/// An idempotency record as a store kept it; the store hands it to
/// [`IdempotencyRecord::restore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredIdempotencyRecord {
    pub scope: CustomerId,
    pub key: IdempotencyKey,
    pub fingerprint: Fingerprint,
    pub state: KeyState,
    pub recovery: RecoveryPoint,
    pub created_at: Timestamp,
    /// After this the record is forgotten: the key may start a new purchase.
    pub expires_at: Timestamp,
}

/// A request to claim a key for one purchase attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimKey {
    pub scope: CustomerId,
    pub key: IdempotencyKey,
    pub fingerprint: Fingerprint,
    pub owner: LockToken,
    pub now: Timestamp,
    /// How long the lock lasts if its owner never lets go (a crash).
    pub lease: Duration,
    /// How long the record is kept.
    pub retention: Duration,
}

/// What claiming a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The caller now holds the lock; `record.recovery` says where to start (a fresh
    /// record starts at `Started`, a taken-over one where its last owner stopped).
    Acquired(IdempotencyRecord),
    /// Finished earlier: replay this outcome, produced under request `request_id`.
    Finished {
        outcome: PurchaseOutcome,
        request_id: String,
    },
    /// Another request holds a live lock.
    InUse,
    /// The key was used with a different request.
    FingerprintMismatch,
}

impl ClaimKey {
    fn lock(&self) -> KeyLock {
        KeyLock {
            owner: self.owner,
            until: self.now + chrono::Duration::from_std(self.lease).unwrap_or_default(),
        }
    }

    /// The record a first claim inserts.
    pub fn fresh_record(&self) -> IdempotencyRecord {
        IdempotencyRecord {
            scope: self.scope.clone(),
            key: self.key.clone(),
            fingerprint: self.fingerprint.clone(),
            state: KeyState::Open {
                lock: Some(self.lock()),
            },
            recovery: RecoveryPoint::Started,
            created_at: self.now,
            expires_at: self.now + chrono::Duration::from_std(self.retention).unwrap_or_default(),
        }
    }

    /// Decides a claim against the record already stored under the same scope and key.
    /// `Acquired` carries the record to store in place of `existing`. Adapters call this
    /// inside the atomic step that read `existing`, so the decision and the write are one.
    pub fn decide(&self, existing: &IdempotencyRecord) -> Claim {
        if existing.expires_at <= self.now {
            return Claim::Acquired(self.fresh_record());
        }
        if existing.fingerprint != self.fingerprint {
            return Claim::FingerprintMismatch;
        }
        match &existing.state {
            KeyState::Finished {
                outcome,
                request_id,
                ..
            } => Claim::Finished {
                outcome: outcome.as_ref().clone(),
                request_id: request_id.clone(),
            },
            KeyState::Open { lock: Some(lock) } if lock.until > self.now => Claim::InUse,
            KeyState::Open { .. } => {
                let mut taken = existing.clone();
                taken.state = KeyState::Open {
                    lock: Some(self.lock()),
                };
                Claim::Acquired(taken)
            }
        }
    }
}

impl From<IdempotencyRecord> for StoredIdempotencyRecord {
    fn from(r: IdempotencyRecord) -> Self {
        let IdempotencyRecord {
            scope,
            key,
            fingerprint,
            state,
            recovery,
            created_at,
            expires_at,
        } = r;
        Self {
            scope,
            key,
            fingerprint,
            state,
            recovery,
            created_at,
            expires_at,
        }
    }
}

impl IdempotencyRecord {
    /// The record a store kept, if it is one the purchase flow can leave behind: it
    /// expires no earlier than it was made, and a finished purchase's subscription is
    /// the key's customer's and the one its recovery point names (a purchase reserves
    /// before it can finish with a subscription). Anything else is corrupt data.
    pub fn restore(stored: StoredIdempotencyRecord) -> Result<Self, InvalidValue> {
        if stored.expires_at < stored.created_at {
            return Err(InvalidValue::new("a key that expires before it was made"));
        }
        if let KeyState::Finished { outcome, .. } = &stored.state {
            if let Some(sub) = outcome.subscription() {
                if sub.customer_id() != &stored.scope {
                    return Err(InvalidValue::new(format!(
                        "the outcome's subscription {} is another customer's",
                        sub.id()
                    )));
                }
                let reserved = matches!(stored.recovery,
                    RecoveryPoint::Reserved { subscription_id } if subscription_id == sub.id());
                if !reserved {
                    return Err(InvalidValue::new(format!(
                        "the outcome's subscription {} is not the one the key reserved",
                        sub.id()
                    )));
                }
            }
        }
        let StoredIdempotencyRecord {
            scope,
            key,
            fingerprint,
            state,
            recovery,
            created_at,
            expires_at,
        } = stored;
        Ok(Self {
            scope,
            key,
            fingerprint,
            state,
            recovery,
            created_at,
            expires_at,
        })
    }

    /// The customer the key belongs to.
    pub fn scope(&self) -> &CustomerId {
        &self.scope
    }

    pub fn key(&self) -> &IdempotencyKey {
        &self.key
    }

    pub fn fingerprint(&self) -> &Fingerprint {
        &self.fingerprint
    }

    pub fn state(&self) -> &KeyState {
        &self.state
    }

    /// How far the purchase got: where a retry resumes.
    pub fn recovery(&self) -> &RecoveryPoint {
        &self.recovery
    }

    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// After this the record is forgotten: the key may start a new purchase.
    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    /// Whether `owner` holds a lock on this record (live or not: a lock is only taken
    /// from its owner by a new claim, which replaces the token).
    pub fn is_locked_by(&self, owner: LockToken) -> bool {
        matches!(&self.state, KeyState::Open { lock: Some(l) } if l.owner == owner)
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.state, KeyState::Finished { .. })
    }

    /// Whether this is the open record of the purchase that reserved `subscription_id`:
    /// the record that purchase's completion finishes. One finished already, or replaced
    /// by a newer purchase under the same key, is not.
    pub fn awaits_completion_of(&self, subscription_id: SubscriptionId) -> bool {
        self.recovery
            .awaits_completion_of(self.is_finished(), subscription_id)
    }

    /// Records that this key's purchase reserved `subscription_id`: a retry, and the
    /// reconciler, find the purchase from here.
    pub fn record_reservation(&mut self, subscription_id: SubscriptionId) {
        self.recovery = RecoveryPoint::Reserved { subscription_id };
    }

    /// Finishes the record with a definitive outcome.
    pub fn finish(&mut self, outcome: PurchaseOutcome, request_id: String, now: Timestamp) {
        self.state = KeyState::Finished {
            outcome: Box::new(outcome),
            request_id,
            finished_at: now,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(now: Timestamp, fingerprint: &str) -> ClaimKey {
        ClaimKey {
            scope: CustomerId::parse("cus_1").unwrap(),
            key: IdempotencyKey::parse("k1").unwrap(),
            fingerprint: Fingerprint::from_stored(fingerprint.into()),
            owner: LockToken::generate(),
            now,
            lease: Duration::from_secs(30),
            retention: Duration::from_secs(86_400),
        }
    }

    #[test]
    fn keys_must_be_1_to_255_printable_ascii_characters() {
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse(&"a".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse(&"a".repeat(256)).is_err());
        assert!(IdempotencyKey::parse("clé").is_err());
        assert!(IdempotencyKey::parse("tab\there").is_err());
        assert!(IdempotencyKey::parse("order 42 / retry").is_ok());
    }

    #[test]
    fn a_live_lock_of_another_request_means_in_use() {
        let now = chrono::Utc::now();
        let first = claim(now, "f").fresh_record();
        assert_eq!(claim(now, "f").decide(&first), Claim::InUse);
    }

    #[test]
    fn an_expired_lock_is_taken_over_and_keeps_the_recovery_point() {
        let now = chrono::Utc::now();
        let mut first = claim(now, "f").fresh_record();
        first.record_reservation(SubscriptionId::generate());
        let later = claim(now + chrono::Duration::seconds(31), "f");
        match later.decide(&first) {
            Claim::Acquired(rec) => {
                assert!(rec.is_locked_by(later.owner));
                assert_eq!(rec.recovery, first.recovery);
                assert_eq!(rec.created_at, first.created_at);
            }
            other => panic!("expected a takeover, got {other:?}"),
        }
    }

    #[test]
    fn a_completion_finishes_only_the_open_record_that_reserved_its_subscription() {
        let now = chrono::Utc::now();
        let sub = SubscriptionId::generate();
        let mut record = claim(now, "f").fresh_record();
        assert!(!record.awaits_completion_of(sub), "reserved nothing yet");
        record.record_reservation(sub);
        assert!(record.awaits_completion_of(sub));
        assert!(
            !record.awaits_completion_of(SubscriptionId::generate()),
            "another purchase's completion"
        );
        let mut released = record.clone();
        released.state = KeyState::Open { lock: None };
        assert!(
            released.awaits_completion_of(sub),
            "a released lock stays open"
        );
        record.finish(
            PurchaseOutcome::SoldOut {
                plan_id: PlanId::generate(),
            },
            "req".into(),
            now,
        );
        assert!(!record.awaits_completion_of(sub), "finished already");
        // The same rule on a store's own shape of a record: its point and whether it
        // finished.
        let point = RecoveryPoint::Reserved {
            subscription_id: sub,
        };
        assert!(point.awaits_completion_of(false, sub));
        assert!(!point.awaits_completion_of(true, sub));
        assert!(!point.awaits_completion_of(false, SubscriptionId::generate()));
        assert!(!RecoveryPoint::Started.awaits_completion_of(false, sub));
    }

    #[test]
    fn a_different_request_under_the_same_key_is_a_mismatch_even_while_running() {
        let now = chrono::Utc::now();
        let first = claim(now, "f").fresh_record();
        assert_eq!(claim(now, "g").decide(&first), Claim::FingerprintMismatch);
    }

    #[test]
    fn an_expired_record_is_forgotten_and_the_key_starts_a_new_purchase() {
        let now = chrono::Utc::now();
        let mut first = claim(now, "f").fresh_record();
        first.finish(
            PurchaseOutcome::SoldOut {
                plan_id: PlanId::generate(),
            },
            "req".into(),
            now,
        );
        let much_later = claim(now + chrono::Duration::days(2), "g");
        match much_later.decide(&first) {
            Claim::Acquired(rec) => assert_eq!(rec.recovery, RecoveryPoint::Started),
            other => panic!("expected a fresh claim, got {other:?}"),
        }
    }

    #[test]
    fn the_purchase_fingerprint_is_the_sha_256_of_the_canonical_request() {
        // Stored fingerprints must keep matching across versions: this is the digest of
        // "POST /api/subscriptions/purchase\ncustomer_id=cus_1\npayment_method=pm_card_visa\nplan_id=0192f4a2-7c3e-7d7e-8f00-0123456789ab\n".
        let plan: PlanId = "0192f4a2-7c3e-7d7e-8f00-0123456789ab".parse().unwrap();
        let fingerprint = Fingerprint::of_purchase(
            plan,
            &CustomerId::parse("cus_1").unwrap(),
            &PaymentMethod::parse("pm_card_visa").unwrap(),
        );
        let expected = hex::encode(Sha256::digest(
            "POST /api/subscriptions/purchase\ncustomer_id=cus_1\npayment_method=pm_card_visa\nplan_id=0192f4a2-7c3e-7d7e-8f00-0123456789ab\n",
        ));
        assert_eq!(fingerprint.as_str(), expected);
    }

    #[test]
    fn the_purchase_fingerprint_depends_on_every_field() {
        let plan = PlanId::generate();
        let c = CustomerId::parse("cus_1").unwrap();
        let pm = PaymentMethod::parse("pm_card_visa").unwrap();
        let base = Fingerprint::of_purchase(plan, &c, &pm);
        assert_eq!(base, Fingerprint::of_purchase(plan, &c, &pm));
        assert_ne!(base, Fingerprint::of_purchase(PlanId::generate(), &c, &pm));
        assert_ne!(
            base,
            Fingerprint::of_purchase(
                plan,
                &c,
                &PaymentMethod::parse("pm_card_mastercard").unwrap()
            )
        );
    }
}
