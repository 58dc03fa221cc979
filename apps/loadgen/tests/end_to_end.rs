//! The load generator against a real server started in this process (in-memory store,
//! simulated payments, port 0): a few hundred purchases with retries, declines, lost
//! payment answers and a plan selling out, then the echo baseline, then checkouts (whole
//! and abandoned). Counts only, never timings.

use seatkeeper_loadgen::{run::parse_payment_methods, Mode, Options};
use seatkeeper_server::{
    configuration::{Secret, Settings},
    startup::Application,
};

const ADMIN_TOKEN: &str = "loadgen-test-admin-token-0123";
const WEBHOOK_SECRET: &str = "whsec_loadgen_test_0123456789";

async fn spawn_server() -> String {
    spawn_server_with(|_| {}).await
}

async fn spawn_server_with(configure: impl FnOnce(&mut Settings)) -> String {
    let mut settings = Settings::load_from(None, Vec::new()).expect("default settings");
    settings.http.addr = ([127, 0, 0, 1], 0).into();
    settings.http.workers = 2;
    settings.auth.admin_token = Some(Secret::from(ADMIN_TOKEN));
    // A load test: the server's rate limits would refuse most of it.
    settings.rate_limit.enabled = false;
    settings.demo.seed = Some(false);
    settings.bench.echo = true;
    settings.payments.webhook_secrets = vec![Secret::from(WEBHOOK_SECRET)];
    configure(&mut settings);
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
    let url = spawn_server_with(|s| s.bench.echo = false).await;
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

fn checkouts(url: String) -> Options {
    let mut opts = Options::new(url);
    opts.mode = Mode::Checkout;
    opts.admin_token = Some(ADMIN_TOKEN.into());
    opts.webhook_secret = Some(WEBHOOK_SECRET.into());
    opts.connections = 8;
    opts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkouts_complete_in_three_steps_until_the_plans_sell_out_and_hold_nothing() {
    let url = spawn_server().await;
    let mut opts = checkouts(url);
    opts.requests = Some(300);
    opts.plans = 2;
    opts.seats = 120;

    let report = seatkeeper_loadgen::run(&opts)
        .await
        .expect("the run completes");

    assert!(report.verification.passed, "{}", report.render());
    assert_eq!(report.created, 240, "{}", report.render());
    assert_eq!(report.statuses["open 201 open"], 240);
    assert_eq!(report.statuses["open 409"], 60);
    assert_eq!(report.statuses["confirm 200 complete"], 240);
    assert_eq!(report.statuses["webhook 200 handled"], 240);
    assert_eq!(report.requests, 300 + 2 * 240);
    assert_eq!(report.steps.len(), 3);
    for plan in &report.plans_after {
        assert_eq!((plan.seats_left, plan.stats.active), (0, 120));
        assert_eq!(plan.stats.held, 0);
    }
    let text = report.render();
    assert!(text.contains("completed checkouts: "), "{text}");
    assert!(text.contains("webhook (ms)"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_signed_with_another_secret_fail_the_run() {
    let url = spawn_server().await;
    let mut opts = checkouts(url);
    opts.requests = Some(20);
    opts.webhook_secret = Some("whsec_not_the_servers".into());

    let report = seatkeeper_loadgen::run(&opts)
        .await
        .expect("the run completes");

    assert!(!report.verification.passed);
    assert_eq!(report.created, 0);
    assert_eq!(report.statuses["webhook 400"], 20);
    assert_eq!(report.codes["webhook_signature_invalid"], 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_sessions_only_hold_seats_and_make_no_subscription() {
    let url = spawn_server_with(|s| s.checkout.min_expires_in_secs = 1).await;
    let mut opts = checkouts(url);
    opts.mode = Mode::CheckoutAbandon;
    opts.webhook_secret = None;
    opts.requests = Some(100);
    opts.plans = 4;
    opts.expires_in_secs = Some(60);

    let report = seatkeeper_loadgen::run(&opts)
        .await
        .expect("the run completes");

    assert!(report.verification.passed, "{}", report.render());
    assert_eq!(report.created, 100, "sessions opened");
    assert_eq!(report.statuses["open 201 open"], 100);
    let held: u64 = report.plans_after.iter().map(|p| p.stats.held).sum();
    assert_eq!(held, 100, "none has expired yet");
    assert!(report.plans_after.iter().all(|p| p.stats.active == 0));
}
