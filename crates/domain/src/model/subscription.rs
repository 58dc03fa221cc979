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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
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
