//! The pages people use: the storefront at `/` and the admin console at `/admin`. The
//! server renders them from the templates in `apps/server/templates/` (askama, checked
//! when the crate compiles) and serves the little hand-written JavaScript and CSS they
//! need from `/assets/` ([`assets`]): no build step, nothing from another origin (but
//! Stripe.js, in Stripe mode). Pages hold no rule of their own: what they show comes from
//! the same services as the API, and every change they make goes through the API with
//! the browser's credential.

mod admin;
mod assets;
mod storefront;

use actix_web::{
    http::header::{self, HeaderValue},
    web, HttpResponse,
};
use askama::Template;

use crate::problem::ApiError;

/// What the pages need to know of the deployment.
#[derive(Debug, Clone)]
pub struct PageConfig {
    /// Whether the storefront's demo sign-in (any customer id, no credential) is on.
    pub demo_sign_in: bool,
    /// The gateway: `simulated` (the test payment form) or `stripe` (Payment Element).
    pub provider: &'static str,
    /// Stripe's publishable key, in Stripe mode.
    pub publishable_key: Option<String>,
}

impl PageConfig {
    /// Stripe mode: the storefront loads Stripe.js and takes cards in its Payment Element.
    fn stripe(&self) -> Option<&str> {
        (self.provider == "stripe")
            .then_some(self.publishable_key.as_deref())
            .flatten()
    }

    /// The page's Content-Security-Policy: our own origin only, and Stripe's where
    /// Stripe mode needs it.
    fn content_security_policy(&self) -> String {
        let (script, frame, connect) = if self.stripe().is_some() {
            (
                " https://js.stripe.com",
                "https://js.stripe.com https://hooks.stripe.com",
                " https://api.stripe.com",
            )
        } else {
            ("", "'none'", "")
        };
        format!(
            "default-src 'self'; script-src 'self'{script}; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'{connect}; frame-src {frame}; frame-ancestors 'none'; base-uri 'none'; \
             form-action 'self'; object-src 'none'"
        )
    }
}

/// Registers the pages and their assets.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(storefront::page)
        .service(admin::page)
        .service(assets::asset);
}

/// A rendered page with the headers every page carries.
fn html(config: &PageConfig, page: &impl Template) -> Result<HttpResponse, ApiError> {
    let body = page.render().map_err(|e| {
        ApiError::internal(anyhow::Error::new(e).context("rendering a page's template"))
    })?;
    let mut res = HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "same-origin"))
        .body(body);
    if let Ok(csp) = HeaderValue::from_str(&config.content_security_policy()) {
        res.headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    Ok(res)
}
