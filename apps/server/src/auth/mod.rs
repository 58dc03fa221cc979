//! Who is calling: the `Authorization: Bearer …` credential of a request turned into the
//! domain's [`Principal`], and the domain's permission table applied to it.
//!
//! A bearer credential is, in this order: the configured bootstrap admin token (compared
//! in constant time), an API key (`sk_…`, found by the SHA-256 of its secret), or a
//! customer session ([`sessions`]). A request without one is anonymous; a credential that
//! is none of these, a revoked key or an expired session answers 401 and is never taken
//! as anonymous. Which principal may do what is [`Principal::check`]'s to say.
//!
//! Key lookups are cached for one second per instance ([`KEY_CACHE_TTL`]): a revoked key
//! stops working on every instance within a second, and a busy key costs one store
//! lookup per second per instance. Credentials never reach a log or an error body.

pub mod sessions;

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use seatkeeper_domain::{
    ports::{Clock, StoreError},
    service::KeyService,
    Action, ApiKey, CustomerId, Denied, KeySecret, Principal, Reach,
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{
    problem::{ApiError, Code},
    rate_limit::RateLimits,
};
use sessions::{Session, SessionRejected, Sessions};

/// How long an instance trusts what it read of a key.
pub const KEY_CACHE_TTL: Duration = Duration::from_secs(1);

/// Checks credentials. Shared by the workers as app data.
pub struct Authenticator {
    /// SHA-256 of the bootstrap admin token: compared digest to digest, so the time
    /// taken says nothing of where, or whether, lengths differ.
    bootstrap: [u8; 32],
    keys: KeyService,
    /// What was read of each key, by the SHA-256 of its secret (the digest the bootstrap
    /// comparison computes anyway).
    cache: moka::future::Cache<[u8; 32], Option<ApiKey>>,
    sessions: Sessions,
    clock: Arc<dyn Clock>,
}

impl Authenticator {
    pub fn new(
        bootstrap_token: &str,
        keys: KeyService,
        sessions: Sessions,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            bootstrap: Sha256::digest(bootstrap_token.as_bytes()).into(),
            keys,
            cache: moka::future::Cache::builder()
                .time_to_live(KEY_CACHE_TTL)
                .max_capacity(100_000)
                .build(),
            sessions,
            clock,
        }
    }

    /// A new customer session for `customer`, from now.
    pub fn issue_session(&self, customer: CustomerId) -> Session {
        self.sessions.issue(customer, self.clock.now())
    }

    /// The principal the `Authorization` header stands for.
    pub async fn principal(
        &self,
        authorization: Option<&header::HeaderValue>,
    ) -> Result<Principal, ApiError> {
        let Some(value) = authorization else {
            return Ok(Principal::Anonymous);
        };
        let credential = value.to_str().ok().and_then(bearer).ok_or_else(|| {
            unauthorized("the Authorization header must be 'Bearer <credential>'")
        })?;
        let digest: [u8; 32] = Sha256::digest(credential.as_bytes()).into();
        if bool::from(digest.ct_eq(&self.bootstrap)) {
            return Ok(Principal::Bootstrap);
        }
        if credential.starts_with(KeySecret::PREFIX) {
            let key = match KeySecret::parse(credential) {
                Some(secret) => self.key(digest, secret).await?,
                None => None,
            };
            return key
                .map(|k| Principal::Key {
                    id: k.id(),
                    role: k.role(),
                })
                .ok_or_else(|| unauthorized("the API key is not valid: unknown or revoked"));
        }
        self.sessions
            .verify(credential)
            .map(Principal::Customer)
            .map_err(|e| match e {
                SessionRejected::Expired | SessionRejected::Invalid => unauthorized(&e.to_string()),
            })
    }

    /// The key a secret (whose SHA-256 is `digest`) belongs to if it may act, from the
    /// cache or the store.
    async fn key(&self, digest: [u8; 32], secret: KeySecret) -> Result<Option<ApiKey>, ApiError> {
        let keys = &self.keys;
        self.cache
            .try_get_with(digest, async move { keys.authenticate(&secret).await })
            .await
            .map_err(|e: Arc<StoreError>| match &*e {
                StoreError::Unavailable(_) => {
                    tracing::warn!(error = %seatkeeper_domain::error_chain(&*e), "could not look up an API key");
                    crate::errors::store_unavailable()
                }
                StoreError::Internal(_) => {
                    ApiError::internal(anyhow::anyhow!(seatkeeper_domain::error_chain(&*e)))
                }
            })
    }
}

/// The credential of `Bearer <credential>` (the scheme in any case, RFC 9110 §11.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, credential) = value.trim().split_once(' ')?;
    let credential = credential.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !credential.is_empty()).then_some(credential)
}

fn unauthorized(detail: &str) -> ApiError {
    ApiError::new(Code::Unauthorized, detail)
}

/// The principal of the request, as a handler argument.
pub struct Caller(pub Principal);

impl Caller {
    /// Whether the caller may take `action`, and over which customers; a 401 or 403
    /// problem otherwise.
    pub fn may(&self, action: Action) -> Result<Reach<'_>, ApiError> {
        self.0
            .check(action)
            .map_err(|denied| denied_error(denied, action))
    }
}

fn denied_error(denied: Denied, action: Action) -> ApiError {
    let what = match action {
        Action::Browse => "read plans",
        Action::Purchase => "buy seats",
        Action::ManageSubscriptions => "read or cancel subscriptions",
        Action::MintSessions => "make customer sessions",
        Action::Administer => "administer (plans, audit, reconciliation, keys, metrics)",
    };
    match denied {
        Denied::Unauthenticated => unauthorized(&format!(
            "a credential is needed to {what}: send 'Authorization: Bearer <API key, customer session or admin token>'"
        )),
        Denied::Forbidden => ApiError::new(
            Code::Forbidden,
            format!("this credential may not {what}"),
        ),
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let auth = req.app_data::<web::Data<Authenticator>>().cloned();
        let header = req.headers().get(header::AUTHORIZATION).cloned();
        let req = req.clone();
        Box::pin(async move {
            let auth = auth.ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("no authenticator is configured"))
            })?;
            match auth.principal(header.as_ref()).await {
                Ok(principal) => Ok(Caller(principal)),
                Err(e) if e.code == Code::Unauthorized => {
                    // Guessing credentials draws from the address's small bucket.
                    if let Some(limits) = req.app_data::<web::Data<RateLimits>>() {
                        limits.failed_authentication(&req)?;
                    }
                    Err(e)
                }
                Err(e) => Err(e),
            }
        })
    }
}

/// Proof that the caller may administer (plans, audit, reconciliation, keys, metrics),
/// with who they are for the audit log.
pub struct Admin(pub Principal);

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let caller = Caller::from_request(req, payload);
        Box::pin(async move {
            let caller = caller.await?;
            caller.may(Action::Administer)?;
            Ok(Admin(caller.0))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_bearer_scheme_with_a_credential_is_read() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("BEARER abc"), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("abc"), None);
    }
}
