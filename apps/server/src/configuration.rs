//! Settings: built-in defaults, then an optional file (`--config PATH`, TOML), then
//! environment variables `SEATKEEPER_<SECTION>__<KEY>` (for example
//! `SEATKEEPER_HTTP__ADDR=0.0.0.0:8080`). A bad value stops start-up with a message
//! naming the setting.

use std::{net::SocketAddr, path::Path, time::Duration};

use anyhow::{bail, Context};

mod checkout;
mod live;
pub use checkout::CheckoutSettings;
pub use live::LiveSettings;
use seatkeeper_payments::StripeSettings;
use serde::Deserialize;

/// A secret that never prints (`secrecy`): its `Debug` shows `[REDACTED]`, its memory is
/// zeroed when dropped, and reading it takes [`ExposeSecret::expose_secret`].
pub type Secret = secrecy::SecretString;
pub use secrecy::ExposeSecret;

/// Every setting, each section with its defaults (the `Default` impls below), so that a
/// file or the environment names only what it changes.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Settings {
    pub http: HttpSettings,
    pub store: StoreSettings,
    pub auth: AuthSettings,
    pub rate_limit: RateLimitSettings,
    pub payments: PaymentSettings,
    pub demo: DemoSettings,
    pub bench: BenchSettings,
    pub idempotency: IdempotencySettings,
    pub recovery: RecoverySettings,
    pub checkout: CheckoutSettings,
    pub live: LiveSettings,
    pub log: LogSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RecoverySettings {
    /// Whether this instance runs the reconciler in the background.
    pub enabled: bool,
    /// An `incomplete` purchase untouched this long is recovered (milliseconds). Must
    /// exceed `idempotency.lock_lease_ms`.
    pub lease_ms: u64,
    /// How often the reconciler looks for work (milliseconds).
    pub interval_ms: u64,
    /// How long after giving a purchase up its late-charge check runs (milliseconds).
    pub verify_delay_ms: u64,
    /// Purchases per run.
    pub batch: u32,
}

impl Default for RecoverySettings {
    fn default() -> Self {
        Self {
            enabled: true,
            lease_ms: 60_000,
            interval_ms: 5_000,
            verify_delay_ms: 60_000,
            batch: 100,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// Where to listen, such as `127.0.0.1:3000`; port 0 picks a free port.
    pub addr: SocketAddr,
    /// The largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// Worker threads; 0 means one per core.
    pub workers: usize,
    /// Proxies whose `X-Forwarded-For` names the client (exact addresses, comma-separated
    /// in the environment); from anyone else the client is the socket's peer.
    #[serde(deserialize_with = "comma_list")]
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Origins whose pages may call the API from a browser (CORS), such as
    /// `https://shop.example.com`; none by default (same origin only).
    #[serde(deserialize_with = "comma_list")]
    pub cors_allowed_origins: Vec<String>,
    /// An internal address that serves `GET /metrics` without a credential (for a
    /// scraper on a private network); none by default: `/metrics` is then only on `addr`,
    /// for admins.
    pub metrics_addr: Option<SocketAddr>,
}

/// A list from a file (an array) or from the environment (one string, comma-separated;
/// config's own list parsing would also turn every numeric-looking value, such as a token
/// with leading zeros, into a number).
fn comma_list<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        List(Vec<String>),
    }
    let items = match Raw::deserialize(d)? {
        Raw::Text(text) => text.split(',').map(str::to_owned).collect(),
        Raw::List(items) => items,
    };
    items
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|e| serde::de::Error::custom(format!("'{s}': {e}")))
        })
        .collect()
}

/// [`comma_list`] of secrets.
fn secret_list<'de, D>(d: D) -> Result<Vec<Secret>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    Ok(comma_list::<D, String>(d)?
        .into_iter()
        .map(Secret::from)
        .collect())
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
            body_limit_bytes: 16_384,
            workers: 0,
            trusted_proxies: Vec::new(),
            cors_allowed_origins: Vec::new(),
            metrics_addr: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct StoreSettings {
    /// `memory://` (the default), `postgres://user:password@host:port/database`, or
    /// `mongodb://…` / `mongodb+srv://…` (a replica set or mongos). The scheme picks the
    /// adapter.
    pub url: String,
    /// Most database connections this process holds (PostgreSQL; per server for MongoDB).
    pub pool_size: u32,
    /// How long an operation waits for a database connection (MongoDB: for a usable
    /// server) before answering 503; also bounds start-up against an unreachable one.
    pub acquire_timeout_ms: u64,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: "memory://".to_owned(),
            pool_size: 16,
            acquire_timeout_ms: 3_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct AuthSettings {
    /// The bootstrap credential: a bearer token that may do everything an `admin` key
    /// may; when unset, one is generated and printed.
    pub admin_token: Option<Secret>,
    /// The key that signs customer sessions (HMAC-SHA256), at least 32 characters. Every
    /// instance must share it; when unset, one is generated with a warning (fine for a
    /// single instance: its sessions end when it stops).
    pub session_secret: Option<Secret>,
    /// How long a customer session lasts, in seconds (1 to 86,400).
    pub session_ttl_secs: u64,
}

/// Rate limits of one instance (see `rate_limit.rs`). Requests with a credential count
/// against that credential, others against the client's address.
#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct RateLimitSettings {
    /// Off: no limits (benchmarks, or a gateway in front that limits).
    pub enabled: bool,
    pub credential_per_sec: u32,
    pub credential_burst: u32,
    /// Requests without a credential, per client address.
    pub address_per_sec: u32,
    pub address_burst: u32,
    /// Failed authentications per client address.
    pub failed_auth_per_min: u32,
    pub failed_auth_burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            credential_per_sec: 100,
            credential_burst: 200,
            address_per_sec: 20,
            address_burst: 40,
            failed_auth_per_min: 10,
            failed_auth_burst: 10,
        }
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            admin_token: None,
            session_secret: None,
            session_ttl_secs: 1800,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct PaymentSettings {
    /// `simulated` (the in-process gateway with Stripe's test payment methods) or `stripe`
    /// (Stripe's API, or `seatkeeper-paysim`, at `base_url`).
    pub provider: PaymentProvider,
    /// Added latency of every simulated payment call, in milliseconds.
    pub latency_ms: u64,
    /// Stripe's API address (`https://api.stripe.com`, or the simulator's).
    pub base_url: String,
    /// Stripe's secret key (`sk_test_…`); required for `stripe`. Never printed.
    pub secret_key: Option<Secret>,
    /// Stripe's publishable key (`pk_test_…`), for the storefront's Payment Element with
    /// `stripe`; without it the storefront cannot take cards for Stripe.
    pub publishable_key: Option<String>,
    /// The limit of one request to Stripe, in milliseconds.
    pub timeout_ms: u64,
    /// Retries of a request whose answer may change (timeouts, 409, 429, 5xx).
    pub max_retries: u32,
    /// The signing secrets (`whsec_…`) of the Stripe webhook endpoint, comma-separated in
    /// the environment; several during a rotation. None: `POST /api/webhooks/stripe`
    /// answers 404. Never printed.
    #[serde(deserialize_with = "secret_list")]
    pub webhook_secrets: Vec<Secret>,
    /// How far a webhook's signature timestamp may be from now, in seconds.
    pub webhook_tolerance_secs: u64,
}

impl Default for PaymentSettings {
    fn default() -> Self {
        Self {
            provider: PaymentProvider::Simulated,
            latency_ms: 0,
            base_url: "https://api.stripe.com".to_owned(),
            secret_key: None,
            publishable_key: None,
            timeout_ms: 5_000,
            max_retries: 2,
            webhook_secrets: Vec::new(),
            webhook_tolerance_secs: 300,
        }
    }
}

/// The payment gateway the settings name.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, strum::EnumString, strum::VariantNames,
)]
#[serde(try_from = "String")]
#[strum(serialize_all = "lowercase")]
pub enum PaymentProvider {
    Simulated,
    Stripe,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct BenchSettings {
    /// Serve `POST /bench/echo` (a trivial JSON POST, the benchmarks' baseline). Off by
    /// default; never part of the API.
    #[serde(default)]
    pub echo: bool,
    /// How long the echo waits on a timer before answering, in milliseconds (0 by
    /// default): the framework's own cost of a handler that waits as long as a payment,
    /// the control of the payment-latency benchmark.
    #[serde(default)]
    pub echo_wait_ms: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct DemoSettings {
    /// Seed a few demo plans into an empty store; unset means "yes for `memory://`".
    pub seed: Option<bool>,
    /// Let anyone sign in to the storefront as any customer id (`POST
    /// /api/demo/customer_sessions`); unset means "yes for `memory://`". Never in
    /// production: there, the integrator mints customer sessions.
    pub sign_in: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct IdempotencySettings {
    /// How long an idempotency key is remembered, in seconds (24 h by default).
    pub retention_secs: u64,
    /// How long a request may hold a key before another takes it over, in milliseconds.
    pub lock_lease_ms: u64,
    /// How often expired keys are deleted, in seconds.
    pub sweep_interval_secs: u64,
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        Self {
            retention_secs: 86_400,
            lock_lease_ms: 30_000,
            sweep_interval_secs: 60,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LogSettings {
    /// `text` (human-readable, the default) or `json`.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `seatkeeper=debug,info`; `RUST_LOG` wins.
    pub level: String,
    /// An OTLP/HTTP collector's base URL (such as `http://127.0.0.1:4318`): when set,
    /// spans are also exported there as OpenTelemetry traces.
    pub otlp_endpoint: Option<String>,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
            otlp_endpoint: None,
        }
    }
}

/// How log lines are written.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Deserialize, strum::EnumString, strum::VariantNames,
)]
#[serde(try_from = "String")]
#[strum(serialize_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The storage adapter a store URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    Memory,
    Postgres,
    Mongo,
}

/// A setting's value out of a fixed set of names, refused with those names.
macro_rules! named_setting {
    ($($t:ty),*) => {$(
        impl TryFrom<String> for $t {
            type Error = String;
            fn try_from(name: String) -> Result<Self, String> {
                name.parse().map_err(|_| {
                    let names: Vec<String> = <$t as strum::VariantNames>::VARIANTS
                        .iter()
                        .map(|n| format!("'{n}'"))
                        .collect();
                    format!("'{name}' is not one of {}", names.join(", "))
                })
            }
        }
    )*};
}

named_setting!(PaymentProvider, LogFormat);

impl Settings {
    /// Loads the settings from the defaults, the optional file and the process environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_from(file, std::env::vars())
    }

    /// Loads the settings with `env` standing for the process environment.
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> anyhow::Result<Self> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.exists() {
                bail!("configuration file {} does not exist", path.display());
            }
            builder = builder.add_source(config::File::from(path).required(true));
        }
        let env: std::collections::HashMap<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with("SEATKEEPER_"))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("SEATKEEPER")
                .prefix_separator("_")
                .separator("__")
                .source(Some(env)),
        );
        let config = builder
            .build()
            .context("could not read the configuration")?;
        // config's errors end with the setting, as in "invalid socket address syntax for
        // key `http.addr`".
        let settings: Settings = config
            .try_deserialize()
            .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.store_kind()?;
        if self.store.pool_size == 0 {
            bail!("invalid configuration: store.pool_size must be at least 1");
        }
        if self.store.acquire_timeout_ms == 0 {
            bail!("invalid configuration: store.acquire_timeout_ms must be positive");
        }
        if self.http.body_limit_bytes < 256 {
            bail!("invalid configuration: http.body_limit_bytes must be at least 256");
        }
        if let Some(key) = &self.payments.publishable_key {
            if self.payments.provider != PaymentProvider::Stripe {
                bail!("invalid configuration: payments.publishable_key is for payments.provider 'stripe'");
            }
            if !key.starts_with("pk_") {
                bail!("invalid configuration: payments.publishable_key must be Stripe's publishable key (pk_…), never the secret key");
            }
        }
        if self.payments.provider == PaymentProvider::Stripe {
            if self.payments.secret_key.is_none() {
                bail!("invalid configuration: payments.secret_key is required when payments.provider is 'stripe'");
            }
            if !(self.payments.base_url.starts_with("https://")
                || self.payments.base_url.starts_with("http://"))
            {
                bail!(
                    "invalid configuration: payments.base_url '{}' must be an http(s) URL",
                    self.payments.base_url
                );
            }
            // A charge, retries and backoff included, must end before another request
            // may take the idempotency key over.
            let worst = self.stripe_settings(String::new()).worst_case().as_millis();
            if self.payments.timeout_ms == 0 || worst >= u128::from(self.idempotency.lock_lease_ms)
            {
                bail!(
                    "invalid configuration: a payment request's worst case (payments.timeout_ms × (payments.max_retries + 1) plus back-off: {worst} ms) must be positive and below idempotency.lock_lease_ms ({} ms)",
                    self.idempotency.lock_lease_ms
                );
            }
        }
        if let Some(endpoint) = &self.log.otlp_endpoint {
            if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
                bail!(
                    "invalid configuration: log.otlp_endpoint '{endpoint}' must be an OTLP/HTTP collector's http(s) URL, such as http://127.0.0.1:4318"
                );
            }
        }
        if self.idempotency.retention_secs == 0 {
            bail!("invalid configuration: idempotency.retention_secs must be positive");
        }
        if self.idempotency.lock_lease_ms < 100 {
            bail!("invalid configuration: idempotency.lock_lease_ms must be at least 100");
        }
        if self.idempotency.retention_secs * 1000 <= self.idempotency.lock_lease_ms {
            bail!("invalid configuration: idempotency.retention_secs must be longer than idempotency.lock_lease_ms");
        }
        if self.recovery.lease_ms <= self.idempotency.lock_lease_ms {
            bail!(
                "invalid configuration: recovery.lease_ms ({}) must be longer than idempotency.lock_lease_ms ({}), so the reconciler never takes a purchase a live request is working on",
                self.recovery.lease_ms,
                self.idempotency.lock_lease_ms
            );
        }
        if self.recovery.interval_ms == 0 || self.recovery.batch == 0 {
            bail!(
                "invalid configuration: recovery.interval_ms and recovery.batch must be positive"
            );
        }
        if self.idempotency.sweep_interval_secs == 0 {
            bail!("invalid configuration: idempotency.sweep_interval_secs must be positive");
        }
        if let Some(token) = &self.auth.admin_token {
            if token.expose_secret().len() < 16 {
                bail!("invalid configuration: auth.admin_token must be at least 16 characters");
            }
        }
        if let Some(secret) = &self.auth.session_secret {
            if secret.expose_secret().len() < 32 {
                bail!("invalid configuration: auth.session_secret must be at least 32 characters");
            }
        }
        let r = &self.rate_limit;
        for (name, value) in [
            ("credential_per_sec", r.credential_per_sec),
            ("credential_burst", r.credential_burst),
            ("address_per_sec", r.address_per_sec),
            ("address_burst", r.address_burst),
            ("failed_auth_per_min", r.failed_auth_per_min),
            ("failed_auth_burst", r.failed_auth_burst),
        ] {
            if value == 0 {
                bail!("invalid configuration: rate_limit.{name} must be positive");
            }
        }
        for origin in &self.http.cors_allowed_origins {
            let scheme_ok = origin.starts_with("https://") || origin.starts_with("http://");
            if !scheme_ok || origin.ends_with('/') || origin.matches('/').count() != 2 {
                bail!("invalid configuration: http.cors_allowed_origins '{origin}' must be an origin such as https://shop.example.com (scheme and host, no path)");
            }
        }
        self.checkout.validate()?;
        self.live.validate()?;
        if self.payments.webhook_tolerance_secs == 0 {
            bail!("invalid configuration: payments.webhook_tolerance_secs must be positive");
        }
        if !(1..=86_400).contains(&self.auth.session_ttl_secs) {
            bail!("invalid configuration: auth.session_ttl_secs must be from 1 to 86400");
        }
        Ok(())
    }

    /// How to reach Stripe with these settings and `secret_key`.
    pub fn stripe_settings(&self, secret_key: String) -> StripeSettings {
        StripeSettings {
            base_url: self.payments.base_url.clone(),
            secret_key,
            timeout: Duration::from_millis(self.payments.timeout_ms),
            max_retries: self.payments.max_retries,
        }
    }

    pub fn store_kind(&self) -> anyhow::Result<StoreKind> {
        match self.store.url.split_once("://") {
            Some(("memory", "")) => Ok(StoreKind::Memory),
            Some(("postgres" | "postgresql", rest)) if !rest.is_empty() => Ok(StoreKind::Postgres),
            Some(("mongodb" | "mongodb+srv", rest)) if !rest.is_empty() => Ok(StoreKind::Mongo),
            _ => bail!(
                "invalid configuration: store.url '{}' is not supported (expected memory://, postgres://… or mongodb://…)",
                redact(&self.store.url)
            ),
        }
    }

    /// Whether the storefront's demo sign-in is on.
    pub fn demo_sign_in(&self) -> bool {
        self.demo
            .sign_in
            .unwrap_or(matches!(self.store_kind(), Ok(StoreKind::Memory)))
    }

    /// Whether to seed demo plans into an empty store.
    pub fn seed_demo(&self) -> bool {
        self.demo
            .seed
            .unwrap_or(matches!(self.store_kind(), Ok(StoreKind::Memory)))
    }

    pub fn recovery(&self) -> seatkeeper_domain::service::RecoverySettings {
        seatkeeper_domain::service::RecoverySettings {
            lease: Duration::from_millis(self.recovery.lease_ms),
            verify_delay: Duration::from_millis(self.recovery.verify_delay_ms),
            batch: self.recovery.batch,
        }
    }

    pub fn idempotency(&self) -> seatkeeper_domain::service::IdempotencySettings {
        seatkeeper_domain::service::IdempotencySettings {
            lock_lease: Duration::from_millis(self.idempotency.lock_lease_ms),
            retention: Duration::from_secs(self.idempotency.retention_secs),
        }
    }
}

/// A URL with its password hidden, for messages. The credentials end at the last `@`
/// before the path or the options (a MongoDB URL may list several hosts).
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{hosts}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_defaults_serve_the_memory_store_on_port_3000() {
        let s = Settings::load_from(None, env(&[])).unwrap();
        assert_eq!(s.http.addr.to_string(), "127.0.0.1:3000");
        assert_eq!(s.store_kind().unwrap(), StoreKind::Memory);
        assert!(s.seed_demo());
        assert!(s.auth.admin_token.is_none());
        assert_eq!(s.idempotency.retention_secs, 86_400);
    }

    #[test]
    fn environment_variables_override_the_defaults() {
        let s = Settings::load_from(
            None,
            env(&[
                ("SEATKEEPER_HTTP__ADDR", "0.0.0.0:8080"),
                ("SEATKEEPER_PAYMENTS__LATENCY_MS", "50"),
                ("SEATKEEPER_AUTH__ADMIN_TOKEN", "0123456789abcdef0123"),
                ("SEATKEEPER_DEMO__SEED", "false"),
            ]),
        )
        .unwrap();
        assert_eq!(s.http.addr.to_string(), "0.0.0.0:8080");
        assert_eq!(s.payments.latency_ms, 50);
        assert_eq!(
            s.auth.admin_token.as_ref().unwrap().expose_secret(),
            "0123456789abcdef0123"
        );
        assert!(!s.seed_demo());
    }

    #[test]
    fn a_bad_value_is_refused_with_the_name_of_the_setting() {
        for (var, value, named) in [
            ("SEATKEEPER_PAYMENTS__LATENCY_MS", "soon", "latency_ms"),
            ("SEATKEEPER_HTTP__ADDR", "localhost", "http.addr"),
            ("SEATKEEPER_STORE__URL", "redis://x", "store.url"),
            ("SEATKEEPER_LOG__FORMAT", "xml", "log.format"),
            ("SEATKEEPER_AUTH__ADMIN_TOKEN", "short", "auth.admin_token"),
            (
                "SEATKEEPER_LOG__OTLP_ENDPOINT",
                "collector:4318",
                "log.otlp_endpoint",
            ),
        ] {
            let err = Settings::load_from(None, env(&[(var, value)])).unwrap_err();
            let msg = format!("{err:#}");
            assert!(msg.contains(named), "{var}={value}: {msg}");
        }
    }

    #[test]
    fn a_configuration_file_sits_between_the_defaults_and_the_environment() {
        let dir = std::env::temp_dir().join(format!("seatkeeper-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("seatkeeper.toml");
        std::fs::write(
            &file,
            "[http]\naddr = \"127.0.0.1:4000\"\n[payments]\nlatency_ms = 7\n",
        )
        .unwrap();
        let s = Settings::load_from(
            Some(&file),
            env(&[("SEATKEEPER_PAYMENTS__LATENCY_MS", "9")]),
        )
        .unwrap();
        assert_eq!(s.http.addr.to_string(), "127.0.0.1:4000");
        assert_eq!(s.payments.latency_ms, 9);
        std::fs::remove_dir_all(dir).unwrap();
        assert!(Settings::load_from(Some(&file), env(&[])).is_err());
    }

    #[test]
    fn a_postgres_url_picks_the_postgres_store_and_turns_demo_seeding_off() {
        let s = Settings::load_from(
            None,
            env(&[(
                "SEATKEEPER_STORE__URL",
                "postgres://app:pw@db:5432/seatkeeper",
            )]),
        )
        .unwrap();
        assert_eq!(s.store_kind().unwrap(), StoreKind::Postgres);
        assert!(!s.seed_demo());
    }

    #[test]
    fn a_mongodb_url_picks_the_mongo_store_and_turns_demo_seeding_off() {
        for url in [
            "mongodb://mongo:27017/seatkeeper?replicaSet=rs0",
            "mongodb://app:pw@a:27017,b:27017/seatkeeper?replicaSet=rs0",
            "mongodb://127.0.0.1:27017/?directConnection=true",
            "mongodb+srv://app:pw@cluster0.example.net/seatkeeper",
        ] {
            let s = Settings::load_from(None, env(&[("SEATKEEPER_STORE__URL", url)])).unwrap();
            assert_eq!(s.store_kind().unwrap(), StoreKind::Mongo, "{url}");
            assert!(!s.seed_demo());
        }
        for url in ["mongodb://", "mongodb+srv://", "mongo://host"] {
            let err =
                Settings::load_from(None, env(&[("SEATKEEPER_STORE__URL", url)])).unwrap_err();
            assert!(format!("{err:#}").contains("store.url"), "{url}");
        }
    }

    #[test]
    fn passwords_in_mongodb_urls_are_hidden_whatever_the_hosts_and_options() {
        assert_eq!(
            redact("mongodb://app:s3cret@a:27017,b:27017/seatkeeper?replicaSet=rs0"),
            "mongodb://app:***@a:27017,b:27017/seatkeeper?replicaSet=rs0"
        );
        assert_eq!(
            redact("mongodb+srv://app:s3cret@cluster0.example.net/?retryWrites=true&w=majority"),
            "mongodb+srv://app:***@cluster0.example.net/?retryWrites=true&w=majority"
        );
        assert_eq!(
            redact("mongodb://mongo:27017/?replicaSet=rs0&appName=a@b"),
            "mongodb://mongo:27017/?replicaSet=rs0&appName=a@b",
            "an @ in the options is not a password"
        );
        let err = Settings::load_from(
            None,
            env(&[("SEATKEEPER_STORE__URL", "mongodb2://u:s3cret@h/x")]),
        )
        .unwrap_err();
        assert!(!format!("{err:#}").contains("s3cret"));
    }

    #[test]
    fn passwords_in_store_urls_are_hidden_from_messages() {
        assert_eq!(
            redact("postgres://app:secret@db:5432/x"),
            "postgres://app:***@db:5432/x"
        );
        assert_eq!(redact("postgres://db/x"), "postgres://db/x");
        let err = Settings::load_from(
            None,
            env(&[("SEATKEEPER_STORE__URL", "mysql://u:secret@h/x")]),
        )
        .unwrap_err();
        assert!(!format!("{err:#}").contains("secret"));
    }

    #[test]
    fn the_stripe_provider_needs_a_secret_key_and_a_timeout_within_the_lock_lease() {
        let err = Settings::load_from(None, env(&[("SEATKEEPER_PAYMENTS__PROVIDER", "stripe")]))
            .unwrap_err();
        assert!(format!("{err:#}").contains("payments.secret_key"));
        let err = Settings::load_from(
            None,
            env(&[
                ("SEATKEEPER_PAYMENTS__PROVIDER", "stripe"),
                ("SEATKEEPER_PAYMENTS__SECRET_KEY", "sk_test_x"),
                ("SEATKEEPER_PAYMENTS__TIMEOUT_MS", "20000"),
            ]),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("lock_lease_ms"));
        let s = Settings::load_from(
            None,
            env(&[
                ("SEATKEEPER_PAYMENTS__PROVIDER", "stripe"),
                ("SEATKEEPER_PAYMENTS__SECRET_KEY", "sk_test_x"),
                ("SEATKEEPER_PAYMENTS__BASE_URL", "http://127.0.0.1:12111"),
            ]),
        )
        .unwrap();
        assert_eq!(s.payments.provider, PaymentProvider::Stripe);
        assert!(!format!("{s:?}").contains("sk_test_x"));
        assert!(
            Settings::load_from(None, env(&[("SEATKEEPER_PAYMENTS__PROVIDER", "paypal")])).is_err()
        );
    }

    #[test]
    fn the_benchmark_echo_route_is_off_unless_switched_on() {
        assert!(!Settings::load_from(None, env(&[])).unwrap().bench.echo);
        let s = Settings::load_from(None, env(&[("SEATKEEPER_BENCH__ECHO", "true")])).unwrap();
        assert!(s.bench.echo);
        assert_eq!(s.bench.echo_wait_ms, 0);
        let s = Settings::load_from(
            None,
            env(&[
                ("SEATKEEPER_BENCH__ECHO", "true"),
                ("SEATKEEPER_BENCH__ECHO_WAIT_MS", "50"),
            ]),
        )
        .unwrap();
        assert_eq!(s.bench.echo_wait_ms, 50);
    }

    #[test]
    fn proxies_origins_and_limits_are_read_from_the_environment_and_checked() {
        let s = Settings::load_from(
            None,
            env(&[
                ("SEATKEEPER_HTTP__TRUSTED_PROXIES", "10.0.0.1, ::1"),
                (
                    "SEATKEEPER_HTTP__CORS_ALLOWED_ORIGINS",
                    "https://shop.example,http://localhost:5173",
                ),
                ("SEATKEEPER_RATE_LIMIT__CREDENTIAL_PER_SEC", "7"),
                ("SEATKEEPER_AUTH__SESSION_TTL_SECS", "60"),
            ]),
        )
        .unwrap();
        let proxies: Vec<std::net::IpAddr> =
            vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        assert_eq!(s.http.trusted_proxies, proxies);
        assert_eq!(
            s.http.cors_allowed_origins,
            ["https://shop.example", "http://localhost:5173"]
        );
        assert_eq!(s.rate_limit.credential_per_sec, 7);
        assert!(s.rate_limit.enabled);
        assert_eq!(s.auth.session_ttl_secs, 60);
        for (key, value, named) in [
            (
                "SEATKEEPER_HTTP__TRUSTED_PROXIES",
                "proxy.local",
                "http.trusted_proxies",
            ),
            (
                "SEATKEEPER_HTTP__CORS_ALLOWED_ORIGINS",
                "https://shop.example/",
                "cors_allowed_origins",
            ),
            (
                "SEATKEEPER_RATE_LIMIT__ADDRESS_BURST",
                "0",
                "rate_limit.address_burst",
            ),
            (
                "SEATKEEPER_AUTH__SESSION_TTL_SECS",
                "0",
                "auth.session_ttl_secs",
            ),
            (
                "SEATKEEPER_AUTH__SESSION_SECRET",
                "short",
                "auth.session_secret",
            ),
        ] {
            let e = Settings::load_from(None, env(&[(key, value)])).unwrap_err();
            assert!(e.to_string().contains(named), "{key}={value}: {e}");
        }
    }

    #[test]
    fn the_admin_token_never_prints() {
        let s = Secret::from("super-secret-token-value");
        assert!(!format!("{s:?}").contains("super"));
    }
}
