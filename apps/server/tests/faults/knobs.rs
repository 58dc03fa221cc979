//! The timing settings of the server processes ([`Knobs`]) and the environment that hands
//! them, with the store, the simulator and the admin token, to each `seatkeeper-server`.
//! Three presets: no adapter retry ([`Knobs::FAST`]), one retry ([`Knobs::RETRYING`]), and
//! charges that may be held for seconds ([`Knobs::LATE`]); checkouts' settings come with
//! each.

use crate::{SECRET, TOKEN, WEBHOOK_SECRET};

/// The timing settings of the servers. Start-up checks that a charge (timeout × attempts
/// plus backoff) fits in the lock lease, and the recovery lease exceeds the lock lease.
#[derive(Debug, Clone, Copy)]
pub struct Knobs {
    pub lock_lease_ms: u64,
    pub recovery_lease_ms: u64,
    pub recovery_interval_ms: u64,
    pub verify_delay_ms: u64,
    pub payment_timeout_ms: u64,
    pub max_retries: u32,
    /// How long an open checkout session with a payment waits before the worker asks the
    /// provider about it (a webhook may have been lost).
    pub recheck_after_secs: u32,
}

impl Knobs {
    /// No adapter retry: every lost answer reaches the client as a 503.
    pub const FAST: Knobs = Knobs {
        lock_lease_ms: 2000,
        recovery_lease_ms: 3000,
        recovery_interval_ms: 500,
        verify_delay_ms: 1000,
        payment_timeout_ms: 500,
        max_retries: 0,
        recheck_after_secs: 2,
    };
    /// One adapter retry: 300 × 2 + 3000 < 4000.
    pub const RETRYING: Knobs = Knobs {
        lock_lease_ms: 4000,
        recovery_lease_ms: 5000,
        recovery_interval_ms: 500,
        verify_delay_ms: 1000,
        payment_timeout_ms: 300,
        max_retries: 1,
        recheck_after_secs: 2,
    };
    /// A charge may be held for seconds (the late-charge scenario holds one while the
    /// reconciler gives its purchase up); the reconciler looks every 100 ms.
    pub const LATE: Knobs = Knobs {
        lock_lease_ms: 3000,
        recovery_lease_ms: 4000,
        recovery_interval_ms: 100,
        verify_delay_ms: 2000,
        payment_timeout_ms: 2900,
        max_retries: 0,
        recheck_after_secs: 2,
    };
    const ACQUIRE_TIMEOUT_MS: u64 = 1000;

    pub fn env(&self, store_url: &str, paysim_url: &str) -> Vec<(String, String)> {
        [
            ("SEATKEEPER_HTTP__WORKERS", "2".to_owned()),
            ("SEATKEEPER_STORE__URL", store_url.to_owned()),
            ("SEATKEEPER_STORE__POOL_SIZE", "8".to_owned()),
            (
                "SEATKEEPER_STORE__ACQUIRE_TIMEOUT_MS",
                Self::ACQUIRE_TIMEOUT_MS.to_string(),
            ),
            ("SEATKEEPER_AUTH__ADMIN_TOKEN", TOKEN.to_owned()),
            // Hundreds of buyers share one key here; the limits are tested elsewhere.
            ("SEATKEEPER_RATE_LIMIT__ENABLED", "false".to_owned()),
            ("SEATKEEPER_DEMO__SEED", "false".to_owned()),
            ("SEATKEEPER_PAYMENTS__PROVIDER", "stripe".to_owned()),
            ("SEATKEEPER_PAYMENTS__BASE_URL", paysim_url.to_owned()),
            ("SEATKEEPER_PAYMENTS__SECRET_KEY", SECRET.to_owned()),
            (
                "SEATKEEPER_PAYMENTS__TIMEOUT_MS",
                self.payment_timeout_ms.to_string(),
            ),
            (
                "SEATKEEPER_PAYMENTS__MAX_RETRIES",
                self.max_retries.to_string(),
            ),
            (
                "SEATKEEPER_IDEMPOTENCY__LOCK_LEASE_MS",
                self.lock_lease_ms.to_string(),
            ),
            (
                "SEATKEEPER_RECOVERY__LEASE_MS",
                self.recovery_lease_ms.to_string(),
            ),
            (
                "SEATKEEPER_RECOVERY__INTERVAL_MS",
                self.recovery_interval_ms.to_string(),
            ),
            (
                "SEATKEEPER_RECOVERY__VERIFY_DELAY_MS",
                self.verify_delay_ms.to_string(),
            ),
            // Checkout sessions as short as a second, their worker looking five times a
            // second, and the webhooks of the simulator (through the suite's relay) signed
            // with the suite's secret.
            ("SEATKEEPER_CHECKOUT__MIN_EXPIRES_IN_SECS", "1".to_owned()),
            (
                "SEATKEEPER_CHECKOUT__RECHECK_AFTER_SECS",
                self.recheck_after_secs.to_string(),
            ),
            ("SEATKEEPER_CHECKOUT__WORKER_INTERVAL_MS", "200".to_owned()),
            (
                "SEATKEEPER_PAYMENTS__WEBHOOK_SECRETS",
                WEBHOOK_SECRET.to_owned(),
            ),
            ("SEATKEEPER_LOG__FORMAT", "text".to_owned()),
            (
                "SEATKEEPER_LOG__LEVEL",
                "warn,seatkeeper_domain=info".to_owned(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}
