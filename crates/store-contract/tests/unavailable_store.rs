//! The deferred form of `contract_tests!` against a factory that reports its store
//! unavailable: it must compile, and every case must skip (print `skipped: <reason>` and
//! pass) rather than fail. This is what a database-backed store gets when its database is
//! not reachable and `CI` is not set.

use seatkeeper_store_contract::{StoreFactory, Unavailable};

async fn no_database() -> Result<Box<dyn StoreFactory>, Unavailable> {
    Err(Unavailable::new(
        "no database in this test: the whole suite is skipped",
    ))
}

mod skipped {
    seatkeeper_store_contract::contract_tests!(async super::no_database());
}
