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
//! lookup per second per instance: the requests that miss the cache at once (all of a
//! busy key's, the moment its entry expires) share that one lookup. Credentials never
//! reach a log or an error body.

pub mod sessions;

use std::{
    future::{ready, Future, Ready},
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use actix_web::{dev::Payload, http::header, web, FromRequest, HttpRequest};
use futures::future::{Either, LocalBoxFuture};
use seatkeeper_domain::{
    ports::{Clock, StoreError},
    service::KeyService,
    Action, ApiKeyId, CustomerId, Denied, KeySecret, Principal, Reach, Role,
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

/// What a key that may act may do, as the cache keeps it (`None`: unknown or revoked).
type Grant = Option<(ApiKeyId, Role)>;

/// Checks credentials. Shared by the workers as app data.
pub struct Authenticator {
    /// SHA-256 of the bootstrap admin token: compared digest to digest, so the time
    /// taken says nothing of where, or whether, lengths differ.
    bootstrap: [u8; 32],
    keys: KeyService,
    /// What was read of each key, by the SHA-256 of its secret (the digest the bootstrap
    /// comparison computes anyway). Synchronous: a request whose key is cached is
    /// answered without a future of its own.
    cache: moka::sync::Cache<[u8; 32], Grant>,
    /// The store lookups of keys that missed `cache`, by digest: a miss joins the lookup
    /// in flight for its key instead of starting another (moka's `try_get_with`).
    lookups: moka::future::Cache<[u8; 32], Grant>,
    /// How many times the store was asked about a key (what the tests count).
    store_lookups: AtomicU64,
    sessions: Sessions,
    clock: Arc<dyn Clock>,
}

/// What a credential is, as far as it can be told without the store.
pub enum Resolved {
    /// Decided: the principal, or the 401.
    Done(Result<Principal, ApiError>),
    /// A key that is not in the cache: the store must say.
    Lookup { digest: [u8; 32], secret: KeySecret },
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
            cache: moka::sync::Cache::builder()
                .time_to_live(KEY_CACHE_TTL)
                .max_capacity(100_000)
                .build(),
            lookups: moka::future::Cache::builder()
                .time_to_live(KEY_CACHE_TTL)
                .max_capacity(100_000)
                .build(),
            store_lookups: AtomicU64::new(0),
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
        match self.resolve(authorization) {
            Resolved::Done(result) => result,
            Resolved::Lookup { digest, secret } => self.lookup(digest, secret).await,
        }
    }

    /// Everything [`Authenticator::principal`] decides without the store.
    pub fn resolve(&self, authorization: Option<&header::HeaderValue>) -> Resolved {
        let Some(value) = authorization else {
            return Resolved::Done(Ok(Principal::Anonymous));
        };
        let Some(credential) = value.to_str().ok().and_then(bearer) else {
            return Resolved::Done(Err(unauthorized(
                "the Authorization header must be 'Bearer <credential>'",
            )));
        };
        let digest: [u8; 32] = Sha256::digest(credential.as_bytes()).into();
        if bool::from(digest.ct_eq(&self.bootstrap)) {
            return Resolved::Done(Ok(Principal::Bootstrap));
        }
        if credential.starts_with(KeySecret::PREFIX) {
            if let Some(grant) = self.cache.get(&digest) {
                return Resolved::Done(key_principal(grant));
            }
            return match KeySecret::parse(credential) {
                Some(secret) => Resolved::Lookup { digest, secret },
                None => Resolved::Done(key_principal(None)),
            };
        }
        Resolved::Done(
            self.sessions
                .verify(credential)
                .map(Principal::Customer)
                .map_err(|e| match e {
                    SessionRejected::Expired | SessionRejected::Invalid => {
                        unauthorized(&e.to_string())
                    }
                }),
        )
    }

    /// Asks the store about a key that is not in the cache, and caches the answer.
    /// Requests that miss at once share one lookup; a failed lookup is not kept, so the
    /// next request asks again.
    pub async fn lookup(&self, digest: [u8; 32], secret: KeySecret) -> Result<Principal, ApiError> {
        let lookup = async {
            self.store_lookups.fetch_add(1, Ordering::Relaxed);
            let key = self.keys.authenticate(&secret).await?;
            let grant = key.map(|k| (k.id(), k.role()));
            // Here, not after: the second of trust starts when the store answered.
            self.cache.insert(digest, grant);
            Ok::<_, StoreError>(grant)
        };
        let grant = self
            .lookups
            .try_get_with(digest, lookup)
            .await
            .map_err(|e| match &*e {
                StoreError::Unavailable(_) => {
                    tracing::warn!(error = %seatkeeper_domain::error_chain(&*e), "could not look up an API key");
                    crate::errors::store_unavailable()
                }
                StoreError::Internal(_) => ApiError::internal(e),
            })?;
        key_principal(grant)
    }
}

fn key_principal(grant: Grant) -> Result<Principal, ApiError> {
    grant
        .map(|(id, role)| Principal::Key { id, role })
        .ok_or_else(|| unauthorized("the API key is not valid: unknown or revoked"))
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
    type Future =
        Either<Ready<Result<Self, ApiError>>, LocalBoxFuture<'static, Result<Self, ApiError>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(auth) = req.app_data::<web::Data<Authenticator>>() else {
            return Either::Left(ready(Err(ApiError::internal(anyhow::anyhow!(
                "no authenticator is configured"
            )))));
        };
        match auth.resolve(req.headers().get(header::AUTHORIZATION)) {
            Resolved::Done(result) => Either::Left(ready(caller(result, req))),
            Resolved::Lookup { digest, secret } => {
                let (auth, req) = (auth.clone(), req.clone());
                Either::Right(Box::pin(async move {
                    caller(auth.lookup(digest, secret).await, &req)
                }))
            }
        }
    }
}

/// The caller, or the 401 (after counting it against the address's failed
/// authentications, which may make it a 429).
fn caller(result: Result<Principal, ApiError>, req: &HttpRequest) -> Result<Caller, ApiError> {
    match result {
        Ok(principal) => Ok(Caller(principal)),
        Err(e) if e.code == Code::Unauthorized => {
            // Guessing credentials draws from the address's small bucket.
            if let Some(limits) = req.app_data::<web::Data<RateLimits>>() {
                limits.failed_authentication(req)?;
            }
            Err(e)
        }
        Err(e) => Err(e),
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
    use seatkeeper_domain::{ports::SystemClock, KeyName};
    use seatkeeper_store_memory::MemoryStore;

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn requests_that_miss_the_key_cache_at_once_share_one_store_lookup() {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let keys = KeyService::new(Arc::new(MemoryStore::new()), clock.clone());
        let (key, secret) = keys
            .create(KeyName::parse("busy").unwrap(), Role::Purchases, "test")
            .await
            .unwrap();
        let auth = Arc::new(Authenticator::new(
            "bootstrap-token-0123456789",
            keys,
            Sessions::new(&[7; 32], Duration::from_secs(60)),
            clock,
        ));
        let digest: [u8; 32] = Sha256::digest(secret.expose().as_bytes()).into();
        let barrier = Arc::new(tokio::sync::Barrier::new(64));
        let tasks: Vec<_> = (0..64)
            .map(|_| {
                let (auth, barrier, secret) = (auth.clone(), barrier.clone(), secret.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    auth.lookup(digest, secret).await
                })
            })
            .collect();
        for t in tasks {
            match t.await.unwrap() {
                Ok(Principal::Key { id, role }) => assert_eq!((id, role), (key.id(), key.role())),
                other => panic!("not the key: {:?}", other.map_err(|e| e.to_string())),
            }
        }
        assert_eq!(auth.store_lookups.load(Ordering::Relaxed), 1);
        // And the requests after them find the key in the cache, without a future.
        let header = header::HeaderValue::from_str(&format!("Bearer {}", secret.expose())).unwrap();
        assert!(matches!(
            auth.resolve(Some(&header)),
            Resolved::Done(Ok(Principal::Key { .. }))
        ));
    }

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
