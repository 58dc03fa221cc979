//! RFC 9457 problem responses: every error the API answers is
//! `application/problem+json` with `type`, `title`, `status`, `detail`, `code` and
//! `request_id` (and `errors` for validation failures).
//!
//! Handlers return [`ApiError`]; the request-id middleware stamps the request id into
//! the body on the way out ([`finalize`]) and turns any other error actix produces into
//! a problem too. Internal errors are logged with their whole cause chain and answered
//! with a generic body.

use actix_web::{
    body::BoxBody,
    dev::ServiceResponse,
    http::{header, StatusCode},
    HttpResponse, ResponseError,
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::openapi::schemas;

/// The only detail a 500 ever shows; the cause is in the log, under the request id.
const INTERNAL_DETAIL: &str = "The server failed to handle the request. It has been logged.";

/// Declares [`Code`] from one table: each code's variant, its name on the wire, its HTTP
/// status and its title, so that a code is added in one line.
macro_rules! codes {
    ($($variant:ident = $name:literal, $status:ident, $title:literal;)*) => {
        /// The problem codes of the API.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Code {
            $($variant,)*
        }

        impl Code {
            /// Every code, for documentation checks.
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            /// The code's name on the wire (the problem's `code` member).
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Code::$variant => $name,)*
                }
            }

            pub fn status(self) -> StatusCode {
                match self {
                    $(Code::$variant => StatusCode::$status,)*
                }
            }

            pub fn title(self) -> &'static str {
                match self {
                    $(Code::$variant => $title,)*
                }
            }
        }
    };
}

codes! {
    InvalidRequest = "invalid_request", BAD_REQUEST, "The request is invalid";
    IdempotencyKeyMissing = "idempotency_key_missing", BAD_REQUEST, "An Idempotency-Key header is required";
    IdempotencyKeyInvalid = "idempotency_key_invalid", BAD_REQUEST, "The Idempotency-Key header is invalid";
    Unauthorized = "unauthorized", UNAUTHORIZED, "Authentication is required";
    Forbidden = "forbidden", FORBIDDEN, "The credential may not do that";
    PaymentDeclined = "payment_declined", PAYMENT_REQUIRED, "The payment was declined";
    PlanNotFound = "plan_not_found", NOT_FOUND, "No such plan";
    SubscriptionNotFound = "subscription_not_found", NOT_FOUND, "No such subscription";
    KeyNotFound = "key_not_found", NOT_FOUND, "No such API key";
    CheckoutSessionNotFound = "checkout_session_not_found", NOT_FOUND, "No such checkout session";
    WebhookSignatureInvalid = "webhook_signature_invalid", BAD_REQUEST, "The webhook signature is invalid";
    NotFound = "not_found", NOT_FOUND, "Not found";
    MethodNotAllowed = "method_not_allowed", METHOD_NOT_ALLOWED, "Method not allowed";
    PlanSoldOut = "plan_sold_out", CONFLICT, "The plan is sold out";
    PlanInactive = "plan_inactive", CONFLICT, "The plan is not for sale";
    IdempotencyKeyInUse = "idempotency_key_in_use", CONFLICT, "A request with this Idempotency-Key is in progress";
    CapacityBelowHeld = "capacity_below_held", CONFLICT, "The capacity is below the seats held";
    SubscriptionNotActive = "subscription_not_active", CONFLICT, "The subscription is not active";
    CheckoutSessionNotOpen = "checkout_session_not_open", CONFLICT, "The checkout session is not open";
    CheckoutSessionOpen = "checkout_session_open", CONFLICT, "The customer has an open checkout session on this plan";
    PayloadTooLarge = "payload_too_large", PAYLOAD_TOO_LARGE, "The request body is too large";
    UnsupportedMediaType = "unsupported_media_type", UNSUPPORTED_MEDIA_TYPE, "Unsupported media type";
    IdempotencyKeyReused = "idempotency_key_reused", UNPROCESSABLE_ENTITY, "The Idempotency-Key was used for a different request";
    RateLimited = "rate_limited", TOO_MANY_REQUESTS, "Too many requests";
    PaymentUnavailable = "payment_unavailable", SERVICE_UNAVAILABLE, "The payment outcome is unknown";
    StoreUnavailable = "store_unavailable", SERVICE_UNAVAILABLE, "The store is unavailable";
    Internal = "internal", INTERNAL_SERVER_ERROR, "Internal server error";
}

impl Code {
    /// A problem type URI (RFC 9457 §3.1.1).
    pub fn type_uri(self) -> String {
        format!("urn:seatkeeper:problem:{}", self.as_str())
    }

    fn for_status(status: StatusCode) -> Self {
        match status.as_u16() {
            401 => Code::Unauthorized,
            403 => Code::Forbidden,
            404 => Code::NotFound,
            405 => Code::MethodNotAllowed,
            413 => Code::PayloadTooLarge,
            415 => Code::UnsupportedMediaType,
            429 => Code::RateLimited,
            400..=499 => Code::InvalidRequest,
            _ => Code::Internal,
        }
    }
}

/// A field that failed validation, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct FieldError {
    /// The field at fault: a body field (`name`, `capacity`, `plan_id`, …; a nested path
    /// for type errors), `body` for the body as a whole, `limit` or `cursor` for list
    /// parameters, `customer_id` for the path of the customer endpoint.
    #[schema(examples("capacity"))]
    pub field: String,
    #[schema(examples("must be an integer from 1 to 1000000"))]
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// The JSON body of a problem response.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(description = "An RFC 9457 problem detail, the body of every error response.")]
pub struct Problem {
    /// `urn:seatkeeper:problem:<code>`.
    #[serde(rename = "type")]
    #[schema(
        pattern = "^urn:seatkeeper:problem:[a-z_]+$",
        examples("urn:seatkeeper:problem:plan_sold_out")
    )]
    pub type_uri: String,
    /// A short summary, the same for every problem with this code.
    #[schema(value_type = String, examples("The plan is sold out"))]
    pub title: &'static str,
    /// The HTTP status code.
    #[schema(minimum = 400, maximum = 599)]
    pub status: u16,
    /// What happened in this occurrence, for humans.
    pub detail: String,
    #[schema(value_type = schemas::ProblemCode)]
    pub code: &'static str,
    /// The id of the request that produced the problem: normally the `X-Request-Id` of
    /// this response; in a replayed purchase answer, the id of the original request.
    pub request_id: String,
    /// For `invalid_request` caused by invalid fields, every field at fault.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(min_items = 1)]
    pub errors: Vec<FieldError>,
    /// The plan concerned (`plan_sold_out`, `plan_inactive`, `payment_declined`, and
    /// `plan_not_found` when the id given was a well-formed UUID).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = schemas::PlanId, required = false)]
    pub plan_id: Option<String>,
    /// The subscription concerned (`payment_declined`, and `subscription_not_found` when
    /// the id given was a well-formed UUID).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = schemas::SubscriptionId, required = false)]
    pub subscription_id: Option<String>,
}

/// An error answered as a problem. Boxed: it travels through `Result`s on every path.
#[derive(Debug)]
pub struct ApiError(Box<ApiErrorDetails>);

/// What an [`ApiError`] says.
#[derive(Debug)]
pub struct ApiErrorDetails {
    pub code: Code,
    pub detail: String,
    pub errors: Vec<FieldError>,
    pub plan_id: Option<String>,
    pub subscription_id: Option<String>,
    /// Methods the resource allows, for 405.
    pub allow: Option<String>,
    /// Seconds after which a retry may work, for 503 and 429.
    pub retry_after: Option<u64>,
    /// `RateLimit-Policy` and `RateLimit` headers, for 429.
    pub rate_limit: Option<(header::HeaderValue, header::HeaderValue)>,
    /// The cause, logged (never shown) for internal errors.
    pub source: Option<anyhow::Error>,
}

impl ApiError {
    pub fn new(code: Code, detail: impl Into<String>) -> Self {
        let retry_after = match code {
            Code::PaymentUnavailable | Code::StoreUnavailable => Some(1),
            _ => None,
        };
        Self(Box::new(ApiErrorDetails {
            code,
            detail: detail.into(),
            errors: Vec::new(),
            plan_id: None,
            subscription_id: None,
            allow: None,
            retry_after,
            rate_limit: None,
            source: None,
        }))
    }

    /// A 400 naming the fields that failed validation.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        let mut e = Self::new(
            Code::InvalidRequest,
            format!("invalid field(s): {}", fields.join(", ")),
        );
        e.errors = errors;
        e
    }

    /// A 500 with a generic body; `source` goes to the log only.
    pub fn internal(source: impl Into<anyhow::Error>) -> Self {
        let mut e = Self::new(Code::Internal, INTERNAL_DETAIL);
        e.source = Some(source.into());
        e
    }

    pub fn with_plan(mut self, plan_id: impl ToString) -> Self {
        self.plan_id = Some(plan_id.to_string());
        self
    }

    pub fn with_subscription(mut self, id: impl ToString) -> Self {
        self.subscription_id = Some(id.to_string());
        self
    }

    pub fn problem(&self, request_id: &str) -> Problem {
        Problem {
            type_uri: self.code.type_uri(),
            title: self.code.title(),
            status: self.code.status().as_u16(),
            detail: self.detail.clone(),
            code: self.code.as_str(),
            request_id: request_id.to_owned(),
            errors: self.errors.clone(),
            plan_id: self.plan_id.clone(),
            subscription_id: self.subscription_id.clone(),
        }
    }

    /// The complete response, with `request_id` in the body.
    pub fn to_response(&self, request_id: &str) -> HttpResponse {
        let mut res = HttpResponse::build(self.code.status());
        res.content_type("application/problem+json");
        if let Some(allow) = &self.allow {
            res.insert_header((header::ALLOW, allow.clone()));
        }
        if let Some(secs) = self.retry_after {
            res.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        if let Some((policy, state)) = &self.rate_limit {
            res.insert_header(("ratelimit-policy", policy.clone()));
            res.insert_header(("ratelimit", state.clone()));
        }
        if self.code == Code::Unauthorized {
            res.insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"seatkeeper\""));
        }
        res.body(serde_json::to_vec(&self.problem(request_id)).unwrap_or_default())
    }
}

impl std::ops::Deref for ApiError {
    type Target = ApiErrorDetails;

    fn deref(&self) -> &ApiErrorDetails {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ApiErrorDetails {
        &mut self.0
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.detail)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.code.status()
    }

    fn error_response(&self) -> HttpResponse {
        // The request id is filled in by `finalize`.
        self.to_response("")
    }
}

/// Makes the response of a failed request a complete problem: stamps the request id
/// into an [`ApiError`]'s body, turns any other error into a problem, and logs
/// internal errors with their cause chain.
pub fn finalize(res: ServiceResponse<BoxBody>, request_id: &str) -> ServiceResponse<BoxBody> {
    let Some(err) = res.response().error() else {
        return res;
    };
    let response = match err.as_error::<ApiError>() {
        Some(api) => {
            if api.code == Code::Internal {
                match &api.source {
                    Some(source) => tracing::error!(error = ?source, "internal error"),
                    None => tracing::error!(detail = %api.detail, "internal error"),
                }
            }
            api.to_response(request_id)
        }
        None => {
            let status = res.status();
            let code = Code::for_status(status);
            let detail = if code == Code::Internal {
                tracing::error!(error = %err, "internal error");
                INTERNAL_DETAIL.to_owned()
            } else if code == Code::PayloadTooLarge {
                "the request body is larger than this server accepts (http.body_limit_bytes)"
                    .to_owned()
            } else {
                tracing::debug!(error = %err, "request rejected");
                err.to_string()
            };
            ApiError::new(code, detail).to_response(request_id)
        }
    };
    res.into_response(response)
}
