//! The routes: each handler carries its actix route (`#[get("…")]`) and its OpenAPI
//! operation (`#[utoipa::path]`), and [`services`] registers them through
//! utoipa-actix-web, so the app and the document (`crate::openapi`) are built from one
//! list and cannot disagree. [`register`] adds a 405 with `Allow` for each documented
//! path and method it lacks, and `GET /openapi.json`. Unknown paths answer 404
//! ([`not_found`]).

pub(crate) mod admin;
mod checkouts;
mod customers;
mod health;
mod keys;
pub mod live;
mod plans;
mod sessions;
mod simulated;
mod subscriptions;
pub mod webhooks;

use actix_web::{
    guard,
    http::{header, Method},
    web, HttpRequest, HttpResponse,
};
use seatkeeper_domain::service::{
    CheckoutService, HealthService, KeyService, PlanService, PurchaseService, SubscriptionService,
};
use utoipa::openapi::{path::PathItem, OpenApi as Document};
use utoipa_actix_web::service_config::ServiceConfig;

use crate::{
    problem::{ApiError, Code},
    recovery::RecoveryLog,
};

/// What the handlers share.
pub struct AppState {
    pub plans: PlanService,
    pub subscriptions: SubscriptionService,
    pub purchases: PurchaseService,
    pub health: HealthService,
    pub recovery: RecoveryLog,
    pub keys: KeyService,
    pub checkouts: CheckoutService,
    /// The bounds of a checkout's `expires_in`, in seconds.
    pub checkout_bounds: (u32, u32),
    pub webhooks: webhooks::WebhookConfig,
    /// The in-process payment simulator, when it is the gateway (for its 3-D Secure page).
    pub simulated: Option<std::sync::Arc<seatkeeper_payments::SimulatedGateway>>,
    /// Live availability, for the event streams.
    pub live: std::sync::Arc<crate::live::Hub>,
    /// Whether anyone may sign in as any customer (`demo.sign_in`).
    pub demo_sign_in: bool,
}

/// Every operation of the API, in the order actix tries them.
pub fn services(cfg: &mut ServiceConfig) {
    // The hot path first: actix tries resources in order, and every `{id}` pattern
    // tried before a match is a regex run (~3 % of a purchase's CPU when it was last).
    cfg.service(subscriptions::purchase)
        .service(health::live)
        .service(health::ready)
        .service(plans::list)
        .service(plans::create)
        // Before `/api/plans/{id}`, which would take `events` for an id.
        .service(live::all)
        .service(plans::get)
        .service(live::plan)
        .service(plans::update)
        .service(plans::stats)
        .service(plans::audit)
        // `/api/plans/{id}` takes one segment: it cannot take `{id}/audit/check`, which
        // may therefore stand here, off the path of plan reads.
        .service(plans::audit_check)
        .service(subscriptions::get)
        .service(subscriptions::cancel)
        .service(customers::subscriptions)
        .service(checkouts::create)
        .service(checkouts::get)
        .service(checkouts::confirm)
        .service(checkouts::expire)
        .service(webhooks::stripe)
        .service(simulated::authenticate)
        .service(sessions::create)
        .service(sessions::demo)
        .service(keys::create)
        .service(keys::list)
        .service(keys::revoke)
        .service(admin::reconciliation)
        .service(admin::metrics);
}

/// Registers the API: its operations, a 405 for each documented path and method it
/// lacks, and `GET /openapi.json` serving `doc`.
///
/// Each 405 is a resource guarded by the methods its path lacks, so it can stand before
/// the operations: fixed paths go first, as `/api/subscriptions/purchase` would else
/// reach `GET /api/subscriptions/{id}`; paths with parameters go last, as each one
/// tried is a regex run on every request that passes it.
pub fn register(cfg: &mut web::ServiceConfig, doc: &Document) {
    let (fixed, templated): (Vec<_>, Vec<_>) = doc
        .paths
        .paths
        .iter()
        .map(|(path, item)| (path.as_str(), methods(item)))
        .partition(|(path, _)| !path.contains('{'));
    for (path, methods) in fixed {
        cfg.service(method_not_allowed(path, methods));
    }
    services(&mut ServiceConfig::new(cfg));
    for (path, methods) in templated {
        cfg.service(method_not_allowed(path, methods));
    }
    let json = web::Bytes::from(serde_json::to_vec(doc).expect("the document serializes"));
    cfg.service(web::resource("/openapi.json").get(move || {
        let json = json.clone();
        async move {
            HttpResponse::Ok()
                .insert_header(header::ContentType::json())
                .body(json)
        }
    }));
    cfg.service(method_not_allowed("/openapi.json", vec![Method::GET]));
}

/// The methods a documented path has.
fn methods(item: &PathItem) -> Vec<Method> {
    [
        (Method::GET, item.get.is_some()),
        (Method::PUT, item.put.is_some()),
        (Method::POST, item.post.is_some()),
        (Method::DELETE, item.delete.is_some()),
        (Method::PATCH, item.patch.is_some()),
    ]
    .into_iter()
    .filter_map(|(method, has)| has.then_some(method))
    .collect()
}

/// 405 with `Allow` for the requests to `path` whose method is not in `methods`.
fn method_not_allowed(path: &str, methods: Vec<Method>) -> actix_web::Resource {
    let allow = methods
        .iter()
        .map(Method::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    web::resource(path)
        .guard(guard::fn_guard(move |ctx| {
            !methods.contains(&ctx.head().method)
        }))
        .default_service(web::to(move |req: HttpRequest| {
            let mut e = ApiError::new(
                Code::MethodNotAllowed,
                format!(
                    "{} is not allowed on {}; allowed: {allow}",
                    req.method(),
                    req.path()
                ),
            );
            e.allow = Some(allow.clone());
            async move { Err::<HttpResponse, _>(e) }
        }))
}

/// The answer for paths no route matches.
pub async fn not_found(req: HttpRequest) -> Result<&'static str, ApiError> {
    Err(ApiError::new(
        Code::NotFound,
        format!("there is nothing at {}", req.path()),
    ))
}

/// A JSON response with `Location`.
fn created_at(location: String, body: impl serde::Serialize) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(body)
}
