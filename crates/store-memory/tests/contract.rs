//! The storage contract suite run against the in-memory store: every case of
//! `seatkeeper-store-contract`, one test each, each on a fresh `MemoryStore`.

use std::sync::Arc;

use async_trait::async_trait;
use seatkeeper_domain::ports::Store;
use seatkeeper_store_contract::StoreFactory;
use seatkeeper_store_memory::MemoryStore;

/// Hands out a new, empty `MemoryStore` per call.
struct MemoryFactory;

#[async_trait]
impl StoreFactory for MemoryFactory {
    async fn fresh(&self) -> Arc<dyn Store> {
        Arc::new(MemoryStore::new())
    }
}

seatkeeper_store_contract::contract_tests!(MemoryFactory);
