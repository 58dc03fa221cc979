//! The storage contract suite run against MongoDB, one fresh database per case.
//!
//! It needs a replica set at `SEATKEEPER_TEST_MONGODB_URL` (`docker compose run --rm
//! store-tests` provides one). Without the variable every case passes as skipped and
//! prints `skipped: <reason>` under its own name (`cargo test -- --nocapture` shows it);
//! with the variable set but no usable server, the cases are skipped too, except under
//! `CI`, where they fail.

use std::sync::Arc;

use async_trait::async_trait;
use seatkeeper_domain::ports::Store;
use seatkeeper_store_contract::{StoreFactory, Unavailable};
use seatkeeper_store_mongo::testing::TestDatabases;

struct MongoFactory(TestDatabases);

#[async_trait]
impl StoreFactory for MongoFactory {
    async fn fresh(&self) -> Arc<dyn Store> {
        Arc::new(self.0.fresh_store().await)
    }
}

async fn mongo() -> Result<MongoFactory, Unavailable> {
    TestDatabases::connect()
        .await
        .map(MongoFactory)
        .map_err(Unavailable::new)
}

seatkeeper_store_contract::contract_tests!(async mongo());
