//! `seatkeeper-paysim --addr 127.0.0.1:PORT --ledger PATH [--secret-key sk_test_…]
//! [--webhook-url URL --webhook-secret whsec_…] [fault flags]`; `--help` lists them all.

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use seatkeeper_paysim::{
    start, webhooks::new_secret, Faults, Simulator, WebhookFaults, WebhookSettings,
};

/// A local, Stripe-compatible payment simulator.
///
/// It speaks Stripe's PaymentIntents (create, with or without confirm=true; confirm;
/// cancel; retrieve; list; search by metadata), Refunds and WebhookEndpoints APIs, with
/// Stripe's test payment methods (pm_card_visa, pm_card_chargeDeclined,
/// pm_card_insufficientFunds, pm_card_authenticationRequired,
/// pm_card_threeDSecure2Required, pm_card_timeout …), Idempotency-Key replays and
/// Stripe's error shapes. 3-D Secure is passed or failed at
/// /v1/payment_intents/{id}/authenticate (a page with two buttons, or POST
/// result=pass|fail). Webhook events (payment_intent.succeeded, .payment_failed,
/// .canceled, .requires_action) are signed as Stripe signs them and retried; every
/// delivery is listed at GET /v1/_sim/webhook_deliveries.
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// Where to listen (port 0 picks a free port; the chosen one is printed).
    #[arg(long, default_value = "127.0.0.1:12111")]
    addr: String,
    /// The ledger file: intents, refunds, idempotency records and webhook endpoints
    /// survive restarts in it. Without it, everything is kept in memory only.
    #[arg(long, value_name = "PATH")]
    ledger: Option<PathBuf>,
    /// The only API key accepted (Authorization: Bearer KEY); others get a 401. Without
    /// it, any key is accepted.
    #[arg(long, value_name = "KEY")]
    secret_key: Option<String>,
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
    /// Deliver every webhook event to this URL too (not kept in the ledger).
    #[arg(long, value_name = "URL")]
    webhook_url: Option<String>,
    /// The signing secret of --webhook-url (whsec_…); one is generated and printed when
    /// it is not given.
    #[arg(long, value_name = "SECRET", requires = "webhook_url")]
    webhook_secret: Option<String>,
    /// Multiplies the webhook retry schedule (1 s, 2 s, 4 s … at most 60 s): 0.001 makes it
    /// milliseconds.
    #[arg(long, default_value_t = 1.0)]
    webhook_retry_scale: f64,
    /// Attempts of one webhook delivery before it is given up.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u32).range(1..))]
    webhook_max_attempts: u32,
    /// Share of webhook deliveries that never happen (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    webhook_drop_rate: f64,
    /// Share of webhook deliveries made twice (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = rate)]
    webhook_duplicate_rate: f64,
    /// Every webhook delivery waits this many milliseconds before its first attempt.
    #[arg(long, default_value_t = 0)]
    webhook_delay_ms: u64,
    /// Send webhook deliveries that are due together (within 200 ms) newest first.
    #[arg(long)]
    webhook_reorder: bool,
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
    let mut simulator = match Simulator::new(cli.ledger.clone(), faults) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("seatkeeper-paysim: {e:#}");
            return ExitCode::from(2);
        }
    };
    simulator = simulator.with_webhook_settings(WebhookSettings {
        retry_scale: cli.webhook_retry_scale.max(0.0),
        max_attempts: cli.webhook_max_attempts,
        faults: WebhookFaults {
            drop_rate: cli.webhook_drop_rate,
            duplicate_rate: cli.webhook_duplicate_rate,
            delay: Duration::from_millis(cli.webhook_delay_ms),
            reorder: cli.webhook_reorder,
        },
    });
    if let Some(key) = cli.secret_key {
        simulator = simulator.with_secret_key(key);
    }
    if let Some(url) = &cli.webhook_url {
        let secret = cli.webhook_secret.clone().unwrap_or_else(|| {
            let secret = new_secret();
            println!("webhook signing secret for {url}: {secret}");
            secret
        });
        simulator = simulator.with_webhook_endpoint(url, &secret);
    }
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
