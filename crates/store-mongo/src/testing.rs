//! Test support: a fresh, empty database per store, dropped with it.
//!
//! The live tests (the storage contract suite, `tests/live.rs` and the server's tests on
//! MongoDB) run against the replica set named by `SEATKEEPER_TEST_MONGODB_URL`, or by
//! default against `mongodb://127.0.0.1:27017/?directConnection=true`, the single-node
//! replica set `bash deploy/mongodb.sh start` runs (and `.ci/run` starts). Each store gets
//! a database named `seatkeeper_test_<unix seconds>_<random>`, created with the store's
//! collections and indexes and dropped when the store is dropped; databases left behind by
//! a killed run are dropped an hour later by the next run.
//!
//! Connecting turns the server's TTL monitor off (see `pause_ttl_monitor`): test
//! deployments only.
//!
//! When nothing listens at the default address and the variable is unset,
//! [`TestDatabases::connect`] returns the reason at once and every live test says, under its
//! own name, that it was skipped. A server that listens but cannot be used (not a replica
//! set, no rights) is skipped with the reason too. Under `CI` both panic instead, so that a
//! broken setup cannot pass by skipping.

use std::time::Duration;

use mongodb::{bson::doc, options::ClientOptions, Client};

use seatkeeper_store_contract::support::{
    is_stale_test_database, test_database_name, CleanUpOnDrop, TEST_DATABASE_PREFIX,
};

use crate::{settings::open, topology::hosts_of, MongoSettings, MongoStore};

pub const URL_VARIABLE: &str = "SEATKEEPER_TEST_MONGODB_URL";
/// Where `bash deploy/mongodb.sh start` serves its replica set.
pub const DEFAULT_URL: &str = "mongodb://127.0.0.1:27017/?directConnection=true";
const TIMEOUT: Duration = Duration::from_secs(5);

/// Hands out fresh test databases on one MongoDB deployment.
#[derive(Debug, Clone)]
pub struct TestDatabases {
    url: String,
}

async fn client(url: &str) -> Option<Client> {
    let mut options = ClientOptions::parse(url).await.ok()?;
    options.server_selection_timeout = Some(TIMEOUT);
    Client::with_options(options).ok()
}

impl TestDatabases {
    /// The deployment named by `SEATKEEPER_TEST_MONGODB_URL`, or why there is none.
    pub async fn connect() -> Result<Self, String> {
        let given = std::env::var(URL_VARIABLE)
            .ok()
            .filter(|u| !u.trim().is_empty());
        let url = given.clone().unwrap_or_else(|| DEFAULT_URL.to_owned());
        if given.is_none() {
            if let Some(e) = nothing_listens(&url).await {
                return Err(unusable(
                    &url,
                    &format!(
                        "nothing listens there ({e}); `bash deploy/mongodb.sh start` runs a \
                         replica set there, or set {URL_VARIABLE}"
                    ),
                ));
            }
        }
        let mut settings = MongoSettings::new(url.clone());
        settings.server_selection_timeout = TIMEOUT;
        match open(&settings).await {
            Ok((client, ..)) => {
                drop_stale(&client).await;
                pause_ttl_monitor(&client).await;
                client.shutdown().await;
                Ok(Self { url })
            }
            Err(e) => Err(unusable(&url, &cause_chain(&e))),
        }
    }

    /// [`Self::connect`] for one test: `None`, with a line saying `test` was skipped and
    /// why, when there is no deployment.
    pub async fn for_test(test: &str) -> Option<Self> {
        seatkeeper_store_contract::or_skip(test, Self::connect().await)
    }

    /// The URL of the deployment.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A store on a new, empty database with its collections and indexes. The database
    /// lives as long as the store.
    pub async fn fresh_store(&self) -> MongoStore {
        let (store, _url) = self.fresh_store_with_url().await;
        store
    }

    /// A store on a new, empty database with its collections and indexes, and a URL that
    /// names that database (for server processes that should share it). The database
    /// lives as long as the store.
    pub async fn fresh_store_with_url(&self) -> (MongoStore, String) {
        let name = self.fresh_name();
        let url = url_naming(&self.url, &name);
        let mut settings = MongoSettings::new(url.clone());
        settings.server_selection_timeout = TIMEOUT;
        settings.database = Some(name.clone());
        let store = MongoStore::connect(&settings)
            .await
            .expect("connect to the test MongoDB deployment and prepare a fresh database");
        let admin_url = self.url.clone();
        // The store's client belongs to the test's runtime; the cleanup makes its own.
        let guard = CleanUpOnDrop::new(move || async move {
            if let Some(client) = client(&admin_url).await {
                let _ = client.database(&name).drop().await;
                client.shutdown().await;
            }
        });
        (store.with_guard(guard), url)
    }

    /// A new database name (nothing is created).
    pub fn fresh_name(&self) -> String {
        test_database_name()
    }
}

/// `url` with `database` as its path (the database a server opens). Credentials keep
/// authenticating where they did: against the URL's own database, else `admin`.
fn url_naming(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("mongodb", url));
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (path, query) = match tail.split_once('?') {
        Some((path, query)) => (path, query),
        None => (tail, ""),
    };
    let mut options: Vec<String> = query
        .split('&')
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect();
    let has_auth_source = options
        .iter()
        .any(|o| o.to_ascii_lowercase().starts_with("authsource="));
    if authority.contains('@') && !has_auth_source {
        let own = path.trim_start_matches('/');
        options.push(format!(
            "authSource={}",
            if own.is_empty() { "admin" } else { own }
        ));
    }
    if options.is_empty() {
        format!("{scheme}://{authority}/{database}")
    } else {
        format!("{scheme}://{authority}/{database}?{}", options.join("&"))
    }
}

fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut why = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        why.push_str(": ");
        why.push_str(&cause.to_string());
        source = cause.source();
    }
    why
}

/// The connection error when nothing accepts a TCP connection at the URL's first host
/// within a second; `None` when something does.
async fn nothing_listens(url: &str) -> Option<String> {
    let host = hosts_of(url).split(',').next()?.to_owned();
    let addr = if host.contains(':') {
        host
    } else {
        format!("{host}:27017")
    };
    match tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(&addr),
    )
    .await
    {
        Ok(Ok(_)) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("no answer within 1 s".to_owned()),
    }
}

fn unusable(url: &str, why: &str) -> String {
    let message = format!(
        "MongoDB at {} cannot run the tests ({why}); set {URL_VARIABLE} to a replica set the tests may create databases on",
        hosts_of(url)
    );
    if std::env::var_os("CI").is_some() {
        panic!("{message} (CI is set, so this fails instead of skipping)");
    }
    message
}

/// Turns the server's TTL monitor off. It deletes expired idempotency records about once a
/// minute, on its own schedule; the contract suite counts what `purge_expired_keys`
/// deletes exactly, and a monitor pass between a case's set-up and its purge would make
/// that count lower. The store's own sweep does not depend on the monitor. A server that
/// does not allow it (no privilege) keeps its monitor, and those counts may then flake.
async fn pause_ttl_monitor(client: &Client) {
    let _ = client
        .database("admin")
        .run_command(doc! { "setParameter": 1, "ttlMonitorEnabled": false })
        .await;
}

/// Drops test databases older than an hour: leftovers of killed runs.
async fn drop_stale(client: &Client) {
    let Ok(names) = client
        .list_database_names()
        .filter(doc! { "name": { "$regex": format!("^{TEST_DATABASE_PREFIX}") } })
        .await
    else {
        return;
    };
    for name in names {
        if is_stale_test_database(&name) {
            let _ = client.database(&name).drop().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::url_naming;

    #[test]
    fn the_default_url_names_the_database_and_keeps_its_options() {
        assert_eq!(
            url_naming("mongodb://127.0.0.1:27017/?directConnection=true", "db1"),
            "mongodb://127.0.0.1:27017/db1?directConnection=true"
        );
        assert_eq!(
            url_naming("mongodb://a:1,b:2", "db1"),
            "mongodb://a:1,b:2/db1"
        );
    }

    #[test]
    fn credentials_keep_authenticating_against_the_database_they_named() {
        assert_eq!(
            url_naming("mongodb://u:p@h:1/app?replicaSet=rs0", "db1"),
            "mongodb://u:p@h:1/db1?replicaSet=rs0&authSource=app"
        );
        assert_eq!(
            url_naming("mongodb://u:p@h:1/", "db1"),
            "mongodb://u:p@h:1/db1?authSource=admin"
        );
        assert_eq!(
            url_naming("mongodb://u:p@h:1/?authSource=x", "db1"),
            "mongodb://u:p@h:1/db1?authSource=x"
        );
    }
}
