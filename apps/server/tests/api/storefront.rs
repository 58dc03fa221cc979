//! The storefront over plain HTTP: what it serves before any JavaScript runs (the plans on
//! sale with price and seats left), its headers (a same-origin Content-Security-Policy),
//! its assets, the demo sign-in, and Stripe mode's page. The browser tests
//! (`tests/browser/`) drive the same page in Chromium.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{
    assert_problem, body, spawn_app_with, spawn_app_with_configured_gateway, spawn_memory_app,
    StoreKind,
};

async fn page(address: &str) -> (reqwest::header::HeaderMap, String) {
    let res = reqwest::get(format!("{address}/")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["content-type"], "text/html; charset=utf-8");
    let headers = res.headers().clone();
    (headers, res.text().await.unwrap())
}

#[tokio::test]
async fn without_javascript_the_storefront_lists_the_plans_on_sale_with_price_and_seats_left() {
    let app = spawn_memory_app().await;
    let on_sale = app
        .admin_post("/api/plans", &json!({"name": "Team <b>&</b>", "capacity": 7, "unit_amount": 12345, "currency": "jpy", "interval": "year"}))
        .await;
    let on_sale = body(on_sale).await["id"].as_str().unwrap().to_owned();
    let archived = app.create_plan(3).await;
    app.admin_patch(
        &format!("/api/plans/{archived}"),
        &json!({"status": "archived"}),
    )
    .await;
    assert_eq!(
        app.purchase(&on_sale, "cus_1", "k1", "pm_card_visa")
            .await
            .status(),
        201
    );

    let (headers, html) = page(&app.address).await;
    assert!(
        html.contains(&format!("data-plan-id=\"{on_sale}\"")),
        "{html}"
    );
    // The name is escaped, the price written in the currency's unit, the seats counted.
    assert!(
        html.contains("Team &#60;b&#62;&#38;&#60;/b&#62;")
            || html.contains("Team &lt;b&gt;&amp;&lt;/b&gt;"),
        "{html}"
    );
    assert!(html.contains("12345 JPY"), "{html}");
    assert!(
        html.contains("<span class=\"interval\">year</span>"),
        "{html}"
    );
    assert!(
        html.contains("data-seats-left>6</span> of <span data-capacity>7</span>"),
        "{html}"
    );
    assert!(!html.contains(&archived), "an archived plan is not on sale");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.starts_with("default-src 'self'; script-src 'self';"),
        "{csp}"
    );
    assert!(!csp.contains("stripe"), "{csp}");
    assert!(
        !html.contains("https://"),
        "nothing from another origin: {html}"
    );
    assert_eq!(headers["cache-control"], "no-store");
}

#[tokio::test]
async fn a_sold_out_plan_is_marked_sold_out_and_cannot_be_bought_from_the_page() {
    let app = spawn_memory_app().await;
    let plan = app.create_plan(1).await;
    assert_eq!(
        app.purchase(&plan, "cus_1", "k1", "pm_card_visa")
            .await
            .status(),
        201
    );
    let (_, html) = page(&app.address).await;
    assert!(
        html.contains(&format!(
            "<li class=\"plan sold-out\" data-plan-id=\"{plan}\">"
        )),
        "{html}"
    );
    assert!(html.contains("data-buy hidden disabled"), "{html}");
}

#[tokio::test]
async fn assets_are_served_with_their_type_and_an_etag_that_answers_304() {
    let app = spawn_memory_app().await;
    let http = reqwest::Client::new();
    for (name, kind) in [
        ("app.css", "text/css"),
        ("storefront.js", "text/javascript"),
    ] {
        let res = http
            .get(format!("{}/assets/{name}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert!(res.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with(kind));
        let etag = res.headers()["etag"].clone();
        let again = http
            .get(format!("{}/assets/{name}", app.address))
            .header("If-None-Match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    }
    let res = http
        .get(format!("{}/assets/nope.js", app.address))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "not_found").await;
}

#[tokio::test]
async fn the_demo_sign_in_makes_a_customer_session_that_buys_for_that_customer_only() {
    let app = spawn_memory_app().await;
    let plan = app.create_plan(2).await;
    let http = reqwest::Client::new();
    let res = http
        .post(format!("{}/api/demo/customer_sessions", app.address))
        .json(&json!({"customer_id": "cus_demo"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    let token = body(res).await["token"].as_str().unwrap().to_owned();
    let open = |customer: &'static str, key: &'static str| {
        http.post(format!("{}/api/checkout_sessions", app.address))
            .bearer_auth(&token)
            .header("Idempotency-Key", key)
            .json(&json!({"plan_id": plan, "customer_id": customer}))
            .send()
    };
    assert_eq!(
        open("cus_demo", "a").await.unwrap().status(),
        StatusCode::CREATED
    );
    assert_problem(open("cus_other", "b").await.unwrap(), 403, "forbidden").await;
    let bad = http
        .post(format!("{}/api/demo/customer_sessions", app.address))
        .json(&json!({"customer_id": ""}))
        .send()
        .await
        .unwrap();
    assert_problem(bad, 400, "invalid_request").await;
}

#[tokio::test]
async fn without_demo_mode_there_is_no_demo_sign_in_and_the_page_says_who_signs_customers_in() {
    let app = spawn_app_with(StoreKind::Memory, std::time::Duration::ZERO, |s| {
        s.demo.sign_in = Some(false);
    })
    .await
    .unwrap();
    let res = reqwest::Client::new()
        .post(format!("{}/api/demo/customer_sessions", app.address))
        .json(&json!({"customer_id": "cus_demo"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "not_found").await;
    let (_, html) = page(&app.address).await;
    assert!(!html.contains("Demo mode"), "{html}");
    assert!(!html.contains("id=\"sign-in\""), "{html}");
    assert!(
        html.contains("Sign in through the site that sent you here"),
        "{html}"
    );
}

#[tokio::test]
async fn in_stripe_mode_the_page_loads_stripe_js_with_the_publishable_key_and_allows_only_stripe() {
    let app = spawn_app_with_configured_gateway(|s| {
        s.payments.provider = seatkeeper_server::configuration::PaymentProvider::Stripe;
        s.payments.base_url = "http://127.0.0.1:9".into();
        s.payments.secret_key = Some(seatkeeper_server::configuration::Secret::from(
            "sk_test_unused",
        ));
        s.payments.publishable_key = Some("pk_test_storefront".into());
        s.payments.timeout_ms = 400;
    })
    .await;
    let (headers, html) = page(&app.address).await;
    assert!(
        html.contains("<script src=\"https://js.stripe.com/v3/\"></script>"),
        "{html}"
    );
    assert!(
        html.contains("data-stripe-key=\"pk_test_storefront\""),
        "{html}"
    );
    assert!(
        !html.contains("sk_test_unused"),
        "the secret key never reaches a page"
    );
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("script-src 'self' https://js.stripe.com;"),
        "{csp}"
    );
    assert!(
        csp.contains("frame-src https://js.stripe.com https://hooks.stripe.com;"),
        "{csp}"
    );
}
