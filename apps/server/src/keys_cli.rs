//! `seatkeeper-server keys …`: API keys from the command line, straight on the configured
//! store (the same `KeyService` the API uses), for the first key of a deployment and for
//! operators who would rather not hold the bootstrap token.
//!
//! `create` prints the key as JSON, secret included (the only time it is shown); `list`
//! prints a table; `revoke` prints the revoked key as JSON. The in-memory store lives in
//! the server's process, so these commands need a database store.

use std::{fmt::Write as _, sync::Arc};

use anyhow::{bail, Context};
use seatkeeper_domain::{
    ports::SystemClock,
    service::{KeyService, RevokeKeyError},
    ApiKeyId, KeyName, Limit, PageRequest, Role,
};

use crate::{
    configuration::{Settings, StoreKind},
    dto::{CreatedKeyBody, KeyBody},
    startup::Wiring,
};

/// What `keys` may be asked to do.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum KeysCommand {
    /// Make a key and print it as JSON, with its secret (shown this once).
    Create {
        /// `admin` (everything) or `purchases` (buy, read and cancel subscriptions, make
        /// customer sessions).
        #[arg(long)]
        role: String,
        /// A label for the people who manage keys.
        #[arg(long)]
        name: String,
    },
    /// List every key (never a secret: the first characters of each).
    List,
    /// Revoke a key: every instance refuses it within a second.
    Revoke {
        /// The key's id, as `list` shows it.
        id: String,
    },
}

/// Runs `command` on the store the settings name; returns what to print.
pub async fn run(settings: &Settings, command: KeysCommand) -> anyhow::Result<String> {
    if settings.store_kind()? == StoreKind::Memory {
        bail!("keys live in the store, and the in-memory store lives in the server's process: set SEATKEEPER_STORE__URL to the server's PostgreSQL or MongoDB database, or use POST /api/keys");
    }
    let store = Wiring::store_from_settings(settings).await?;
    let keys = KeyService::new(store, Arc::new(SystemClock));
    match command {
        KeysCommand::Create { role, name } => {
            let role = Role::parse(&role).map_err(|e| anyhow::anyhow!("--role {e}"))?;
            let name = KeyName::parse(&name).map_err(|e| anyhow::anyhow!("--name {e}"))?;
            let (key, secret) = keys.create(name, role, "command line").await?;
            Ok(serde_json::to_string_pretty(&CreatedKeyBody::new(
                &key, &secret,
            ))?)
        }
        KeysCommand::List => {
            let mut out = format!(
                "{:<36}  {:<9}  {:<11}  {:<24}  {:<24}  {:<24}  name\n",
                "id", "role", "prefix", "created", "last used", "revoked"
            );
            let mut after = None;
            loop {
                let page = keys
                    .list(PageRequest {
                        after,
                        limit: Limit::new(i64::from(Limit::MAX)).expect("the largest page"),
                    })
                    .await?;
                for k in &page.items {
                    let when = |t: Option<seatkeeper_domain::Timestamp>| {
                        t.map_or("-".to_owned(), |t| {
                            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                        })
                    };
                    writeln!(
                        out,
                        "{:<36}  {:<9}  {:<11}  {:<24}  {:<24}  {:<24}  {}",
                        k.id(),
                        k.role().as_str(),
                        k.shown_prefix(),
                        when(Some(k.created_at())),
                        when(k.last_used_at()),
                        when(k.revoked_at()),
                        k.name().as_str()
                    )?;
                }
                match page.next {
                    Some(next) => after = Some(next),
                    None => return Ok(out.trim_end().to_owned()),
                }
            }
        }
        KeysCommand::Revoke { id } => {
            let id: ApiKeyId = id.parse().map_err(|e| anyhow::anyhow!("the id {e}"))?;
            let key = keys.revoke(id, "command line").await.map_err(|e| match e {
                RevokeKeyError::NotFound(id) => anyhow::anyhow!("there is no API key with id {id}"),
                RevokeKeyError::Store(e) => {
                    anyhow::Error::new(e).context("could not revoke the key")
                }
            })?;
            serde_json::to_string_pretty(&KeyBody::from(&key)).context("printing the key")
        }
    }
}
