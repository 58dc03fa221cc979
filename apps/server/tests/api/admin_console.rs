//! The admin console, black-box: `/admin` is an HTML page under the pages' strict CSP
//! that loads `/assets/admin.js`, and the audit check it shows
//! (`GET /api/plans/{id}/audit/check`) finds the log consistent after purchases and a
//! capacity change, answers admins only, and 404 for a plan nobody has.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::{
    access::{send, session},
    helpers::{assert_problem, body, make_key, spawn_memory_app, TestApp, ADMIN_TOKEN},
};

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn the_admin_page_answers_html_under_the_strict_csp_with_its_script() {
    let app = spawn_memory_app().await;
    let res = app.anonymous.get(app.url("/admin")).send().await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(header(&res, "content-type").starts_with("text/html"));
    assert_eq!(header(&res, "cache-control"), "no-store");
    let csp = header(&res, "content-security-policy");
    for directive in [
        "default-src 'self'",
        "script-src 'self';",
        "style-src 'self';",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    let html = res.text().await.unwrap();
    assert!(
        html.contains(r#"<script src="/assets/admin.js" defer></script>"#),
        "{html}"
    );
    assert!(html.contains(r#"<link rel="stylesheet" href="/assets/app.css">"#));
    assert!(html.contains(r#"data-page="admin""#));
    // The CSP allows no inline script or style: every script has a source, nothing
    // carries a style attribute.
    assert_eq!(
        html.matches("<script").count(),
        html.matches("<script src=").count(),
        "an inline script"
    );
    assert!(!html.contains("style="), "an inline style");
    assert!(!html.contains("<style"), "an inline stylesheet");
    for id in [
        "admin-sign-in",
        "admin-credential",
        "plans-table",
        "create-plan",
        "change-plan",
        "change-plan-error",
        "breakdown",
        "audit-table",
        "audit-check",
        "reconciliation",
        "keys-table",
        "create-key",
        "key-secret-box",
    ] {
        assert!(html.contains(&format!(r#"id="{id}""#)), "no element #{id}");
    }
    assert!(
        html.contains(r#"type="password""#),
        "the credential is a password input"
    );
}

#[tokio::test]
async fn the_admin_script_is_served_with_an_etag_and_keeps_the_credential_in_session_storage() {
    let app = spawn_memory_app().await;
    let res = app
        .anonymous
        .get(app.url("/assets/admin.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(header(&res, "content-type").starts_with("text/javascript"));
    let etag = header(&res, "etag");
    let js = res.text().await.unwrap();
    assert!(js.contains("sessionStorage.setItem(CREDENTIAL"), "{js}");
    assert!(
        !js.contains("localStorage"),
        "the credential must not persist"
    );
    assert!(!js.contains("document.cookie"));
    assert!(js.contains("/audit/check"), "the check is the server's");

    let again = app
        .anonymous
        .get(app.url("/assets/admin.js"))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
}

on_every_store!(the_audit_check_finds_the_log_consistent_after_purchases_and_a_capacity_change);
async fn the_audit_check_finds_the_log_consistent_after_purchases_and_a_capacity_change(
    app: TestApp,
) {
    let plan = app.create_plan(5).await;
    for (i, pm) in ["pm_card_visa", "pm_card_visa", "pm_card_chargeDeclined"]
        .into_iter()
        .enumerate()
    {
        app.purchase(&plan, &format!("cus_{i}"), &format!("key-{i}"), pm)
            .await;
    }
    let res = app
        .admin_patch(&format!("/api/plans/{plan}"), &json!({"capacity": 8}))
        .await;
    assert_eq!(res.status(), StatusCode::OK);

    let res = app
        .admin_get(&format!("/api/plans/{plan}/audit/check"))
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let check = body(res).await;
    let seats_left = app.plan(&plan).await["seats_left"].as_u64().unwrap();
    assert_eq!(seats_left, 6, "8 seats, 2 sold");
    let audit = app.audit(&plan).await;
    assert!(
        audit.iter().any(|e| e["action"] == "capacity_changed"),
        "{audit:#?}"
    );
    assert_eq!(
        check,
        json!({
            "plan_id": plan,
            "seq": audit.len(),
            "entries": audit.len(),
            "replayed_seats_left": seats_left,
            "seats_left": seats_left,
            "consistent": true,
            "error": null,
        })
    );
    app.assert_invariants(&plan).await;
}

#[tokio::test]
async fn the_audit_check_needs_an_admin_credential() {
    let app = spawn_memory_app().await;
    let plan = app.create_plan(3).await;
    let path = format!("/api/plans/{plan}/audit/check");

    assert_problem(
        send(&app, Method::GET, &path, None, None).await,
        401,
        "unauthorized",
    )
    .await;
    let customer = session(&app, &app.purchases_key, "cus_a").await;
    assert_problem(
        send(&app, Method::GET, &path, Some(&customer), None).await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        send(&app, Method::GET, &path, Some(&app.purchases_key), None).await,
        403,
        "forbidden",
    )
    .await;
    assert_problem(
        send(&app, Method::GET, &path, Some("sk_not_a_key"), None).await,
        401,
        "unauthorized",
    )
    .await;

    let admin_key = make_key(&app.anonymous, &app.address, "admin", "ops").await;
    for credential in [admin_key.as_str(), ADMIN_TOKEN] {
        let res = send(&app, Method::GET, &path, Some(credential), None).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(body(res).await["consistent"], true);
    }
}

#[tokio::test]
async fn the_audit_check_of_a_plan_nobody_has_answers_404() {
    let app = spawn_memory_app().await;
    for id in ["0190f5d0-1b2c-7d3e-8f40-000000000000", "not-a-uuid"] {
        let res = app.admin_get(&format!("/api/plans/{id}/audit/check")).await;
        assert_problem(res, 404, "plan_not_found").await;
    }
    // Without a credential the answer is 401 first: nothing says whether it exists.
    let res = app
        .anonymous
        .get(app.url("/api/plans/0190f5d0-1b2c-7d3e-8f40-000000000000/audit/check"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "unauthorized").await;
}

#[tokio::test]
async fn the_audit_check_is_documented_as_an_admin_operation() {
    let app = spawn_memory_app().await;
    let doc = body(
        app.anonymous
            .get(app.url("/openapi.json"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let op = &doc["paths"]["/api/plans/{id}/audit/check"]["get"];
    assert_eq!(op["operationId"], "checkPlanAudit", "{op}");
    assert_eq!(op["tags"], json!(["plans"]));
    assert_eq!(op["security"], json!([{"adminToken": []}, {"apiKey": []}]));
    for status in ["200", "401", "403", "404", "500", "503"] {
        assert!(op["responses"][status].is_object(), "no {status} response");
    }
}
