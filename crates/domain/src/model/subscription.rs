use serde::{Deserialize, Serialize};

use super::{
    Currency, CustomerId, IdempotencyKey, Interval, InvalidValue, PaymentMethod, Plan, PlanId,
    SubscriptionId, Timestamp, UnitAmount,
};

/// Where a subscription is in the purchase state machine (Stripe's vocabulary).
///
/// `incomplete` and `active` hold a seat; `incomplete_expired` and `canceled` do not.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantNames,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum SubscriptionStatus {
    /// A seat is reserved; the charge has not completed.
    Incomplete,
    /// Paid for; holds its seat.
    Active,
    /// The charge was declined or never happened; the seat was released.
    IncompleteExpired,
    /// Cancelled by the customer; the seat was released.
    Canceled,
}

impl SubscriptionStatus {
    /// Every status, in lifecycle order.
    pub const ALL: &'static [Self] = <Self as strum::VariantArray>::VARIANTS;

    /// The status named `s` (as [`SubscriptionStatus::as_str`] writes it).
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        InvalidValue::parse_name(s)
    }

    pub fn as_str(&self) -> &'static str {
        self.into()
    }

    pub fn holds_seat(&self) -> bool {
        matches!(self, Self::Incomplete | Self::Active)
    }
}

/// A customer's subscription to a plan.
///
/// The fields are private so that a `Subscription` that exists is consistent with its
/// status: made by [`Subscription::reserve`], read back from a store by
/// [`Subscription::restore`] (which checks it), and moved through the state machine only
/// by [`Subscription::activate`], [`Subscription::expire`] and [`Subscription::cancel`].
/// Its serde form is [`StoredSubscription`]'s, checked the same way when read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "StoredSubscription", into = "StoredSubscription")]
pub struct Subscription {
    id: SubscriptionId,
    plan_id: PlanId,
    customer_id: CustomerId,
    status: SubscriptionStatus,
    payment_method: PaymentMethod,
    payment_id: Option<String>,
    unit_amount: UnitAmount,
    currency: Currency,
    interval: Interval,
    idempotency_key: Option<IdempotencyKey>,
    current_period_start: Option<Timestamp>,
    current_period_end: Option<Timestamp>,
    created_at: Timestamp,
    updated_at: Timestamp,
    canceled_at: Option<Timestamp>,
    failure_reason: Option<String>,
}

/// A subscription as a store kept it, each field already parsed into its domain type; the
/// store hands it to [`Subscription::restore`], which checks it against its status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSubscription {
    pub id: SubscriptionId,
    pub plan_id: PlanId,
    pub customer_id: CustomerId,
    pub status: SubscriptionStatus,
    pub payment_method: PaymentMethod,
    /// The gateway's reference of the successful charge, once there is one.
    pub payment_id: Option<String>,
    pub unit_amount: UnitAmount,
    pub currency: Currency,
    pub interval: Interval,
    /// The idempotency key (scoped to `customer_id`) of the purchase that created it.
    pub idempotency_key: Option<IdempotencyKey>,
    pub current_period_start: Option<Timestamp>,
    pub current_period_end: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub canceled_at: Option<Timestamp>,
    /// Why the purchase failed, for `incomplete_expired` subscriptions.
    pub failure_reason: Option<String>,
}

impl From<&Subscription> for StoredSubscription {
    fn from(s: &Subscription) -> Self {
        s.clone().into()
    }
}

impl From<Subscription> for StoredSubscription {
    fn from(s: Subscription) -> Self {
        let Subscription {
            id,
            plan_id,
            customer_id,
            status,
            payment_method,
            payment_id,
            unit_amount,
            currency,
            interval,
            idempotency_key,
            current_period_start,
            current_period_end,
            created_at,
            updated_at,
            canceled_at,
            failure_reason,
        } = s;
        Self {
            id,
            plan_id,
            customer_id,
            status,
            payment_method,
            payment_id,
            unit_amount,
            currency,
            interval,
            idempotency_key,
            current_period_start,
            current_period_end,
            created_at,
            updated_at,
            canceled_at,
            failure_reason,
        }
    }
}

impl TryFrom<StoredSubscription> for Subscription {
    type Error = InvalidValue;
    fn try_from(stored: StoredSubscription) -> Result<Self, InvalidValue> {
        Self::restore(stored)
    }
}

impl Subscription {
    /// The `incomplete` subscription that a seat reservation on `plan` creates.
    pub fn reserve(
        id: SubscriptionId,
        plan: &Plan,
        customer_id: CustomerId,
        payment_method: PaymentMethod,
        idempotency_key: Option<IdempotencyKey>,
        now: Timestamp,
    ) -> Self {
        Self {
            id,
            plan_id: plan.id(),
            customer_id,
            status: SubscriptionStatus::Incomplete,
            payment_method,
            payment_id: None,
            unit_amount: plan.unit_amount(),
            currency: plan.currency(),
            interval: plan.interval(),
            idempotency_key,
            current_period_start: None,
            current_period_end: None,
            created_at: now,
            updated_at: now,
            canceled_at: None,
            failure_reason: None,
        }
    }

    /// The subscription a store kept, if its fields agree with its status:
    ///
    /// | status | must have | must not have |
    /// |---|---|---|
    /// | `incomplete` | | a payment, a period, `canceled_at`, a failure reason |
    /// | `active` | a payment, a period | `canceled_at`, a failure reason |
    /// | `incomplete_expired` | a failure reason | a payment, a period, `canceled_at` |
    /// | `canceled` | a payment, a period, `canceled_at` | a failure reason |
    ///
    /// (Only an active subscription is cancelled, and a charge that lands after its
    /// purchase was given up is refunded, never recorded on it.) Anything else is corrupt
    /// data, which the store reports rather than patches.
    pub fn restore(stored: StoredSubscription) -> Result<Self, InvalidValue> {
        use SubscriptionStatus::*;
        let status = stored.status;
        let period = match (stored.current_period_start, stored.current_period_end) {
            (Some(start), Some(end)) if start <= end => true,
            (None, None) => false,
            _ => {
                return Err(InvalidValue::new(
                    "a subscription's period has both ends, in order, or neither",
                ))
            }
        };
        let has = [
            ("a payment_id", stored.payment_id.is_some()),
            ("a period", period),
            ("canceled_at", stored.canceled_at.is_some()),
            ("a failure_reason", stored.failure_reason.is_some()),
        ];
        // Per status, whether each of `has` must be there (true) or must not (false).
        let wanted = match status {
            Incomplete => [false, false, false, false],
            Active => [true, true, false, false],
            IncompleteExpired => [false, false, false, true],
            Canceled => [true, true, true, false],
        };
        if let Some(((what, present), _)) = has.iter().zip(wanted).find(|((_, h), w)| h != w) {
            let with = if *present { "with" } else { "without" };
            return Err(InvalidValue::new(format!(
                "a subscription in status `{}` {with} {what}",
                status.as_str()
            )));
        }
        let StoredSubscription {
            id,
            plan_id,
            customer_id,
            status,
            payment_method,
            payment_id,
            unit_amount,
            currency,
            interval,
            idempotency_key,
            current_period_start,
            current_period_end,
            created_at,
            updated_at,
            canceled_at,
            failure_reason,
        } = stored;
        Ok(Self {
            id,
            plan_id,
            customer_id,
            status,
            payment_method,
            payment_id,
            unit_amount,
            currency,
            interval,
            idempotency_key,
            current_period_start,
            current_period_end,
            created_at,
            updated_at,
            canceled_at,
            failure_reason,
        })
    }

    pub fn id(&self) -> SubscriptionId {
        self.id
    }

    pub fn plan_id(&self) -> PlanId {
        self.plan_id
    }

    pub fn customer_id(&self) -> &CustomerId {
        &self.customer_id
    }

    pub fn status(&self) -> SubscriptionStatus {
        self.status
    }

    pub fn payment_method(&self) -> &PaymentMethod {
        &self.payment_method
    }

    /// The gateway's reference of the successful charge, once there is one.
    pub fn payment_id(&self) -> Option<&str> {
        self.payment_id.as_deref()
    }

    pub fn unit_amount(&self) -> UnitAmount {
        self.unit_amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn interval(&self) -> Interval {
        self.interval
    }

    /// The idempotency key (scoped to the customer) of the purchase that created it.
    pub fn idempotency_key(&self) -> Option<&IdempotencyKey> {
        self.idempotency_key.as_ref()
    }

    pub fn current_period_start(&self) -> Option<Timestamp> {
        self.current_period_start
    }

    pub fn current_period_end(&self) -> Option<Timestamp> {
        self.current_period_end
    }

    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }

    pub fn canceled_at(&self) -> Option<Timestamp> {
        self.canceled_at
    }

    /// Why the purchase failed, for `incomplete_expired` subscriptions.
    pub fn failure_reason(&self) -> Option<&str> {
        self.failure_reason.as_deref()
    }

    /// The idempotency key sent to the payment provider for this subscription's charge.
    /// Derived from the subscription id, never from the client's key, so that every
    /// retry of the charge step (by the client or the reconciler) is the same charge.
    pub fn provider_key(&self) -> String {
        provider_key_for(self.id)
    }

    /// Marks the charge as succeeded: `active`, with the payment reference and the first period.
    pub fn activate(&mut self, payment_id: String, now: Timestamp) {
        self.status = SubscriptionStatus::Active;
        self.payment_id = Some(payment_id);
        self.current_period_start = Some(now);
        self.current_period_end = Some(self.interval.period_end(now));
        self.updated_at = now;
    }

    /// Marks the charge as failed: `incomplete_expired`, seat released by the caller.
    pub fn expire(&mut self, reason: String, now: Timestamp) {
        self.status = SubscriptionStatus::IncompleteExpired;
        self.failure_reason = Some(reason);
        self.updated_at = now;
    }

    /// Marks the subscription as cancelled, seat released by the caller.
    pub fn cancel(&mut self, now: Timestamp) {
        self.status = SubscriptionStatus::Canceled;
        self.canceled_at = Some(now);
        self.updated_at = now;
    }
}

/// The provider idempotency key of the subscription with this id.
pub fn provider_key_for(id: SubscriptionId) -> String {
    const PREFIX: &str = "seatkeeper-sub-";
    let mut key = String::with_capacity(PREFIX.len() + uuid::fmt::Hyphenated::LENGTH);
    key.push_str(PREFIX);
    key.push_str(
        id.as_uuid()
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_provider_key_is_the_prefix_and_the_hyphenated_subscription_id() {
        // Retries after an upgrade must send the same key as before it.
        let id: SubscriptionId = "0192f4a2-7c3e-7d7e-8f00-0123456789ab".parse().unwrap();
        assert_eq!(
            provider_key_for(id),
            "seatkeeper-sub-0192f4a2-7c3e-7d7e-8f00-0123456789ab"
        );
        let fresh = SubscriptionId::generate();
        assert_eq!(provider_key_for(fresh), format!("seatkeeper-sub-{fresh}"));
    }

    #[test]
    fn every_status_parses_from_the_name_it_is_written_as_and_nothing_else_does() {
        for &status in SubscriptionStatus::ALL {
            assert_eq!(SubscriptionStatus::parse(status.as_str()).unwrap(), status);
            // The name the API and the stores use is serde's too.
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        for bad in ["", "Active", "cancelled", "expired"] {
            assert!(SubscriptionStatus::parse(bad).is_err(), "{bad}");
        }
    }
}
