//! The contract cases, one module per port (and one for concurrency). Each case is a
//! `pub async fn case_name(factory: &dyn StoreFactory)` that takes fresh stores from the
//! factory and panics, saying what the store did wrong, on any breach of the contract.
//!
//! Every `pub async fn` at the start of a line in these files is a case and must be listed
//! in `__contract_cases!` (lib.rs); helpers are private or live in [`crate::support`].

pub mod checkout_races;
pub mod checkouts;
pub mod concurrency;
pub mod feed;
pub mod idempotency;
pub mod keys;
pub mod plans;
pub mod purchases;
pub mod recovery;
pub mod store;
pub mod subscriptions;
