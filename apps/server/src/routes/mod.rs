//! The routes: one table, so the app and the test that checks `openapi.yaml` against
//! it can never disagree. Each resource answers 405 with `Allow` for the methods it
//! does not have; unknown paths answer 404.

mod admin;
mod customers;
mod health;
mod plans;
mod subscriptions;

use std::sync::Arc;

use actix_web::{
    http::{header, Method},
    web, FromRequest, Handler, HttpRequest, Resource, Responder,
};
use seatkeeper_domain::{
    ports::Store,
    service::{PlanService, PurchaseService, SubscriptionService},
};

use crate::{
    problem::{ApiError, Code},
    recovery::RecoveryLog,
};

/// What the handlers share.
pub struct AppState {
    pub plans: PlanService,
    pub subscriptions: SubscriptionService,
    pub purchases: PurchaseService,
    pub store: Arc<dyn Store>,
    pub recovery: RecoveryLog,
}

/// Collects routes into resources, remembering the table.
#[derive(Default)]
pub struct Router {
    resources: Vec<(&'static str, Vec<Method>, Resource)>,
}

impl Router {
    fn route<F, Args>(mut self, method: Method, path: &'static str, handler: F) -> Self
    where
        F: Handler<Args>,
        Args: FromRequest + 'static,
        F::Output: Responder + 'static,
    {
        let route = web::method(method.clone()).to(handler);
        match self.resources.iter_mut().find(|(p, _, _)| *p == path) {
            Some((_, methods, resource)) => {
                methods.push(method);
                let taken = std::mem::replace(resource, web::resource(path));
                *resource = taken.route(route);
            }
            None => self
                .resources
                .push((path, vec![method], web::resource(path).route(route))),
        }
        self
    }

    /// Every `(method, path)` the app serves, paths in OpenAPI's `{param}` syntax.
    pub fn table(&self) -> Vec<(Method, &'static str)> {
        self.resources
            .iter()
            .flat_map(|(path, methods, _)| methods.iter().map(move |m| (m.clone(), *path)))
            .collect()
    }

    /// Registers every resource, each with a 405 for the methods it lacks.
    pub fn register(self, cfg: &mut web::ServiceConfig) {
        for (_, methods, resource) in self.resources {
            let allow = methods
                .iter()
                .map(Method::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            cfg.service(resource.default_service(web::to(move |req: HttpRequest| {
                let allow = allow.clone();
                async move { method_not_allowed(&req, allow) }
            })));
        }
    }
}

fn method_not_allowed(req: &HttpRequest, allow: String) -> Result<&'static str, ApiError> {
    let mut e = ApiError::new(
        Code::MethodNotAllowed,
        format!(
            "{} is not allowed on {}; allowed: {allow}",
            req.method(),
            req.path()
        ),
    );
    e.allow = Some(allow);
    Err(e)
}

/// The answer for paths no route matches.
pub async fn not_found(req: HttpRequest) -> Result<&'static str, ApiError> {
    Err(ApiError::new(
        Code::NotFound,
        format!("there is nothing at {}", req.path()),
    ))
}

/// The whole API.
pub fn router() -> Router {
    Router::default()
        // The hot path first: actix tries resources in order, and every `{id}` pattern
        // tried before a match is a regex run (~3 % of a purchase's CPU when it was last).
        .route(
            Method::POST,
            "/api/subscriptions/purchase",
            subscriptions::purchase,
        )
        .route(Method::GET, "/health", health::live)
        .route(Method::GET, "/health/ready", health::ready)
        .route(Method::GET, "/api/plans", plans::list)
        .route(Method::POST, "/api/plans", plans::create)
        .route(Method::GET, "/api/plans/{id}", plans::get)
        .route(Method::PATCH, "/api/plans/{id}", plans::update)
        .route(Method::GET, "/api/plans/{id}/stats", plans::stats)
        .route(Method::GET, "/api/plans/{id}/audit", plans::audit)
        .route(Method::GET, "/api/subscriptions/{id}", subscriptions::get)
        .route(
            Method::POST,
            "/api/subscriptions/{id}/cancel",
            subscriptions::cancel,
        )
        .route(
            Method::GET,
            "/api/customers/{id}/subscriptions",
            customers::subscriptions,
        )
        .route(
            Method::GET,
            "/api/admin/reconciliation",
            admin::reconciliation,
        )
}

/// A JSON response with `Location`.
fn created_at(location: String, body: impl serde::Serialize) -> actix_web::HttpResponse {
    actix_web::HttpResponse::Created()
        .insert_header((header::LOCATION, location))
        .json(body)
}
