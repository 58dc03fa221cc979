//! `GET /metrics`: Prometheus' text format, for the admin only, with what a purchase, its
//! payment and its store steps did, and each active plan's seats. One recorder serves the
//! whole test process, so counters are checked as at least what this test did.

use prometheus_parse::{Sample, Scrape, Value};

use crate::helpers::{assert_problem, StoreKind, TestApp, ADMIN_TOKEN};

async fn scrape(app: &TestApp) -> Scrape {
    let res = app.admin_get("/metrics").await;
    assert_eq!(res.status(), 200);
    let content_type = res.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = res.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus' text format")
}

/// The value of the sample `name` whose labels include `labels`: a counter's or gauge's
/// value, a histogram's count.
fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let matches = |s: &&Sample| {
        s.metric == name
            && labels
                .iter()
                .all(|(k, v)| s.labels.get(k).is_some_and(|got| got == *v))
    };
    scrape.samples.iter().find(matches).map(|s| match &s.value {
        Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
        Value::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
        Value::Summary(_) => panic!("{name} is a summary"),
    })
}

on_every_store!(metrics_show_the_purchases_their_payments_store_steps_and_seats);
async fn metrics_show_the_purchases_their_payments_store_steps_and_seats(app: TestApp) {
    let plan = app.create_plan(3).await;
    for (customer, pm) in [("cus_m1", "pm_card_visa"), ("cus_m2", "pm_card_visa")] {
        let res = app.purchase(&plan, customer, "k1", pm).await;
        assert_eq!(res.status(), 201);
    }
    assert_eq!(
        app.purchase(&plan, "cus_m1", "k1", "pm_card_visa")
            .await
            .status(),
        201,
        "a replay"
    );
    let declined = app
        .purchase(&plan, "cus_m3", "k1", "pm_card_chargeDeclined")
        .await;
    assert_eq!(declined.status(), 402);

    let m = scrape(&app).await;
    let at_least = |name: &str, labels: &[(&str, &str)], n: f64| {
        let got = value(&m, name, labels).unwrap_or_else(|| panic!("no {name} {labels:?}"));
        assert!(got >= n, "{name} {labels:?} = {got}, expected at least {n}");
    };
    assert_eq!(
        value(&m, "seatkeeper_plan_seats_left", &[("plan_id", &plan)]),
        Some(1.0),
        "3 seats, 2 sold, the declined one released"
    );
    assert_eq!(
        value(&m, "seatkeeper_plan_capacity", &[("plan_id", &plan)]),
        Some(3.0)
    );
    at_least(
        "seatkeeper_purchases_total",
        &[("outcome", "created"), ("replayed", "false")],
        2.0,
    );
    at_least(
        "seatkeeper_purchases_total",
        &[("outcome", "created"), ("replayed", "true")],
        1.0,
    );
    at_least(
        "seatkeeper_purchases_total",
        &[("outcome", "declined"), ("replayed", "false")],
        1.0,
    );
    let purchase_route = [("method", "POST"), ("route", "/api/subscriptions/purchase")];
    at_least(
        "http_requests_total",
        &[purchase_route[0], purchase_route[1], ("status", "201")],
        3.0,
    );
    at_least(
        "http_requests_total",
        &[
            ("method", "POST"),
            ("route", "/api/plans"),
            ("status", "201"),
        ],
        1.0,
    );
    at_least("http_request_duration_seconds", &purchase_route, 4.0);
    at_least(
        "seatkeeper_payment_call_duration_seconds",
        &[("call", "charge"), ("outcome", "charged")],
        2.0,
    );
    at_least(
        "seatkeeper_payment_call_duration_seconds",
        &[("call", "charge"), ("outcome", "declined")],
        1.0,
    );
    at_least("seatkeeper_recovery_stale_incomplete", &[], 0.0);
    if app.kind != StoreKind::Memory {
        // The database stores coalesce their purchase steps.
        at_least("seatkeeper_store_batch_size", &[], 1.0);
        at_least("seatkeeper_store_batch_seconds", &[], 1.0);
        at_least("seatkeeper_store_step_seconds", &[], 3.0);
        // By lane: MongoDB's one lane of plan-writing steps, PostgreSQL's two for purchases.
        let lanes: &[&str] = match app.kind {
            StoreKind::Mongo => &["plan steps"],
            _ => &["reservations", "completions"],
        };
        for lane in lanes {
            at_least("seatkeeper_store_step_seconds", &[("coalescer", lane)], 3.0);
        }
        let in_use = value(&m, "seatkeeper_store_connections", &[("state", "in_use")]);
        let idle = value(&m, "seatkeeper_store_connections", &[("state", "idle")]);
        assert!(
            in_use.unwrap() + idle.unwrap() >= 1.0,
            "the store has connections: {in_use:?} in use, {idle:?} idle"
        );
    }
}

on_every_store!(metrics_are_for_the_admin_only);
async fn metrics_are_for_the_admin_only(app: TestApp) {
    let anonymous = app.anonymous.get(app.url("/metrics")).send().await.unwrap();
    assert_problem(anonymous, 401, "unauthorized").await;
    assert_problem(app.get("/metrics").await, 403, "forbidden").await;
    let res = app
        .client
        .get(app.url("/metrics"))
        .bearer_auth(format!("{ADMIN_TOKEN}-not"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "unauthorized").await;
}

#[tokio::test]
async fn an_internal_metrics_address_serves_metrics_without_a_credential_and_nothing_else() {
    use seatkeeper_server::{
        configuration::{Secret, Settings},
        startup::Application,
    };
    let mut settings = Settings::load_from(None, Vec::new()).unwrap();
    settings.http.addr = ([127, 0, 0, 1], 0).into();
    settings.http.metrics_addr = Some(([127, 0, 0, 1], 0).into());
    settings.auth.admin_token = Some(Secret::from(ADMIN_TOKEN));
    let app = Application::build(settings).await.unwrap();
    let (api, internal) = (app.port(), app.metrics_port().expect("the internal port"));
    tokio::spawn(app.run_until_stopped());
    let http = reqwest::Client::new();
    let res = http
        .get(format!("http://127.0.0.1:{internal}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let text = res.text().await.unwrap();
    let scrape = Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap();
    assert!(
        value(&scrape, "seatkeeper_plan_capacity", &[]).is_some(),
        "the demo plans' gauges"
    );
    let other = http
        .get(format!("http://127.0.0.1:{internal}/api/plans"))
        .send()
        .await
        .unwrap();
    assert_problem(other, 404, "not_found").await;
    // The API's own /metrics still wants an admin.
    let public = http
        .get(format!("http://127.0.0.1:{api}/metrics"))
        .send()
        .await
        .unwrap();
    assert_problem(public, 401, "unauthorized").await;
}

#[tokio::test]
async fn metrics_show_checkout_steps_intent_calls_and_webhooks() {
    let app = crate::helpers::spawn_memory_app().await;
    let plan = app.create_plan(2).await;
    let s = app.opened(&plan, "cus_mc", "k1").await;
    let id = s["id"].as_str().unwrap();
    assert_eq!(app.confirm(id, "pm_card_visa").await.status(), 200);
    let refused = app
        .webhook_signed(
            &serde_json::json!({"id": "evt_m"}),
            "whsec_wrong",
            chrono::Utc::now().timestamp(),
        )
        .await;
    assert_eq!(refused.status(), 400);
    let m = scrape(&app).await;
    for (name, labels) in [
        (
            "seatkeeper_checkout_steps_total",
            vec![("step", "open"), ("outcome", "opened")],
        ),
        (
            "seatkeeper_checkout_steps_total",
            vec![("step", "confirm"), ("outcome", "complete")],
        ),
        (
            "seatkeeper_payment_call_duration_seconds",
            vec![
                ("call", "create_intent"),
                ("outcome", "requires_payment_method"),
            ],
        ),
        (
            "seatkeeper_payment_call_duration_seconds",
            vec![("call", "confirm_intent"), ("outcome", "succeeded")],
        ),
        ("seatkeeper_webhooks_total", vec![("outcome", "refused")]),
    ] {
        let got = value(&m, name, &labels).unwrap_or_else(|| panic!("no {name} {labels:?}"));
        assert!(got >= 1.0, "{name} {labels:?} = {got}");
    }
}
