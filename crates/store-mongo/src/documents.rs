//! The documents stored in MongoDB, and their conversions from and to the domain types.
//!
//! Each stored type has a plain serde struct here (no flattening, no internally tagged
//! enums: serde's buffering would lose BSON's own types) whose fields are BSON-native:
//!
//! - ids are [`bson::Uuid`], stored as binary subtype 4 (the standard UUID representation
//!   every driver reads the same way), 16 bytes instead of a 36-character string, and
//!   ordered byte-wise by the server exactly as `uuid::Uuid` orders them in Rust — so
//!   "plans ordered by id" and "a customer's subscriptions ordered by id" mean the same
//!   thing on every store;
//! - timestamps are [`bson::DateTime`] (milliseconds since the epoch: the TTL index and
//!   date ranges work on them, and the domain's clock keeps milliseconds);
//! - money and counters are `i64`; statuses, actions, currencies and intervals are the
//!   domain's lower-case strings.
//!
//! Converting a document back validates every value with the domain's own parsers, so a
//! hand-edited or corrupt document is reported (as [`Corrupt`]) instead of turning into an
//! invalid domain value. Checkout sessions and webhook events have theirs in
//! [`crate::checkout_documents`].

use mongodb::bson::{self, doc, Bson, DateTime as BsonDateTime, Document, Uuid as BsonUuid};
use seatkeeper_domain::{
    AuditAction, AuditEntry, AuditEntryId, Capacity, Currency, CustomerId, Fingerprint,
    IdempotencyKey, IdempotencyRecord, Interval, KeyLock, KeyState, LockToken, PaymentMethod, Plan,
    PlanId, PlanName, PlanStats, PlanStatus, PurchaseOutcome, RecoveryPoint,
    StoredIdempotencyRecord, StoredPlan, StoredSubscription, Subscription, SubscriptionId,
    SubscriptionStatus, Timestamp, UnitAmount,
};
use serde::{Deserialize, Serialize};

/// A stored document that does not convert back into a valid domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected data in MongoDB: {0}")]
pub struct Corrupt(pub String);

impl Corrupt {
    fn field(field: &str, why: impl std::fmt::Display) -> Self {
        Self(format!("{field}: {why}"))
    }
}

pub(crate) type Result<T> = std::result::Result<T, Corrupt>;

// ----- scalar conversions -----

/// A domain UUID as BSON binary subtype 4.
pub fn uuid(u: uuid::Uuid) -> BsonUuid {
    BsonUuid::from_bytes(u.into_bytes())
}

pub(crate) fn from_uuid(u: BsonUuid) -> uuid::Uuid {
    uuid::Uuid::from_bytes(u.bytes())
}

/// A domain timestamp as a BSON date (milliseconds; finer precision is cut).
pub fn date(t: Timestamp) -> BsonDateTime {
    BsonDateTime::from_millis(t.timestamp_millis())
}

pub(crate) fn from_date(field: &str, d: BsonDateTime) -> Result<Timestamp> {
    chrono::DateTime::from_timestamp_millis(d.timestamp_millis())
        .ok_or_else(|| Corrupt::field(field, "date out of range"))
}

pub(crate) fn from_opt_date(field: &str, d: Option<BsonDateTime>) -> Result<Option<Timestamp>> {
    d.map(|d| from_date(field, d)).transpose()
}

fn u32_of(field: &str, n: i64) -> Result<u32> {
    u32::try_from(n).map_err(|_| Corrupt::field(field, format!("{n} is out of range")))
}

fn u64_of(field: &str, n: i64) -> Result<u64> {
    u64::try_from(n).map_err(|_| Corrupt::field(field, format!("{n} is out of range")))
}

/// Sequence numbers never come near `i64::MAX`; saturate rather than wrap.
fn i64_of(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn valid<T, E: std::fmt::Display>(
    field: &str,
    r: std::result::Result<T, E>,
) -> Result<T> {
    r.map_err(|e| Corrupt::field(field, e))
}

// ----- vocabularies -----

pub fn subscription_status(s: &str) -> Result<SubscriptionStatus> {
    valid("status", SubscriptionStatus::parse(s))
}

pub fn audit_action(s: &str) -> Result<AuditAction> {
    AuditAction::parse(s).ok_or_else(|| Corrupt::field("action", format!("unknown '{s}'")))
}

// ----- plans -----

/// A plan's subscriptions counted by status: `counts` on its document, moved (`$inc`) in
/// the same transaction by every write that creates a subscription or changes its status,
/// so that stats read one document, however many subscriptions the plan has, and no
/// index of subscriptions is keyed by status but the reconciler's partial one (run AA in
/// `docs/benchmarks.md`). A plan stored by an earlier version gets its counts at start-up
/// (`upgrade.rs`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountsDoc {
    pub incomplete: i64,
    pub active: i64,
    pub canceled: i64,
    pub incomplete_expired: i64,
}

impl CountsDoc {
    fn slot(&mut self, status: SubscriptionStatus) -> &mut i64 {
        match status {
            SubscriptionStatus::Incomplete => &mut self.incomplete,
            SubscriptionStatus::Active => &mut self.active,
            SubscriptionStatus::Canceled => &mut self.canceled,
            SubscriptionStatus::IncompleteExpired => &mut self.incomplete_expired,
        }
    }

    /// Counts `n` more subscriptions in `status` (fewer, when `n` is negative).
    pub fn add(&mut self, status: SubscriptionStatus, n: i64) {
        *self.slot(status) += n;
    }

    /// A subscription that moved from `from` to `to`.
    pub fn moved(&mut self, from: SubscriptionStatus, to: SubscriptionStatus) {
        self.add(from, -1);
        self.add(to, 1);
    }

    /// The `$inc` fields of these counts as a change (`counts.<status>`), zeros left out.
    pub fn increments(&self) -> Document {
        let mut inc = Document::new();
        for (name, n) in [
            ("counts.incomplete", self.incomplete),
            ("counts.active", self.active),
            ("counts.canceled", self.canceled),
            ("counts.incomplete_expired", self.incomplete_expired),
        ] {
            if n != 0 {
                inc.insert(name, n);
            }
        }
        inc
    }

    /// As `(status, count)` pairs, each checked to be a count.
    pub fn by_status(&self) -> Result<Vec<(SubscriptionStatus, u64)>> {
        Ok(vec![
            (
                SubscriptionStatus::Incomplete,
                u64_of("counts.incomplete", self.incomplete)?,
            ),
            (
                SubscriptionStatus::Active,
                u64_of("counts.active", self.active)?,
            ),
            (
                SubscriptionStatus::Canceled,
                u64_of("counts.canceled", self.canceled)?,
            ),
            (
                SubscriptionStatus::IncompleteExpired,
                u64_of("counts.incomplete_expired", self.incomplete_expired)?,
            ),
        ])
    }
}

/// A plan: collection `plans`, `_id` the plan id. `seq` is the number of the plan's last
/// audit entry, bumped in the same transaction as each entry; `counts` its subscriptions
/// by status ([`CountsDoc`]; absent only on a plan an earlier version stored, until
/// start-up counts them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanDoc {
    #[serde(rename = "_id")]
    pub id: BsonUuid,
    pub name: String,
    pub capacity: i64,
    pub seats_left: i64,
    pub unit_amount: i64,
    pub currency: String,
    pub interval: String,
    pub status: String,
    pub created_at: BsonDateTime,
    pub seq: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<CountsDoc>,
}

impl From<&Plan> for PlanDoc {
    /// A new plan's document: no subscriptions yet.
    fn from(p: &Plan) -> Self {
        Self {
            id: uuid(p.id().as_uuid()),
            name: p.name().as_str().to_owned(),
            capacity: i64::from(p.capacity().get()),
            seats_left: i64::from(p.seats_left()),
            unit_amount: p.unit_amount().get(),
            currency: p.currency().as_str().to_owned(),
            interval: p.interval().as_str().to_owned(),
            status: p.status().as_str().to_owned(),
            created_at: date(p.created_at()),
            seq: i64_of(p.seq()),
            counts: Some(CountsDoc::default()),
        }
    }
}

impl TryFrom<PlanDoc> for Plan {
    type Error = Corrupt;
    fn try_from(d: PlanDoc) -> Result<Self> {
        let stored = StoredPlan {
            id: PlanId::from_uuid(from_uuid(d.id)),
            name: valid("name", PlanName::parse(&d.name))?,
            capacity: valid("capacity", Capacity::new(d.capacity))?,
            seats_left: u32_of("seats_left", d.seats_left)?,
            unit_amount: valid("unit_amount", UnitAmount::new(d.unit_amount))?,
            currency: valid("currency", Currency::parse(&d.currency))?,
            interval: valid("interval", Interval::parse(&d.interval))?,
            status: valid("status", PlanStatus::parse(&d.status))?,
            created_at: from_date("created_at", d.created_at)?,
            seq: u64_of("seq", d.seq)?,
        };
        valid("plan", Plan::restore(stored))
    }
}

// ----- subscriptions -----

/// A subscription: collection `subscriptions`, `_id` the subscription id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionDoc {
    #[serde(rename = "_id")]
    pub id: BsonUuid,
    pub plan_id: BsonUuid,
    pub customer_id: String,
    pub status: String,
    pub payment_method: String,
    pub payment_id: Option<String>,
    pub unit_amount: i64,
    pub currency: String,
    pub interval: String,
    pub idempotency_key: Option<String>,
    pub current_period_start: Option<BsonDateTime>,
    pub current_period_end: Option<BsonDateTime>,
    pub created_at: BsonDateTime,
    pub updated_at: BsonDateTime,
    pub canceled_at: Option<BsonDateTime>,
    pub failure_reason: Option<String>,
}

impl From<&Subscription> for SubscriptionDoc {
    fn from(s: &Subscription) -> Self {
        Self {
            id: uuid(s.id().as_uuid()),
            plan_id: uuid(s.plan_id().as_uuid()),
            customer_id: s.customer_id().as_str().to_owned(),
            status: s.status().as_str().to_owned(),
            payment_method: s.payment_method().as_str().to_owned(),
            payment_id: s.payment_id().map(str::to_owned),
            unit_amount: s.unit_amount().get(),
            currency: s.currency().as_str().to_owned(),
            interval: s.interval().as_str().to_owned(),
            idempotency_key: s.idempotency_key().map(|k| k.as_str().to_owned()),
            current_period_start: s.current_period_start().map(date),
            current_period_end: s.current_period_end().map(date),
            created_at: date(s.created_at()),
            updated_at: date(s.updated_at()),
            canceled_at: s.canceled_at().map(date),
            failure_reason: s.failure_reason().map(str::to_owned),
        }
    }
}

impl TryFrom<SubscriptionDoc> for Subscription {
    type Error = Corrupt;
    fn try_from(d: SubscriptionDoc) -> Result<Self> {
        let stored = StoredSubscription {
            id: SubscriptionId::from_uuid(from_uuid(d.id)),
            plan_id: PlanId::from_uuid(from_uuid(d.plan_id)),
            customer_id: valid("customer_id", CustomerId::parse(&d.customer_id))?,
            status: subscription_status(&d.status)?,
            payment_method: valid("payment_method", PaymentMethod::parse(&d.payment_method))?,
            payment_id: d.payment_id,
            unit_amount: valid("unit_amount", UnitAmount::new(d.unit_amount))?,
            currency: valid("currency", Currency::parse(&d.currency))?,
            interval: valid("interval", Interval::parse(&d.interval))?,
            idempotency_key: d
                .idempotency_key
                .map(|k| valid("idempotency_key", IdempotencyKey::parse(&k)))
                .transpose()?,
            current_period_start: from_opt_date("current_period_start", d.current_period_start)?,
            current_period_end: from_opt_date("current_period_end", d.current_period_end)?,
            created_at: from_date("created_at", d.created_at)?,
            updated_at: from_date("updated_at", d.updated_at)?,
            canceled_at: from_opt_date("canceled_at", d.canceled_at)?,
            failure_reason: d.failure_reason,
        };
        valid("subscription", Subscription::restore(stored))
    }
}

// ----- audit entries -----

/// An audit entry: collection `audit_entries`, `_id` the entry id, unique on
/// `(plan_id, seq)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditDoc {
    #[serde(rename = "_id")]
    pub id: BsonUuid,
    pub plan_id: BsonUuid,
    pub seq: i64,
    pub at: BsonDateTime,
    pub action: String,
    pub subscription_id: Option<BsonUuid>,
    pub actor: String,
    pub trace_id: String,
    pub seats_left_before: i64,
    pub seats_left_after: i64,
    pub reason: Option<String>,
}

impl From<&AuditEntry> for AuditDoc {
    fn from(e: &AuditEntry) -> Self {
        Self {
            id: uuid(e.id.as_uuid()),
            plan_id: uuid(e.plan_id.as_uuid()),
            seq: i64_of(e.seq),
            at: date(e.at),
            action: e.action.as_str().to_owned(),
            subscription_id: e.subscription_id.map(|s| uuid(s.as_uuid())),
            actor: e.actor.to_string(),
            trace_id: e.trace_id.to_string(),
            seats_left_before: i64::from(e.seats_left_before),
            seats_left_after: i64::from(e.seats_left_after),
            reason: e.reason.clone(),
        }
    }
}

impl TryFrom<AuditDoc> for AuditEntry {
    type Error = Corrupt;
    fn try_from(d: AuditDoc) -> Result<Self> {
        Ok(AuditEntry {
            id: AuditEntryId::from_uuid(from_uuid(d.id)),
            plan_id: PlanId::from_uuid(from_uuid(d.plan_id)),
            seq: u64_of("seq", d.seq)?,
            at: from_date("at", d.at)?,
            action: audit_action(&d.action)?,
            subscription_id: d
                .subscription_id
                .map(|s| SubscriptionId::from_uuid(from_uuid(s))),
            actor: d.actor.into(),
            trace_id: d.trace_id.into(),
            seats_left_before: u32_of("seats_left_before", d.seats_left_before)?,
            seats_left_after: u32_of("seats_left_after", d.seats_left_after)?,
            reason: d.reason,
        })
    }
}

// ----- purchase outcomes -----

/// A definitive purchase outcome, stored on its finished key and replayed from there.
/// `kind` is [`PurchaseOutcome::kind`]; the other fields are those the kind carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutcomeDoc {
    pub kind: String,
    pub plan_id: Option<BsonUuid>,
    pub subscription: Option<SubscriptionDoc>,
    pub reason: Option<String>,
}

impl From<&PurchaseOutcome> for OutcomeDoc {
    fn from(o: &PurchaseOutcome) -> Self {
        let mut d = Self {
            kind: o.kind().to_owned(),
            plan_id: None,
            subscription: None,
            reason: None,
        };
        match o {
            PurchaseOutcome::Created { subscription } => {
                d.subscription = Some(subscription.into());
            }
            PurchaseOutcome::Declined {
                subscription,
                reason,
            } => {
                d.subscription = Some(subscription.into());
                d.reason = Some(reason.clone());
            }
            PurchaseOutcome::SoldOut { plan_id }
            | PurchaseOutcome::PlanNotFound { plan_id }
            | PurchaseOutcome::PlanInactive { plan_id } => {
                d.plan_id = Some(uuid(plan_id.as_uuid()));
            }
        }
        d
    }
}

impl TryFrom<OutcomeDoc> for PurchaseOutcome {
    type Error = Corrupt;
    fn try_from(d: OutcomeDoc) -> Result<Self> {
        let subscription = |s: Option<SubscriptionDoc>| -> Result<Subscription> {
            s.ok_or_else(|| Corrupt::field("outcome.subscription", "missing"))?
                .try_into()
        };
        let plan_id = |p: Option<BsonUuid>| -> Result<PlanId> {
            p.map(|p| PlanId::from_uuid(from_uuid(p)))
                .ok_or_else(|| Corrupt::field("outcome.plan_id", "missing"))
        };
        Ok(match d.kind.as_str() {
            "created" => PurchaseOutcome::Created {
                subscription: subscription(d.subscription)?,
            },
            "declined" => PurchaseOutcome::Declined {
                subscription: subscription(d.subscription)?,
                reason: d
                    .reason
                    .ok_or_else(|| Corrupt::field("outcome.reason", "missing"))?,
            },
            "sold_out" => PurchaseOutcome::SoldOut {
                plan_id: plan_id(d.plan_id)?,
            },
            "plan_not_found" => PurchaseOutcome::PlanNotFound {
                plan_id: plan_id(d.plan_id)?,
            },
            "plan_inactive" => PurchaseOutcome::PlanInactive {
                plan_id: plan_id(d.plan_id)?,
            },
            other => return Err(Corrupt::field("outcome.kind", format!("unknown '{other}'"))),
        })
    }
}

// ----- idempotency keys -----

/// A key's lease.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockDoc {
    pub owner: BsonUuid,
    pub until: BsonDateTime,
}

/// A key's recovery point: `phase` is `started` or `reserved` (with the subscription).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryDoc {
    pub phase: String,
    pub subscription_id: Option<BsonUuid>,
}

impl From<&RecoveryPoint> for RecoveryDoc {
    fn from(r: &RecoveryPoint) -> Self {
        match r {
            RecoveryPoint::Started => Self {
                phase: "started".into(),
                subscription_id: None,
            },
            RecoveryPoint::Reserved { subscription_id } => Self {
                phase: "reserved".into(),
                subscription_id: Some(uuid(subscription_id.as_uuid())),
            },
        }
    }
}

impl TryFrom<RecoveryDoc> for RecoveryPoint {
    type Error = Corrupt;
    fn try_from(d: RecoveryDoc) -> Result<Self> {
        match (d.phase.as_str(), d.subscription_id) {
            ("started", None) => Ok(RecoveryPoint::Started),
            ("reserved", Some(s)) => Ok(RecoveryPoint::Reserved {
                subscription_id: SubscriptionId::from_uuid(from_uuid(s)),
            }),
            (phase, s) => Err(Corrupt::field(
                "recovery",
                format!("phase '{phase}' with subscription {s:?}"),
            )),
        }
    }
}

/// The `_id` of an idempotency record: its scope and key, in this order. MongoDB compares
/// embedded documents field by field in order, so every `_id` is built here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KeyId {
    pub scope: String,
    pub key: String,
}

impl KeyId {
    pub fn of(scope: &CustomerId, key: &IdempotencyKey) -> Self {
        Self {
            scope: scope.as_str().to_owned(),
            key: key.as_str().to_owned(),
        }
    }

    /// The `_id` value, for filters.
    pub fn bson(&self) -> Bson {
        Bson::Document(doc! { "scope": &self.scope, "key": &self.key })
    }
}

/// An idempotency record: collection `idempotency_keys`, `_id` its `{ scope, key }`
/// ([`KeyId`]): one record per customer and key, found and written through the `_id`
/// index alone (the server's fastest path: no other unique index to keep, no query to
/// plan). `state` is `open` (with `lock`, or `null` once released) or `finished` (with
/// `outcome`, `request_id`, `finished_at`). `expires_at` carries the TTL index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyDoc {
    #[serde(rename = "_id")]
    pub id: KeyId,
    pub fingerprint: String,
    pub state: String,
    pub lock: Option<LockDoc>,
    pub recovery: RecoveryDoc,
    pub outcome: Option<OutcomeDoc>,
    pub request_id: Option<String>,
    pub finished_at: Option<BsonDateTime>,
    pub created_at: BsonDateTime,
    pub expires_at: BsonDateTime,
}

impl From<&IdempotencyRecord> for KeyDoc {
    fn from(r: &IdempotencyRecord) -> Self {
        let mut d = Self {
            id: KeyId::of(r.scope(), r.key()),
            fingerprint: r.fingerprint().as_str().to_owned(),
            state: String::new(),
            lock: None,
            recovery: r.recovery().into(),
            outcome: None,
            request_id: None,
            finished_at: None,
            created_at: date(r.created_at()),
            expires_at: date(r.expires_at()),
        };
        match &r.state() {
            KeyState::Open { lock } => {
                d.state = "open".into();
                d.lock = lock.as_ref().map(|l| LockDoc {
                    owner: uuid(l.owner.as_uuid()),
                    until: date(l.until),
                });
            }
            KeyState::Finished {
                outcome,
                request_id,
                finished_at,
            } => {
                d.state = "finished".into();
                d.outcome = Some(outcome.as_ref().into());
                d.request_id = Some(request_id.clone());
                d.finished_at = Some(date(*finished_at));
            }
        }
        d
    }
}

impl TryFrom<KeyDoc> for IdempotencyRecord {
    type Error = Corrupt;
    fn try_from(d: KeyDoc) -> Result<Self> {
        let state = match d.state.as_str() {
            "open" => KeyState::Open {
                lock: d
                    .lock
                    .map(|l| {
                        Ok::<_, Corrupt>(KeyLock {
                            owner: LockToken::from_uuid(from_uuid(l.owner)),
                            until: from_date("lock.until", l.until)?,
                        })
                    })
                    .transpose()?,
            },
            "finished" => KeyState::Finished {
                outcome: Box::new(
                    d.outcome
                        .ok_or_else(|| Corrupt::field("outcome", "missing"))?
                        .try_into()?,
                ),
                request_id: d
                    .request_id
                    .ok_or_else(|| Corrupt::field("request_id", "missing"))?,
                finished_at: from_date(
                    "finished_at",
                    d.finished_at
                        .ok_or_else(|| Corrupt::field("finished_at", "missing"))?,
                )?,
            },
            other => return Err(Corrupt::field("state", format!("unknown '{other}'"))),
        };
        let stored = StoredIdempotencyRecord {
            scope: valid("_id.scope", CustomerId::parse(&d.id.scope))?,
            key: valid("_id.key", IdempotencyKey::parse(&d.id.key))?,
            fingerprint: Fingerprint::from_stored(d.fingerprint),
            state,
            recovery: d.recovery.try_into()?,
            created_at: from_date("created_at", d.created_at)?,
            expires_at: from_date("expires_at", d.expires_at)?,
        };
        valid("idempotency record", IdempotencyRecord::restore(stored))
    }
}

// ----- stats -----

/// A plan's stats from its document (the plan and its `counts`) and its open checkout
/// sessions (`held`), read in one snapshot.
pub fn stats(plan: PlanDoc, held: u64) -> Result<PlanStats> {
    let counts = plan
        .counts
        .ok_or_else(|| Corrupt::field("counts", "missing"))?
        .by_status()?;
    let plan = Plan::try_from(plan)?;
    Ok(PlanStats::from_counts(&plan, held, counts))
}

/// Serialises a stored type into a BSON document (for inserts and `$set`s).
pub fn to_document<T: Serialize>(value: &T) -> Result<bson::Document> {
    bson::to_document(value).map_err(|e| Corrupt(format!("cannot encode: {e}")))
}

#[cfg(test)]
mod tests {
    //! Every stored type survives the trip domain → document → BSON bytes → document →
    //! domain unchanged, with ids, dates and amounts in their BSON-native types; documents
    //! that do not make valid domain values are refused.

    use bson::{doc, spec::BinarySubtype, Bson, Document};
    use seatkeeper_domain::{AuditContext, ClaimKey, NewPlan, PlanChange, PurchaseOutcome};
    use seatkeeper_store_contract::support::altered;
    use serde::de::DeserializeOwned;

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// Through the wire format and back, the way the driver does it: encoded with
    /// `to_raw_document_buf` (inserts, replacements) and decoded straight from the bytes
    /// with `from_slice` (typed reads). Also returns the document as the server sees it.
    fn through_bson<D: Serialize + DeserializeOwned>(d: &D) -> (Document, D) {
        let raw = bson::to_raw_document_buf(d).unwrap();
        let document = raw.to_document().unwrap();
        assert_eq!(document, to_document(d).unwrap(), "both encoders agree");
        (document, bson::from_slice(raw.as_bytes()).unwrap())
    }

    fn is_uuid(b: Option<&Bson>) -> bool {
        matches!(b, Some(Bson::Binary(bin)) if bin.subtype == BinarySubtype::Uuid && bin.bytes.len() == 16)
    }

    fn is_date(b: Option<&Bson>) -> bool {
        matches!(b, Some(Bson::DateTime(_)))
    }

    fn plan() -> Plan {
        Plan::create(
            NewPlan {
                name: PlanName::parse("Équipe 🚀").unwrap(),
                capacity: Capacity::new(1_000_000).unwrap(),
                unit_amount: UnitAmount::new(99_999_999).unwrap(),
                currency: Currency::parse("jpy").unwrap(),
                interval: Interval::Year,
            },
            ts("2026-01-31T23:59:59.999Z"),
        )
    }

    fn subscription(plan: &Plan) -> Subscription {
        Subscription::reserve(
            SubscriptionId::generate(),
            plan,
            CustomerId::parse("cus_A.b-c:d_1").unwrap(),
            PaymentMethod::parse("pm_card_visa").unwrap(),
            Some(IdempotencyKey::parse("order #1 / retry ~ok").unwrap()),
            ts("2026-02-01T00:00:00.001Z"),
        )
    }

    fn subscriptions_in_every_status() -> Vec<Subscription> {
        let p = plan();
        let incomplete = subscription(&p);
        let mut active = subscription(&p);
        active.activate("pi_123".into(), ts("2026-02-01T00:00:01.500Z"));
        let mut expired = subscription(&p);
        expired.expire(
            "card_declined: Your card was declined.".into(),
            ts("2026-02-01T00:00:02Z"),
        );
        let mut canceled = active.clone();
        canceled.cancel(ts("2026-03-01T12:00:00.042Z"));
        let keyless = altered(&subscription(&p), |s| s.idempotency_key = None);
        vec![incomplete, active, expired, canceled, keyless]
    }

    fn every_outcome() -> Vec<PurchaseOutcome> {
        let subs = subscriptions_in_every_status();
        let plan_id = PlanId::generate();
        vec![
            PurchaseOutcome::Created {
                subscription: subs[1].clone(),
            },
            PurchaseOutcome::Declined {
                subscription: subs[2].clone(),
                reason: "insufficient_funds".into(),
            },
            PurchaseOutcome::SoldOut { plan_id },
            PurchaseOutcome::PlanNotFound { plan_id },
            PurchaseOutcome::PlanInactive { plan_id },
        ]
    }

    fn claim(now: Timestamp) -> ClaimKey {
        ClaimKey {
            scope: CustomerId::parse("cus_A.b-c:d_1").unwrap(),
            key: IdempotencyKey::parse("k-1").unwrap(),
            fingerprint: Fingerprint::from_stored("ab".repeat(32)),
            owner: LockToken::generate(),
            now,
            lease: std::time::Duration::from_secs(30),
            retention: std::time::Duration::from_secs(86_400),
        }
    }

    #[test]
    fn a_plan_round_trips_with_a_uuid_id_a_date_and_int64_numbers() {
        let p = altered(&plan(), |p| {
            p.seats_left = 17;
            p.seq = 42;
            p.status = PlanStatus::Archived;
        });
        let (document, back) = through_bson(&PlanDoc::from(&p));
        assert!(is_uuid(document.get("_id")));
        assert!(is_date(document.get("created_at")));
        for field in ["capacity", "seats_left", "unit_amount", "seq"] {
            assert!(
                matches!(document.get(field), Some(Bson::Int64(_))),
                "{field}: {:?}",
                document.get(field)
            );
        }
        assert_eq!(document.get_str("status"), Ok("archived"));
        assert_eq!(Plan::try_from(back).unwrap(), p);
    }

    #[test]
    fn a_subscription_round_trips_in_every_status() {
        for s in subscriptions_in_every_status() {
            let (document, back) = through_bson(&SubscriptionDoc::from(&s));
            assert!(is_uuid(document.get("_id")) && is_uuid(document.get("plan_id")));
            assert!(is_date(document.get("created_at")) && is_date(document.get("updated_at")));
            assert_eq!(document.get_str("status"), Ok(s.status().as_str()));
            assert!(matches!(
                document.get("unit_amount"),
                Some(Bson::Int64(99_999_999))
            ));
            assert_eq!(Subscription::try_from(back).unwrap(), s);
        }
    }

    #[test]
    fn an_audit_entry_round_trips_with_and_without_a_subscription_and_reason() {
        let p = plan();
        let ctx = AuditContext::admin("req-1");
        let created = AuditEntry::plan_created(&p, &ctx);
        let after = altered(&p, |p| {
            p.seq = 2;
            p.seats_left -= 1;
        });
        let reserved = AuditEntry::record(
            &after,
            AuditAction::SeatReserved,
            p.seats_left(),
            Some(SubscriptionId::generate()),
            Some("why not".into()),
            &AuditContext::customer(&CustomerId::parse("cus_1").unwrap(), "req-2"),
            ts("2026-02-02T00:00:00.007Z"),
        );
        let changes = AuditEntry::plan_changes(
            &after,
            &[PlanChange {
                action: AuditAction::PlanArchived,
                seats_left_before: 3,
                seats_left_after: 3,
                reason: None,
            }],
            &ctx,
            ts("2026-02-03T00:00:00Z"),
        );
        for e in [created, reserved].into_iter().chain(changes) {
            let (document, back) = through_bson(&AuditDoc::from(&e));
            assert!(is_uuid(document.get("_id")) && is_date(document.get("at")));
            assert!(matches!(document.get("seq"), Some(Bson::Int64(_))));
            assert_eq!(AuditEntry::try_from(back).unwrap(), e);
        }
    }

    #[test]
    fn every_audit_action_reads_back_from_its_name() {
        for &a in AuditAction::ALL {
            assert_eq!(audit_action(a.as_str()), Ok(a));
        }
        assert!(audit_action("seat_stolen").is_err());
    }

    #[test]
    fn every_purchase_outcome_round_trips() {
        for o in every_outcome() {
            let (document, back) = through_bson(&OutcomeDoc::from(&o));
            assert_eq!(document.get_str("kind"), Ok(o.kind()));
            assert_eq!(PurchaseOutcome::try_from(back).unwrap(), o);
        }
    }

    #[test]
    fn an_idempotency_record_round_trips_in_every_state() {
        let now = ts("2026-02-01T10:00:00.123Z");
        let fresh = claim(now).fresh_record();
        let released = altered(&fresh, |r| r.state = KeyState::Open { lock: None });
        let reserved = altered(&fresh, |r| {
            r.recovery = RecoveryPoint::Reserved {
                subscription_id: SubscriptionId::generate(),
            }
        });
        let released_after_reserving =
            altered(&reserved, |r| r.state = KeyState::Open { lock: None });
        let mut records = vec![fresh, released, reserved.clone(), released_after_reserving];
        for outcome in every_outcome() {
            let mut finished = reserved.clone();
            if let Some(sub) = outcome.subscription() {
                finished.record_reservation(sub.id());
            }
            finished.finish(
                outcome,
                "req-9".into(),
                now + chrono::Duration::milliseconds(5),
            );
            records.push(finished);
        }
        for r in records {
            let (document, back) = through_bson(&KeyDoc::from(&r));
            assert!(
                is_date(document.get("expires_at")),
                "the TTL index needs a date"
            );
            assert!(is_date(document.get("created_at")));
            if let KeyState::Open { lock: Some(_) } = r.state() {
                let lock = document.get_document("lock").unwrap();
                assert!(is_uuid(lock.get("owner")) && is_date(lock.get("until")));
            }
            assert_eq!(IdempotencyRecord::try_from(back).unwrap(), r);
        }
    }

    #[test]
    fn timestamps_are_stored_to_the_millisecond() {
        let t = ts("2026-02-01T10:00:00.123987Z");
        let back = from_date("t", date(t)).unwrap();
        assert_eq!(back, ts("2026-02-01T10:00:00.123Z"));
    }

    #[test]
    fn documents_that_break_the_domains_rules_are_refused_as_corrupt() {
        let mut p = PlanDoc::from(&plan());
        p.seats_left = p.capacity + 1;
        assert!(Plan::try_from(p.clone()).is_err());
        p.seats_left = -1;
        assert!(Plan::try_from(p).is_err());

        let mut s = SubscriptionDoc::from(&subscriptions_in_every_status()[0]);
        s.status = "paused".into();
        assert!(Subscription::try_from(s).is_err());

        let mut k = KeyDoc::from(&claim(ts("2026-02-01T10:00:00Z")).fresh_record());
        k.state = "finished".into();
        assert!(
            IdempotencyRecord::try_from(k.clone()).is_err(),
            "a finished key has an outcome"
        );
        k.state = "open".into();
        k.recovery = RecoveryDoc {
            phase: "reserved".into(),
            subscription_id: None,
        };
        assert!(IdempotencyRecord::try_from(k).is_err());

        let o = OutcomeDoc {
            kind: "declined".into(),
            plan_id: None,
            subscription: None,
            reason: Some("x".into()),
        };
        assert!(PurchaseOutcome::try_from(o).is_err());
    }

    #[test]
    fn stats_put_each_status_count_in_its_place_and_refuse_a_plan_without_counts() {
        let p = altered(&plan(), |p| p.seats_left = 0);
        let mut counts = CountsDoc::default();
        counts.add(SubscriptionStatus::Incomplete, 3);
        counts.moved(SubscriptionStatus::Incomplete, SubscriptionStatus::Active);
        counts.add(SubscriptionStatus::Active, 6);
        counts.add(SubscriptionStatus::Canceled, 1);
        counts.add(SubscriptionStatus::IncompleteExpired, 4);
        let mut d = PlanDoc::from(&p);
        assert_eq!(
            d.counts,
            Some(CountsDoc::default()),
            "a new plan counts none"
        );
        d.counts = Some(counts);
        let s = stats(d.clone(), 3).unwrap();
        assert_eq!(
            (
                s.held,
                s.incomplete,
                s.active,
                s.canceled,
                s.incomplete_expired
            ),
            (3, 2, 7, 1, 4)
        );
        assert!(s.sold_out);
        assert_eq!((s.capacity, s.seats_left), (1_000_000, 0));
        let none = stats(PlanDoc::from(&plan()), 0).unwrap();
        assert_eq!(
            (none.held, none.incomplete, none.active, none.sold_out),
            (0, 0, 0, false)
        );
        let mut negative = d.clone();
        negative.counts = Some(CountsDoc {
            canceled: -1,
            ..counts
        });
        assert!(stats(negative, 0).is_err());
        d.counts = None;
        assert!(stats(d, 0).is_err(), "counted at start-up, never missing");
    }

    #[test]
    fn counts_move_as_increments_of_the_statuses_that_changed() {
        let mut c = CountsDoc::default();
        assert_eq!(c.increments(), Document::new());
        c.add(SubscriptionStatus::Incomplete, 2);
        c.moved(SubscriptionStatus::Incomplete, SubscriptionStatus::Active);
        c.moved(SubscriptionStatus::Active, SubscriptionStatus::Canceled);
        assert_eq!(
            c.increments(),
            doc! { "counts.incomplete": 1_i64, "counts.canceled": 1_i64 }
        );
    }

    #[test]
    fn a_subscription_carrying_a_recovery_task_and_a_refund_mark_reads_as_the_domains() {
        let s = subscriptions_in_every_status().remove(2);
        let mut stored = to_document(&SubscriptionDoc::from(&s)).unwrap();
        stored.insert(
            "recovery_task",
            doc! { "phase": "verify", "owner": Bson::Null, "until": Bson::Null, "verify_after": date(s.updated_at()) },
        );
        stored.insert("refund_recorded", true);
        let read: SubscriptionDoc = bson::from_document(stored).unwrap();
        assert_eq!(Subscription::try_from(read).unwrap(), s);
    }
}
