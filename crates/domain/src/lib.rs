//! Seatkeeper's domain: what a plan, a subscription, an idempotency record and an
//! audit entry are, the ports the outside world plugs into, and the services that
//! run the purchase state machine (`docs/architecture.md`, "The purchase flow").
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

/// An error and its causes on one line — `outer: cause: root cause` — for logs, and for
/// an error re-created from another's text.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct E {
        text: &'static str,
        #[source]
        source: Option<Box<E>>,
    }

    #[test]
    fn an_error_chain_names_every_cause_from_the_outside_in() {
        let root = E {
            text: "connection refused",
            source: None,
        };
        let mid = E {
            text: "pool timed out",
            source: Some(Box::new(root)),
        };
        let top = E {
            text: "the store is unavailable",
            source: Some(Box::new(mid)),
        };
        assert_eq!(
            super::error_chain(&top),
            "the store is unavailable: pool timed out: connection refused"
        );
    }
}
