//! Domain errors mapped, once, to problem responses.

use seatkeeper_domain::{
    ports::{CancelError, StoreError, UpdatePlanError},
    service::{CheckoutError, OpenError, PlanQueryError, PurchaseError, SubscriptionQueryError},
    CheckoutSessionId, OpenRefusal, PlanId, SeatRefusal, SubscriptionId,
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

/// The refusals and failures of opening a checkout session for `plan_id`.
pub fn open_error(e: OpenError, plan_id: PlanId) -> ApiError {
    match e {
        OpenError::Refused(OpenRefusal::KeyReused) => ApiError::new(
            Code::IdempotencyKeyReused,
            "this Idempotency-Key already opened a checkout session with a different request; use a new key for a new session",
        ),
        OpenError::Refused(OpenRefusal::TooManyOpen { open }) => ApiError::new(
            Code::CheckoutSessionOpen,
            format!(
                "the customer already has an open checkout session on this plan ('{open}'): pay it or expire it first"
            ),
        )
        .with_plan(plan_id),
        OpenError::Refused(OpenRefusal::Seat(SeatRefusal::PlanNotFound)) => plan_not_found(plan_id),
        OpenError::Refused(OpenRefusal::Seat(SeatRefusal::PlanInactive)) => ApiError::new(
            Code::PlanInactive,
            format!("plan '{plan_id}' is archived and sells no seats"),
        )
        .with_plan(plan_id),
        OpenError::Refused(OpenRefusal::Seat(SeatRefusal::SoldOut)) => ApiError::new(
            Code::PlanSoldOut,
            format!("plan '{plan_id}' has no seats left"),
        )
        .with_plan(plan_id),
        OpenError::PaymentUnavailable(e) => {
            tracing::warn!(error = %e, "the payment provider did not make the session's intent");
            ApiError::new(
                Code::PaymentUnavailable,
                "the seat is held but the payment provider did not answer; retry with the same Idempotency-Key to get the session with its payment",
            )
        }
        OpenError::Store(e) => e.into(),
    }
}

/// The failures of confirming or expiring session `id`.
pub fn checkout_error(e: CheckoutError, id: CheckoutSessionId) -> ApiError {
    match e {
        CheckoutError::NotFound => checkout_not_found(&id.to_string()),
        CheckoutError::NotOpen { status } => ApiError::new(
            Code::CheckoutSessionNotOpen,
            format!(
                "the checkout session is {} and no longer open",
                status.as_str()
            ),
        ),
        CheckoutError::PaymentUnavailable(why) => {
            tracing::warn!(error = %why, "the payment provider did not answer");
            ApiError::new(
                Code::PaymentUnavailable,
                "the payment provider did not give an answer; the session is unchanged: retry, or wait for the payment's outcome",
            )
        }
        CheckoutError::Conflict(r) => ApiError::new(Code::CheckoutSessionNotOpen, r.to_string()),
        CheckoutError::Store(e) => e.into(),
    }
}

/// 404 for whatever a client wrote where a checkout session id belongs.
pub fn checkout_not_found(raw: &str) -> ApiError {
    ApiError::new(
        Code::CheckoutSessionNotFound,
        format!("there is no checkout session with id '{raw}'"),
    )
}
