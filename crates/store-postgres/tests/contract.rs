//! The storage contract suite run against PostgreSQL, one fresh database per case.

use std::sync::Arc;

use async_trait::async_trait;
use seatkeeper_domain::ports::Store;
use seatkeeper_store_contract::{StoreFactory, Unavailable};
use seatkeeper_store_postgres::testing::TestDatabases;

struct PostgresFactory(TestDatabases);

#[async_trait]
impl StoreFactory for PostgresFactory {
    async fn fresh(&self) -> Arc<dyn Store> {
        Arc::new(self.0.fresh_store().await)
    }
}

/// `Err` skips each case (it prints `skipped: <reason>`); `connect` itself panics when CI is set.
async fn postgres() -> Result<PostgresFactory, Unavailable> {
    TestDatabases::connect()
        .await
        .map(PostgresFactory)
        .map_err(Unavailable::new)
}

seatkeeper_store_contract::contract_tests!(async postgres());
