//! `seatkeeper-paysim --addr 127.0.0.1:PORT --ledger PATH [--latency-ms N] [--error-rate R] [--drop-rate R]`

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use seatkeeper_paysim::{start, Faults, Simulator};

/// A local, Stripe-compatible payment simulator (PaymentIntents and Refunds).
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Where to listen (port 0 picks a free port; the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:12111")]
    addr: String,
    /// The ledger file: intents, refunds and idempotency records survive restarts in it.
    /// Without it, everything is kept in memory only.
    #[arg(long, value_name = "PATH")]
    ledger: Option<PathBuf>,
    /// Delay every answer by this many milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Share of requests answered 500 without any effect (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    error_rate: f64,
    /// Share of successful charges whose answer is dropped (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    drop_rate: f64,
    /// How long a dropped answer is held back, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    drop_hang_ms: u64,
}

fn rate(s: &str) -> Result<f64, String> {
    let r: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if (0.0..=1.0).contains(&r) {
        Ok(r)
    } else {
        Err(format!("{r} is not between 0 and 1"))
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
    let faults = Faults {
        latency: Duration::from_millis(cli.latency_ms),
        error_rate: cli.error_rate,
        drop_rate: cli.drop_rate,
        drop_hang: Duration::from_millis(cli.drop_hang_ms),
    };
    let simulator = match Simulator::new(cli.ledger.clone(), faults) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("seatkeeper-paysim: {e:#}");
            return ExitCode::from(2);
        }
    };
    let running = match start(&cli.addr, simulator) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("seatkeeper-paysim: could not listen on {}: {e:#}", cli.addr);
            return ExitCode::from(1);
        }
    };
    println!("seatkeeper-paysim listening on {}", running.base_url());
    let _ = tokio::signal::ctrl_c().await;
    running.stop().await;
    ExitCode::SUCCESS
}
