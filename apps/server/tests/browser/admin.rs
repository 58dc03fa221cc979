//! The admin console as an operator uses it: sign in with the admin token, create a plan,
//! be refused a capacity below the seats held, watch the breakdown follow sales, read the
//! audit log and its replay check, read the reconciliation view, make a key (its secret
//! shown once, and working) and revoke it (refused from then on).

use std::time::{Duration, Instant};

use fantoccini::Client;
use serde_json::{json, Value};

use crate::{
    harness::{click, fill, find, screenshot, text, until, Browsers},
    helpers::{body, spawn_app_with, StoreKind, TestApp, ADMIN_TOKEN},
};

/// The id of the plan whose row in the plans table names `name`.
async fn plan_row(c: &Client, name: &str) -> String {
    let id = until(
        c,
        &format!("the plan {name} in the table"),
        &format!("[...document.querySelectorAll('#plans-body tr[data-plan-id]')].find(tr => tr.textContent.includes('{name}'))?.dataset.planId"),
    )
    .await;
    id.as_str().expect("a plan id").to_owned()
}

fn stat(name: &str) -> String {
    format!("document.querySelector('#breakdown [data-stat=\"{name}\"]').textContent")
}

/// Opens a checkout session for `customer` on `plan` through the API: a held seat.
async fn hold(app: &TestApp, plan: &str, customer: &str) {
    let res = app
        .client
        .post(format!("{}/api/checkout_sessions", app.address))
        .header("Idempotency-Key", format!("hold-{customer}"))
        .json(&json!({"plan_id": plan, "customer_id": customer}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
}

async fn purchase_with(app: &TestApp, secret: &str, plan: &str, key: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{}/api/subscriptions/purchase", app.address))
        .bearer_auth(secret)
        .header("Idempotency-Key", key)
        .json(&json!({"plan_id": plan, "customer_id": "cus_key", "payment_method": "pm_card_visa"}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_manages_a_plan_reads_its_audit_and_makes_and_revokes_a_key() {
    let Some(mut browsers) =
        Browsers::start("an_operator_manages_a_plan_reads_its_audit_and_makes_and_revokes_a_key")
            .await
    else {
        return;
    };
    let app = spawn_app_with(StoreKind::Memory, Duration::ZERO, |_| {})
        .await
        .unwrap();
    let c = browsers.open(false).await;
    c.goto(&format!("{}/admin", app.address)).await.unwrap();

    // A wrong credential is refused plainly.
    fill(&c, "#admin-credential", "not-the-token-0123456789").await;
    click(&c, "#admin-sign-in-submit").await;
    until(
        &c,
        "the refusal",
        "document.getElementById('admin-sign-in-error').textContent !== ''",
    )
    .await;
    fill(&c, "#admin-credential", ADMIN_TOKEN).await;
    click(&c, "#admin-sign-in-submit").await;
    until(
        &c,
        "the console",
        "!document.getElementById('console').hidden",
    )
    .await;
    assert_eq!(
        c.execute("return [localStorage.length, document.cookie]", vec![])
            .await
            .unwrap(),
        json!([0, ""]),
        "the credential stays in sessionStorage"
    );

    // Create a plan.
    fill(&c, "#plan-name", "Console plan").await;
    fill(&c, "#plan-capacity", "3").await;
    fill(&c, "#plan-unit-amount", "2500").await;
    click(&c, "#create-plan-submit").await;
    let plan = plan_row(&c, "Console plan").await;
    let created = app.plan(&plan).await;
    assert_eq!(
        (
            created["capacity"].as_u64(),
            created["unit_amount"].as_i64(),
            created["currency"].as_str()
        ),
        (Some(3), Some(2500), Some("usd"))
    );

    // One seat sold, one held: capacity 1 is refused, and the refusal says why.
    assert_eq!(
        app.purchase(&plan, "cus_1", "p1", "pm_card_visa")
            .await
            .status(),
        201
    );
    hold(&app, &plan, "cus_2").await;
    click(
        &c,
        &format!("#plans-body tr[data-plan-id=\"{plan}\"] [data-select-plan]"),
    )
    .await;
    until(
        &c,
        "the breakdown",
        &format!(
            "{} === '1' && {} === '1' && {} === '1' && {} === '3'",
            stat("active"),
            stat("held"),
            stat("seats_left"),
            stat("capacity")
        ),
    )
    .await;
    fill(&c, "#change-capacity", "1").await;
    click(&c, "#change-plan-submit").await;
    until(
        &c,
        "the refusal",
        "document.getElementById('change-plan-error').textContent !== ''",
    )
    .await;
    let refusal = text(&c, "#change-plan-error").await;
    assert!(refusal.contains("below"), "{refusal}");
    assert_eq!(app.plan(&plan).await["capacity"], 3, "nothing changed");

    // The breakdown follows a sale made elsewhere, without a reload.
    assert_eq!(
        app.purchase(&plan, "cus_3", "p3", "pm_card_visa")
            .await
            .status(),
        201
    );
    until(
        &c,
        "the sale in the breakdown",
        &format!(
            "{} === '2' && {} === '0'",
            stat("active"),
            stat("seats_left")
        ),
    )
    .await;

    // The audit log, and its replay to the seat count.
    let entries = app.audit(&plan).await.len();
    until(
        &c,
        "every audit entry",
        &format!("document.querySelectorAll('#audit-body tr').length === {entries}"),
    )
    .await;
    click(&c, "#audit-check-run").await;
    until(
        &c,
        "the audit check",
        "document.getElementById('audit-check').dataset.consistent === 'true'",
    )
    .await;
    assert!(text(&c, "#audit-check").await.contains("consistent"));
    screenshot(&c, "admin-console").await;

    // The reconciliation view.
    find(&c, "#reconciliation").await;
    until(&c, "the reconciliation report", "document.querySelector('#reconciliation [data-field=\"stale_incomplete\"]').textContent !== ''").await;

    // A key: its secret shown once, working; then revoked, and refused.
    fill(&c, "#key-name", "browser key").await;
    c.execute(
        "document.getElementById('key-role').value = 'purchases'; return 1",
        vec![],
    )
    .await
    .unwrap();
    click(&c, "#create-key-submit").await;
    until(&c, "the secret", "!document.getElementById('key-secret-box').hidden && document.getElementById('key-secret').textContent.startsWith('sk_')").await;
    let secret = text(&c, "#key-secret").await;
    screenshot(&c, "admin-keys").await;
    let capacity_plan = {
        let res = app.admin_post("/api/plans", &json!({"name": "Keyed", "capacity": 5, "unit_amount": 100, "currency": "usd", "interval": "month"})).await;
        body(res).await["id"].as_str().unwrap().to_owned()
    };
    assert_eq!(
        purchase_with(&app, &secret, &capacity_plan, "key-1").await,
        201
    );
    let row = "[...document.querySelectorAll('#keys-body tr')].find(tr => tr.textContent.includes('browser key'))";
    until(&c, "the key in the list", row).await;
    for _ in 0..2 {
        c.execute(
            &format!("{row}.querySelector('[data-revoke-key]').click(); return 1"),
            vec![],
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until(
        &c,
        "the revocation",
        &format!("{row}.dataset.revoked === 'true'"),
    )
    .await;
    let keys: Value = body(app.admin_get("/api/keys").await).await;
    let revoked = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "browser key")
        .unwrap()
        .clone();
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    // Refused everywhere within a second.
    let deadline = Instant::now() + Duration::from_secs(3);
    for attempt in 2.. {
        let status = purchase_with(&app, &secret, &capacity_plan, &format!("key-{attempt}")).await;
        if status == 401 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the revoked key still answers {status}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.assert_invariants(&plan).await;
    browsers.close().await;
}
