//! Black-box tests of the HTTP API: each test starts a server on port 0 (see
//! `helpers::spawn_app`) and talks to it over real HTTP. Set `TEST_LOG=1` to see the
//! server's logs.
//!
//! Most tests run once per store (`<test>::on_memory`, `::on_postgres`, `::on_mongodb`,
//! made by `on_every_store!`), each on a fresh database. Those that never reach the store
//! (HTTP errors, request ids, the bench echo, the Stripe gateway) or that use the
//! in-memory store's off switch (503 `store_unavailable`) run on the in-memory store only.

#[macro_use]
mod helpers;

mod access;
mod admin_console;
mod bench;
mod checkout;
#[path = "../common/mod.rs"]
mod common;
mod concurrency;
mod errors;
mod health;
mod idempotency;
mod live;
mod metrics;
mod openapi;
mod plans;
mod purchase;
mod recovery;
mod storefront;
mod stripe;
mod subscriptions;
mod timestamps;
