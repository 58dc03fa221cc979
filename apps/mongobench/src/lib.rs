//! `seatkeeper-mongobench`: MongoDB's own ceiling for a purchase, as pgbench
//! (`bench/pgbench.sh`) is PostgreSQL's. N clients, each with its own session and
//! connection, run the least a reservation does — the store's subscription insert, guarded
//! plan decrement and audit insert in one snapshot / majority transaction — back to back
//! for D seconds through the driver, with no HTTP, no server and no idempotency key in
//! between; the run counts commits, retries and failures, takes latency percentiles and
//! ends by checking that the database holds exactly what was counted.
//!
//! Each run makes its own database and drops it at the end (also after Ctrl-C).
//!
//! - [`purchase`]: the transaction and its retries.
//! - [`setup`]: the fresh database, its plans, the final count, dropping it.
//! - [`report`]: the [`Report`], as text and JSON.

pub mod purchase;
pub mod report;
pub mod setup;

use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use mongodb::{Client, ClientSession};
use rand::Rng;
use seatkeeper_store_mongo::topology::hosts_of;

pub use report::{Report, Retries};

use crate::purchase::{Outcome, Workload};

/// Where `bash deploy/mongodb.sh start` serves its replica set.
pub const DEFAULT_URL: &str = "mongodb://127.0.0.1:27017/?directConnection=true";

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// A replica set or `mongos` (transactions need one).
    pub url: String,
    /// Concurrent clients, one session and one connection each.
    pub clients: usize,
    /// How long the clock runs.
    pub duration: Duration,
    /// Plans to buy from: 1 is one hot plan; N spreads purchases uniformly at random.
    pub plans: usize,
}

/// Why a run could not be made (failures during the run are counted, not raised).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--clients and --plans must be at least 1")]
    Invalid,
    #[error("the MongoDB URL could not be used")]
    Url(#[source] mongodb::error::Error),
    #[error("could not prepare the run's database")]
    Setup(#[source] mongodb::error::Error),
    #[error("the warm-up purchase failed, so the run would only count failures (transactions need a replica set)")]
    WarmUp(#[source] mongodb::error::Error),
    #[error("the warm-up purchase found no seat")]
    WarmUpSoldOut,
    #[error("could not count what the run left in its database")]
    Check(#[source] mongodb::error::Error),
    #[error("a plan of the run disappeared from its database")]
    PlanGone,
    #[error("could not drop the database")]
    Drop(#[source] mongodb::error::Error),
    #[error("refusing to drop '{0}': only databases named {prefix}… are this tool's to drop", prefix = setup::PREFIX)]
    NotOurs(String),
}

/// One client's counts.
#[derive(Default)]
struct Tally {
    commits: u64,
    retries: Retries,
    sold_out: u64,
    errors: BTreeMap<String, u64>,
    first_error: Option<String>,
    /// Latency of each commit, microseconds.
    samples: Vec<u32>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.commits += other.commits;
        self.retries.transactions += other.retries.transactions;
        self.retries.commits += other.retries.commits;
        self.sold_out += other.sold_out;
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
        self.samples.extend(other.samples);
    }
}

/// Runs the benchmark on a fresh database, which it drops before returning.
pub async fn run(opts: &Options) -> Result<Report, Error> {
    if opts.clients == 0 || opts.plans == 0 {
        return Err(Error::Invalid);
    }
    let pool = u32::try_from(opts.clients).unwrap_or(u32::MAX);
    let client = setup::client(&opts.url, pool).await?;
    let name = setup::fresh_name();
    let stop = Arc::new(AtomicBool::new(false));
    let interrupt = tokio::spawn({
        let stop = Arc::clone(&stop);
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("seatkeeper-mongobench: interrupted; stopping the clients and dropping the database");
                stop.store(true, Ordering::Relaxed);
            }
        }
    });
    let measured = measure(&client, &name, opts, &stop).await;
    interrupt.abort();
    let dropped = setup::drop_database(&client, &name).await;
    client.shutdown().await;
    let report = measured?;
    dropped?;
    Ok(report)
}

/// Drops database `name` of the deployment at `url` (`--drop-database`).
pub async fn drop_database(url: &str, name: &str) -> Result<(), Error> {
    let client = setup::client(url, 1).await?;
    let dropped = setup::drop_database(&client, name).await;
    client.shutdown().await;
    dropped
}

async fn measure(
    client: &Client,
    name: &str,
    opts: &Options,
    stop: &Arc<AtomicBool>,
) -> Result<Report, Error> {
    let workload = Arc::new(setup::prepare(&client.database(name), opts.plans).await?);
    // Before the clock, every client starts its session and commits one purchase at the
    // same time, so every connection of the pool is open when the clock starts.
    let mut sessions = Vec::with_capacity(opts.clients);
    for _ in 0..opts.clients {
        sessions.push(client.start_session().await.map_err(Error::Setup)?);
    }
    let warm_up = futures::future::join_all(sessions.iter_mut().enumerate().map(|(i, s)| {
        let w = Arc::clone(&workload);
        async move {
            let plan = w.plan_ids[i % w.plan_ids.len()];
            purchase::purchase(s, &w, plan, &customer(i)).await.outcome
        }
    }))
    .await;
    for outcome in warm_up {
        match outcome {
            Outcome::Sold => {}
            Outcome::SoldOut => return Err(Error::WarmUpSoldOut),
            Outcome::Failed(e) => return Err(Error::WarmUp(e)),
        }
    }
    let started = Instant::now();
    let deadline = started + opts.duration;
    let tasks: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, session)| {
            tokio::spawn(drive(
                session,
                Arc::clone(&workload),
                customer(i),
                deadline,
                Arc::clone(stop),
            ))
        })
        .collect();
    let mut total = Tally::default();
    for task in tasks {
        // A client task only ends by returning; a panic in one is a bug worth seeing.
        total.merge(task.await.expect("a client task panicked"));
    }
    let elapsed = started.elapsed().as_secs_f64();
    let warm_up_commits = opts.clients as u64;
    let check = setup::check(&workload, total.commits + warm_up_commits).await?;
    Ok(Report {
        hosts: hosts_of(&opts.url),
        database: name.to_owned(),
        clients: opts.clients,
        plans: opts.plans,
        duration_s: opts.duration.as_secs_f64(),
        elapsed_s: elapsed,
        commits: total.commits,
        throughput_tps: if elapsed > 0.0 {
            total.commits as f64 / elapsed
        } else {
            0.0
        },
        warm_up_commits,
        retries: total.retries,
        sold_out: total.sold_out,
        errors: total.errors.values().sum(),
        error_kinds: total.errors,
        first_error: total.first_error,
        latency: seatkeeper_loadgen::stats::summarize(&mut total.samples),
        check,
    })
}

fn customer(i: usize) -> String {
    format!("cus_mongobench_{i}")
}

/// One client: purchases back to back until the deadline.
async fn drive(
    mut session: ClientSession,
    w: Arc<Workload>,
    customer: String,
    deadline: Instant,
    stop: Arc<AtomicBool>,
) -> Tally {
    let mut t = Tally::default();
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        let plan = w.plan_ids[rand::thread_rng().gen_range(0..w.plan_ids.len())];
        let began = Instant::now();
        let attempt = purchase::purchase(&mut session, &w, plan, &customer).await;
        t.retries.transactions += u64::from(attempt.transaction_retries);
        t.retries.commits += u64::from(attempt.commit_retries);
        match attempt.outcome {
            Outcome::Sold => {
                t.commits += 1;
                let us = began.elapsed().as_micros();
                t.samples.push(u32::try_from(us).unwrap_or(u32::MAX));
            }
            Outcome::SoldOut => t.sold_out += 1,
            Outcome::Failed(e) => {
                *t.errors.entry(purchase::kind(&e)).or_default() += 1;
                t.first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    t
}
