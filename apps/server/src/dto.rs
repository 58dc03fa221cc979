//! The JSON shapes of the API, and their conversion to and from domain values.

use std::borrow::Cow;

use seatkeeper_domain::{
    AuditEntry, Capacity, Currency, CustomerId, Interval, NewPlan, PaymentMethod, Plan, PlanId,
    PlanName, PlanPatch, PlanStats, PlanStatus, Subscription, SubscriptionId, Timestamp,
    UnitAmount,
};
use serde::{Deserialize, Serialize};

use crate::{extract::Fields, problem::ApiError, timestamp};

/// `{"data": [...], "next_cursor": ...}`
#[derive(Debug, Serialize)]
pub struct List<T> {
    pub data: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct PlanBody {
    pub id: PlanId,
    pub name: String,
    pub capacity: u32,
    pub seats_left: u32,
    pub unit_amount: i64,
    pub currency: String,
    pub interval: &'static str,
    pub status: &'static str,
    #[serde(serialize_with = "timestamp::serialize")]
    pub created_at: Timestamp,
}

impl From<&Plan> for PlanBody {
    fn from(p: &Plan) -> Self {
        Self {
            id: p.id,
            name: p.name.as_str().to_owned(),
            capacity: p.capacity.get(),
            seats_left: p.seats_left,
            unit_amount: p.unit_amount.get(),
            currency: p.currency.to_string(),
            interval: p.interval.as_str(),
            status: p.status.as_str(),
            created_at: p.created_at,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct StatsBody {
    pub plan_id: PlanId,
    pub capacity: u32,
    pub seats_left: u32,
    pub incomplete: u64,
    pub active: u64,
    pub canceled: u64,
    pub incomplete_expired: u64,
    pub sold_out: bool,
}

impl From<PlanStats> for StatsBody {
    fn from(s: PlanStats) -> Self {
        Self {
            plan_id: s.plan_id,
            capacity: s.capacity,
            seats_left: s.seats_left,
            incomplete: s.incomplete,
            active: s.active,
            canceled: s.canceled,
            incomplete_expired: s.incomplete_expired,
            sold_out: s.sold_out,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct AuditEntryBody {
    pub id: String,
    pub seq: u64,
    #[serde(serialize_with = "timestamp::serialize")]
    pub at: Timestamp,
    pub action: &'static str,
    pub plan_id: PlanId,
    pub subscription_id: Option<String>,
    pub actor: String,
    pub trace_id: String,
    pub seats_left_before: u32,
    pub seats_left_after: u32,
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
#[derive(Debug, Serialize)]
pub struct SubscriptionBody<'a> {
    pub id: SubscriptionId,
    pub plan_id: PlanId,
    pub customer_id: &'a str,
    pub status: &'static str,
    pub payment_id: Option<&'a str>,
    #[serde(serialize_with = "timestamp::serialize_opt")]
    pub current_period_start: Option<Timestamp>,
    #[serde(serialize_with = "timestamp::serialize_opt")]
    pub current_period_end: Option<Timestamp>,
    #[serde(serialize_with = "timestamp::serialize")]
    pub created_at: Timestamp,
    #[serde(serialize_with = "timestamp::serialize_opt")]
    pub canceled_at: Option<Timestamp>,
}

impl SubscriptionBody<'_> {
    /// Appends this body as JSON to `out`: the same bytes as `serde_json::to_writer`
    /// with the derived `Serialize` (tested), written directly. The purchase answer is
    /// the hottest body; through serde_json every UUID and timestamp is scanned for
    /// characters to escape that they cannot contain (~8 % of an in-memory purchase's
    /// instructions). Only the free-form strings go through serde_json's escaping.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        fn string(out: &mut Vec<u8>, s: &str) {
            serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
        }
        fn uuid(out: &mut Vec<u8>, id: uuid::Uuid) {
            out.push(b'"');
            out.extend_from_slice(
                id.hyphenated()
                    .encode_lower(&mut uuid::Uuid::encode_buffer())
                    .as_bytes(),
            );
            out.push(b'"');
        }
        fn time(out: &mut Vec<u8>, t: Option<Timestamp>) {
            match t {
                Some(t) => {
                    out.push(b'"');
                    timestamp::write_to(&t, out);
                    out.push(b'"');
                }
                None => out.extend_from_slice(b"null"),
            }
        }
        out.extend_from_slice(b"{\"id\":");
        uuid(out, self.id.as_uuid());
        out.extend_from_slice(b",\"plan_id\":");
        uuid(out, self.plan_id.as_uuid());
        out.extend_from_slice(b",\"customer_id\":");
        string(out, self.customer_id);
        out.extend_from_slice(b",\"status\":");
        string(out, self.status);
        out.extend_from_slice(b",\"payment_id\":");
        match self.payment_id {
            Some(p) => string(out, p),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"current_period_start\":");
        time(out, self.current_period_start);
        out.extend_from_slice(b",\"current_period_end\":");
        time(out, self.current_period_end);
        out.extend_from_slice(b",\"created_at\":");
        time(out, Some(self.created_at));
        out.extend_from_slice(b",\"canceled_at\":");
        time(out, self.canceled_at);
        out.push(b'}');
    }
}

impl<'a> From<&'a Subscription> for SubscriptionBody<'a> {
    fn from(s: &'a Subscription) -> Self {
        Self {
            id: s.id,
            plan_id: s.plan_id,
            customer_id: s.customer_id.as_str(),
            status: s.status.as_str(),
            payment_id: s.payment_id.as_deref(),
            current_period_start: s.current_period_start,
            current_period_end: s.current_period_end,
            created_at: s.created_at,
            canceled_at: s.canceled_at,
        }
    }
}

/// `POST /api/plans`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePlanRequest {
    pub name: String,
    pub capacity: i64,
    pub unit_amount: i64,
    pub currency: String,
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdatePlanRequest {
    #[serde(default, deserialize_with = "not_null")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    pub capacity: Option<i64>,
    #[serde(default, deserialize_with = "not_null")]
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
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurchaseRequest<'a> {
    #[serde(borrow)]
    pub plan_id: Cow<'a, str>,
    #[serde(borrow)]
    pub customer_id: Cow<'a, str>,
    #[serde(borrow)]
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

#[cfg(test)]
mod tests {
    use seatkeeper_domain::{IdempotencyKey, NewPlan};

    use super::*;

    fn subscription(customer: &str) -> Subscription {
        let now = chrono::Utc::now();
        let plan = Plan::create(
            NewPlan {
                name: PlanName::parse("Starter").unwrap(),
                capacity: Capacity::new(10).unwrap(),
                unit_amount: UnitAmount::new(900).unwrap(),
                currency: Currency::parse("usd").unwrap(),
                interval: Interval::Month,
            },
            now,
        );
        Subscription::reserve(
            SubscriptionId::generate(),
            &plan,
            CustomerId::parse(customer).unwrap(),
            PaymentMethod::parse("pm_card_visa").unwrap(),
            Some(IdempotencyKey::parse("k1").unwrap()),
            now,
        )
    }

    #[test]
    fn the_written_subscription_body_is_byte_for_byte_what_serde_writes() {
        let incomplete = subscription("cus_1");
        let mut active = subscription("cus.a-b_c:9");
        active.activate("pi_sim_0123456789abcdef".into(), chrono::Utc::now());
        let mut canceled = active.clone();
        canceled.cancel(chrono::Utc::now() + chrono::Duration::nanoseconds(1_500));
        let mut expired = subscription("cus_2");
        expired.expire("card_declined: no".into(), chrono::Utc::now());
        // A payment id from a provider may hold anything JSON must escape.
        let mut odd = subscription("cus_3");
        odd.activate("pi_\"quoted\"\\ \u{1}\n é 😀".into(), chrono::Utc::now());
        for sub in [&incomplete, &active, &canceled, &expired, &odd] {
            let body = SubscriptionBody::from(sub);
            let mut written = Vec::new();
            body.write_json(&mut written);
            assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&body).unwrap()
            );
        }
    }
}
