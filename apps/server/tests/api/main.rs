//! Black-box tests of the HTTP API: each test starts a server on port 0 (see
//! `helpers::spawn_app`) and talks to it over real HTTP. Set `TEST_LOG=1` to see the
//! server's logs.

mod bench;
mod concurrency;
mod errors;
mod health;
mod helpers;
mod idempotency;
mod openapi;
mod plans;
mod purchase;
mod recovery;
mod stripe;
mod subscriptions;
