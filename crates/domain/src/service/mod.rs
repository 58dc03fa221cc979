//! The services: the use cases the inbound adapters (the HTTP server, the reconciler)
//! call. They hold the business rules and drive the ports; they never see a
//! transaction.

mod checkout;
mod health;
mod keys;
mod plans;
mod purchase;
mod recovery;
mod subscriptions;

pub use checkout::*;
pub use health::*;
pub use keys::*;
pub use plans::*;
pub use purchase::*;
pub use recovery::*;
pub use subscriptions::*;
