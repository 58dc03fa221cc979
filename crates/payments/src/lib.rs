//! Payment gateways behind the domain's [`PaymentGateway`] port.
//!
//! - [`StripeGateway`] talks to Stripe's PaymentIntents and Refunds API over HTTP (or to
//!   `seatkeeper-paysim`, the local Stripe-compatible simulator).
//! - [`SimulatedGateway`] runs in the server's own process and answers like Stripe's test
//!   mode does for its test payment methods. It is the default gateway of the zero-setup
//!   run and of most test suites.

mod simulated;
mod stripe;

pub use simulated::*;
pub use stripe::*;

use seatkeeper_domain::ports::PaymentGateway;
