//! Rate limits, per instance: a request that sends a credential draws from that
//! credential's bucket, one that sends none from its client address's bucket, and every
//! failed authentication also from its address's failed-authentication bucket, which is
//! much smaller (guessing). The buckets are `governor`'s keyed GCRA limiters; this module
//! only picks the key, answers 429 `rate_limited` with `Retry-After`, and writes the IETF
//! `RateLimit-Policy` and `RateLimit` headers (draft-ietf-httpapi-ratelimit-headers), which
//! `actix-governor` does not.
//!
//! The client address is the socket's peer, unless that peer is one of
//! `http.trusted_proxies`: then it is the right-most address of `X-Forwarded-For` that is
//! not a trusted proxy itself.

use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::Arc,
    time::{Duration, Instant},
};

use actix_web::{
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::header::{self, HeaderName, HeaderValue},
    middleware::Next,
    web, Error, HttpRequest,
};
use governor::{
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
    state::keyed::DefaultKeyedStateStore,
    Quota, RateLimiter,
};
use sha2::{Digest, Sha256};

use crate::{
    configuration::RateLimitSettings,
    problem::{ApiError, Code},
};

type Limiter<K> =
    RateLimiter<K, DefaultKeyedStateStore<K>, DefaultClock, StateInformationMiddleware>;

/// One kind of bucket: its name in the headers, its quota and the buckets.
struct Policy<K: std::hash::Hash + Eq + Clone> {
    name: &'static str,
    quota: Quota,
    limiter: Limiter<K>,
    /// `RateLimit-Policy`, written once.
    header: HeaderValue,
}

impl<K: std::hash::Hash + Eq + Clone> Policy<K> {
    fn new(name: &'static str, per_period: u32, period: Duration, burst: u32) -> Self {
        let per_period = NonZeroU32::new(per_period.max(1)).expect("at least 1");
        let burst = NonZeroU32::new(burst.max(1)).expect("at least 1");
        let quota = Quota::with_period(period / per_period.get())
            .expect("a positive period")
            .allow_burst(burst);
        let window = quota.burst_size_replenished_in().as_secs().max(1);
        let header = HeaderValue::from_str(&format!("\"{name}\";q={burst};w={window}"))
            .expect("an ASCII header");
        Self {
            name,
            quota,
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            header,
        }
    }

    /// Takes one request from `key`'s bucket: the `RateLimit` header, or the 429.
    fn take(&self, key: &K) -> Result<HeaderValue, ApiError> {
        match self.limiter.check_key(key) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                let empty = self.quota.burst_size().get() - remaining;
                let refill = self.quota.replenish_interval() * empty;
                let header = format!(
                    "\"{}\";r={remaining};t={}",
                    self.name,
                    refill.as_secs_f64().ceil() as u64
                );
                Ok(HeaderValue::from_str(&header).expect("an ASCII header"))
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
                let mut e = ApiError::new(
                    Code::RateLimited,
                    format!(
                        "too many requests for this {}: retry in {secs} s",
                        match self.name {
                            "credential" => "credential",
                            "failed_auth" => "address after failed authentications",
                            _ => "address",
                        }
                    ),
                );
                e.retry_after = Some(secs);
                e.rate_limit = Some((
                    self.header.clone(),
                    HeaderValue::from_str(&format!("\"{}\";r=0;t={secs}", self.name))
                        .expect("an ASCII header"),
                ));
                Err(e)
            }
        }
    }

    fn retain_recent(&self) {
        self.limiter.retain_recent();
    }
}

/// The rate limits of this instance, as app data.
pub struct RateLimits {
    credential: Policy<[u8; 32]>,
    address: Policy<IpAddr>,
    failed_auth: Policy<IpAddr>,
    trusted_proxies: Vec<IpAddr>,
}

impl RateLimits {
    pub fn new(s: &RateLimitSettings, trusted_proxies: Vec<IpAddr>) -> Self {
        let second = Duration::from_secs(1);
        Self {
            credential: Policy::new(
                "credential",
                s.credential_per_sec,
                second,
                s.credential_burst,
            ),
            address: Policy::new("address", s.address_per_sec, second, s.address_burst),
            failed_auth: Policy::new(
                "failed_auth",
                s.failed_auth_per_min,
                Duration::from_secs(60),
                s.failed_auth_burst,
            ),
            trusted_proxies,
        }
    }

    /// The client's address: the peer, or what a trusted proxy says it forwarded for.
    pub fn client_ip(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip();
        if !self.trusted_proxies.contains(&peer) {
            return Some(peer);
        }
        let forwarded: Vec<IpAddr> = req
            .headers()
            .get_all("x-forwarded-for")
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|a| a.trim().parse().ok())
            .collect();
        Some(
            forwarded
                .iter()
                .rev()
                .find(|a| !self.trusted_proxies.contains(a))
                .or(forwarded.first())
                .copied()
                .unwrap_or(peer),
        )
    }

    /// Counts a failed authentication from `req`'s address: `Err(429)` once there were
    /// too many.
    pub fn failed_authentication(&self, req: &HttpRequest) -> Result<(), ApiError> {
        match self.client_ip(req) {
            Some(ip) => self.failed_auth.take(&ip).map(drop),
            None => Ok(()),
        }
    }

    /// Takes the request from its bucket: `(RateLimit-Policy, RateLimit)`, or the 429.
    fn admit(&self, req: &HttpRequest) -> Result<(HeaderValue, HeaderValue), ApiError> {
        match req.headers().get(header::AUTHORIZATION) {
            Some(credential) => {
                let key: [u8; 32] = Sha256::digest(credential.as_bytes()).into();
                let state = self.credential.take(&key)?;
                Ok((self.credential.header.clone(), state))
            }
            None => match self.client_ip(req) {
                Some(ip) => {
                    let state = self.address.take(&ip)?;
                    Ok((self.address.header.clone(), state))
                }
                None => Err(ApiError::internal(anyhow::anyhow!(
                    "a request without a peer address"
                ))),
            },
        }
    }

    /// Forgets buckets that are full again, so that memory follows the active clients.
    pub fn retain_recent(&self) {
        self.credential.retain_recent();
        self.address.retain_recent();
        self.failed_auth.retain_recent();
    }
}

const POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const STATE: HeaderName = HeaderName::from_static("ratelimit");

/// The rate-limit middleware, for `middleware::from_fn` (wrapped in a `Condition`, so
/// that a server with limits off does not run it at all).
pub async fn middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, Error> {
    let Some(limits) = req.app_data::<web::Data<RateLimits>>() else {
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    match limits.admit(req.request()) {
        Err(refused) => Ok(req.error_response(refused)),
        Ok((policy, state)) => {
            let mut res = next.call(req).await?.map_into_boxed_body();
            res.headers_mut().insert(POLICY, policy);
            res.headers_mut().insert(STATE, state);
            Ok(res)
        }
    }
}

/// Forgets idle buckets every `every`.
pub async fn upkeep(limits: Arc<RateLimits>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let started = Instant::now();
        limits.retain_recent();
        tracing::trace!(
            took_us = started.elapsed().as_micros() as u64,
            "rate-limit buckets pruned"
        );
    }
}
