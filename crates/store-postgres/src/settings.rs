//! How to reach the database: the settings that
//! [`PostgresStore::connect`](crate::PostgresStore::connect) takes.

use std::time::Duration;

/// How to reach the database.
#[derive(Debug, Clone)]
pub struct PostgresSettings {
    /// `postgres://user:password@host:port/database`
    pub url: String,
    /// The most connections this process holds.
    pub max_connections: u32,
    /// How long an operation waits for a connection (and a new connection for its
    /// handshake) before the store counts as unavailable.
    pub acquire_timeout: Duration,
}

impl PostgresSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}
