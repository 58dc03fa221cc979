//! `seatkeeper-server`: serves the Seatkeeper API, runs the reconciler once, or prints
//! the API's OpenAPI document.

use std::{path::PathBuf, process::ExitCode};

use clap::{Parser, Subcommand};
use seatkeeper_domain::service::Reconciler;
use seatkeeper_server::{
    configuration::Settings,
    keys_cli::{self, KeysCommand},
    startup::{Application, Wiring},
    telemetry,
};

/// Sells seats of limited-capacity subscription plans over HTTP.
///
/// Settings come from built-in defaults, then the optional --config file (TOML), then
/// SEATKEEPER_<SECTION>__<KEY> environment variables (for example
/// SEATKEEPER_HTTP__ADDR=0.0.0.0:8080).
#[derive(Parser)]
#[command(version)]
struct Cli {
    /// A TOML configuration file.
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (what runs without a command).
    Serve,
    /// Finish the purchases nobody will finish and refund late charges, until there is
    /// nothing left to do; print each run as a JSON line, then exit.
    Reconcile,
    /// Print the OpenAPI document of the API as YAML (what openapi.yaml holds), then exit.
    Openapi,
    /// Make, list and revoke API keys on the configured (database) store.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        print!("{}", seatkeeper_server::openapi::yaml());
        return ExitCode::SUCCESS;
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("seatkeeper-server: {e:#}");
            return ExitCode::from(2);
        }
    };
    let telemetry = match telemetry::init(&settings.log) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("seatkeeper-server: {e:#}");
            return ExitCode::from(2);
        }
    };
    let code = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Reconcile => reconcile(settings).await,
        Command::Keys(command) => match keys_cli::run(&settings, command).await {
            Ok(out) => {
                println!("{out}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("seatkeeper-server: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Openapi => unreachable!("answered before the settings are read"),
    };
    tokio::task::block_in_place(|| telemetry.shutdown());
    code
}

async fn serve(settings: Settings) -> ExitCode {
    let store_url = seatkeeper_server::configuration::redact(&settings.store.url);
    let app = match Application::build(settings).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("seatkeeper-server: {e:#}");
            return ExitCode::from(1);
        }
    };
    if app.token_generated() {
        println!(
            "admin token (generated for this run; set SEATKEEPER_AUTH__ADMIN_TOKEN to choose one): {}",
            app.admin_token()
        );
    }
    tracing::info!(port = app.port(), store = %store_url, "seatkeeper-server listening");
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("seatkeeper-server: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn reconcile(settings: Settings) -> ExitCode {
    let wiring = match Wiring::from_settings(&settings).await {
        Ok(w) => w,
        Err(e) => {
            eprintln!("seatkeeper-server: {e:#}");
            return ExitCode::from(1);
        }
    };
    let reconciler = Reconciler::new(
        wiring.store,
        wiring.gateway,
        wiring.clock,
        settings.recovery(),
    );
    // Bounded: each run leases a batch; a run that finds nothing ends it.
    for _ in 0..10_000 {
        match reconciler.run_once().await {
            Ok(report) => {
                println!("{}", serde_json::to_string(&report).unwrap_or_default());
                if report.found == 0 || report.found == report.in_doubt {
                    return ExitCode::SUCCESS;
                }
            }
            Err(e) => {
                eprintln!("seatkeeper-server: reconciliation failed: {e}");
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}
