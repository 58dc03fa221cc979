//! `/api/customers/{id}/subscriptions`: a customer's subscriptions.

use actix_web::{get, web, HttpResponse};
use seatkeeper_domain::{Action, CustomerId, SubscriptionId};

use super::AppState;
use crate::{
    auth::Caller,
    dto::{List, SubscriptionBody},
    extract::ListQuery,
    openapi::{bodies::SubscriptionList, responses::*, schemas},
    problem::{ApiError, Code, FieldError},
};

/// List a customer's subscriptions
///
/// The customer's subscriptions in every status, ordered by id (UUIDv7: creation
/// order). A customer with no subscriptions, or unknown to Seatkeeper, gets an empty
/// list. A malformed customer id answers 400 with `errors[0].field == "customer_id"`
/// (checked before `limit` and `cursor`). The cursor is a subscription id. With a customer
/// session, another customer's list answers 404 `not_found`.
#[utoipa::path(
    operation_id = "listCustomerSubscriptions",
    tag = "customers",
    security(("apiKey" = []), ("customerSession" = []), ("adminToken" = [])),
    params(
        ("id" = schemas::CustomerId, Path, description = "The customer's id, as given in purchases. A malformed id answers 400 `invalid_request` naming `customer_id`.", example = "cus_42"),
        ListQuery,
    ),
    responses(
        (status = 200, description = "One page of the customer's subscriptions.", body = SubscriptionList),
        (status = 400, response = InvalidCustomerListQuery),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[get("/api/customers/{id}/subscriptions")]
pub async fn subscriptions(
    caller: Caller,
    req: actix_web::HttpRequest,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let reach = caller.may(Action::ManageSubscriptions)?;
    let customer = CustomerId::parse(&path)
        .map_err(|e| ApiError::invalid(vec![FieldError::new("customer_id", e.0)]))?;
    if !reach.covers(&customer) {
        // Whether another customer has subscriptions is not the caller's to learn.
        return Err(ApiError::new(
            Code::NotFound,
            format!("there is nothing at {}", req.path()),
        ));
    }
    let page = query.page(|c| c.parse::<SubscriptionId>())?;
    let page = state.subscriptions.for_customer(&customer, page).await?;
    Ok(HttpResponse::Ok().json(List {
        data: page.items.iter().map(SubscriptionBody::from).collect(),
        next_cursor: page.next.map(|id| id.to_string()),
    }))
}
