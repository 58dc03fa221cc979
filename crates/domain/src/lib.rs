//! Seatkeeper's domain: what a plan, a subscription, an idempotency record and an
//! audit entry are, the ports the outside world plugs into, and the services that
//! run the purchase state machine of `shared/guides/purchase-flow.md`.
//!
//! # Layout
//!
//! - [`model`]: validated value types (`Capacity`, `IdempotencyKey`, `Currency`, …)
//!   and the entities built from them. Constructors validate; an entity that exists
//!   is valid.
//! - [`ports`]: the traits adapters implement. Each store method is one atomic
//!   business step (reserve a seat, complete a purchase, cancel); the adapter owns
//!   its transaction or lock, the domain never sees one.
//! - [`service`]: the purchase, plan and subscription services, generic over the
//!   ports through trait objects.
//! - [`invariants`]: the checks every store must keep (no overselling, audit replay),
//!   used by the test suites of every crate.
//!
//! This crate knows nothing of HTTP, SQL or MongoDB.

pub mod invariants;
pub mod model;
pub mod ports;
pub mod service;

pub use model::*;
