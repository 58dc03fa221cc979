//! The `live` section: the Server-Sent Events streams of availability
//! (`GET /api/plans/{id}/events`, `GET /api/plans/events`) and the hub behind them.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct LiveSettings {
    /// How often an idle stream sends a comment, so that proxies and clients see it alive
    /// (seconds).
    pub heartbeat_secs: u64,
    /// How long the hub gathers announcements of changes before it reads the changed
    /// plans, each once (milliseconds): the most a change waits before its event, and
    /// the least time between two reads of one plan (a read counts the plan's
    /// subscriptions, so a hot plan is read at most four times a second by default).
    pub coalesce_ms: u64,
    /// Events the broadcast ring keeps for slow streams; one further behind is sent the
    /// latest availability instead of what it missed.
    pub backlog: usize,
    /// How long a client waits before reconnecting after a dropped stream (milliseconds;
    /// sent as the stream's `retry:` field).
    pub retry_ms: u64,
}

impl Default for LiveSettings {
    fn default() -> Self {
        Self {
            heartbeat_secs: 15,
            coalesce_ms: 250,
            backlog: 1024,
            retry_ms: 2000,
        }
    }
}

impl LiveSettings {
    pub(super) fn validate(&self) -> anyhow::Result<()> {
        for (name, value) in [
            ("heartbeat_secs", self.heartbeat_secs),
            ("backlog", self.backlog as u64),
            ("retry_ms", self.retry_ms),
        ] {
            if value == 0 {
                anyhow::bail!("invalid configuration: live.{name} must be positive");
            }
        }
        if self.coalesce_ms > 1000 {
            anyhow::bail!(
                "invalid configuration: live.coalesce_ms must be at most 1000 (a change reaches the streams within a second)"
            );
        }
        Ok(())
    }
}
