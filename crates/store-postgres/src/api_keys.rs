//! [`ApiKeyRepository`]: API keys in their own table, found by the unique index on their
//! secret's hash. Revoking and recording a use read the key under a row lock and write
//! back what [`ApiKey::revoke`] and [`ApiKey::record_use`] decided.

use async_trait::async_trait;
use seatkeeper_domain::{
    ports::{ApiKeyRepository, StoreError},
    ApiKey, ApiKeyId, SecretHash, Timestamp,
};
use sqlx::PgConnection;

use crate::{
    errors::{classify, Fail},
    rows::{self, API_KEY_COLUMNS},
    PostgresStore,
};

#[async_trait]
impl ApiKeyRepository for PostgresStore {
    async fn create_key(&self, key: &ApiKey) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, role, shown_prefix, secret_hash, created_at, last_used_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(key.id().as_uuid())
        .bind(key.name().as_str())
        .bind(key.role().as_str())
        .bind(key.shown_prefix())
        .bind(key.secret_hash().as_str())
        .bind(key.created_at())
        .bind(key.last_used_at())
        .bind(key.revoked_at())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(())
    }

    async fn key_by_hash(&self, hash: &SecretHash) -> Result<Option<ApiKey>, StoreError> {
        let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE secret_hash = $1");
        sqlx::query(&sql)
            .bind(hash.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(classify)?
            .map(|r| rows::api_key(&r))
            .transpose()
            .map_err(classify)
    }

    async fn list_keys(
        &self,
        after: Option<ApiKeyId>,
        limit: u32,
    ) -> Result<Vec<ApiKey>, StoreError> {
        let sql = format!(
            "SELECT {API_KEY_COLUMNS} FROM api_keys WHERE $1::uuid IS NULL OR id > $1 ORDER BY id LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(after.map(|a| a.as_uuid()))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        rows.iter()
            .map(rows::api_key)
            .collect::<Result<_, _>>()
            .map_err(classify)
    }

    async fn revoke_key(&self, id: ApiKeyId, now: Timestamp) -> Result<Option<ApiKey>, StoreError> {
        self.tx(|c| Box::pin(change_key_tx(c, id, move |k| k.revoke(now))))
            .await
    }

    async fn record_key_use(&self, id: ApiKeyId, at: Timestamp) -> Result<(), StoreError> {
        self.tx(|c| Box::pin(change_key_tx(c, id, move |k| k.record_use(at))))
            .await
            .map(drop)
    }
}

/// Reads the key under a row lock, lets `change` decide, and writes back its use and
/// revocation times; `None` for an unknown key.
async fn change_key_tx(
    c: &mut PgConnection,
    id: ApiKeyId,
    change: impl FnOnce(&mut ApiKey) + Send,
) -> Result<Option<ApiKey>, Fail<StoreError>> {
    let sql = format!("SELECT {API_KEY_COLUMNS} FROM api_keys WHERE id = $1 FOR UPDATE");
    let Some(row) = sqlx::query(&sql)
        .bind(id.as_uuid())
        .fetch_optional(&mut *c)
        .await?
    else {
        return Ok(None);
    };
    let before = rows::api_key(&row)?;
    let mut key = before.clone();
    change(&mut key);
    if key != before {
        sqlx::query("UPDATE api_keys SET last_used_at = $2, revoked_at = $3 WHERE id = $1")
            .bind(id.as_uuid())
            .bind(key.last_used_at())
            .bind(key.revoked_at())
            .execute(&mut *c)
            .await?;
    }
    Ok(Some(key))
}
