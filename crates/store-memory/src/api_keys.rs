//! [`ApiKeyRepository`]: API keys by id, with an index from their secret's hash, under one
//! lock (keys are few and change rarely; a lookup takes the read side).

use std::collections::HashMap;

use seatkeeper_domain::{ports::ApiKeyRepository, ApiKey, ApiKeyId, SecretHash};

use super::*;

/// The keys, and which key each secret hash belongs to.
#[derive(Default)]
pub(crate) struct ApiKeys {
    by_id: BTreeMap<ApiKeyId, ApiKey>,
    by_hash: HashMap<SecretHash, ApiKeyId>,
}

#[async_trait]
impl ApiKeyRepository for MemoryStore {
    async fn create_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        let mut keys = self.api_keys.write();
        if keys.by_id.contains_key(&key.id()) || keys.by_hash.contains_key(key.secret_hash()) {
            return Err(StoreError::internal(format!(
                "key {} or its secret hash is already stored",
                key.id()
            )));
        }
        keys.by_hash.insert(key.secret_hash().clone(), key.id());
        keys.by_id.insert(key.id(), key.clone());
        Ok(())
    }

    async fn key_by_hash(&self, hash: &SecretHash) -> Result<Option<ApiKey>, StoreError> {
        let keys = self.api_keys.read();
        Ok(keys
            .by_hash
            .get(hash)
            .and_then(|id| keys.by_id.get(id))
            .cloned())
    }

    async fn list_keys(
        &self,
        after: Option<ApiKeyId>,
        limit: u32,
    ) -> Result<Vec<ApiKey>, StoreError> {
        use std::ops::Bound::{Excluded, Unbounded};
        let start = after.map_or(Unbounded, Excluded);
        Ok(self
            .api_keys
            .read()
            .by_id
            .range((start, Unbounded))
            .take(limit as usize)
            .map(|(_, k)| k.clone())
            .collect())
    }

    async fn revoke_key(&self, id: ApiKeyId, now: Timestamp) -> Result<Option<ApiKey>, StoreError> {
        Ok(self.api_keys.write().by_id.get_mut(&id).map(|k| {
            k.revoke(now);
            k.clone()
        }))
    }

    async fn record_key_use(&self, id: ApiKeyId, at: Timestamp) -> Result<(), StoreError> {
        if let Some(k) = self.api_keys.write().by_id.get_mut(&id) {
            k.record_use(at);
        }
        Ok(())
    }
}
