//! How to reach MongoDB: [`MongoSettings`] and the client built from them (`open`), which
//! also checks that the server is a replica set member or `mongos`, with the start-up
//! failures that can answer.

use std::time::Duration;

use mongodb::{
    bson::doc,
    options::{ClientOptions, ReadConcern, WriteConcern},
    Client,
};
use seatkeeper_domain::ports::StoreError;

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

/// Builds the client and checks the deployment: `(client, database name, deployment)`.
pub(crate) async fn open(
    settings: &MongoSettings,
) -> Result<(Client, String, Deployment), StoreError> {
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
    Ok((client, database, deployment))
}

/// A start-up failure with what was being done.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Invalid(String, #[source] mongodb::error::Error);
