//! [`ApiKeyRepository`]: API keys in the `api_keys` collection, found through the unique
//! index on their secret's hash.
//!
//! Revoking and recording a use change one document, so they need no transaction: the
//! store reads the key, lets [`ApiKey::revoke`] or [`ApiKey::record_use`] decide, and
//! writes the result with an update guarded on the two times it read; when another
//! writer got there first the guard matches nothing and the store reads again.

use futures::TryStreamExt;
use mongodb::{
    bson::{doc, DateTime as BsonDateTime, Document, Uuid as BsonUuid},
    options::FindOptions,
};
use seatkeeper_domain::{
    ports::{ApiKeyRepository, StoreError},
    ApiKey, ApiKeyId, KeyName, Role, SecretHash, StoredApiKey, Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::{
    documents::{date, from_date, from_opt_date, from_uuid, uuid, valid, Corrupt, Result},
    errors::classify,
    MongoStore,
};

/// An API key: collection `api_keys`, `_id` the key id. The secret itself is never
/// stored; `secret_hash` is its SHA-256 in hex.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyDoc {
    #[serde(rename = "_id")]
    pub id: BsonUuid,
    pub name: String,
    pub role: String,
    pub shown_prefix: String,
    pub secret_hash: String,
    pub created_at: BsonDateTime,
    pub last_used_at: Option<BsonDateTime>,
    pub revoked_at: Option<BsonDateTime>,
}

impl From<&ApiKey> for ApiKeyDoc {
    fn from(k: &ApiKey) -> Self {
        Self {
            id: uuid(k.id().as_uuid()),
            name: k.name().as_str().to_owned(),
            role: k.role().as_str().to_owned(),
            shown_prefix: k.shown_prefix().to_owned(),
            secret_hash: k.secret_hash().as_str().to_owned(),
            created_at: date(k.created_at()),
            last_used_at: k.last_used_at().map(date),
            revoked_at: k.revoked_at().map(date),
        }
    }
}

impl TryFrom<ApiKeyDoc> for ApiKey {
    type Error = Corrupt;
    fn try_from(d: ApiKeyDoc) -> Result<Self> {
        let stored = StoredApiKey {
            id: ApiKeyId::from_uuid(from_uuid(d.id)),
            name: valid("name", KeyName::parse(&d.name))?,
            role: valid("role", Role::parse(&d.role))?,
            shown_prefix: d.shown_prefix,
            secret_hash: valid("secret_hash", SecretHash::parse(&d.secret_hash))?,
            created_at: from_date("created_at", d.created_at)?,
            last_used_at: from_opt_date("last_used_at", d.last_used_at)?,
            revoked_at: from_opt_date("revoked_at", d.revoked_at)?,
        };
        valid("API key", ApiKey::restore(stored))
    }
}

fn key_of(d: ApiKeyDoc) -> std::result::Result<ApiKey, StoreError> {
    ApiKey::try_from(d).map_err(StoreError::internal)
}

/// How many times a guarded change reads again before giving up: each round one writer
/// wins, so this bounds the writers racing on one key, not the time.
const MAX_ROUNDS: usize = 1_000;

impl MongoStore {
    /// Reads the key, lets `change` decide, and writes back its use and revocation times
    /// if the document still has the ones read; `None` for an unknown key.
    async fn change_key(
        &self,
        id: ApiKeyId,
        change: impl Fn(&mut ApiKey),
    ) -> std::result::Result<Option<ApiKey>, StoreError> {
        let by_id = doc! { "_id": uuid(id.as_uuid()) };
        for _ in 0..MAX_ROUNDS {
            let Some(read) = self
                .api_keys
                .find_one(by_id.clone())
                .await
                .map_err(classify)?
            else {
                return Ok(None);
            };
            let before = key_of(read.clone())?;
            let mut key = before.clone();
            change(&mut key);
            if key == before {
                return Ok(Some(key));
            }
            let written = ApiKeyDoc::from(&key);
            let mut guard: Document = by_id.clone();
            guard.insert("last_used_at", read.last_used_at);
            guard.insert("revoked_at", read.revoked_at);
            let update = doc! { "$set": {
                "last_used_at": written.last_used_at,
                "revoked_at": written.revoked_at,
            } };
            let result = self
                .api_keys
                .update_one(guard, update)
                .await
                .map_err(classify)?;
            if result.matched_count == 1 {
                return Ok(Some(key));
            }
        }
        Err(StoreError::internal(format!(
            "key {id} changed under {MAX_ROUNDS} attempts to change it"
        )))
    }
}

#[async_trait::async_trait]
impl ApiKeyRepository for MongoStore {
    async fn create_key(&self, key: &ApiKey) -> std::result::Result<(), StoreError> {
        self.api_keys
            .insert_one(ApiKeyDoc::from(key))
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn key_by_hash(
        &self,
        hash: &SecretHash,
    ) -> std::result::Result<Option<ApiKey>, StoreError> {
        self.api_keys
            .find_one(doc! { "secret_hash": hash.as_str() })
            .await
            .map_err(classify)?
            .map(key_of)
            .transpose()
    }

    async fn list_keys(
        &self,
        after: Option<ApiKeyId>,
        limit: u32,
    ) -> std::result::Result<Vec<ApiKey>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let filter = match after {
            Some(a) => doc! { "_id": { "$gt": uuid(a.as_uuid()) } },
            None => doc! {},
        };
        let options = FindOptions::builder()
            .sort(doc! { "_id": 1 })
            .limit(i64::from(limit))
            .build();
        let docs: Vec<ApiKeyDoc> = self
            .api_keys
            .find(filter)
            .with_options(options)
            .await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)?;
        docs.into_iter().map(key_of).collect()
    }

    async fn revoke_key(
        &self,
        id: ApiKeyId,
        now: Timestamp,
    ) -> std::result::Result<Option<ApiKey>, StoreError> {
        self.change_key(id, |k| k.revoke(now)).await
    }

    async fn record_key_use(
        &self,
        id: ApiKeyId,
        at: Timestamp,
    ) -> std::result::Result<(), StoreError> {
        self.change_key(id, |k| k.record_use(at)).await.map(drop)
    }
}
