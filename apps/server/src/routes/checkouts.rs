//! `/api/checkout_sessions`: open a session (hold a seat and make its PaymentIntent),
//! read it, confirm it with a payment method, expire it.

use actix_web::{
    get,
    http::header::{HeaderName, HeaderValue},
    post, web, HttpRequest, HttpResponse,
};
use seatkeeper_domain::{
    service::{Confirmation, OpenCommand},
    Action, CheckoutSession, CheckoutSessionId, Reach,
};

use super::{created_at, AppState};
use crate::{
    auth::Caller,
    dto::{CheckoutBody, ConfirmRequest, ConfirmationBody, CreateCheckoutRequest},
    errors::{checkout_error, checkout_not_found, open_error},
    extract::{idempotency_key, json_body},
    openapi::{responses::*, schemas},
    problem::{ApiError, Code},
    request_id::RequestId,
};

fn session_id(raw: &str) -> Result<CheckoutSessionId, ApiError> {
    raw.parse().map_err(|_| checkout_not_found(raw))
}

/// The session, if the caller may see it: another customer's is answered as unknown.
async fn visible(
    state: &AppState,
    reach: Reach<'_>,
    id: CheckoutSessionId,
) -> Result<CheckoutSession, ApiError> {
    match state.checkouts.get(id).await? {
        Some(s) if reach.covers(s.customer_id()) => Ok(s),
        _ => Err(checkout_not_found(&id.to_string())),
    }
}

/// Open a checkout session
///
/// Holds one seat of a plan for a customer while they pay, exactly once per
/// `(customer_id, Idempotency-Key)`: in one atomic step the seat leaves `seats_left`
/// (audited `seat_held`), then a PaymentIntent is made at the payment provider,
/// unconfirmed; its `client_secret` lets Stripe.js confirm it in the customer's browser
/// (3-D Secure included), or the server confirms it with `POST …/confirm`. An unpaid
/// session gives its seat back at `expires_at` (audited `hold_expired`) and its intent is
/// cancelled. A customer has at most one open session per plan (`checkout.max_open_per_plan`).
///
/// A retry with the same key and body answers the same session as it is now (201, with
/// `Idempotent-Replayed: true`), making its PaymentIntent if the first request could not
/// (503 `payment_unavailable`: the seat stays held). Refusals (404, 409) are not stored: a
/// retry decides again. Checks run in this order: credential (401, 403), body size (413),
/// `Idempotency-Key` (400), `Content-Type` (415), JSON and fields (400), then the key, the
/// plan and the seat.
#[utoipa::path(
    operation_id = "createCheckoutSession",
    tag = "checkout",
    security(("apiKey" = []), ("customerSession" = []), ("adminToken" = [])),
    params(
        ("Idempotency-Key" = String, Header,
            description = "A unique value per checkout, resent unchanged on every retry of it: 1 to 255 printable ASCII characters, scoped to the body's `customer_id`. Missing: 400 `idempotency_key_missing`; otherwise invalid: 400 `idempotency_key_invalid`.",
            min_length = 1, max_length = 255, pattern = r"^[\x21-\x7E](?:[\x20-\x7E]{0,253}[\x21-\x7E])?$", example = "checkout-2026-0001"),
    ),
    request_body(
        content = CreateCheckoutRequest,
        example = json!({"plan_id": "0190f5c2-8a4b-7c3d-9e1f-2a3b4c5d6e7f", "customer_id": "cus_42", "expires_in": 1800}),
    ),
    responses(
        (status = 201, description = "The seat is held: the session is `open` with its payment intent. Also the answer to a retry with the same key (with `Idempotent-Replayed: true`), showing the session as it is now.",
            body = CheckoutBody,
            headers(
                ("Location" = String, description = "The path of the session (`/api/checkout_sessions/{id}`)."),
                ("Idempotent-Replayed" = String, description = "`true` when an earlier request with the same `Idempotency-Key` opened the session; absent from first answers."),
            ),
        ),
        (status = 400, response = PurchaseBadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = PlanNotFound),
        (status = 409, response = CheckoutOpenConflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = IdempotencyKeyReused),
        (status = 500, response = Internal),
        (status = 503, response = PurchaseUnavailable),
    ),
)]
#[post("/api/checkout_sessions")]
pub async fn create(
    caller: Caller,
    req: HttpRequest,
    body: web::Bytes,
    rid: RequestId,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let reach = caller.may(Action::Purchase)?;
    let key = idempotency_key(&req)?;
    let input =
        json_body::<CreateCheckoutRequest>(&req, &body)?.try_into_domain(state.checkout_bounds)?;
    if !reach.covers(&input.customer_id) {
        return Err(ApiError::new(
            Code::Forbidden,
            "a customer session may open checkout sessions only for its own customer (customer_id)",
        ));
    }
    let cmd = OpenCommand {
        customer_id: input.customer_id,
        key,
        plan_id: input.plan_id,
        expires_in_secs: input.expires_in_secs,
        ctx: caller.0.audit_context(rid.0),
    };
    let result = state.checkouts.open(&cmd).await;
    let outcome = match &result {
        Ok(r) if r.replayed => "replayed",
        Ok(_) => "opened",
        Err(_) => "refused",
    };
    metrics::counter!("seatkeeper_checkout_steps_total", "step" => "open", "outcome" => outcome)
        .increment(1);
    let receipt = result.map_err(|e| open_error(e, cmd.plan_id))?;
    let session = &receipt.session;
    let mut res = created_at(
        format!("/api/checkout_sessions/{}", session.id()),
        CheckoutBody::new(session, state.checkouts.provider()),
    );
    if receipt.replayed {
        res.headers_mut().insert(
            HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
    }
    Ok(res)
}

/// Read a checkout session
///
/// The session as it is now. An id that is not a UUID, and another customer's session
/// read with a customer session, answer 404 `checkout_session_not_found` like an
/// unknown one.
#[utoipa::path(
    operation_id = "getCheckoutSession",
    tag = "checkout",
    security(("apiKey" = []), ("customerSession" = []), ("adminToken" = [])),
    params(("id" = schemas::CheckoutSessionId, Path, description = "The session's id (a UUID). Any other value answers 404 `checkout_session_not_found`.", example = "0193b0c1-2d3e-7f40-8a5b-6c7d8e9f0a1b")),
    responses(
        (status = 200, description = "The session.", body = CheckoutBody),
        (status = 401, response = Unauthorized),
        (status = 404, response = CheckoutSessionNotFound),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[get("/api/checkout_sessions/{id}")]
pub async fn get(
    caller: Caller,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let reach = caller.may(Action::Purchase)?;
    let session = visible(&state, reach, session_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(CheckoutBody::new(&session, state.checkouts.provider())))
}

/// Confirm a checkout session
///
/// Pays an `open` session with `payment_method`, the server confirming the session's
/// PaymentIntent on the customer's behalf. `complete` (200): paid, with the active
/// subscription. `requires_action` (200): the customer must authenticate (3-D Secure) at
/// `next_action`; the result then arrives by webhook, or by confirming again. `processing`
/// (202): the provider is still working; a webhook finishes it. A declined card answers
/// 402 `payment_declined` and the session stays open until `expires_at`, so another card
/// can be tried. A `complete` session answers `complete` again; an `expired` one 409
/// `checkout_session_not_open`.
#[utoipa::path(
    operation_id = "confirmCheckoutSession",
    tag = "checkout",
    security(("apiKey" = []), ("customerSession" = []), ("adminToken" = [])),
    params(("id" = schemas::CheckoutSessionId, Path, description = "The session's id (a UUID). Any other value answers 404 `checkout_session_not_found`.", example = "0193b0c1-2d3e-7f40-8a5b-6c7d8e9f0a1b")),
    request_body(content = ConfirmRequest, example = json!({"payment_method": "pm_card_visa"})),
    responses(
        (status = 200, description = "`complete` or `requires_action`.", body = ConfirmationBody),
        (status = 202, description = "`processing`: the provider is still working on the payment.", body = ConfirmationBody),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 402, response = CheckoutPaymentDeclined),
        (status = 404, response = CheckoutSessionNotFound),
        (status = 409, response = CheckoutSessionNotOpen),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = Internal),
        (status = 503, response = CheckoutUnavailable),
    ),
)]
#[post("/api/checkout_sessions/{id}/confirm")]
pub async fn confirm(
    caller: Caller,
    req: HttpRequest,
    body: web::Bytes,
    rid: RequestId,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let reach = caller.may(Action::Purchase)?;
    let id = session_id(&path)?;
    let pm = json_body::<ConfirmRequest>(&req, &body)?.try_into_domain()?;
    let result = state
        .checkouts
        .confirm(id, reach, &pm, &caller.0.audit_context(rid.0))
        .await;
    let outcome = match &result {
        Ok(Confirmation::Complete { .. }) => "complete",
        Ok(Confirmation::RequiresAction { .. }) => "requires_action",
        Ok(Confirmation::PaymentFailed { .. }) => "payment_failed",
        Ok(Confirmation::Processing { .. }) => "processing",
        Err(_) => "error",
    };
    metrics::counter!("seatkeeper_checkout_steps_total", "step" => "confirm", "outcome" => outcome)
        .increment(1);
    let confirmation = result.map_err(|e| checkout_error(e, id))?;
    let provider = state.checkouts.provider();
    Ok(match &confirmation {
        Confirmation::PaymentFailed { session, reason } => {
            return Err(ApiError::new(
                Code::PaymentDeclined,
                format!(
                    "the payment was declined ({reason}); the session stays open until {}: confirm again with another payment method",
                    crate::timestamp::format(session.expires_at())
                ),
            )
            .with_plan(session.plan_id()))
        }
        Confirmation::Processing { .. } => {
            HttpResponse::Accepted().json(ConfirmationBody::new(&confirmation, provider))
        }
        _ => HttpResponse::Ok().json(ConfirmationBody::new(&confirmation, provider)),
    })
}

/// Expire a checkout session
///
/// Gives an `open` session's seat back at once (audited `hold_expired`) and cancels its
/// PaymentIntent at the provider (or leaves that to the worker while the provider does
/// not answer). A payment that succeeds anyway is honoured while a seat is free, else
/// refunded. Expiring a session that is not open answers 409 `checkout_session_not_open`.
/// No request body is read.
#[utoipa::path(
    operation_id = "expireCheckoutSession",
    tag = "checkout",
    security(("apiKey" = []), ("customerSession" = []), ("adminToken" = [])),
    params(("id" = schemas::CheckoutSessionId, Path, description = "The session's id (a UUID). Any other value answers 404 `checkout_session_not_found`.", example = "0193b0c1-2d3e-7f40-8a5b-6c7d8e9f0a1b")),
    responses(
        (status = 200, description = "The session, now `expired`.", body = CheckoutBody),
        (status = 401, response = Unauthorized),
        (status = 404, response = CheckoutSessionNotFound),
        (status = 409, response = CheckoutSessionNotOpen),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[post("/api/checkout_sessions/{id}/expire")]
pub async fn expire(
    caller: Caller,
    rid: RequestId,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let reach = caller.may(Action::Purchase)?;
    let id = session_id(&path)?;
    visible(&state, reach, id).await?;
    let session = state
        .checkouts
        .expire(id, &caller.0.audit_context(rid.0))
        .await
        .map_err(|e| checkout_error(e, id))?;
    metrics::counter!("seatkeeper_checkout_steps_total", "step" => "expire", "outcome" => "expired")
        .increment(1);
    Ok(HttpResponse::Ok().json(CheckoutBody::new(&session, state.checkouts.provider())))
}
