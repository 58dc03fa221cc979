//! `seatkeeper-mongobench`: see `--help`.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use seatkeeper_mongobench::{Options, DEFAULT_URL};

/// MongoDB's raw ceiling for a purchase, as pgbench is PostgreSQL's.
///
/// On a fresh database with the MongoDB store's collections and indexes, N clients (one
/// session and connection each) run back to back, for D seconds, the least a reservation
/// does: in one transaction (read concern snapshot, write concern majority) the store's
/// subscription insert, the guarded findOneAndUpdate of a plan (seats_left > 0 → $inc
/// seats_left -1, seq +1) and the audit insert, retrying transient errors with the driver's
/// jittered back-off. Prints commits per second, retries, errors and latency percentiles,
/// checks that the database holds exactly what was counted, and drops the database. Exits 1
/// when that check fails, 2 when the run could not be made.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// A replica set or mongos.
    #[arg(long, env = "SEATKEEPER_BENCH_MONGODB_URL", default_value = DEFAULT_URL)]
    url: String,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Seconds to run for.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Plans: 1 is one hot plan; N spreads the purchases uniformly over N plans.
    #[arg(long, default_value_t = 1)]
    plans: usize,
    /// Write the report as JSON here too.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Runtime threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Run nothing: drop this database (its name must start with `seatkeeper_`) and exit.
    /// `bench/run.sh` drops the server's scratch databases with it.
    #[arg(long, value_name = "NAME")]
    drop_database: Option<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if cli.threads > 0 {
        rt.worker_threads(cli.threads);
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("seatkeeper-mongobench: could not start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(name) = &cli.drop_database {
        return match rt.block_on(seatkeeper_mongobench::drop_database(&cli.url, name)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        };
    }
    let opts = Options {
        url: cli.url,
        clients: cli.clients,
        duration: Duration::from_secs_f64(cli.seconds.max(0.0)),
        plans: cli.plans,
    };
    let report = match rt.block_on(seatkeeper_mongobench::run(&opts)) {
        Ok(r) => r,
        Err(e) => return fail(&e),
    };
    print!("{}", report.render());
    if let Some(path) = &cli.json {
        let written = serde_json::to_vec_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|bytes| std::fs::write(path, bytes).map_err(|e| e.to_string()));
        if let Err(e) = written {
            eprintln!(
                "seatkeeper-mongobench: could not write {}: {e}",
                path.display()
            );
            return ExitCode::from(2);
        }
    }
    if report.check.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Prints the error with its causes; exit status 2.
fn fail(e: &dyn std::error::Error) -> ExitCode {
    let mut message = format!("seatkeeper-mongobench: {e}");
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    eprintln!("{message}");
    ExitCode::from(2)
}
