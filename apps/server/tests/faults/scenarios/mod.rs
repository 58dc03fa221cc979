//! The scenarios, one async function each, taking the database to run on; the tests
//! that run them on every durable store are declared at the crate root
//! (`on_every_store!` in `main.rs`), so that each test is named after its scenario. A
//! scenario holds [`crate::SERIAL`] while it runs, starts its [`crate::scenario::Scenario`]
//! (or returns at once when its database server cannot be reached and `CI` is not set),
//! injects its faults and ends with [`crate::scenario::Scenario::conclude`] (or
//! [`crate::scenario::Scenario::conclude_all`], with checkouts).

pub mod checkouts;
pub mod reconciler;
pub mod under_load;
