//! The OpenAPI document, generated from the code: `#[utoipa::path]` on each handler
//! (registered through utoipa-actix-web, so a route cannot go undocumented), `ToSchema`
//! on the DTOs and the problem body, the named problem responses of [`responses`] and
//! the scalar schemas of [`schemas`]. The server serves it at `GET /openapi.json`;
//! `seatkeeper-server openapi` prints it as YAML, which is the top-level `openapi.yaml`
//! (`just openapi` rewrites it, and a test fails when it is stale).

pub mod bodies;
pub mod responses;
pub mod schemas;

use actix_web::App;
use utoipa::{
    openapi::{
        path::{Operation, ParameterBuilder, ParameterIn},
        schema::Type,
        security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
        ObjectBuilder, OpenApi as Document, RefOr, Required, Schema,
    },
    Modify, OpenApi,
};
use utoipa_actix_web::AppExt;

use self::responses::*;
use crate::problem::{FieldError, Problem};

/// What the document says beyond its operations.
#[derive(OpenApi)]
#[openapi(
    info(title = "Seatkeeper", description = include_str!("description.md")),
    servers((url = "http://127.0.0.1:3000", description = "A local server with the default `http.addr`.")),
    tags(
        (name = "health", description = "Liveness and readiness."),
        (name = "plans", description = "Plans, their seats, statistics and audit log."),
        (name = "subscriptions", description = "Buying, reading and cancelling subscriptions."),
        (name = "customers", description = "A customer's subscriptions."),
        (name = "admin", description = "Operating the service."),
        (name = "access", description = "API keys and customer sessions."),
        (name = "checkout", description = "Checkout sessions: a seat held while the customer pays, 3-D Secure included."),
        (name = "webhooks", description = "What the payment provider tells the server."),
    ),
    components(
        schemas(Problem, FieldError),
        responses(
            InvalidRequest, InvalidListQuery, InvalidCustomerListQuery, PurchaseBadRequest,
            Unauthorized, Forbidden, KeyNotFound, RateLimited, PaymentDeclined, PlanNotFound, PurchasePlanNotFound,
            SubscriptionNotFound, NotFound, MethodNotAllowed, CapacityBelowHeld,
            SubscriptionNotActive, PurchaseConflict, PayloadTooLarge, UnsupportedMediaType,
            IdempotencyKeyReused, PurchaseUnavailable, StoreUnavailable, Internal,
            CheckoutOpenConflict, CheckoutSessionNotFound, CheckoutPaymentDeclined,
            CheckoutSessionNotOpen, CheckoutUnavailable, WebhookBadRequest,
        ),
    ),
    modifiers(&Credentials),
)]
struct ApiDoc;

/// The security schemes: three kinds of bearer credential.
struct Credentials;

impl Modify for Credentials {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        for (name, format, description) in [
            (
                "adminToken",
                None,
                "The bootstrap admin token (setting `auth.admin_token`, at least 16 \
                 characters; when unset, the server generates one at start-up and prints it \
                 once). It may do everything an `admin` key may.",
            ),
            (
                "apiKey",
                Some("sk_…"),
                "An API key's secret (`sk_` and 32 letters and digits), from `POST /api/keys`. \
                 Role `admin`: everything. Role `purchases`: buy, read and cancel any \
                 customer's subscriptions, make customer sessions.",
            ),
            (
                "customerSession",
                Some("JWT"),
                "A customer session's token, from `POST /api/customer_sessions`: buys for its \
                 customer only, and reads and cancels that customer's subscriptions only, \
                 until it expires.",
            ),
        ] {
            let mut scheme = HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(format!(
                    "{description} Sent as `Authorization: Bearer <credential>`."
                )));
            if let Some(format) = format {
                scheme = scheme.bearer_format(format);
            }
            components.add_security_scheme(name, SecurityScheme::Http(scheme.build()));
        }
    }
}

/// The whole document.
pub fn document() -> Document {
    let (_, mut doc) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(crate::routes::services)
        .split_for_parts();
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            add_request_id(operation);
            add_rate_limited(operation);
        }
    }
    require_a_change(&mut doc);
    doc
}

/// `UpdatePlan` needs at least one property (an empty patch answers 400).
/// `#[schema(min_properties = 1)]` cannot say so: utoipa-gen 5.5 writes it as
/// `maxProperties`.
fn require_a_change(doc: &mut Document) {
    let schema = doc
        .components
        .as_mut()
        .and_then(|c| c.schemas.get_mut("UpdatePlan"));
    match schema {
        Some(RefOr::T(Schema::Object(object))) => object.min_properties = Some(1),
        _ => panic!("UpdatePlan is an object schema of the components"),
    }
}

/// The document as YAML, as `openapi.yaml` holds it.
pub fn yaml() -> String {
    document()
        .to_yaml()
        .expect("the OpenAPI document serializes")
}

/// Any request may be refused by a rate limit (when limits are on); said once here.
fn add_rate_limited(operation: &mut Operation) {
    operation
        .responses
        .responses
        .entry("429".into())
        .or_insert_with(|| RefOr::Ref(utoipa::openapi::Ref::from_response_name("RateLimited")));
}

/// The request-id middleware reads `X-Request-Id` on every request and sets it on every
/// response; said once here rather than on each handler. Named problem responses carry
/// the header themselves.
fn add_request_id(operation: &mut Operation) {
    let parameter = ParameterBuilder::new()
        .name("X-Request-Id")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "An id for this request, echoed in the `X-Request-Id` response header, in every \
             problem body and in the logs. Kept when it is 1 to 128 letters, digits, `-`, \
             `_`, `.` or `:`; any other value is ignored and replaced by a new UUID (never \
             an error).",
        ))
        // Any value is accepted (an invalid one is replaced, never an error), so the
        // parameter's schema does not restrict it: the rule is in the description.
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .example(Some(serde_json::json!("checkout-7f3a:1")))
        .build();
    operation
        .parameters
        .get_or_insert_with(Vec::new)
        .push(parameter);
    for response in operation.responses.responses.values_mut() {
        if let RefOr::T(response) = response {
            response
                .headers
                .insert("X-Request-Id".into(), request_id_header());
        }
    }
}

/// A doc comment's lines (`#[doc]` attributes) as one text: the lines of a paragraph
/// joined by spaces, paragraphs by a blank line.
pub(crate) fn doc_text(lines: &[&str]) -> String {
    let mut text = String::new();
    for line in lines.iter().map(|line| line.trim()) {
        if line.is_empty() {
            text.push_str("\n\n");
        } else {
            if !text.is_empty() && !text.ends_with('\n') {
                text.push(' ');
            }
            text.push_str(line);
        }
    }
    text
}
