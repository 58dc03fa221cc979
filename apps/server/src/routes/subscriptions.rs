//! `/api/subscriptions`: the purchase, reading a subscription, cancelling it.

use std::time::Instant;

use actix_web::{
    http::header::{self, HeaderName, HeaderValue},
    web, HttpRequest, HttpResponse,
};
use seatkeeper_domain::{
    service::{PurchaseCommand, PurchaseReceipt},
    AuditContext, PurchaseOutcome, SubscriptionId,
};

use super::AppState;
use crate::{
    dto::{PurchaseRequest, SubscriptionBody},
    errors::{no_such_subscription, plan_not_found},
    extract::{idempotency_key, json_body},
    problem::{ApiError, Code},
    request_id::RequestId,
};

fn subscription_id(raw: &str) -> Result<SubscriptionId, ApiError> {
    raw.parse().map_err(|_| no_such_subscription(raw))
}

/// `POST /api/subscriptions/purchase`, idempotent per customer and `Idempotency-Key`.
pub async fn purchase(
    req: HttpRequest,
    body: web::Bytes,
    rid: RequestId,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let started = Instant::now();
    let key = idempotency_key(&req)?;
    let input = json_body::<PurchaseRequest>(&req, &body)?.try_into_domain()?;
    let cmd = PurchaseCommand {
        customer_id: input.customer_id,
        key,
        plan_id: input.plan_id,
        payment_method: input.payment_method,
        request_id: rid.0,
    };
    // The command owns what the purchase needs: the body (a slice of the connection's
    // read buffer) is let go before the purchase waits on its payment.
    drop(body);
    let result = state.purchases.purchase(&cmd).await;
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
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
            SubscriptionBody::from(subscription).write_json(&mut body);
            HttpResponse::Created()
                .insert_header((
                    header::LOCATION,
                    [
                        "/api/subscriptions/",
                        subscription
                            .id
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
        .with_plan(subscription.plan_id)
        .with_subscription(subscription.id)
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

pub async fn get(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let sub = state.subscriptions.get(subscription_id(&path)?).await?;
    Ok(HttpResponse::Ok().json(SubscriptionBody::from(&sub)))
}

/// `POST /api/subscriptions/{id}/cancel`: releases the seat; idempotent.
pub async fn cancel(
    rid: RequestId,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = subscription_id(&path)?;
    // Customers are not authenticated yet, so the audit log cannot name who cancelled.
    let ctx = AuditContext {
        actor: "anonymous".into(),
        trace_id: rid.0.into(),
    };
    let done = state.subscriptions.cancel(id, &ctx).await?;
    Ok(HttpResponse::Ok().json(SubscriptionBody::from(&done.subscription)))
}
