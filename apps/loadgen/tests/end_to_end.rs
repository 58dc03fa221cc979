//! The load generator against a real server started in this process (in-memory store,
//! simulated payments, port 0): a few hundred purchases with retries, declines, lost
//! payment answers and a plan selling out, then the echo baseline. Counts only, never
//! timings.

use seatkeeper_loadgen::{run::parse_payment_methods, Mode, Options};
use seatkeeper_server::{
    configuration::{Secret, Settings},
    startup::Application,
};

const ADMIN_TOKEN: &str = "loadgen-test-admin-token-0123";

async fn spawn_server() -> String {
    spawn_server_with(true).await
}

async fn spawn_server_with(echo: bool) -> String {
    let mut settings = Settings::load_from(None, Vec::new()).expect("default settings");
    settings.http.addr = ([127, 0, 0, 1], 0).into();
    settings.http.workers = 2;
    settings.auth.admin_token = Some(Secret::from(ADMIN_TOKEN));
    // A load test: the server's rate limits would refuse most of it.
    settings.rate_limit.enabled = false;
    settings.demo.seed = Some(false);
    settings.bench.echo = echo;
    let app = Application::build(settings)
        .await
        .expect("the application builds");
    let url = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped());
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_run_against_the_in_memory_store_passes_every_invariant_check() {
    let url = spawn_server().await;
    let mut opts = Options::new(url);
    opts.admin_token = Some(ADMIN_TOKEN.into());
    opts.connections = 8;
    opts.requests = Some(400);
    opts.plans = 2;
    opts.seats = 120;
    opts.retry_share = 0.1;
    opts.payment_methods =
        parse_payment_methods("pm_card_visa:6,pm_card_chargeDeclined:1,pm_card_timeout:1").unwrap();

    let report = seatkeeper_loadgen::run(&opts)
        .await
        .expect("the run completes");

    assert!(report.verification.passed, "{}", report.render());
    assert_eq!(report.connections_opened, 8, "opened before the clock");
    assert_eq!(report.requests, 400);
    assert_eq!(report.plan_ids.len(), 2);
    for status in ["201", "402", "409", "503"] {
        assert!(report.statuses.contains_key(status), "{}", report.render());
    }
    assert!(report.codes["plan_sold_out"] > 0);
    assert!(report.retries > 0 && report.replayed >= report.retries);
    assert!(report.unknown_outcomes > 0 && report.settle_requests >= report.unknown_outcomes);
    // Both plans sold every seat: declines released theirs and later buyers took them.
    assert_eq!(report.created, 240);
    for plan in &report.plans_after {
        assert_eq!(plan.seats_left, 0);
        assert_eq!(plan.stats.active, 120);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_echo_baseline_answers_every_request_with_200() {
    let url = spawn_server().await;
    let mut opts = Options::new(url);
    opts.mode = Mode::Echo;
    opts.connections = 4;
    opts.requests = Some(200);

    let report = seatkeeper_loadgen::run(&opts)
        .await
        .expect("the run completes");

    assert!(report.verification.passed, "{}", report.render());
    assert_eq!(report.connections_opened, 4, "opened before the clock");
    assert!(report.render().contains("4 of 4 opened in"));
    assert_eq!(report.statuses.get("200"), Some(&200));
    assert!(report.plan_ids.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_bench_setting_the_echo_route_does_not_exist() {
    let url = spawn_server_with(false).await;
    let mut opts = Options::new(url);
    opts.mode = Mode::Echo;
    opts.connections = 1;
    opts.requests = Some(3);

    let report = seatkeeper_loadgen::run(&opts)
        .await
        .expect("the run completes");

    assert!(!report.verification.passed);
    assert_eq!(report.statuses.get("404"), Some(&3));
    assert_eq!(report.codes.get("not_found"), Some(&3));
}
