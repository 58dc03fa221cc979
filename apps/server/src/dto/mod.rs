//! The JSON shapes of the API, and their conversion to and from domain values.

use std::borrow::Cow;

use seatkeeper_domain::{
    service::AuditCheck, AuditEntry, Capacity, Currency, CustomerId, Interval, NewPlan,
    PaymentMethod, Plan, PlanId, PlanName, PlanPatch, PlanStats, PlanStatus, Subscription,
    SubscriptionId, Timestamp, UnitAmount,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{extract::Fields, openapi::schemas, problem::ApiError, timestamp};

/// `{"data": [...], "next_cursor": ...}`
#[derive(Debug, Serialize)]
pub struct List<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

/// A plan with a limited number of seats.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Plan, example = json!({
    "id": "0190f5c2-8a4b-7c3d-9e1f-2a3b4c5d6e7f", "name": "Team", "capacity": 50,
    "seats_left": 48, "unit_amount": 4900, "currency": "usd", "interval": "month",
    "status": "active", "created_at": "2026-01-15T09:30:00.123Z"
}))]
pub struct PlanBody {
    #[schema(value_type = schemas::PlanId)]
    pub id: PlanId,
    #[schema(value_type = schemas::PlanName)]
    pub name: String,
    #[schema(value_type = schemas::Capacity)]
    pub capacity: u32,
    /// Seats nobody holds; `capacity - seats_left` seats are held by open checkout
    /// sessions or by `incomplete` or `active` subscriptions. From 0 to `capacity`.
    #[schema(maximum = 1_000_000)]
    pub seats_left: u32,
    #[schema(value_type = schemas::UnitAmount)]
    pub unit_amount: i64,
    #[schema(value_type = schemas::Currency)]
    pub currency: String,
    #[schema(value_type = schemas::Interval)]
    pub interval: &'static str,
    #[schema(value_type = schemas::PlanStatus)]
    pub status: &'static str,
    #[serde(serialize_with = "timestamp::serialize")]
    #[schema(value_type = schemas::Timestamp)]
    pub created_at: Timestamp,
}

impl From<&Plan> for PlanBody {
    fn from(p: &Plan) -> Self {
        Self {
            id: p.id(),
            name: p.name().as_str().to_owned(),
            capacity: p.capacity().get(),
            seats_left: p.seats_left(),
            unit_amount: p.unit_amount().get(),
            currency: p.currency().to_string(),
            interval: p.interval().as_str(),
            status: p.status().as_str(),
            created_at: p.created_at(),
        }
    }
}

/// A plan's seats and its subscriptions counted by status, from one consistent snapshot
/// (`capacity == seats_left + held + incomplete + active`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = PlanStats, example = json!({
    "plan_id": "0190f5c2-8a4b-7c3d-9e1f-2a3b4c5d6e7f", "capacity": 50, "seats_left": 46,
    "held": 1, "incomplete": 1, "active": 2, "canceled": 1, "incomplete_expired": 3, "sold_out": false
}))]
pub struct StatsBody {
    #[schema(value_type = schemas::PlanId)]
    pub plan_id: PlanId,
    #[schema(value_type = schemas::Capacity)]
    pub capacity: u32,
    /// Seats nobody holds.
    #[schema(maximum = 1_000_000)]
    pub seats_left: u32,
    /// Seats held by open checkout sessions.
    pub held: u64,
    /// Subscriptions holding a seat whose charge has not completed.
    pub incomplete: u64,
    /// Paid subscriptions holding a seat.
    pub active: u64,
    /// Cancelled subscriptions (no seat).
    pub canceled: u64,
    /// Subscriptions whose charge was declined or never happened (no seat).
    pub incomplete_expired: u64,
    /// `true` when `seats_left` is 0.
    pub sold_out: bool,
}

/// Whether a plan's audit log replays to its seats: the log read from entry 1 up to the
/// plan's `seq`, replayed by the domain's rule (each entry starts where the previous one
/// left `seats_left`, and moves it as its action allows).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditCheck, example = json!({
    "plan_id": "0190f5c2-8a4b-7c3d-9e1f-2a3b4c5d6e7f", "seq": 12, "entries": 12,
    "replayed_seats_left": 7, "seats_left": 7, "consistent": true, "error": null
}))]
pub struct AuditCheckBody {
    #[schema(value_type = schemas::PlanId)]
    pub plan_id: PlanId,
    /// The plan's `seq` when it was read: the log was replayed up to this entry.
    pub seq: u64,
    /// How many entries were replayed.
    pub entries: u64,
    /// The `seats_left` the replay arrives at; `null` when the replay failed.
    #[schema(required, maximum = 1_000_000)]
    pub replayed_seats_left: Option<u32>,
    /// The plan's `seats_left` when it was read.
    #[schema(maximum = 1_000_000)]
    pub seats_left: u32,
    /// `true` when the log replays to the plan's `seats_left`.
    pub consistent: bool,
    /// Why it does not (a gap, a broken chain, a move its action does not allow, a
    /// missing entry, or a different count); `null` when `consistent`.
    #[schema(required)]
    pub error: Option<String>,
}

impl AuditCheckBody {
    pub fn new(plan_id: PlanId, check: AuditCheck) -> Self {
        Self {
            plan_id,
            consistent: check.consistent(),
            seq: check.seq,
            entries: check.entries,
            replayed_seats_left: check.replayed_seats_left,
            seats_left: check.seats_left,
            error: check.error,
        }
    }
}

impl From<PlanStats> for StatsBody {
    fn from(s: PlanStats) -> Self {
        Self {
            plan_id: s.plan_id,
            capacity: s.capacity,
            seats_left: s.seats_left,
            held: s.held,
            incomplete: s.incomplete,
            active: s.active,
            canceled: s.canceled,
            incomplete_expired: s.incomplete_expired,
            sold_out: s.sold_out,
        }
    }
}

/// One change of a plan, in the order changes took effect.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditEntry, example = json!({
    "id": "0190f5d0-1b2d-7a11-b2c3-d4e5f6a7b8c9", "seq": 2, "at": "2026-02-01T12:00:00.200Z",
    "action": "seat_reserved", "plan_id": "0190f5c2-8a4b-7c3d-9e1f-2a3b4c5d6e7f",
    "subscription_id": "0190f5d0-1b2c-7d3e-8f40-5a6b7c8d9e0f", "actor": "customer:cus_42",
    "trace_id": "0b7e3c1a-5d2f-4e8b-9a61-7c4d2e9f0a13", "seats_left_before": 50,
    "seats_left_after": 49, "reason": null
}))]
pub struct AuditEntryBody {
    /// The entry's id.
    #[schema(format = Uuid)]
    pub id: String,
    /// The entry's number in the plan's log, from 1 (`plan_created`), without gaps.
    #[schema(minimum = 1)]
    pub seq: u64,
    #[serde(serialize_with = "timestamp::serialize")]
    #[schema(value_type = schemas::Timestamp)]
    pub at: Timestamp,
    #[schema(value_type = schemas::AuditAction)]
    pub action: &'static str,
    #[schema(value_type = schemas::PlanId)]
    pub plan_id: PlanId,
    /// The subscription concerned, for seat and purchase entries; `null` for plan changes.
    #[schema(required, format = Uuid)]
    pub subscription_id: Option<String>,
    /// Who made the change: `admin`, `customer:<customer_id>` (purchases), `anonymous`
    /// (cancellations, until customers are authenticated), `reconciler` (recovery) or
    /// `seed` (the demo plans seeded at start-up).
    #[schema(examples("customer:cus_42"))]
    pub actor: String,
    /// The id of the request (or job) the change was made under.
    pub trace_id: String,
    /// `seats_left` before the change (0 for `plan_created`).
    pub seats_left_before: u32,
    /// `seats_left` after the change.
    pub seats_left_after: u32,
    /// Why, when there is more to say (a decline reason, the old and new name or
    /// capacity); else `null`.
    #[schema(required)]
    pub reason: Option<String>,
}

impl From<&AuditEntry> for AuditEntryBody {
    fn from(e: &AuditEntry) -> Self {
        Self {
            id: e.id.to_string(),
            seq: e.seq,
            at: e.at,
            action: e.action.as_str(),
            plan_id: e.plan_id,
            subscription_id: e.subscription_id.map(|s| s.to_string()),
            actor: e.actor.to_string(),
            trace_id: e.trace_id.to_string(),
            seats_left_before: e.seats_left_before,
            seats_left_after: e.seats_left_after,
            reason: e.reason.clone(),
        }
    }
}

/// A subscription as the API shows it; borrows from the domain value, so writing a
/// purchase's answer copies no string.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Subscription, description = "A customer's subscription to a plan.")]
pub struct SubscriptionBody<'a> {
    #[schema(value_type = schemas::SubscriptionId)]
    pub id: SubscriptionId,
    #[schema(value_type = schemas::PlanId)]
    pub plan_id: PlanId,
    #[schema(value_type = schemas::CustomerId)]
    pub customer_id: &'a str,
    #[schema(value_type = schemas::SubscriptionStatus)]
    pub status: &'static str,
    /// The payment provider's reference of the successful charge; `null` until there is
    /// one.
    #[schema(required, value_type = Option<String>)]
    pub payment_id: Option<&'a str>,
    /// The start of the current period, set when the charge succeeded; else `null`.
    #[serde(serialize_with = "timestamp::serialize_opt")]
    #[schema(required, value_type = Option<String>, format = DateTime)]
    pub current_period_start: Option<Timestamp>,
    /// The end of the current period (one month or one year after its start); else
    /// `null`.
    #[serde(serialize_with = "timestamp::serialize_opt")]
    #[schema(required, value_type = Option<String>, format = DateTime)]
    pub current_period_end: Option<Timestamp>,
    #[serde(serialize_with = "timestamp::serialize")]
    #[schema(value_type = schemas::Timestamp)]
    pub created_at: Timestamp,
    /// When the subscription was cancelled; else `null`.
    #[serde(serialize_with = "timestamp::serialize_opt")]
    #[schema(required, value_type = Option<String>, format = DateTime)]
    pub canceled_at: Option<Timestamp>,
}

impl<'a> From<&'a Subscription> for SubscriptionBody<'a> {
    fn from(s: &'a Subscription) -> Self {
        Self {
            id: s.id(),
            plan_id: s.plan_id(),
            customer_id: s.customer_id().as_str(),
            status: s.status().as_str(),
            payment_id: s.payment_id(),
            current_period_start: s.current_period_start(),
            current_period_end: s.current_period_end(),
            created_at: s.created_at(),
            canceled_at: s.canceled_at(),
        }
    }
}

/// `POST /api/plans`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreatePlan, description = "A new plan. Every field is required; unknown fields are rejected (400).")]
pub struct CreatePlanRequest {
    #[schema(value_type = schemas::PlanName)]
    pub name: String,
    #[serde(deserialize_with = "integer")]
    #[schema(value_type = schemas::Capacity)]
    pub capacity: i64,
    #[serde(deserialize_with = "integer")]
    #[schema(value_type = schemas::UnitAmount)]
    pub unit_amount: i64,
    #[schema(value_type = schemas::Currency)]
    pub currency: String,
    #[schema(value_type = schemas::Interval)]
    pub interval: String,
}

impl CreatePlanRequest {
    pub fn try_into_domain(self) -> Result<NewPlan, ApiError> {
        let mut f = Fields::default();
        let name = f.check("name", PlanName::parse(&self.name));
        let capacity = f.check("capacity", Capacity::new(self.capacity));
        let unit_amount = f.check("unit_amount", UnitAmount::new(self.unit_amount));
        let currency = f.check("currency", Currency::parse(&self.currency));
        let interval = f.check("interval", Interval::parse(&self.interval));
        let (Some(name), Some(capacity), Some(unit_amount), Some(currency), Some(interval)) =
            (name, capacity, unit_amount, currency, interval)
        else {
            return Err(f.into_error());
        };
        Ok(NewPlan {
            name,
            capacity,
            unit_amount,
            currency,
            interval,
        })
    }
}

/// `PATCH /api/plans/{id}`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(
    as = UpdatePlan,
    description = "A change to a plan: at least one of `name`, `capacity`, `status`; absent fields stay as they are. Unknown fields and fields sent as `null` are rejected (400)."
)]
pub struct UpdatePlanRequest {
    #[serde(default, deserialize_with = "not_null")]
    #[schema(value_type = schemas::PlanName)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "not_null_integer")]
    #[schema(value_type = schemas::Capacity)]
    pub capacity: Option<i64>,
    #[serde(default, deserialize_with = "not_null")]
    #[schema(value_type = schemas::PlanStatus)]
    pub status: Option<String>,
}

/// An optional field that, when present, may not be `null`.
fn not_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// [`integer`] for an optional field that, when present, may not be `null`.
fn not_null_integer<'de, D>(d: D) -> Result<Option<i64>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    integer(d).map(Some)
}

/// A JSON integer. JSON Schema counts a number with a zero fraction (`50.0`) as an
/// integer, and the document promises `type: integer`, so such a number is taken as the
/// integer it is; `50.5` is not. Integers beyond `i64` saturate, so that the field's
/// own range check names the range.
fn integer<'de, D>(d: D) -> Result<i64, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Integer;

    impl serde::de::Visitor<'_> for Integer {
        type Value = i64;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer")
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
            Ok(v)
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
            Ok(i64::try_from(v).unwrap_or(i64::MAX))
        }

        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
            if v.is_finite() && v.fract() == 0.0 {
                // `as` saturates.
                Ok(v as i64)
            } else {
                Err(E::invalid_type(serde::de::Unexpected::Float(v), &self))
            }
        }
    }

    d.deserialize_i64(Integer)
}

impl UpdatePlanRequest {
    pub fn try_into_domain(self) -> Result<PlanPatch, ApiError> {
        let mut f = Fields::default();
        let patch = PlanPatch {
            name: f.check_opt("name", self.name, |s| PlanName::parse(&s)),
            capacity: f.check_opt("capacity", self.capacity, Capacity::new),
            status: f.check_opt("status", self.status, |s| PlanStatus::parse(&s)),
        };
        f.finish()?;
        if patch.is_empty() {
            return Err(ApiError::invalid(vec![crate::problem::FieldError::new(
                "body",
                "give at least one of name, capacity, status",
            )]));
        }
        Ok(patch)
    }
}

/// `POST /api/subscriptions/purchase`. Borrows from the body where it can (strings
/// without escapes), since each field is validated into a domain value at once.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(
    description = "What to buy, for whom, paid how. Every field is required; unknown fields are rejected (400). The three fields form the request's fingerprint: reusing one of the customer's `Idempotency-Key`s with another `plan_id` or `payment_method` answers 422 `idempotency_key_reused`."
)]
pub struct PurchaseRequest<'a> {
    #[serde(borrow)]
    #[schema(value_type = schemas::PlanId)]
    pub plan_id: Cow<'a, str>,
    #[serde(borrow)]
    #[schema(value_type = schemas::CustomerId)]
    pub customer_id: Cow<'a, str>,
    #[serde(borrow)]
    #[schema(value_type = schemas::PaymentMethod)]
    pub payment_method: Cow<'a, str>,
}

pub struct ValidPurchase {
    pub plan_id: PlanId,
    pub customer_id: CustomerId,
    pub payment_method: PaymentMethod,
}

impl PurchaseRequest<'_> {
    pub fn try_into_domain(self) -> Result<ValidPurchase, ApiError> {
        let mut f = Fields::default();
        let plan_id = f.check("plan_id", self.plan_id.parse::<PlanId>());
        let customer_id = f.check("customer_id", CustomerId::parse(&self.customer_id));
        let payment_method = f.check("payment_method", PaymentMethod::parse(&self.payment_method));
        let (Some(plan_id), Some(customer_id), Some(payment_method)) =
            (plan_id, customer_id, payment_method)
        else {
            return Err(f.into_error());
        };
        Ok(ValidPurchase {
            plan_id,
            customer_id,
            payment_method,
        })
    }
}

mod access;
mod checkout;
pub use access::*;
pub use checkout::*;
