//! `/api/customers/{id}/subscriptions`: a customer's subscriptions.

use actix_web::{get, web, HttpResponse};
use seatkeeper_domain::{CustomerId, SubscriptionId};

use super::AppState;
use crate::{
    dto::{List, SubscriptionBody},
    extract::ListQuery,
    openapi::{bodies::SubscriptionList, responses::*, schemas},
    problem::{ApiError, FieldError},
};

/// List a customer's subscriptions
///
/// The customer's subscriptions in every status, ordered by id (UUIDv7: creation
/// order). A customer with no subscriptions, or unknown to Seatkeeper, gets an empty
/// list. A malformed customer id answers 400 with `errors[0].field == "customer_id"`
/// (checked before `limit` and `cursor`). The cursor is a subscription id. No token is
/// needed.
#[utoipa::path(
    operation_id = "listCustomerSubscriptions",
    tag = "customers",
    params(
        ("id" = schemas::CustomerId, Path, description = "The customer's id, as given in purchases. A malformed id answers 400 `invalid_request` naming `customer_id`.", example = "cus_42"),
        ListQuery,
    ),
    responses(
        (status = 200, description = "One page of the customer's subscriptions.", body = SubscriptionList),
        (status = 400, response = InvalidCustomerListQuery),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[get("/api/customers/{id}/subscriptions")]
pub async fn subscriptions(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let customer = CustomerId::parse(&path)
        .map_err(|e| ApiError::invalid(vec![FieldError::new("customer_id", e.0)]))?;
    let page = query.page(|c| c.parse::<SubscriptionId>())?;
    let page = state.subscriptions.for_customer(&customer, page).await?;
    Ok(HttpResponse::Ok().json(List {
        data: page.items.iter().map(SubscriptionBody::from).collect(),
        next_cursor: page.next.map(|id| id.to_string()),
    }))
}
