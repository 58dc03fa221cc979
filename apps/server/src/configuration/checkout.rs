//! The `checkout` section: how long sessions hold a seat, how many a customer may have
//! open, and the worker that expires them and asks the provider about their payments.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct CheckoutSettings {
    /// A session's life when the request names none, in seconds (30 minutes).
    pub default_expires_in_secs: u32,
    /// The shortest `expires_in` a request may ask for, in seconds.
    pub min_expires_in_secs: u32,
    /// The longest `expires_in` a request may ask for, in seconds (24 hours).
    pub max_expires_in_secs: u32,
    /// Open sessions one customer may have on one plan.
    pub max_open_per_plan: u32,
    /// How long an open session with a payment intent waits before the worker asks the
    /// provider about it (a webhook may have been lost), in seconds.
    pub recheck_after_secs: u32,
    /// How long ended sessions and webhook event ids are kept, in seconds.
    pub retention_secs: u64,
    /// Whether this instance runs the checkout worker (expiry, provider checks, refunds).
    pub worker_enabled: bool,
    /// How often the worker looks for due sessions, in milliseconds.
    pub worker_interval_ms: u64,
    /// Sessions per worker run.
    pub batch: u32,
    /// Sessions a worker run visits at once.
    pub worker_concurrency: u32,
}

impl Default for CheckoutSettings {
    fn default() -> Self {
        Self {
            default_expires_in_secs: 1800,
            min_expires_in_secs: 60,
            max_expires_in_secs: 86_400,
            max_open_per_plan: 1,
            recheck_after_secs: 60,
            retention_secs: 86_400,
            worker_enabled: true,
            worker_interval_ms: 1000,
            batch: 100,
            worker_concurrency: 32,
        }
    }
}

impl CheckoutSettings {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        let (min, default, max) = (
            self.min_expires_in_secs,
            self.default_expires_in_secs,
            self.max_expires_in_secs,
        );
        if !(1 <= min && min <= default && default <= max && max <= 7 * 86_400) {
            anyhow::bail!(
                "invalid configuration: checkout.min_expires_in_secs ({min}) <= checkout.default_expires_in_secs ({default}) <= checkout.max_expires_in_secs ({max}) must hold, from 1 s to 7 days"
            );
        }
        for (name, value) in [
            ("max_open_per_plan", u64::from(self.max_open_per_plan)),
            ("recheck_after_secs", u64::from(self.recheck_after_secs)),
            ("retention_secs", self.retention_secs),
            ("worker_interval_ms", self.worker_interval_ms),
            ("batch", u64::from(self.batch)),
            ("worker_concurrency", u64::from(self.worker_concurrency)),
        ] {
            if value == 0 {
                anyhow::bail!("invalid configuration: checkout.{name} must be positive");
            }
        }
        Ok(())
    }

    /// The domain's view of these settings.
    pub fn domain(&self) -> seatkeeper_domain::service::CheckoutSettings {
        use chrono::Duration;
        seatkeeper_domain::service::CheckoutSettings {
            default_expires_in: Duration::seconds(self.default_expires_in_secs.into()),
            max_open_per_plan: self.max_open_per_plan,
            recheck_after: Duration::seconds(self.recheck_after_secs.into()),
            retention: Duration::seconds(self.retention_secs.try_into().unwrap_or(i64::MAX)),
            batch: self.batch,
            concurrency: usize::try_from(self.worker_concurrency).unwrap_or(usize::MAX),
        }
    }
}
