//! Request ids: every request gets one (the client's `X-Request-Id` when it is sane,
//! else a new UUID), every response carries it back in `X-Request-Id`, every log line
//! of the request is in a span that names it, and every problem body quotes it.

use std::future::{ready, Ready};

use actix_web::{
    body::{BoxBody, MessageBody},
    dev::{Service, ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    Error, FromRequest, HttpMessage, HttpRequest,
};
use futures::future::LocalBoxFuture;
use tracing::Instrument;

use crate::problem;

pub const HEADER: &str = "x-request-id";

/// The id of the current request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl RequestId {
    /// Keeps a client's id when it is 1 to 128 characters of letters, digits, `-`,
    /// `_`, `.` or `:`; otherwise makes a new one.
    pub fn from_header(value: Option<&HeaderValue>) -> Self {
        let sane = value
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
            uuid::Uuid::new_v4()
                .hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer())
                .to_owned()
        }))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromRequest for RequestId {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let id = req
            .extensions()
            .get::<RequestId>()
            .cloned()
            .unwrap_or_else(|| RequestId::from_header(req.headers().get(HEADER)));
        ready(Ok(id))
    }
}

/// The middleware, for `App::wrap_fn`.
pub fn middleware<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> LocalBoxFuture<'static, Result<ServiceResponse<BoxBody>, Error>>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    let id = RequestId::from_header(req.headers().get(HEADER));
    req.extensions_mut().insert(id.clone());
    let span = tracing::info_span!(
        "request",
        request_id = %id.0,
        method = %req.method(),
        path = %req.path()
    );
    let fut = span.in_scope(|| srv.call(req));
    Box::pin(
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
        .instrument(span),
    )
}
