//! How to reach MongoDB: [`MongoSettings`] and the client built from them (`open`), which
//! also checks that the server is a replica set member or `mongos`, with the start-up
//! failures that can answer.

use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use mongodb::{
    bson::doc,
    event::{cmap::CmapEvent, EventHandler},
    options::{ClientOptions, ReadConcern, WriteConcern},
    Client,
};
use seatkeeper_domain::ports::{PoolUse, StoreError};

use crate::{
    errors::{self, Facts},
    topology::{self, hosts_of, Deployment},
};

/// The database used when neither the settings nor the URL name one.
pub const DEFAULT_DATABASE: &str = "seatkeeper";

/// How to reach MongoDB.
#[derive(Debug, Clone)]
pub struct MongoSettings {
    /// `mongodb://[user:password@]host[:port][,host…]/[database]?replicaSet=rs0` or
    /// `mongodb+srv://…`. Must reach a replica set or `mongos`.
    pub url: String,
    /// The database; `None` takes the URL's, else [`DEFAULT_DATABASE`].
    pub database: Option<String>,
    /// The most connections per server this process holds.
    pub max_pool_size: u32,
    /// How long an operation waits for a usable server before the store counts as
    /// unavailable; also bounds start-up against an unreachable server.
    pub server_selection_timeout: Duration,
    /// How long one store operation may take, transaction retries included, before it
    /// answers "unavailable" (the driver's own limit is 120 s).
    pub transaction_time_limit: Duration,
}

impl MongoSettings {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            database: None,
            max_pool_size: 16,
            server_selection_timeout: Duration::from_secs(5),
            transaction_time_limit: Duration::from_secs(30),
        }
    }
}

/// MongoDB could not be reached at start-up.
#[derive(Debug, thiserror::Error)]
#[error("could not reach MongoDB at {hosts} within the server-selection timeout ({timeout:?})")]
pub struct Unreachable {
    pub hosts: String,
    pub timeout: Duration,
    #[source]
    pub cause: mongodb::error::Error,
}

/// The driver's connections, counted from its connection pool events (the driver has no
/// other way to tell).
#[derive(Debug, Default)]
pub(crate) struct PoolCounter {
    open: AtomicI64,
    in_use: AtomicI64,
}

impl PoolCounter {
    fn observe(&self, event: CmapEvent) {
        let (counter, delta) = match event {
            CmapEvent::ConnectionCreated(_) => (&self.open, 1),
            CmapEvent::ConnectionClosed(_) => (&self.open, -1),
            CmapEvent::ConnectionCheckedOut(_) => (&self.in_use, 1),
            CmapEvent::ConnectionCheckedIn(_) => (&self.in_use, -1),
            _ => return,
        };
        counter.fetch_add(delta, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> PoolUse {
        let open = self.open.load(Ordering::Relaxed).max(0) as u64;
        let in_use = (self.in_use.load(Ordering::Relaxed).max(0) as u64).min(open);
        PoolUse {
            in_use,
            idle: open - in_use,
        }
    }
}

/// Builds the client and checks the deployment: `(client, database name, deployment,
/// the client's pool counter)`.
pub(crate) async fn open(
    settings: &MongoSettings,
) -> Result<(Client, String, Deployment, Arc<PoolCounter>), StoreError> {
    let hosts = hosts_of(&settings.url);
    let mut options = ClientOptions::parse(&settings.url).await.map_err(|e| {
        let what = format!("the MongoDB URL for {hosts} could not be used");
        match errors::verdict(&Facts::of(&e)) {
            // An SRV or DNS lookup that failed: the hosts cannot be reached.
            errors::Verdict::Unavailable => StoreError::unavailable(Unreachable {
                hosts: hosts.clone(),
                timeout: settings.server_selection_timeout,
                cause: e,
            }),
            errors::Verdict::Internal => StoreError::internal(Invalid(what, e)),
        }
    })?;
    options.app_name.get_or_insert_with(|| "seatkeeper".into());
    options.server_selection_timeout = Some(settings.server_selection_timeout);
    options
        .connect_timeout
        .get_or_insert(settings.server_selection_timeout);
    options.max_pool_size = Some(settings.max_pool_size);
    let pool = Arc::new(PoolCounter::default());
    let counter = pool.clone();
    options.cmap_event_handler = Some(EventHandler::callback(move |event| counter.observe(event)));
    options
        .read_concern
        .get_or_insert_with(ReadConcern::majority);
    options
        .write_concern
        .get_or_insert_with(WriteConcern::majority);
    let database = settings
        .database
        .clone()
        .or_else(|| options.default_database.clone())
        .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
    let client = Client::with_options(options).map_err(|e| {
        StoreError::internal(Invalid(
            format!("the MongoDB client for {hosts} could not be built"),
            e,
        ))
    })?;
    let hello = client
        .database("admin")
        .run_command(doc! { "hello": 1 })
        .await
        .map_err(|e| match errors::verdict(&Facts::of(&e)) {
            errors::Verdict::Unavailable => StoreError::unavailable(Unreachable {
                hosts: hosts.clone(),
                timeout: settings.server_selection_timeout,
                cause: e,
            }),
            errors::Verdict::Internal => StoreError::internal(Invalid(
                format!("MongoDB at {hosts} refused the `hello` command"),
                e,
            )),
        })?;
    let deployment = topology::deployment(&hello, &hosts).map_err(StoreError::internal)?;
    Ok((client, database, deployment, pool))
}

/// A start-up failure with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Invalid(String, #[source] mongodb::error::Error);
