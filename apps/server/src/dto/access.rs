//! The JSON shapes of API keys and customer sessions.

use std::borrow::Cow;

use seatkeeper_domain::{ApiKey, ApiKeyId, CustomerId, KeyName, KeySecret, Role, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    auth::sessions::Session, extract::Fields, openapi::schemas, problem::ApiError, timestamp,
};

/// `POST /api/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(
    as = CreateKey,
    description = "The key to make. Both fields are required; unknown fields are rejected (400).",
    example = json!({"role": "purchases", "name": "web shop backend"})
)]
pub struct CreateKeyRequest<'a> {
    #[serde(borrow)]
    #[schema(value_type = schemas::Role)]
    pub role: Cow<'a, str>,
    #[serde(borrow)]
    #[schema(value_type = schemas::KeyName)]
    pub name: Cow<'a, str>,
}

impl CreateKeyRequest<'_> {
    pub fn try_into_domain(self) -> Result<(KeyName, Role), ApiError> {
        let mut f = Fields::default();
        let role = f.check("role", Role::parse(&self.role));
        let name = f.check("name", KeyName::parse(&self.name));
        match (name, role) {
            (Some(name), Some(role)) => Ok((name, role)),
            _ => Err(f.into_error()),
        }
    }
}

/// An API key, without its secret.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ApiKey, example = json!({
    "id": "0193a1b2-0c3d-7e4f-8a5b-6c7d8e9f0a1b", "name": "web shop backend", "role": "purchases",
    "prefix": "sk_Xq3TbZ9r", "created_at": "2026-12-06T10:00:00.000Z",
    "last_used_at": "2026-12-06T10:05:00.000Z", "revoked_at": null
}))]
pub struct KeyBody {
    #[schema(value_type = schemas::ApiKeyId)]
    pub id: ApiKeyId,
    #[schema(value_type = schemas::KeyName)]
    pub name: String,
    #[schema(value_type = schemas::Role)]
    pub role: &'static str,
    /// The first 11 characters of the secret (`sk_` and 8 more), to tell keys apart.
    #[schema(min_length = 11, max_length = 11, pattern = "^sk_[A-Za-z0-9]{8}$")]
    pub prefix: String,
    #[serde(serialize_with = "timestamp::serialize")]
    #[schema(value_type = schemas::Timestamp)]
    pub created_at: Timestamp,
    /// When the key last authenticated a request, to within a minute; `null` if never.
    #[serde(serialize_with = "timestamp::serialize_opt")]
    #[schema(required, value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
    /// When the key was revoked; `null` while it works.
    #[serde(serialize_with = "timestamp::serialize_opt")]
    #[schema(required, value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
}

impl From<&ApiKey> for KeyBody {
    fn from(k: &ApiKey) -> Self {
        Self {
            id: k.id(),
            name: k.name().as_str().to_owned(),
            role: k.role().as_str(),
            prefix: k.shown_prefix().to_owned(),
            created_at: k.created_at(),
            last_used_at: k.last_used_at(),
            revoked_at: k.revoked_at(),
        }
    }
}

/// A key just made, with its secret: the only answer that ever shows it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CreatedApiKey, example = json!({
    "id": "0193a1b2-0c3d-7e4f-8a5b-6c7d8e9f0a1b", "name": "web shop backend", "role": "purchases",
    "secret": "sk_Xq3TbZ9rLm2Wc8Yd4Kp7Hs1Fg6Jn0Vb5", "prefix": "sk_Xq3TbZ9r",
    "created_at": "2026-12-06T10:00:00.000Z", "last_used_at": null, "revoked_at": null
}))]
pub struct CreatedKeyBody {
    #[schema(value_type = schemas::ApiKeyId)]
    pub id: ApiKeyId,
    #[schema(value_type = schemas::KeyName)]
    pub name: String,
    #[schema(value_type = schemas::Role)]
    pub role: &'static str,
    /// The key's secret, to send as `Authorization: Bearer <secret>`. Shown this once:
    /// the server keeps only its SHA-256.
    #[schema(min_length = 35, max_length = 35, pattern = "^sk_[A-Za-z0-9]{32}$")]
    pub secret: String,
    /// The first 11 characters of the secret, as key listings show it.
    #[schema(min_length = 11, max_length = 11, pattern = "^sk_[A-Za-z0-9]{8}$")]
    pub prefix: String,
    #[serde(serialize_with = "timestamp::serialize")]
    #[schema(value_type = schemas::Timestamp)]
    pub created_at: Timestamp,
    /// `null`: a key just made was never used.
    #[serde(serialize_with = "timestamp::serialize_opt")]
    #[schema(required, value_type = Option<String>, format = DateTime)]
    pub last_used_at: Option<Timestamp>,
    /// `null`: a key just made works.
    #[serde(serialize_with = "timestamp::serialize_opt")]
    #[schema(required, value_type = Option<String>, format = DateTime)]
    pub revoked_at: Option<Timestamp>,
}

impl CreatedKeyBody {
    /// Flat rather than `KeyBody` flattened: a flattened struct is an `allOf` in the
    /// document, which openapi-generator's Rust client turns into `serde_json::Value`
    /// fields.
    pub fn new(key: &ApiKey, secret: &KeySecret) -> Self {
        let KeyBody {
            id,
            name,
            role,
            prefix,
            created_at,
            last_used_at,
            revoked_at,
        } = KeyBody::from(key);
        Self {
            id,
            name,
            role,
            secret: secret.expose().to_owned(),
            prefix,
            created_at,
            last_used_at,
            revoked_at,
        }
    }
}

/// `POST /api/customer_sessions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(
    as = CreateCustomerSession,
    description = "The customer the session acts for. Required; unknown fields are rejected (400).",
    example = json!({"customer_id": "cus_42"})
)]
pub struct CreateSessionRequest<'a> {
    #[serde(borrow)]
    #[schema(value_type = schemas::CustomerId)]
    pub customer_id: Cow<'a, str>,
}

impl CreateSessionRequest<'_> {
    pub fn try_into_domain(self) -> Result<CustomerId, ApiError> {
        let mut f = Fields::default();
        f.check("customer_id", CustomerId::parse(&self.customer_id))
            .ok_or_else(|| f.into_error())
    }
}

/// A customer session: a bearer token a browser may use for one customer until it
/// expires.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CustomerSession, example = json!({
    "token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzZWF0a2VlcGVyIn0.c2lnbmF0dXJl",
    "customer_id": "cus_42", "expires_at": "2026-12-06T10:30:00.000Z"
}))]
pub struct SessionBody {
    /// Send as `Authorization: Bearer <token>`: it may buy for `customer_id`, and read and
    /// cancel that customer's subscriptions, until `expires_at`.
    pub token: String,
    #[schema(value_type = schemas::CustomerId)]
    pub customer_id: String,
    #[serde(serialize_with = "timestamp::serialize")]
    #[schema(value_type = schemas::Timestamp)]
    pub expires_at: Timestamp,
}

impl From<Session> for SessionBody {
    fn from(s: Session) -> Self {
        Self {
            token: s.token,
            customer_id: s.customer_id.as_str().to_owned(),
            expires_at: s.expires_at,
        }
    }
}
