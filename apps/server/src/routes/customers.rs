//! `/api/customers/{id}/subscriptions`: a customer's subscriptions.

use actix_web::{web, HttpResponse};
use seatkeeper_domain::{CustomerId, SubscriptionId};

use super::AppState;
use crate::{
    dto::{List, SubscriptionBody},
    extract::ListQuery,
    problem::{ApiError, FieldError},
};

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
