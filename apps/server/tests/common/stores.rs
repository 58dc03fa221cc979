//! The durable stores a process-level test can run on, and a fresh, empty database on
//! each: [`FreshDatabase::or_skip`] gives, for a [`DatabaseKind`], the URL to put in
//! `SEATKEEPER_STORE__URL`, the store itself for direct invariant checks, and the
//! `host:port` of the database server (the upstream of a [`super::Proxy`]); or, when that
//! server cannot be reached, prints `skipped <test>: <reason>` and gives `None` (under
//! `CI` the store crates' `TestDatabases::connect` panics instead).
//!
//! The database is dropped when the last clone of [`FreshDatabase::store`] is dropped: the
//! store carries the guard. A test that runs servers on the database keeps the
//! `FreshDatabase` alive until they are stopped.
//!
//! ```ignore
//! for kind in DatabaseKind::ALL { … }
//! let Some(db) = FreshDatabase::or_skip(DatabaseKind::Mongo, "my_test").await else { return };
//! let proxy = Proxy::start(db.upstream.clone()).await;
//! let server_url = db.url_through(proxy.port); // SEATKEEPER_STORE__URL via the proxy
//! check_store_plan(db.store.as_ref(), plan_id).await;
//! ```

use std::{fmt, sync::Arc, time::Duration};

use seatkeeper_domain::ports::Store;
use seatkeeper_server::{configuration::Settings, startup::Wiring};

/// A durable store the server can run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatabaseKind {
    Postgres,
    Mongo,
}

impl DatabaseKind {
    pub const ALL: [DatabaseKind; 2] = [DatabaseKind::Postgres, DatabaseKind::Mongo];

    /// `postgres` or `mongodb`, for names and messages.
    pub fn name(self) -> &'static str {
        match self {
            DatabaseKind::Postgres => "postgres",
            DatabaseKind::Mongo => "mongodb",
        }
    }

    fn default_port(self) -> u16 {
        match self {
            DatabaseKind::Postgres => 5432,
            DatabaseKind::Mongo => 27017,
        }
    }
}

impl fmt::Display for DatabaseKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A new, empty database with the store's schema, dropped with the last clone of `store`.
pub struct FreshDatabase {
    pub kind: DatabaseKind,
    /// The database's URL, for `SEATKEEPER_STORE__URL` (it names the fresh database).
    pub url: String,
    /// A store on the database, for direct checks such as `check_store_plan`.
    pub store: Arc<dyn Store>,
    /// `host:port` of the database server (the first host, for MongoDB).
    pub upstream: String,
}

impl FreshDatabase {
    /// A fresh database of `kind`, or why there is none (the server cannot be reached).
    pub async fn new(kind: DatabaseKind) -> Result<Self, String> {
        let (store, url): (Arc<dyn Store>, String) = match kind {
            DatabaseKind::Postgres => {
                let dbs = seatkeeper_store_postgres::testing::TestDatabases::connect().await?;
                let (store, url) = dbs.fresh_store_with_url().await;
                (Arc::new(store), url)
            }
            DatabaseKind::Mongo => {
                let dbs = seatkeeper_store_mongo::testing::TestDatabases::connect().await?;
                let (store, url) = dbs.fresh_store_with_url().await;
                (Arc::new(store), url)
            }
        };
        let upstream = first_host(&url, kind.default_port());
        Ok(Self {
            kind,
            url,
            store,
            upstream,
        })
    }

    /// A fresh database of `kind`; or, printing `skipped <test> on <kind>: <reason>`, `None`.
    pub async fn or_skip(kind: DatabaseKind, test: &str) -> Option<Self> {
        match Self::new(kind).await {
            Ok(db) => Some(db),
            Err(reason) => {
                eprintln!("skipped {test} on {kind}: {reason}");
                None
            }
        }
    }

    /// [`Self::url`] with the server's `host:port` replaced by `127.0.0.1:<port>` (a proxy's).
    pub fn url_through(&self, port: u16) -> String {
        let (scheme, rest) = self.url.split_once("://").expect("a URL with a scheme");
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let user = authority
            .rsplit_once('@')
            .map_or(String::new(), |(user, _)| format!("{user}@"));
        format!("{scheme}://{user}127.0.0.1:{port}{tail}")
    }
}

/// A store of the kind `url` names (as the server would open it), for a test that wants
/// its own connection, e.g. through a proxy. `acquire_timeout` bounds waiting for a
/// connection (PostgreSQL) or a usable server (MongoDB).
pub async fn open_store(url: &str, acquire_timeout: Duration) -> Arc<dyn Store> {
    let mut settings = Settings::load_from(None, Vec::new()).expect("default settings");
    settings.store.url = url.to_owned();
    settings.store.pool_size = 4;
    settings.store.acquire_timeout_ms = acquire_timeout.as_millis() as u64;
    Wiring::from_settings(&settings)
        .await
        .expect("open the store the URL names")
        .store
}

/// The first `host:port` of a URL's authority (credentials left out).
fn first_host(url: &str, default_port: u16) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = hosts.split(',').next().unwrap_or(hosts);
    if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:{default_port}")
    }
}
