//! Test support: a fresh, empty database per store, dropped with it.
//!
//! Tests connect to `SEATKEEPER_TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`), create a database named
//! `seatkeeper_test_<unix seconds>_<random>`, and drop it (`WITH (FORCE)`) when the store
//! is dropped. Databases left behind by a killed test run are dropped an hour later by
//! the next run. Without a reachable server, [`TestDatabases::connect`] returns `None`
//! (the tests say they were skipped) — unless `CI` is set, where it panics, so that CI
//! can never pass by skipping.

use std::time::Duration;

use seatkeeper_store_contract::support::{
    is_stale_test_database, test_database_name, CleanUpOnDrop,
};
use sqlx::{postgres::PgConnectOptions, ConnectOptions, Connection, PgConnection};

use crate::{PostgresSettings, PostgresStore};

pub const URL_VARIABLE: &str = "SEATKEEPER_TEST_POSTGRES_URL";
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Hands out fresh test databases on one PostgreSQL server.
#[derive(Debug, Clone)]
pub struct TestDatabases {
    admin: PgConnectOptions,
}

impl TestDatabases {
    /// The server named by `SEATKEEPER_TEST_POSTGRES_URL`, or `None` (with the reason) when
    /// it cannot be reached and `CI` is not set.
    pub async fn connect() -> Result<Self, String> {
        let url = std::env::var(URL_VARIABLE).unwrap_or_else(|_| DEFAULT_URL.to_owned());
        let admin: PgConnectOptions = url
            .parse()
            .map_err(|e| format!("{URL_VARIABLE}={url} is not a PostgreSQL URL: {e}"))?;
        let admin = admin.log_statements(tracing::log::LevelFilter::Trace);
        let attempt = tokio::time::timeout(Duration::from_secs(5), admin.connect()).await;
        let mut conn = match attempt {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(unreachable(&url, &e.to_string())),
            Err(_) => return Err(unreachable(&url, "timed out after 5 s")),
        };
        drop_stale(&mut conn).await;
        let _ = conn.close().await;
        Ok(Self { admin })
    }

    /// [`Self::connect`] for one test: `None`, with a line saying `test` was skipped and
    /// why, when there is no server.
    pub async fn for_test(test: &str) -> Option<Self> {
        seatkeeper_store_contract::or_skip(test, Self::connect().await)
    }

    /// A store on a new, empty, migrated database.
    pub async fn fresh_store(&self) -> PostgresStore {
        let (store, _url) = self.fresh_store_with_url().await;
        store
    }

    /// A store on a new, empty, migrated database, and the database's URL (for server
    /// processes that should share it). The database lives as long as the store.
    pub async fn fresh_store_with_url(&self) -> (PostgresStore, String) {
        let name = test_database_name();
        let mut conn = self
            .admin
            .connect()
            .await
            .expect("connect to the test PostgreSQL server");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .expect("create a test database");
        let _ = conn.close().await;
        let options = self.admin.clone().database(&name);
        let url = options.to_url_lossy().to_string();
        // Tests measure correctness, not latency: on a loaded machine a hot plan row may
        // queue transactions for longer than production's acquire timeout.
        let settings = PostgresSettings {
            acquire_timeout: Duration::from_secs(30),
            ..PostgresSettings::new(url.clone())
        };
        let store = PostgresStore::connect(&settings)
            .await
            .expect("connect to the fresh test database and migrate it");
        let admin = self.admin.clone();
        let guard = CleanUpOnDrop::new(move || async move {
            if let Ok(mut c) = admin.connect().await {
                let drop = format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)");
                let _ = sqlx::query(&drop).execute(&mut c).await;
            }
        });
        (store.with_guard(guard), url)
    }
}

fn unreachable(url: &str, why: &str) -> String {
    let message = format!(
        "PostgreSQL is not reachable at {url} ({why}); set {URL_VARIABLE} to a server the tests may create databases on"
    );
    if std::env::var_os("CI").is_some() {
        panic!("{message} (CI is set, so this fails instead of skipping)");
    }
    message
}

/// Drops test databases older than an hour: leftovers of killed runs.
async fn drop_stale(conn: &mut PgConnection) {
    let Ok(names) = sqlx::query_scalar::<_, String>(
        "SELECT datname FROM pg_database WHERE datname LIKE 'seatkeeper\\_test\\_%'",
    )
    .fetch_all(&mut *conn)
    .await
    else {
        return;
    };
    for name in names {
        if is_stale_test_database(&name) {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut *conn)
                .await;
        }
    }
}
