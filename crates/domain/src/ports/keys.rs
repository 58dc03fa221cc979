//! The API key repository: keys as [`ApiKey::create`] made them, found by the hash of
//! their secret, listed, revoked, and their last use recorded.

use async_trait::async_trait;

use super::StoreError;
use crate::model::{ApiKey, ApiKeyId, SecretHash, Timestamp};

#[async_trait]
pub trait ApiKeyRepository: Send + Sync {
    /// Stores a new key. Ids and secret hashes are unique (a new key's are random); a
    /// key whose id or hash is already stored is a bug, answered `Internal`, changing
    /// nothing.
    async fn create_key(&self, key: &ApiKey) -> Result<(), StoreError>;

    /// The key whose secret hashes to `hash`, revoked or not, or `None`.
    async fn key_by_hash(&self, hash: &SecretHash) -> Result<Option<ApiKey>, StoreError>;

    /// At most `limit` keys, revoked ones included, ordered by id (which is their order
    /// of creation), starting after `after`.
    async fn list_keys(
        &self,
        after: Option<ApiKeyId>,
        limit: u32,
    ) -> Result<Vec<ApiKey>, StoreError>;

    /// Revokes the key ([`ApiKey::revoke`]: a second revocation keeps the first time) and
    /// returns it as it now is, or `None` for an unknown id.
    async fn revoke_key(&self, id: ApiKeyId, now: Timestamp) -> Result<Option<ApiKey>, StoreError>;

    /// Records that the key authenticated a request at `at` ([`ApiKey::record_use`]: an
    /// earlier time than the one recorded changes nothing). An unknown id changes
    /// nothing.
    async fn record_key_use(&self, id: ApiKeyId, at: Timestamp) -> Result<(), StoreError>;
}
