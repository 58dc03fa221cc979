//! API key administration, and finding the key a secret belongs to.

use std::sync::Arc;

use crate::{
    model::{ApiKey, ApiKeyId, KeyName, KeySecret, Page, PageRequest, Role},
    ports::{Clock, Store, StoreError},
};

/// Errors of [`KeyService::revoke`].
#[derive(Debug, thiserror::Error)]
pub enum RevokeKeyError {
    #[error("no key with id {0}")]
    NotFound(ApiKeyId),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Makes, lists and revokes API keys, and authenticates their secrets.
#[derive(Clone)]
pub struct KeyService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl KeyService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    /// Makes a key and returns it with its secret, which is shown this once: the store
    /// keeps only its hash. `by` names who asked, for the log.
    #[tracing::instrument(skip_all, fields(role = role.as_str()))]
    pub async fn create(
        &self,
        name: KeyName,
        role: Role,
        by: &str,
    ) -> Result<(ApiKey, KeySecret), StoreError> {
        let (key, secret) = ApiKey::create(name, role, self.clock.now());
        self.store.create_key(&key).await?;
        tracing::info!(key_id = %key.id(), by, "API key created");
        Ok((key, secret))
    }

    pub async fn list(
        &self,
        page: PageRequest<ApiKeyId>,
    ) -> Result<Page<ApiKey, ApiKeyId>, StoreError> {
        let items = self
            .store
            .list_keys(page.after, page.limit.get() + 1)
            .await?;
        Ok(Page::from_overfetch(items, page.limit, |k| k.id()))
    }

    /// Revokes a key; revoking a revoked key answers it unchanged. `by` names who asked,
    /// for the log.
    #[tracing::instrument(skip_all, fields(key_id = %id))]
    pub async fn revoke(&self, id: ApiKeyId, by: &str) -> Result<ApiKey, RevokeKeyError> {
        let key = self
            .store
            .revoke_key(id, self.clock.now())
            .await?
            .ok_or(RevokeKeyError::NotFound(id))?;
        tracing::info!(by, "API key revoked");
        Ok(key)
    }

    /// The key `secret` belongs to, revoked or not, or `None`. Whether a revoked key may
    /// act is [`ApiKey::is_revoked`]'s to say, by the caller.
    pub async fn find(&self, secret: &KeySecret) -> Result<Option<ApiKey>, StoreError> {
        self.store.key_by_hash(&secret.hash()).await
    }

    /// The key `secret` belongs to, if it may act (known and not revoked), with its use
    /// recorded when one is due ([`ApiKey::use_due`]). A failure to record the use is
    /// logged and does not refuse the key.
    pub async fn authenticate(&self, secret: &KeySecret) -> Result<Option<ApiKey>, StoreError> {
        let Some(key) = self.find(secret).await? else {
            return Ok(None);
        };
        if key.is_revoked() {
            return Ok(None);
        }
        let now = self.clock.now();
        if key.use_due(now) {
            if let Err(e) = self.store.record_key_use(key.id(), now).await {
                tracing::warn!(key_id = %key.id(), error = %crate::error_chain(&e), "could not record an API key's use");
            }
        }
        Ok(Some(key))
    }
}
