//! The named problem responses of the document (`components/responses`). Each one is
//! `application/problem+json` with the [`Problem`](crate::problem::Problem) schema, its
//! headers and examples; the examples are built by the same code that answers errors
//! ([`ApiError::problem`]), so they show exactly what the server sends. Operations list
//! them in `#[utoipa::path(responses(…))]` as `(status = 404, response = PlanNotFound)`.

use utoipa::{
    openapi::{
        example::ExampleBuilder, schema::Type, ContentBuilder, Header, HeaderBuilder,
        ObjectBuilder, Ref, RefOr, Response, ResponseBuilder,
    },
    ToResponse,
};

use crate::{
    errors::{no_such_plan, plan_not_found, store_unavailable, subscription_not_found},
    problem::{ApiError, Code, FieldError},
};

const REQUEST_ID: &str = "0b7e3c1a-5d2f-4e8b-9a61-7c4d2e9f0a13";
const PLAN: &str = "0190f5c2-8a4b-7c3d-9e1f-2a3b4c5d6e7f";
const SUBSCRIPTION: &str = "0190f5d0-1b2c-7d3e-8f40-5a6b7c8d9e0f";
const UNKNOWN_PLAN: &str = "0190f5c2-8a4b-7c3d-9e1f-000000000000";
const UNKNOWN_SUBSCRIPTION: &str = "0190f5d0-1b2c-7d3e-8f40-000000000000";
const CHECKOUT: &str = "0193b0c1-2d3e-7f40-8a5b-6c7d8e9f0a1b";
const UNKNOWN_CHECKOUT: &str = "0193b0c1-2d3e-7f40-8a5b-000000000000";

/// A response header besides `X-Request-Id`, which every response has.
#[derive(Clone, Copy)]
enum Extra {
    Allow,
    RetryAfter,
    WwwAuthenticate,
    IdempotentReplayed,
    RateLimitPolicy,
    RateLimit,
}

impl Extra {
    fn header(self) -> (&'static str, Header) {
        let string = || ObjectBuilder::new().schema_type(Type::String);
        let (name, description, schema) = match self {
            Extra::Allow => (
                "Allow",
                "The methods the path has, comma-separated (for example `GET, POST`).",
                string(),
            ),
            Extra::RetryAfter => (
                "Retry-After",
                "Seconds after which a retry may succeed (`1` for 503; for 429, when the bucket has room again).",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0)),
            ),
            Extra::WwwAuthenticate => (
                "WWW-Authenticate",
                "The authentication scheme the API expects: `Bearer realm=\"seatkeeper\"`.",
                string(),
            ),
            Extra::RateLimitPolicy => (
                "RateLimit-Policy",
                "The limit that applies (IETF draft-ietf-httpapi-ratelimit-headers): \
                 `\"credential\";q=<burst>;w=<seconds>` for requests with a credential, \
                 `\"address\";…` for requests without one, `\"failed_auth\";…` for failed \
                 authentications. Absent when rate limits are off.",
                string(),
            ),
            Extra::RateLimit => (
                "RateLimit",
                "What is left of it: `\"<policy>\";r=<requests left>;t=<seconds until full>`.",
                string(),
            ),
            Extra::IdempotentReplayed => (
                "Idempotent-Replayed",
                "Present, with the value `true`, only when the response is the stored answer of \
                 an earlier purchase request with the same `Idempotency-Key` (nothing ran again). \
                 Absent from first answers.",
                string().enum_values(Some(["true"])),
            ),
        };
        let header = HeaderBuilder::new()
            .schema(schema)
            .description(Some(description))
            .build();
        (name, header)
    }
}

/// The `X-Request-Id` response header.
pub fn request_id_header() -> Header {
    HeaderBuilder::new()
        .schema(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[A-Za-z0-9._:-]{1,128}$")),
        )
        .description(Some(
            "The id of this request (the client's own `X-Request-Id` when it was valid, else \
             a new UUID). Sent on every response.",
        ))
        .build()
}

/// A problem response: `examples` are `(summary, error)`; one example is shown alone.
fn problem(description: &str, extras: &[Extra], examples: Vec<(&str, ApiError)>) -> Response {
    let body = |e: &ApiError| serde_json::to_value(e.problem(REQUEST_ID)).unwrap_or_default();
    let mut content = ContentBuilder::new().schema(Some(Ref::from_schema_name("Problem")));
    content = match examples.as_slice() {
        [(_, only)] => content.example(Some(body(only))),
        many => content.examples_from_iter(many.iter().map(|(summary, e)| {
            let example = ExampleBuilder::new()
                .summary(*summary)
                .value(Some(body(e)))
                .build();
            (e.code.as_str(), example)
        })),
    };
    let mut response = ResponseBuilder::new()
        .description(description)
        .header("X-Request-Id", request_id_header());
    for extra in extras {
        let (name, header) = extra.header();
        response = response.header(name, header);
    }
    response
        .content("application/problem+json", content.build())
        .build()
}

/// Declares a type per named response; its doc comment is the response's description.
macro_rules! problem_responses {
    ($($(#[doc = $doc:literal])* $name:ident [$($extra:ident),*] => $examples:expr;)*) => {
        $(
            $(#[doc = $doc])*
            pub struct $name;

            impl<'r> ToResponse<'r> for $name {
                fn response() -> (&'r str, RefOr<Response>) {
                    let description = super::doc_text(&[$($doc),*]);
                    let examples: Vec<(&str, ApiError)> = $examples;
                    let response = problem(&description, &[$(Extra::$extra),*], examples);
                    (stringify!($name), response.into())
                }
            }
        )*
    };
}

fn fields(pairs: &[(&str, &str)]) -> ApiError {
    ApiError::invalid(pairs.iter().map(|(f, m)| FieldError::new(*f, *m)).collect())
}

fn plan() -> seatkeeper_domain::PlanId {
    PLAN.parse().expect("a plan id")
}

problem_responses! {
    /// The body is not a JSON object (`errors` names `body`), is not valid JSON (no
    /// `errors`), or fields are missing, unknown, of the wrong type or invalid (`errors`
    /// names each one).
    InvalidRequest [] => vec![("Invalid fields", fields(&[
        ("capacity", "must be an integer from 1 to 1000000"),
        ("currency", "must be an ISO 4217 currency code in lower case, such as 'usd' or 'eur'"),
    ]))];
    /// `limit` or `cursor` is invalid (`errors` names each one), or one of them is
    /// repeated (no `errors`).
    InvalidListQuery [] => vec![("Invalid limit", fields(&[
        ("limit", "must be an integer from 1 to 100"),
    ]))];
    /// The customer id in the path is malformed, or `limit` or `cursor` is invalid
    /// (`errors` names each one).
    InvalidCustomerListQuery [] => vec![("Invalid customer id", fields(&[
        ("customer_id", "may contain only ASCII letters, digits, '_', '-', '.' and ':'"),
    ]))];
    /// `idempotency_key_missing`: no `Idempotency-Key` header. `idempotency_key_invalid`:
    /// the header is empty, longer than 255 characters, not printable ASCII, or sent more
    /// than once. `invalid_request`: the body is not a JSON object or not valid JSON, or
    /// fields are missing, unknown, of the wrong type or invalid. Nothing was stored.
    PurchaseBadRequest [] => vec![
        ("No Idempotency-Key header", ApiError::new(
            Code::IdempotencyKeyMissing,
            "purchases need an Idempotency-Key header: a unique value per purchase, resent unchanged on every retry",
        )),
        ("An Idempotency-Key that is too long", ApiError::new(
            Code::IdempotencyKeyInvalid,
            "the Idempotency-Key header must be at most 255 characters",
        )),
        ("Invalid fields", fields(&[
            ("plan_id", "must be a plan id (a UUID)"),
            ("payment_method", "must be a payment method id such as 'pm_card_visa' ('pm_' then letters, digits or '_', at most 255 characters)"),
        ])),
    ];
    /// No credential was sent, or the credential is not valid: the `Authorization` header
    /// is not `Bearer <credential>`, the API key is unknown or revoked, the customer
    /// session is expired or forged. A credential that is not valid is never taken as no
    /// credential. Nothing was changed.
    Unauthorized [WwwAuthenticate] => vec![
        ("No credential", ApiError::new(
            Code::Unauthorized,
            "a credential is needed to administer (plans, audit, reconciliation, keys, metrics): send 'Authorization: Bearer <API key, customer session or admin token>'",
        )),
        ("A revoked key", ApiError::new(
            Code::Unauthorized,
            "the API key is not valid: unknown or revoked",
        )),
        ("An expired session", ApiError::new(
            Code::Unauthorized,
            "the customer session has expired",
        )),
    ];
    /// The credential is valid but may not do this: a `purchases` key or a customer
    /// session on an admin endpoint, a customer session making sessions, or a customer
    /// session buying for another customer. Nothing was changed.
    Forbidden [] => vec![("A purchases key administering", ApiError::new(
        Code::Forbidden,
        "this credential may not administer (plans, audit, reconciliation, keys, metrics)",
    ))];
    /// Too many requests: this credential's, this address's or this address's failed
    /// authentications' bucket is empty (limits are per instance, see `rate_limit`
    /// settings). Nothing was done; retry after `Retry-After` seconds.
    RateLimited [RetryAfter, RateLimitPolicy, RateLimit] => vec![("Limited", {
        let mut e = ApiError::new(
            Code::RateLimited,
            "too many requests for this credential: retry in 1 s",
        );
        e.retry_after = Some(1);
        e
    })];
    /// There is no API key with this id (or the id is not a UUID).
    KeyNotFound [] => vec![("Unknown key", ApiError::new(
        Code::KeyNotFound,
        "there is no API key with id '0193a1b2-0c3d-7e4f-8a5b-000000000000'",
    ))];
    /// The payment provider declined the charge: the subscription is `incomplete_expired`
    /// and its seat was released. `plan_id` and `subscription_id` name them. Stored on the
    /// key and replayed (with `Idempotent-Replayed: true`) to retries with the same key and
    /// request; buy again with a new key.
    PaymentDeclined [IdempotentReplayed] => vec![("Declined", ApiError::new(
        Code::PaymentDeclined,
        "the payment was declined (card_declined: Your card was declined.); the seat was released",
    ).with_plan(PLAN).with_subscription(SUBSCRIPTION))];
    /// There is no plan with this id (or the id is not a UUID). `plan_id` quotes the id
    /// when it was a well-formed UUID.
    PlanNotFound [] => vec![("Unknown plan", plan_not_found(UNKNOWN_PLAN.parse().expect("a plan id")))];
    /// There is no plan with the body's `plan_id`. A definitive outcome: stored on the key
    /// and replayed (with `Idempotent-Replayed: true`) to retries with the same key and
    /// request.
    PurchasePlanNotFound [IdempotentReplayed] => vec![("Unknown plan", no_such_plan(UNKNOWN_PLAN).with_plan(UNKNOWN_PLAN))];
    /// There is no subscription with this id (or the id is not a UUID).
    SubscriptionNotFound [] => vec![("Unknown subscription", subscription_not_found(
        UNKNOWN_SUBSCRIPTION.parse().expect("a subscription id"),
    ))];
    /// No route matches the path (any method). Not specific to an operation.
    NotFound [] => vec![("No route", ApiError::new(Code::NotFound, "there is nothing at /api/plan"))];
    /// The path exists but does not have this method (including `HEAD` and `OPTIONS`).
    /// `Allow` lists the methods it has. Not specific to an operation.
    MethodNotAllowed [Allow] => vec![("Wrong method", ApiError::new(
        Code::MethodNotAllowed,
        "DELETE is not allowed on /api/plans; allowed: GET, POST",
    ))];
    /// The new capacity is below the seats that `incomplete` and `active` subscriptions
    /// hold. Nothing was changed.
    CapacityBelowHeld [] => vec![("Too small", ApiError::new(
        Code::CapacityBelowHeld,
        "capacity 5 is below the 6 seats that subscriptions hold",
    ))];
    /// The subscription is `incomplete` or `incomplete_expired`; only `active` (or
    /// already `canceled`) subscriptions can be cancelled.
    SubscriptionNotActive [] => vec![("Not active", ApiError::new(
        Code::SubscriptionNotActive,
        "the subscription is incomplete_expired and only active subscriptions can be cancelled",
    ))];
    /// `plan_sold_out`: the plan has no seat left. `plan_inactive`: the plan is archived.
    /// Both are definitive outcomes, carry `plan_id`, and are stored on the key and
    /// replayed (with `Idempotent-Replayed: true`) to retries with the same key and
    /// request. `idempotency_key_in_use`: another request with this key (same customer)
    /// is still running; nothing is stored, retry once it has finished.
    PurchaseConflict [IdempotentReplayed] => vec![
        ("No seat left", ApiError::new(
            Code::PlanSoldOut,
            format!("plan '{PLAN}' has no seats left"),
        ).with_plan(plan())),
        ("The plan is archived", ApiError::new(
            Code::PlanInactive,
            format!("plan '{PLAN}' is archived and sells no seats"),
        ).with_plan(plan())),
        ("The first request with this key is still running", ApiError::from(
            seatkeeper_domain::service::PurchaseError::KeyInUse,
        )),
    ];
    /// The body is larger than the limit (16 KiB by default, setting
    /// `http.body_limit_bytes`).
    PayloadTooLarge [] => vec![("Too large", ApiError::new(
        Code::PayloadTooLarge,
        "the request body is larger than this server accepts (http.body_limit_bytes)",
    ))];
    /// The body was not sent as JSON (`Content-Type` missing, or neither
    /// `application/json` nor a `+json` type).
    UnsupportedMediaType [] => vec![("Plain text", ApiError::new(
        Code::UnsupportedMediaType,
        "the body must be JSON sent as 'Content-Type: application/json' (got 'text/plain')",
    ))];
    /// The `Idempotency-Key` was already used by this customer for a different request
    /// (another plan or payment method). Nothing was changed; use a new key for a new
    /// purchase.
    IdempotencyKeyReused [] => vec![("Another request", ApiError::from(
        seatkeeper_domain::service::PurchaseError::KeyReused,
    ))];
    /// The outcome is not known yet; nothing is stored as a response and the key is
    /// released at once. `payment_unavailable`: the payment provider gave no answer (the
    /// charge may have happened); `store_unavailable`: the store could not be reached.
    /// Retry after `Retry-After` seconds with the same `Idempotency-Key`: the purchase
    /// resumes where it stopped and never charges twice.
    PurchaseUnavailable [RetryAfter] => vec![
        ("The payment provider did not answer", ApiError::new(
            Code::PaymentUnavailable,
            "the payment provider did not give an answer; retry with the same Idempotency-Key, which never charges twice",
        )),
        ("The store could not be reached", store_unavailable()),
    ];
    /// The store could not be reached; nothing was changed. Retry after `Retry-After`
    /// seconds.
    StoreUnavailable [RetryAfter] => vec![("The store could not be reached", store_unavailable())];
    /// `plan_sold_out`: no seat is left. `plan_inactive`: the plan is archived.
    /// `checkout_session_open`: the customer already has an open session on the plan (its
    /// id is in `detail`): pay it or expire it first. Nothing was changed; these refusals
    /// are not stored, so a retry with the same key decides again.
    CheckoutOpenConflict [] => vec![
        ("No seat left", ApiError::new(
            Code::PlanSoldOut,
            format!("plan '{PLAN}' has no seats left"),
        ).with_plan(plan())),
        ("An open session on the plan", ApiError::new(
            Code::CheckoutSessionOpen,
            format!("the customer already has an open checkout session on this plan ('{CHECKOUT}'): pay it or expire it first"),
        ).with_plan(plan())),
    ];
    /// There is no checkout session with this id (or the id is not a UUID, or the session
    /// is another customer's).
    CheckoutSessionNotFound [] => vec![("Unknown session", crate::errors::checkout_not_found(UNKNOWN_CHECKOUT))];
    /// The card was declined; the session stays `open` until its `expires_at`, so another
    /// payment method can be tried. `plan_id` names the plan.
    CheckoutPaymentDeclined [] => vec![("Declined", ApiError::new(
        Code::PaymentDeclined,
        "the payment was declined (card_declined: Your card was declined.); the session stays open until 2026-02-01T12:30:00.200Z: confirm again with another payment method",
    ).with_plan(PLAN))];
    /// The session is `expired` (or the change does not fit it): nothing was changed.
    CheckoutSessionNotOpen [] => vec![("Expired", ApiError::new(
        Code::CheckoutSessionNotOpen,
        "the checkout session is expired and no longer open",
    ))];
    /// `payment_unavailable`: the payment provider gave no answer; the session is
    /// unchanged (still open), and its payment's outcome arrives by webhook or is asked
    /// for by the worker. `store_unavailable`: the store could not be reached. Retry after
    /// `Retry-After` seconds.
    CheckoutUnavailable [RetryAfter] => vec![
        ("The payment provider did not answer", ApiError::new(
            Code::PaymentUnavailable,
            "the payment provider did not give an answer; the session is unchanged: retry, or wait for the payment's outcome",
        )),
        ("The store could not be reached", store_unavailable()),
    ];
    /// `webhook_signature_invalid`: the `Stripe-Signature` header is missing, malformed,
    /// stale (outside the tolerance) or matches no configured secret; logged.
    /// `invalid_request`: the signed body is not a Stripe event. Nothing was changed.
    WebhookBadRequest [] => vec![
        ("A forged signature", ApiError::new(
            Code::WebhookSignatureInvalid,
            "no v1 signature of the Stripe-Signature header matches the body under a configured secret",
        )),
        ("A stale signature", ApiError::new(
            Code::WebhookSignatureInvalid,
            "the Stripe-Signature timestamp is outside the tolerance (a stale or replayed event)",
        )),
    ];
    /// An unexpected failure. The body is always the same generic one; the cause is
    /// logged under the request id.
    Internal [] => vec![("Internal", ApiError::internal(anyhow::anyhow!("example")))];
}
