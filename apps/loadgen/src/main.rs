//! `seatkeeper-loadgen`: see `--help`.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::{Parser, ValueEnum};
use seatkeeper_loadgen::{run::parse_payment_methods, Mode, Options};

#[derive(Clone, Copy, ValueEnum)]
enum TargetArg {
    /// POST /api/subscriptions/purchase
    Purchase,
    /// POST /bench/echo (the server needs SEATKEEPER_BENCH__ECHO=true): the baseline of a
    /// trivial JSON POST on the same actix-web build
    Echo,
    /// Checkouts: POST /api/checkout_sessions, …/confirm, then the intent's
    /// payment_intent.succeeded to POST /api/webhooks/stripe (needs --webhook-secret)
    Checkout,
    /// Checkout sessions opened and never confirmed (with --expires-in), left to expire
    CheckoutAbandon,
}

/// Drives a running Seatkeeper server with purchases and checks that nothing was oversold.
///
/// Creates its own plans (admin API), sends purchases over N keep-alive connections until
/// --requests or --duration is used up, resends purchases whose outcome was unknown, then
/// reads the plans back: first 201s must equal seats taken and active subscriptions, no
/// subscription may stay incomplete, every retry must be a replay. With --target checkout,
/// each iteration is a whole checkout (open, confirm, signed webhook), and completed
/// checkouts must equal seats taken and active subscriptions with no seat still held.
/// Exits 1 when a check fails, 2 when the run could not be made.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// The server (loopback addresses only).
    #[arg(long, default_value = "http://127.0.0.1:3000")]
    base_url: String,
    /// What to send.
    #[arg(long, value_enum, default_value = "purchase")]
    target: TargetArg,
    /// Concurrent keep-alive connections, one task each.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Total requests, retries included (checkouts to start, for the checkout targets).
    /// With --duration, whichever ends first.
    #[arg(long)]
    requests: Option<u64>,
    /// Seconds to send for. With --requests, whichever ends first.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Plans to create: 1 is one hot plan; N spreads the requests evenly.
    #[arg(long, default_value_t = 1)]
    plans: usize,
    /// Seats of each plan (at most 1000000).
    #[arg(long, default_value_t = 1_000_000)]
    seats: u32,
    /// Share of requests that resend an earlier key with the same body (must replay).
    #[arg(long, default_value_t = 0.0)]
    retry_share: f64,
    /// Payment methods, round-robin by optional weight: pm_card_visa:9,pm_card_chargeDeclined:1
    #[arg(long, default_value = "pm_card_visa")]
    payment_methods: String,
    /// The Stripe webhook signing secret the server runs with
    /// (SEATKEEPER_PAYMENTS__WEBHOOK_SECRETS), for --target checkout.
    #[arg(
        long,
        env = "SEATKEEPER_LOADGEN_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    webhook_secret: Option<String>,
    /// `expires_in` of the checkout sessions, in seconds (default: the server's); the
    /// server's checkout.min_expires_in_secs must allow it.
    #[arg(long, value_name = "SECS")]
    expires_in: Option<u32>,
    /// The admin token, to create plans (and the run's API key).
    #[arg(long, env = "SEATKEEPER_AUTH__ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// The API key to buy with (`purchases` or `admin`); when unset, the run makes a
    /// `purchases` key with the admin token.
    #[arg(long, env = "SEATKEEPER_LOADGEN_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Write the report as JSON here too.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Seconds between progress lines on stderr (0: none).
    #[arg(long, default_value_t = 1.0)]
    progress: f64,
    /// Hard time limit in seconds when --duration is not given.
    #[arg(long, default_value_t = 900.0)]
    max_duration: f64,
    /// Runtime threads of the load generator (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Seed of the retry choices.
    #[arg(long, default_value_t = 0x5eed)]
    seed: u64,
    /// At most this many requests (checkouts, for the checkout targets) per second in
    /// all, on an even schedule; default: as fast as the connections go.
    #[arg(long, value_name = "PER_SEC")]
    rate: Option<f64>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let payment_methods = match parse_payment_methods(&cli.payment_methods) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("seatkeeper-loadgen: {e:#}");
            return ExitCode::from(2);
        }
    };
    let secs = |s: f64| Duration::from_secs_f64(s.max(0.0));
    let opts = Options {
        base_url: cli.base_url,
        mode: match cli.target {
            TargetArg::Purchase => Mode::Purchase,
            TargetArg::Echo => Mode::Echo,
            TargetArg::Checkout => Mode::Checkout,
            TargetArg::CheckoutAbandon => Mode::CheckoutAbandon,
        },
        connections: cli.connections,
        requests: cli.requests,
        duration: cli.duration.map(secs),
        max_duration: secs(cli.max_duration),
        plans: cli.plans,
        seats: cli.seats,
        retry_share: cli.retry_share,
        payment_methods,
        webhook_secret: cli.webhook_secret,
        expires_in_secs: cli.expires_in,
        admin_token: cli.admin_token,
        api_key: cli.api_key,
        progress: (cli.progress > 0.0).then(|| secs(cli.progress)),
        seed: cli.seed,
        rate: cli.rate,
    };
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if cli.threads > 0 {
        rt.worker_threads(cli.threads);
    }
    let rt = match rt.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("seatkeeper-loadgen: could not start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let report = match rt.block_on(seatkeeper_loadgen::run(&opts)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("seatkeeper-loadgen: {e:#}");
            return ExitCode::from(2);
        }
    };
    print!("{}", report.render());
    if let Some(path) = &cli.json {
        let written = serde_json::to_vec_pretty(&report)
            .map_err(anyhow::Error::from)
            .and_then(|bytes| Ok(std::fs::write(path, bytes)?));
        if let Err(e) = written {
            eprintln!(
                "seatkeeper-loadgen: could not write {}: {e:#}",
                path.display()
            );
            return ExitCode::from(2);
        }
    }
    if report.verification.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
