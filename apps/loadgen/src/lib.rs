//! `seatkeeper-loadgen`: drives a running Seatkeeper server with purchases (or checkouts)
//! over a fixed number of keep-alive HTTP/1.1 connections, reports throughput, latency
//! percentiles and the count of every status and problem code, and ends by checking
//! through the API that nothing was oversold and that retries replayed instead of
//! charging again.
//!
//! - [`client`]: one keep-alive connection per task; loopback targets only.
//! - [`run`]: the run itself ([`run::run`]) and its [`run::Report`].
//! - [`checkout`]: the checkout modes' tasks (open, confirm, webhook; or abandon).
//! - [`signature`]: the `Stripe-Signature` of the webhooks they deliver.
//! - [`tally`]: counting answers and the pass/fail verdict ([`tally::verify`]).
//! - [`stats`]: latency percentiles.

pub mod checkout;
pub mod client;
pub mod run;
pub mod signature;
pub mod stats;
pub mod tally;

pub use run::{run, Options, Report};
pub use tally::Mode;
