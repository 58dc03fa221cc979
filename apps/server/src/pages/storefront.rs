//! `GET /`: the storefront. It lists the plans on sale with their price and seats left,
//! so that it reads without JavaScript; `assets/storefront.js` then keeps the counts live
//! (the availability stream), signs the customer in (demo mode, or a session the
//! integrator hands over in the address's `#session=` fragment), runs the checkout and
//! lists the customer's subscriptions.

use actix_web::{get, web, HttpResponse};
use askama::Template;
use seatkeeper_domain::model::Plan;

use super::{html, PageConfig};
use crate::{problem::ApiError, routes::AppState};

/// One plan as the storefront shows it.
struct PlanCard {
    id: String,
    name: String,
    price: String,
    interval: &'static str,
    seats_left: u32,
    capacity: u32,
}

impl From<&Plan> for PlanCard {
    fn from(p: &Plan) -> Self {
        Self {
            id: p.id().to_string(),
            name: p.name().as_str().to_owned(),
            price: p.currency().format(p.unit_amount().get()),
            interval: p.interval().as_str(),
            seats_left: p.seats_left(),
            capacity: p.capacity().get(),
        }
    }
}

#[derive(Template)]
#[template(path = "storefront.html")]
struct Storefront<'a> {
    plans: Vec<PlanCard>,
    demo_sign_in: bool,
    provider: &'a str,
    publishable_key: Option<&'a str>,
}

#[get("/")]
pub async fn page(
    state: web::Data<AppState>,
    config: web::Data<PageConfig>,
) -> Result<HttpResponse, ApiError> {
    let plans = state.plans.on_sale().await?;
    html(
        &config,
        &Storefront {
            plans: plans.iter().map(PlanCard::from).collect(),
            demo_sign_in: config.demo_sign_in,
            provider: config.provider,
            publishable_key: config.stripe(),
        },
    )
}
