//! The run's own database: made fresh with the store's collections and indexes and the
//! plans to buy from, counted after the clock, dropped at the end.
//!
//! The collections and indexes are the store's own (`seatkeeper_store_mongo::indexes`), as
//! `bench/pgbench.sh` applies the PostgreSQL store's migrations: each insert maintains the
//! same unique `(plan_id, seq)` index on the audit entries and the same four indexes on the
//! subscriptions as a purchase through the server.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mongodb::{
    bson::{doc, DateTime, Document},
    options::{ClientOptions, ReadConcern, WriteConcern},
    Client, Database,
};
use seatkeeper_domain::PlanId;
use seatkeeper_store_mongo::{
    documents::{uuid, CountsDoc, PlanDoc},
    indexes::indexes,
    queries::{self, AUDIT_ENTRIES, PLANS, SUBSCRIPTIONS},
};

use crate::{purchase::Workload, Error};

/// Seats of each plan: the most the API allows, as `bench/pgbench.sh` gives its plans, far
/// more than a run sells.
pub const SEATS: i64 = 1_000_000;

/// Every database this tool creates starts so; `--drop-database` drops nothing else.
pub const PREFIX: &str = "seatkeeper_";

/// The server's code for "the collection exists already".
const NAMESPACE_EXISTS: i32 = 48;

/// A client with the store's defaults (majority reads and writes outside transactions) and
/// a pool of `pool_size` connections.
pub async fn client(url: &str, pool_size: u32) -> Result<Client, Error> {
    let mut options = ClientOptions::parse(url).await.map_err(Error::Url)?;
    options.app_name = Some("seatkeeper-mongobench".into());
    options.server_selection_timeout = Some(Duration::from_secs(5));
    options.max_pool_size = Some(pool_size.max(1));
    options
        .read_concern
        .get_or_insert_with(ReadConcern::majority);
    options
        .write_concern
        .get_or_insert_with(WriteConcern::majority);
    Client::with_options(options).map_err(Error::Url)
}

/// A new database name: `seatkeeper_mongobench_<unix seconds>_<random>`.
pub fn fresh_name() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{PREFIX}mongobench_{secs}_{}", &random[..8])
}

/// Plan `n` (1-based) has the id `00000000-0000-0000-0000-<n as 12 digits>`, as in
/// `bench/pgbench/reserve.sql`.
pub fn plan_id(n: usize) -> PlanId {
    let text = format!("00000000-0000-0000-0000-{n:012}");
    PlanId::from_uuid(
        uuid::Uuid::parse_str(&text).unwrap_or_else(|_| uuid::Uuid::from_u128(n as u128)),
    )
}

/// Creates the store's collections and indexes in `db` and `plans` active plans of
/// [`SEATS`] seats each.
pub async fn prepare(db: &Database, plans: usize) -> Result<Workload, Error> {
    for name in queries::COLLECTIONS {
        if let Err(e) = db.create_collection(*name).await {
            if crate::purchase::code(&e) != Some(NAMESPACE_EXISTS) {
                return Err(Error::Setup(e));
            }
        }
    }
    for (collection, model) in indexes() {
        db.collection::<Document>(collection)
            .create_index(model)
            .await
            .map_err(Error::Setup)?;
    }
    let plan_ids: Vec<PlanId> = (1..=plans).map(plan_id).collect();
    let now = DateTime::now();
    let docs: Vec<PlanDoc> = plan_ids
        .iter()
        .enumerate()
        .map(|(i, id)| PlanDoc {
            id: uuid(id.as_uuid()),
            name: format!("mongobench {}", i + 1),
            capacity: SEATS,
            seats_left: SEATS,
            unit_amount: 1500,
            currency: "usd".into(),
            interval: "month".into(),
            status: "active".into(),
            created_at: now,
            seq: 1,
            counts: Some(CountsDoc::default()),
        })
        .collect();
    let workload = Workload {
        plans: db.collection(PLANS),
        subscriptions: db.collection(SUBSCRIPTIONS),
        audit: db.collection(AUDIT_ENTRIES),
        plan_ids,
    };
    workload
        .plans
        .insert_many(docs)
        .await
        .map_err(Error::Setup)?;
    Ok(workload)
}

/// What the database holds after the run, against what the run counted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Check {
    /// Commits counted by the clients, warm-up included.
    pub expected: u64,
    /// Seats gone from the plans.
    pub seats_taken: u64,
    /// Audit entries numbered on the plans (`seq` past its start).
    pub entries_numbered: u64,
    pub subscriptions: u64,
    pub audit_entries: u64,
    /// Every count equals `expected`: no commit lost, none counted that did not happen.
    pub passed: bool,
}

/// Counts what the run left in the database.
pub async fn check(w: &Workload, expected: u64) -> Result<Check, Error> {
    let mut seats_taken = 0;
    let mut entries_numbered = 0;
    for id in &w.plan_ids {
        let plan = w
            .plans
            .find_one(queries::plan_by_id(*id))
            .await
            .map_err(Error::Check)?
            .ok_or(Error::PlanGone)?;
        seats_taken += u64::try_from(plan.capacity - plan.seats_left).unwrap_or(0);
        entries_numbered += u64::try_from(plan.seq - 1).unwrap_or(0);
    }
    let subscriptions = w
        .subscriptions
        .count_documents(doc! {})
        .await
        .map_err(Error::Check)?;
    let audit_entries = w
        .audit
        .count_documents(doc! {})
        .await
        .map_err(Error::Check)?;
    let passed = [seats_taken, entries_numbered, subscriptions, audit_entries]
        .iter()
        .all(|&n| n == expected);
    Ok(Check {
        expected,
        seats_taken,
        entries_numbered,
        subscriptions,
        audit_entries,
        passed,
    })
}

/// Drops database `name`, which must start with [`PREFIX`] (the bench script's databases
/// for the server, and this tool's own).
pub async fn drop_database(client: &Client, name: &str) -> Result<(), Error> {
    if !name.starts_with(PREFIX) || name.len() == PREFIX.len() {
        return Err(Error::NotOurs(name.to_owned()));
    }
    client.database(name).drop().await.map_err(Error::Drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_ids_spell_their_number_in_the_last_group_as_pgbench_does() {
        assert_eq!(
            plan_id(16).as_uuid().to_string(),
            "00000000-0000-0000-0000-000000000016"
        );
        assert_ne!(plan_id(1), plan_id(2));
    }

    #[test]
    fn fresh_names_are_new_each_time_and_droppable_by_this_tool() {
        let (a, b) = (fresh_name(), fresh_name());
        assert_ne!(a, b);
        assert!(a.starts_with("seatkeeper_mongobench_"));
    }
}
