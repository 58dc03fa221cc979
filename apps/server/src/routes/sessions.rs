//! `/api/customer_sessions`: making a customer session for a browser.

use actix_web::{post, web, HttpRequest, HttpResponse};
use seatkeeper_domain::Action;

use crate::{
    auth::{Authenticator, Caller},
    dto::{CreateSessionRequest, SessionBody},
    extract::json_body,
    openapi::responses::*,
    problem::ApiError,
    problem::Code,
    routes::AppState,
};

/// Make a customer session
///
/// A bearer token for a browser acting for one customer: with it, the browser may buy
/// for that customer only, and list, read and cancel that customer's subscriptions only
/// (another customer's answer 404, as if they did not exist); nothing else needs more
/// than it. It expires after `auth.session_ttl_secs` (30 minutes by default) and cannot
/// be revoked sooner. Any instance sharing `auth.session_secret` accepts it. For API
/// keys (`purchases` or `admin`) and the admin token; not for customer sessions.
#[utoipa::path(
    operation_id = "createCustomerSession",
    tag = "access",
    security(("apiKey" = []), ("adminToken" = [])),
    request_body(content = CreateSessionRequest),
    responses(
        (status = 201, description = "The session.", body = SessionBody),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = Internal),
    ),
)]
#[post("/api/customer_sessions")]
pub async fn create(
    caller: Caller,
    req: HttpRequest,
    body: web::Bytes,
    auth: web::Data<Authenticator>,
) -> Result<HttpResponse, ApiError> {
    caller.may(Action::MintSessions)?;
    mint(&req, &body, &auth)
}

/// Sign in as a customer (demo mode)
///
/// Makes a customer session for any customer id, with no credential: the storefront's
/// demo sign-in. Only when the server runs in demo mode (`demo.sign_in`, on by default
/// with the in-memory store and off with every other); otherwise it answers 404
/// `not_found`, and the integrator mints sessions with `POST /api/customer_sessions`.
/// The session is exactly the one that endpoint makes.
#[utoipa::path(
    operation_id = "createDemoCustomerSession",
    tag = "access",
    security(()),
    request_body(content = CreateSessionRequest),
    responses(
        (status = 201, description = "The session.", body = SessionBody),
        (status = 400, response = InvalidRequest),
        (status = 404, response = NotFound),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = Internal),
    ),
)]
#[post("/api/demo/customer_sessions")]
pub async fn demo(
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
    auth: web::Data<Authenticator>,
) -> Result<HttpResponse, ApiError> {
    if !state.demo_sign_in {
        return Err(ApiError::new(
            Code::NotFound,
            "there is nothing at /api/demo/customer_sessions: the demo sign-in is off (demo.sign_in)",
        ));
    }
    mint(&req, &body, &auth)
}

/// 201 with a session for the customer the body names.
fn mint(req: &HttpRequest, body: &[u8], auth: &Authenticator) -> Result<HttpResponse, ApiError> {
    let customer = json_body::<CreateSessionRequest>(req, body)?.try_into_domain()?;
    let session = auth.issue_session(customer);
    Ok(HttpResponse::Created().json(SessionBody::from(session)))
}
