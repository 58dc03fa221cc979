//! Test support: a fresh, empty database per store, dropped with it.
//!
//! The live tests (the storage contract suite and `tests/live.rs`) run against the
//! MongoDB replica set named by `SEATKEEPER_TEST_MONGODB_URL` — for example
//! `mongodb://mongo:27017/?replicaSet=rs0` inside Compose (`docker compose run --rm
//! store-tests`) or `mongodb://127.0.0.1:27017/?directConnection=true` from the host.
//! Each store gets a database named `seatkeeper_test_<unix seconds>_<random>`, created
//! with the store's collections and indexes and dropped when the store is dropped;
//! databases left behind by a killed run are dropped an hour later by the next run.
//!
//! Without the variable, [`TestDatabases::connect`] returns the reason and every live test
//! says it was skipped — also under CI, where no MongoDB exists. With the variable set but
//! the server unreachable (or not a replica set), it is an error: skipped with the reason,
//! except when `CI` is set, where it panics so that a broken setup cannot pass by skipping.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mongodb::{bson::doc, options::ClientOptions, Client};

use crate::{open, topology::hosts_of, MongoSettings, MongoStore};

pub const URL_VARIABLE: &str = "SEATKEEPER_TEST_MONGODB_URL";
const PREFIX: &str = "seatkeeper_test_";
const TIMEOUT: Duration = Duration::from_secs(5);

/// Hands out fresh test databases on one MongoDB deployment.
#[derive(Debug, Clone)]
pub struct TestDatabases {
    url: String,
}

/// Drops its database when dropped.
struct DropDatabase {
    url: String,
    name: String,
}

impl Drop for DropDatabase {
    fn drop(&mut self) {
        let url = self.url.clone();
        let name = self.name.clone();
        // Drop cannot await, and the store's client belongs to the test's runtime: a
        // short-lived thread with its own runtime and client does it.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Some(client) = client(&url).await {
                    let _ = client.database(&name).drop().await;
                    client.shutdown().await;
                }
            });
        })
        .join();
    }
}

async fn client(url: &str) -> Option<Client> {
    let mut options = ClientOptions::parse(url).await.ok()?;
    options.server_selection_timeout = Some(TIMEOUT);
    Client::with_options(options).ok()
}

impl TestDatabases {
    /// The deployment named by `SEATKEEPER_TEST_MONGODB_URL`, or why there is none.
    pub async fn connect() -> Result<Self, String> {
        let Some(url) = std::env::var(URL_VARIABLE)
            .ok()
            .filter(|u| !u.trim().is_empty())
        else {
            return Err(format!(
                "{URL_VARIABLE} is not set; these tests need a MongoDB replica set \
                 (`docker compose run --rm store-tests` runs them against one)"
            ));
        };
        let mut settings = MongoSettings::new(url.clone());
        settings.server_selection_timeout = TIMEOUT;
        match open(&settings).await {
            Ok((client, _, _)) => {
                drop_stale(&client).await;
                client.shutdown().await;
                Ok(Self { url })
            }
            Err(e) => Err(unusable(&url, &e)),
        }
    }

    /// The URL of the deployment.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A store on a new, empty database with its collections and indexes. The database
    /// lives as long as the store.
    pub async fn fresh_store(&self) -> MongoStore {
        let name = self.fresh_name();
        let mut settings = MongoSettings::new(self.url.clone());
        settings.server_selection_timeout = TIMEOUT;
        settings.database = Some(name.clone());
        let store = MongoStore::connect(&settings)
            .await
            .expect("connect to the test MongoDB deployment and prepare a fresh database");
        store.with_guard(DropDatabase {
            url: self.url.clone(),
            name,
        })
    }

    /// A new database name (nothing is created).
    pub fn fresh_name(&self) -> String {
        format!(
            "{PREFIX}{}_{}",
            unix_secs(),
            &uuid::Uuid::new_v4().simple().to_string()[..16]
        )
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn unusable(url: &str, e: &dyn std::error::Error) -> String {
    let mut why = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        why.push_str(": ");
        why.push_str(&cause.to_string());
        source = cause.source();
    }
    let message = format!(
        "MongoDB at {} cannot run the tests ({why}); set {URL_VARIABLE} to a replica set the tests may create databases on",
        hosts_of(url)
    );
    if std::env::var_os("CI").is_some() {
        panic!("{message} (CI is set and {URL_VARIABLE} names a server, so this fails instead of skipping)");
    }
    message
}

/// Drops test databases older than an hour: leftovers of killed runs.
async fn drop_stale(client: &Client) {
    let Ok(names) = client
        .list_database_names()
        .filter(doc! { "name": { "$regex": format!("^{PREFIX}") } })
        .await
    else {
        return;
    };
    let now = unix_secs();
    for name in names {
        let created = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|s| s.parse::<u64>().ok());
        if created.is_some_and(|t| t + 3600 < now) {
            let _ = client.database(&name).drop().await;
        }
    }
}
