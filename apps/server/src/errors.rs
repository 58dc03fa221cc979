//! Domain errors mapped, once, to problem responses.

use seatkeeper_domain::{
    ports::{CancelError, StoreError, UpdatePlanError},
    service::{PlanQueryError, PurchaseError, SubscriptionQueryError},
    PlanId, SubscriptionId,
};

use crate::problem::{ApiError, Code};

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(source) => {
                tracing::warn!(error = %seatkeeper_domain::error_chain(&*source), "store unavailable");
                store_unavailable()
            }
            e @ StoreError::Internal(_) => ApiError::internal(e),
        }
    }
}

impl From<PlanQueryError> for ApiError {
    fn from(e: PlanQueryError) -> Self {
        match e {
            PlanQueryError::NotFound(id) => plan_not_found(id),
            PlanQueryError::Store(e) => e.into(),
        }
    }
}

impl From<SubscriptionQueryError> for ApiError {
    fn from(e: SubscriptionQueryError) -> Self {
        match e {
            SubscriptionQueryError::NotFound(id) => subscription_not_found(id),
            SubscriptionQueryError::Store(e) => e.into(),
        }
    }
}

impl From<UpdatePlanError> for ApiError {
    fn from(e: UpdatePlanError) -> Self {
        match e {
            UpdatePlanError::NotFound(id) => plan_not_found(id),
            UpdatePlanError::CapacityBelowHeld { held, requested } => ApiError::new(
                Code::CapacityBelowHeld,
                format!("capacity {requested} is below the {held} seats that subscriptions hold"),
            ),
            UpdatePlanError::Store(e) => e.into(),
        }
    }
}

impl From<CancelError> for ApiError {
    fn from(e: CancelError) -> Self {
        match e {
            CancelError::NotFound(id) => subscription_not_found(id),
            CancelError::NotActive(status) => ApiError::new(
                Code::SubscriptionNotActive,
                format!(
                    "the subscription is {} and only active subscriptions can be cancelled",
                    status.as_str()
                ),
            ),
            CancelError::Store(e) => e.into(),
        }
    }
}

impl From<PurchaseError> for ApiError {
    fn from(e: PurchaseError) -> Self {
        match e {
            PurchaseError::KeyInUse => ApiError::new(
                Code::IdempotencyKeyInUse,
                "another request with this Idempotency-Key is still running; retry once it has finished",
            ),
            PurchaseError::KeyReused => ApiError::new(
                Code::IdempotencyKeyReused,
                "this Idempotency-Key was already used for a different request; use a new key for a new purchase",
            ),
            PurchaseError::PaymentUnavailable(_) => ApiError::new(
                Code::PaymentUnavailable,
                "the payment provider did not give an answer; retry with the same Idempotency-Key, which never charges twice",
            ),
            PurchaseError::Store(e) => e.into(),
        }
    }
}

/// 503 when the store cannot be reached.
pub fn store_unavailable() -> ApiError {
    ApiError::new(
        Code::StoreUnavailable,
        "the store cannot be reached; nothing was changed, retry later",
    )
}

/// 404 for a plan id that is well formed but unknown.
pub fn plan_not_found(id: PlanId) -> ApiError {
    no_such_plan(&id.to_string()).with_plan(id)
}

/// 404 for whatever a client wrote where a plan id belongs.
pub fn no_such_plan(raw: &str) -> ApiError {
    ApiError::new(
        Code::PlanNotFound,
        format!("there is no plan with id '{raw}'"),
    )
}

/// 404 for a subscription id that is well formed but unknown.
pub fn subscription_not_found(id: SubscriptionId) -> ApiError {
    no_such_subscription(&id.to_string()).with_subscription(id)
}

/// 404 for whatever a client wrote where a subscription id belongs.
pub fn no_such_subscription(raw: &str) -> ApiError {
    ApiError::new(
        Code::SubscriptionNotFound,
        format!("there is no subscription with id '{raw}'"),
    )
}
