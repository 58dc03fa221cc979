//! Seatkeeper's HTTP server: a thin actix-web layer over the domain.
//!
//! # Layout
//!
//! - [`auth`]: who is calling (bootstrap token, API keys, customer sessions) and what
//!   they may do.
//! - [`configuration`]: settings from defaults, an optional file and `SEATKEEPER_…`
//!   environment variables.
//! - [`startup`]: wiring adapters into services, binding, running (`Application`).
//! - [`routes`]: one module per resource, each handler with its OpenAPI operation.
//! - [`openapi`]: the OpenAPI document generated from the routes and DTOs.
//! - [`dto`]: the JSON shapes and their conversion into validated domain values.
//! - [`keys_cli`]: `seatkeeper-server keys create|list|revoke`.
//! - [`extract`]: bodies, headers and query strings, validated.
//! - [`problem`] and `errors`: RFC 9457 problem responses, and the one place where
//!   domain errors become HTTP statuses.
//! - [`request_id`]: request ids and each request's span (tracing-actix-web's
//!   `TracingLogger` with our root span), and the `X-Request-Id` response header.
//! - [`rate_limit`]: per-credential and per-address rate limits, and CORS's allowlist
//!   is applied in `startup`.
//! - [`recovery`]: the reconciler's runs in this instance, for the admin API.
//! - [`telemetry`]: the log subscriber.
//! - [`timestamp`]: RFC 3339 timestamps in bodies, written without `core::fmt`.
//! - [`webhooks`]: Stripe's webhook signatures and events; `checkout_worker` runs the
//!   checkout sessions' expiry and provider checks in the background.

pub mod auth;
pub mod bench;
mod checkout_worker;
pub mod configuration;
pub mod dto;
mod errors;
pub mod extract;
pub mod keys_cli;
mod live;
pub mod metrics;
pub mod openapi;
pub mod pages;
pub mod problem;
pub mod rate_limit;
pub mod recovery;
pub mod request_id;
pub mod routes;
pub mod startup;
pub mod telemetry;
pub mod timestamp;
pub mod webhooks;
