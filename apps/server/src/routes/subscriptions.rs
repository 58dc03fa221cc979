//! `/api/subscriptions`: the purchase, reading a subscription, cancelling it.

use std::time::Instant;

use actix_web::{
    get,
    http::header::{self, HeaderName, HeaderValue},
    post, web, HttpRequest, HttpResponse,
};
use seatkeeper_domain::{
    service::{PurchaseCommand, PurchaseReceipt},
    Action, PurchaseOutcome, Reach, SubscriptionId,
};

use super::AppState;
use crate::{
    auth::Caller,
    dto::{PurchaseRequest, SubscriptionBody},
    errors::{no_such_subscription, plan_not_found, subscription_not_found},
    extract::{idempotency_key, json_body},
    openapi::{responses::*, schemas},
    problem::{ApiError, Code},
    request_id::RequestId,
};

fn subscription_id(raw: &str) -> Result<SubscriptionId, ApiError> {
    raw.parse().map_err(|_| no_such_subscription(raw))
}

/// Buy a seat
///
/// Buys one seat of a plan for a customer, exactly once per `(customer_id,
/// Idempotency-Key)`: see "The purchase flow" and "Idempotency" above. Needs a
/// credential (see "Who may call what"); a customer session buys for its own customer
/// only (403 `forbidden` for another `customer_id`, changing nothing).
///
/// Checks run in this order: credential (401, 403), body size (413), `Idempotency-Key` (400
/// `idempotency_key_missing` / `idempotency_key_invalid`), `Content-Type` (415), JSON
/// and fields (400 `invalid_request`), then the key claim (409
/// `idempotency_key_in_use`, 422 `idempotency_key_reused`, or a replay) and the
/// purchase itself.
///
/// Definitive outcomes (201, 402, 404, 409 `plan_sold_out`, 409 `plan_inactive`) are
/// stored on the key and replayed, byte for byte and with `Idempotent-Replayed: true`,
/// to any retry with the same key and request within 24 hours. `Idempotent-Replayed`
/// is absent from first answers. A replayed 201 shows the subscription as it was when
/// the purchase completed.
///
/// With the simulated payment gateway, `pm_card_visa`, `pm_card_mastercard` and
/// `pm_card_amex` succeed; `pm_card_chargeDeclined` and `pm_card_insufficientFunds`
/// are declined; `pm_card_timeout` charges but loses the answer (503, and the retry
/// with the same key completes the purchase); any other payment method is declined.
#[utoipa::path(
    operation_id = "purchaseSubscription",
    tag = "subscriptions",
    security(("apiKey" = []), ("customerSession" = []), ("adminToken" = [])),
    params(
        ("Idempotency-Key" = String, Header,
            description = "A unique value per purchase, resent unchanged on every retry of that purchase: 1 to 255 printable ASCII characters (0x20 to 0x7E), sent exactly once. HTTP drops the spaces around a header value, so a key neither starts nor ends with one (` k1 ` arrives as `k1`, and a key of spaces as an empty one). Scoped to the `customer_id` of the body and remembered for 24 hours. Missing: 400 `idempotency_key_missing`; otherwise invalid: 400 `idempotency_key_invalid`.",
            min_length = 1, max_length = 255, pattern = r"^[\x21-\x7E](?:[\x20-\x7E]{0,253}[\x21-\x7E])?$", example = "order-2026-0001"),
    ),
    request_body(
        content = PurchaseRequest,
        example = json!({"plan_id": "0190f5c2-8a4b-7c3d-9e1f-2a3b4c5d6e7f", "customer_id": "cus_42", "payment_method": "pm_card_visa"}),
    ),
    responses(
        (status = 201, description = "Charged: the subscription is `active` with its first period. Also the replay of such an answer (with `Idempotent-Replayed: true`).",
            body = SubscriptionBody,
            headers(
                ("Location" = String, description = "The path of the created subscription (`/api/subscriptions/{id}`)."),
                ("Idempotent-Replayed" = String, description = "`true` when the response is the stored answer of an earlier request with the same `Idempotency-Key`; absent from first answers."),
            ),
            example = json!({
                "id": "0190f5d0-1b2c-7d3e-8f40-5a6b7c8d9e0f", "plan_id": "0190f5c2-8a4b-7c3d-9e1f-2a3b4c5d6e7f",
                "customer_id": "cus_42", "status": "active", "payment_id": "pi_sim_6f1c2a9e4b7d4c0e9a3b5d7f1e2c4a6b",
                "current_period_start": "2026-02-01T12:00:00.250Z", "current_period_end": "2026-03-01T12:00:00.250Z",
                "created_at": "2026-02-01T12:00:00.200Z", "canceled_at": null
            }),
        ),
        (status = 400, response = PurchaseBadRequest),
        (status = 401, response = Unauthorized),
        (status = 402, response = PaymentDeclined),
        (status = 403, response = Forbidden),
        (status = 404, response = PurchasePlanNotFound),
        (status = 409, response = PurchaseConflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = IdempotencyKeyReused),
        (status = 500, response = Internal),
        (status = 503, response = PurchaseUnavailable),
    ),
)]
#[post("/api/subscriptions/purchase")]
pub async fn purchase(
    caller: Caller,
    req: HttpRequest,
    body: web::Bytes,
    rid: RequestId,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let reach = caller.may(Action::Purchase)?;
    let key = idempotency_key(&req)?;
    let input = json_body::<PurchaseRequest>(&req, &body)?.try_into_domain()?;
    if !reach.covers(&input.customer_id) {
        return Err(ApiError::new(
            Code::Forbidden,
            "a customer session may buy only for its own customer (customer_id)",
        ));
    }
    let cmd = PurchaseCommand {
        customer_id: input.customer_id,
        key,
        plan_id: input.plan_id,
        payment_method: input.payment_method,
        request_id: rid.0,
        actor: caller.0.actor(),
    };
    // The command owns what the purchase needs: the body (a slice of the connection's
    // read buffer) is let go before the purchase waits on its payment.
    drop(body);
    let result = state.purchases.purchase(&cmd).await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    let (outcome, replayed) = match &result {
        Ok(receipt) => (receipt.outcome.kind(), receipt.replayed),
        Err(_) => ("error", false),
    };
    metrics::counter!(
        "seatkeeper_purchases_total",
        "outcome" => outcome,
        "replayed" => if replayed { "true" } else { "false" }
    )
    .increment(1);
    match &result {
        Ok(receipt) => tracing::info!(
            plan_id = %cmd.plan_id,
            outcome = receipt.outcome.kind(),
            replayed = receipt.replayed,
            duration_ms = elapsed_ms,
            "purchase"
        ),
        Err(e) => tracing::info!(
            plan_id = %cmd.plan_id,
            outcome = "error",
            error = %e,
            duration_ms = elapsed_ms,
            "purchase"
        ),
    }
    Ok(render(&result?))
}

/// The response a purchase outcome stands for. Deterministic, so that a replay is
/// byte-identical to the first answer: it quotes the request id of the request that
/// produced the outcome.
fn render(receipt: &PurchaseReceipt) -> HttpResponse {
    let mut res = match &receipt.outcome {
        PurchaseOutcome::Created { subscription } => {
            let mut body = Vec::with_capacity(512);
            serde_json::to_writer(&mut body, &SubscriptionBody::from(subscription))
                .expect("a subscription serializes into a Vec");
            HttpResponse::Created()
                .insert_header((
                    header::LOCATION,
                    [
                        "/api/subscriptions/",
                        subscription
                            .id()
                            .as_uuid()
                            .hyphenated()
                            .encode_lower(&mut uuid::Uuid::encode_buffer()),
                    ]
                    .concat(),
                ))
                .insert_header(header::ContentType::json())
                .body(body)
        }
        PurchaseOutcome::Declined {
            subscription,
            reason,
        } => ApiError::new(
            Code::PaymentDeclined,
            format!("the payment was declined ({reason}); the seat was released"),
        )
        .with_plan(subscription.plan_id())
        .with_subscription(subscription.id())
        .to_response(&receipt.request_id),
        PurchaseOutcome::SoldOut { plan_id } => ApiError::new(
            Code::PlanSoldOut,
            format!("plan '{plan_id}' has no seats left"),
        )
        .with_plan(plan_id)
        .to_response(&receipt.request_id),
        PurchaseOutcome::PlanNotFound { plan_id } => {
            plan_not_found(*plan_id).to_response(&receipt.request_id)
        }
        PurchaseOutcome::PlanInactive { plan_id } => ApiError::new(
            Code::PlanInactive,
            format!("plan '{plan_id}' is archived and sells no seats"),
        )
        .with_plan(plan_id)
        .to_response(&receipt.request_id),
    };
    if receipt.replayed {
        res.headers_mut().insert(
            HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
    }
    res
}

/// Read a subscription
///
/// The subscription with its current status. An id that is not a UUID, and another
/// customer's subscription read with a customer session, answer 404
/// `subscription_not_found` like an unknown one.
#[utoipa::path(
    operation_id = "getSubscription",
    tag = "subscriptions",
    security(("apiKey" = []), ("customerSession" = []), ("adminToken" = [])),
    params(("id" = schemas::SubscriptionId, Path, description = "The subscription's id (a UUID). Any other value answers 404 `subscription_not_found`.", example = "0190f5d0-1b2c-7d3e-8f40-5a6b7c8d9e0f")),
    responses(
        (status = 200, description = "The subscription.", body = SubscriptionBody),
        (status = 401, response = Unauthorized),
        (status = 404, response = SubscriptionNotFound),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[get("/api/subscriptions/{id}")]
pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let reach = caller.may(Action::ManageSubscriptions)?;
    let sub = state.subscriptions.get(subscription_id(&path)?).await?;
    if !reach.covers(sub.customer_id()) {
        // Answered exactly as an unknown id is: another customer's is not to be known.
        return Err(subscription_not_found(sub.id()));
    }
    Ok(HttpResponse::Ok().json(SubscriptionBody::from(&sub)))
}

/// Cancel a subscription
///
/// Cancels an `active` subscription: its status becomes `canceled`, `canceled_at` is
/// set, its seat is released (`seats_left + 1`) and a `subscription_canceled` audit
/// entry naming the caller is written, atomically. Idempotent without a key:
/// cancelling a `canceled` subscription changes nothing and answers 200 with it again.
/// `incomplete` and `incomplete_expired` subscriptions cannot be cancelled (409
/// `subscription_not_active`). Another customer's subscription, with a customer
/// session, answers 404 like an unknown one and is left alone. No request body is read.
#[utoipa::path(
    operation_id = "cancelSubscription",
    tag = "subscriptions",
    security(("apiKey" = []), ("customerSession" = []), ("adminToken" = [])),
    params(("id" = schemas::SubscriptionId, Path, description = "The subscription's id (a UUID). Any other value answers 404 `subscription_not_found`.", example = "0190f5d0-1b2c-7d3e-8f40-5a6b7c8d9e0f")),
    responses(
        (status = 200, description = "The subscription, now (or already) `canceled`.", body = SubscriptionBody,
            example = json!({
                "id": "0190f5d0-1b2c-7d3e-8f40-5a6b7c8d9e0f", "plan_id": "0190f5c2-8a4b-7c3d-9e1f-2a3b4c5d6e7f",
                "customer_id": "cus_42", "status": "canceled", "payment_id": "pi_sim_6f1c2a9e4b7d4c0e9a3b5d7f1e2c4a6b",
                "current_period_start": "2026-02-01T12:00:00.250Z", "current_period_end": "2026-03-01T12:00:00.250Z",
                "created_at": "2026-02-01T12:00:00.200Z", "canceled_at": "2026-02-10T08:15:00.010Z"
            }),
        ),
        (status = 401, response = Unauthorized),
        (status = 404, response = SubscriptionNotFound),
        (status = 409, response = SubscriptionNotActive),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[post("/api/subscriptions/{id}/cancel")]
pub async fn cancel(
    caller: Caller,
    rid: RequestId,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let reach = caller.may(Action::ManageSubscriptions)?;
    let id = subscription_id(&path)?;
    // A subscription never changes customer: once it is found to be the caller's, it
    // stays theirs until the cancellation.
    if let Reach::Only(_) = reach {
        let sub = state.subscriptions.get(id).await?;
        if !reach.covers(sub.customer_id()) {
            return Err(subscription_not_found(id));
        }
    }
    let done = state
        .subscriptions
        .cancel(id, &caller.0.audit_context(rid.0))
        .await?;
    Ok(HttpResponse::Ok().json(SubscriptionBody::from(&done.subscription)))
}
