//! Turning rows back into domain values. Anything that does not parse is corrupt data,
//! reported as an internal error, never silently patched.

use chrono::{DateTime, Utc};
use seatkeeper_domain::{
    ApiKey, ApiKeyId, AuditAction, AuditEntry, AuditEntryId, Capacity, CheckoutSession,
    CheckoutSessionId, CheckoutStatus, Currency, CustomerId, ExpiryCause, Fingerprint,
    IdempotencyKey, IdempotencyRecord, Interval, KeyLock, KeyName, KeyState, LatePayment,
    LockToken, PaymentIntentRef, PaymentMethod, Plan, PlanId, PlanName, PlanStatus,
    PurchaseOutcome, RecoveryPoint, Role, SecretHash, StoredApiKey, StoredCheckoutSession,
    StoredIdempotencyRecord, StoredPlan, StoredSubscription, Subscription, SubscriptionId,
    SubscriptionStatus, UnitAmount,
};
use sqlx::{postgres::PgRow, Row};
use uuid::Uuid;

use crate::errors::corrupt;

type R<T> = Result<T, sqlx::Error>;

fn parsed<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> R<T> {
    r.map_err(|e| corrupt(format!("{what}: {e}")))
}

pub const PLAN_COLUMNS: &str =
    "id, name, capacity, seats_left, unit_amount, currency, \"interval\", status, created_at, seq";

pub fn plan(row: &PgRow) -> R<Plan> {
    let seats_left: i32 = row.try_get("seats_left")?;
    let seq: i64 = row.try_get("seq")?;
    let stored = StoredPlan {
        id: PlanId::from_uuid(row.try_get("id")?),
        name: parsed("plan name", PlanName::parse(row.try_get("name")?))?,
        capacity: parsed(
            "capacity",
            Capacity::new(row.try_get::<i32, _>("capacity")?.into()),
        )?,
        seats_left: parsed("seats_left", u32::try_from(seats_left))?,
        unit_amount: parsed("unit_amount", UnitAmount::new(row.try_get("unit_amount")?))?,
        currency: parsed("currency", Currency::parse(row.try_get("currency")?))?,
        interval: parsed("interval", Interval::parse(row.try_get("interval")?))?,
        status: parsed("plan status", PlanStatus::parse(row.try_get("status")?))?,
        created_at: row.try_get("created_at")?,
        seq: parsed("seq", u64::try_from(seq))?,
    };
    parsed("plan", Plan::restore(stored))
}

pub const SUBSCRIPTION_COLUMNS: &str = "id, plan_id, customer_id, status, payment_method, payment_id, unit_amount, currency, \"interval\", idempotency_key, current_period_start, current_period_end, created_at, updated_at, canceled_at, failure_reason";

pub fn subscription_status(s: &str) -> R<SubscriptionStatus> {
    parsed("status", SubscriptionStatus::parse(s))
}

pub fn subscription(row: &PgRow) -> R<Subscription> {
    let key: Option<String> = row.try_get("idempotency_key")?;
    let stored = StoredSubscription {
        id: SubscriptionId::from_uuid(row.try_get("id")?),
        plan_id: PlanId::from_uuid(row.try_get("plan_id")?),
        customer_id: parsed(
            "customer_id",
            CustomerId::parse(row.try_get("customer_id")?),
        )?,
        status: subscription_status(row.try_get("status")?)?,
        payment_method: parsed(
            "payment_method",
            PaymentMethod::parse(row.try_get("payment_method")?),
        )?,
        payment_id: row.try_get("payment_id")?,
        unit_amount: parsed("unit_amount", UnitAmount::new(row.try_get("unit_amount")?))?,
        currency: parsed("currency", Currency::parse(row.try_get("currency")?))?,
        interval: parsed("interval", Interval::parse(row.try_get("interval")?))?,
        idempotency_key: key
            .map(|k| parsed("idempotency_key", IdempotencyKey::parse(&k)))
            .transpose()?,
        current_period_start: row.try_get("current_period_start")?,
        current_period_end: row.try_get("current_period_end")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        canceled_at: row.try_get("canceled_at")?,
        failure_reason: row.try_get("failure_reason")?,
    };
    parsed("subscription", Subscription::restore(stored))
}

pub const AUDIT_COLUMNS: &str = "plan_id, seq, id, at, action, subscription_id, actor, trace_id, seats_left_before, seats_left_after, reason";

fn audit_action(s: &str) -> R<AuditAction> {
    AuditAction::parse(s).ok_or_else(|| corrupt(format!("audit action '{s}'")))
}

pub fn audit_entry(row: &PgRow) -> R<AuditEntry> {
    let seq: i64 = row.try_get("seq")?;
    let before: i32 = row.try_get("seats_left_before")?;
    let after: i32 = row.try_get("seats_left_after")?;
    Ok(AuditEntry {
        id: AuditEntryId::from_uuid(row.try_get("id")?),
        plan_id: PlanId::from_uuid(row.try_get("plan_id")?),
        seq: parsed("seq", u64::try_from(seq))?,
        at: row.try_get("at")?,
        action: audit_action(row.try_get("action")?)?,
        subscription_id: row
            .try_get::<Option<Uuid>, _>("subscription_id")?
            .map(SubscriptionId::from_uuid),
        actor: row.try_get::<String, _>("actor")?.into(),
        trace_id: row.try_get::<String, _>("trace_id")?.into(),
        seats_left_before: parsed("seats_left_before", u32::try_from(before))?,
        seats_left_after: parsed("seats_left_after", u32::try_from(after))?,
        reason: row.try_get("reason")?,
    })
}

pub const KEY_COLUMNS: &str = "scope, key, fingerprint, state, lock_owner, lock_until, recovery_subscription_id, outcome, outcome_request_id, finished_at, created_at, expires_at";

pub fn key_record(row: &PgRow) -> R<IdempotencyRecord> {
    let state: &str = row.try_get("state")?;
    let state = match state {
        "open" => {
            let owner: Option<Uuid> = row.try_get("lock_owner")?;
            let until: Option<DateTime<Utc>> = row.try_get("lock_until")?;
            KeyState::Open {
                lock: owner.zip(until).map(|(owner, until)| KeyLock {
                    owner: LockToken::from_uuid(owner),
                    until,
                }),
            }
        }
        "finished" => {
            let outcome: serde_json::Value = row.try_get("outcome")?;
            let outcome: PurchaseOutcome = parsed("outcome", serde_json::from_value(outcome))?;
            KeyState::Finished {
                outcome: Box::new(outcome),
                request_id: row.try_get("outcome_request_id")?,
                finished_at: row
                    .try_get::<Option<DateTime<Utc>>, _>("finished_at")?
                    .ok_or_else(|| corrupt("a finished key without finished_at"))?,
            }
        }
        other => return Err(corrupt(format!("key state '{other}'"))),
    };
    let recovery = match row.try_get::<Option<Uuid>, _>("recovery_subscription_id")? {
        Some(id) => RecoveryPoint::Reserved {
            subscription_id: SubscriptionId::from_uuid(id),
        },
        None => RecoveryPoint::Started,
    };
    let stored = StoredIdempotencyRecord {
        scope: parsed("scope", CustomerId::parse(row.try_get("scope")?))?,
        key: parsed("key", IdempotencyKey::parse(row.try_get("key")?))?,
        fingerprint: Fingerprint::from_stored(row.try_get("fingerprint")?),
        state,
        recovery,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
    };
    parsed("idempotency record", IdempotencyRecord::restore(stored))
}

pub const API_KEY_COLUMNS: &str =
    "id, name, role, shown_prefix, secret_hash, created_at, last_used_at, revoked_at";

pub fn api_key(row: &PgRow) -> R<ApiKey> {
    let stored = StoredApiKey {
        id: ApiKeyId::from_uuid(row.try_get("id")?),
        name: parsed("key name", KeyName::parse(row.try_get("name")?))?,
        role: parsed("role", Role::parse(row.try_get("role")?))?,
        shown_prefix: row.try_get("shown_prefix")?,
        secret_hash: parsed(
            "secret_hash",
            SecretHash::parse(row.try_get("secret_hash")?),
        )?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    };
    parsed("API key", ApiKey::restore(stored))
}

pub const CHECKOUT_COLUMNS: &str = "id, plan_id, customer_id, subscription_id, idempotency_key, fingerprint, amount, currency, status, payment_intent_id, client_secret, payment_error, intent_closed, late_payment_id, late_payment_refunded, created_at, expires_at, updated_at, ended_at, expiry, check_at";

pub fn checkout_session(row: &PgRow) -> R<CheckoutSession> {
    let intent_id: Option<String> = row.try_get("payment_intent_id")?;
    let secret: Option<String> = row.try_get("client_secret")?;
    let late_id: Option<String> = row.try_get("late_payment_id")?;
    let refunded: Option<bool> = row.try_get("late_payment_refunded")?;
    let expiry: Option<&str> = row.try_get("expiry")?;
    let stored = StoredCheckoutSession {
        id: CheckoutSessionId::from_uuid(row.try_get("id")?),
        plan_id: PlanId::from_uuid(row.try_get("plan_id")?),
        customer_id: parsed(
            "customer_id",
            CustomerId::parse(row.try_get("customer_id")?),
        )?,
        subscription_id: SubscriptionId::from_uuid(row.try_get("subscription_id")?),
        idempotency_key: parsed(
            "idempotency_key",
            IdempotencyKey::parse(row.try_get("idempotency_key")?),
        )?,
        fingerprint: Fingerprint::from_stored(row.try_get("fingerprint")?),
        amount: parsed("amount", UnitAmount::new(row.try_get("amount")?))?,
        currency: parsed("currency", Currency::parse(row.try_get("currency")?))?,
        status: parsed(
            "checkout status",
            CheckoutStatus::parse(row.try_get("status")?),
        )?,
        payment_intent: match (intent_id, secret) {
            (Some(id), Some(client_secret)) => Some(PaymentIntentRef { id, client_secret }),
            (None, None) => None,
            _ => return Err(corrupt("a payment intent without its client secret")),
        },
        payment_error: row.try_get("payment_error")?,
        intent_closed: row.try_get("intent_closed")?,
        late_payment: match (late_id, refunded) {
            (Some(payment_id), Some(refunded)) => Some(LatePayment {
                payment_id,
                refunded,
            }),
            (None, None) => None,
            _ => return Err(corrupt("a late payment without its refund flag")),
        },
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        updated_at: row.try_get("updated_at")?,
        ended_at: row.try_get("ended_at")?,
        expiry: expiry
            .map(|e| parsed("expiry", ExpiryCause::parse(e)))
            .transpose()?,
        check_at: row.try_get("check_at")?,
    };
    parsed("checkout session", CheckoutSession::restore(stored))
}
