//! Request ids and each request's span, through `tracing-actix-web`: its
//! [`TracingLogger`](tracing_actix_web::TracingLogger)`<`[`RequestSpan`]`>` opens a span
//! for every request and keeps the handler, the other middleware and the streaming of the
//! body inside it; [`RequestSpan`] makes that span (`request`, with `request_id`, `method`
//! and `path`, as OpenTelemetry's `server` kind) and records the status it ends with. The
//! id is the client's `X-Request-Id` when it is sane, else the UUID v4 that
//! `TracingLogger` generated for the request; every response carries it back in
//! `X-Request-Id` and every problem body quotes it.
//!
//! What tracing-actix-web cannot do stays here, as small as it can be:
//! - Keeping the client's id. Its `RequestId` is a `Uuid` that it generates for every
//!   request (the type cannot hold `trace-abc.123:x`), and its `root_span!` macro declares
//!   `request_id` from that generated `Uuid`; recording our id over it afterwards would
//!   leave both values in a text log line. So [`RequestId`] here is the id we answer with,
//!   and [`RequestSpan`] builds its span with `tracing::info_span!` instead of
//!   `root_span!`, with the fields `DefaultRootSpanBuilder::on_request_end` records.
//! - Answering with the id: `TracingLogger` never touches the response, so [`respond`]
//!   (for `App::wrap_fn`, inside `TracingLogger`) sets `X-Request-Id` and stamps the id
//!   into problem bodies (`problem::finalize`).
//!
//! tracing-actix-web's default feature `emit_event_on_error` is off: it would log every
//! 4xx again as a warning, and `problem::finalize` already logs what an operator needs.
//! Its `opentelemetry_0_x` features (which take a caller's `traceparent` as the span's
//! parent) stop at `opentelemetry_0_32`, older than our 0.33, so none is on.

use std::future::{ready, Future, Ready};

use actix_web::{
    body::{BoxBody, MessageBody},
    dev::{Service, ServiceRequest, ServiceResponse},
    http::header::{HeaderMap, HeaderName, HeaderValue},
    Error, FromRequest, HttpMessage, HttpRequest,
};
use tracing::{field::Empty, Span};
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};

use crate::problem;

pub const HEADER: &str = "x-request-id";

/// The id of the current request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// The client's id when it is 1 to 128 characters of letters, digits, `-`, `_`, `.`
    /// or `:`; else `generated` (tracing-actix-web's), or a new UUID v4 without it.
    fn choose(headers: &HeaderMap, generated: Option<tracing_actix_web::RequestId>) -> Self {
        let sane = headers
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|s| {
                !s.is_empty()
                    && s.len() <= 128
                    && s.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':')
                    })
            })
            .map(str::to_owned);
        Self(sane.unwrap_or_else(|| {
            generated
                .map(|id| *id)
                .unwrap_or_else(uuid::Uuid::new_v4)
                .hyphenated()
                .to_string()
        }))
    }

    /// The id [`RequestSpan`] chose for this request (chosen here when it did not run).
    fn of(req: &impl HttpMessage) -> Self {
        let chosen = req.extensions().get::<RequestId>().cloned();
        chosen.unwrap_or_else(|| Self::choose(req.headers(), None))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromRequest for RequestId {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        ready(Ok(RequestId::of(req)))
    }
}

/// The root span of every request, for `TracingLogger::<RequestSpan>::new()`.
pub struct RequestSpan;

impl RootSpanBuilder for RequestSpan {
    fn on_request_start(req: &ServiceRequest) -> Span {
        let generated = req
            .extensions()
            .get::<tracing_actix_web::RequestId>()
            .copied();
        let id = RequestId::choose(req.headers(), generated);
        let span = tracing::info_span!(
            "request",
            request_id = %id.0,
            method = %req.method(),
            path = %req.path(),
            otel.kind = "server",
            http.status_code = Empty,
            otel.status_code = Empty,
            exception.message = Empty,
            exception.details = Empty,
        );
        req.extensions_mut().insert(id);
        span
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        match outcome {
            // `respond` has made every error a problem response, which carries no error
            // any more: a 5xx would be recorded as OK.
            Ok(res) if res.response().error().is_none() && res.status().is_server_error() => {
                span.record("http.status_code", i32::from(res.status().as_u16()));
                span.record("otel.status_code", "ERROR");
            }
            _ => DefaultRootSpanBuilder::on_request_end(span, outcome),
        }
    }
}

/// Sets `X-Request-Id` on the response and makes a failed request's response a complete
/// problem quoting the id; for `App::wrap_fn`, inside `TracingLogger`.
pub fn respond<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> impl Future<Output = Result<ServiceResponse<BoxBody>, Error>> + 'static
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    let id = RequestId::of(&req);
    let fut = srv.call(req);
    async move {
        // Handler and extractor errors arrive as responses; the router never fails.
        let res = fut.await?.map_into_boxed_body();
        let mut res = problem::finalize(res, &id.0);
        if let Ok(value) = HeaderValue::from_str(&id.0) {
            res.headers_mut()
                .insert(HeaderName::from_static(HEADER), value);
        }
        Ok(res)
    }
}
