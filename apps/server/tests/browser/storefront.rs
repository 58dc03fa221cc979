//! The storefront as customers use it: live counts across browsers, the checkout's
//! outcomes (paid, declined then paid, 3-D Secure passed and failed, a hold that expires),
//! "My subscriptions", and no request to another origin.

use std::time::Duration;

use fantoccini::Client;
use serde_json::json;

use crate::{
    harness::{click, fetched, fill, screenshot, text, until, Browsers},
    helpers::{body, spawn_app_with, StoreKind, TestApp},
};

/// A server on the in-memory store with a plan named `name` of `capacity` seats.
async fn shop(name: &str, capacity: i64, hold_secs: u32) -> (TestApp, String) {
    let app = spawn_app_with(StoreKind::Memory, Duration::ZERO, |s| {
        s.checkout.default_expires_in_secs = hold_secs;
    })
    .await
    .expect("the in-memory store");
    let res = app
        .admin_post(
            "/api/plans",
            &json!({"name": name, "capacity": capacity, "unit_amount": 4900, "currency": "usd", "interval": "month"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let id = body(res).await["id"].as_str().unwrap().to_owned();
    (app, id)
}

/// Opens the storefront and waits until its seat counts are live.
async fn visit(c: &Client, app: &TestApp) {
    c.goto(&format!("{}/", app.address))
        .await
        .expect("the storefront");
    until(
        c,
        "the live stream",
        "document.getElementById('live-status').dataset.live === 'true'",
    )
    .await;
}

async fn sign_in(c: &Client, customer: &str) {
    fill(c, "#customer-id", customer).await;
    click(c, "#sign-in button[type=submit]").await;
    until(
        c,
        "the signed-in name",
        &format!("document.getElementById('customer-name').textContent === '{customer}'"),
    )
    .await;
}

fn seats_left(plan: &str) -> String {
    format!("document.querySelector('[data-plan-id=\"{plan}\"] [data-seats-left]').textContent")
}

/// Opens the checkout for `plan` and waits for the held seat.
async fn hold(c: &Client, plan: &str) {
    click(c, &format!("[data-plan-id=\"{plan}\"] [data-buy]")).await;
    until(c, "the held seat", "!document.getElementById('hold').hidden && document.getElementById('hold-left').textContent !== ''").await;
}

async fn pay_with(c: &Client, method: &str) {
    click(c, &format!("input[name=payment_method][value={method}]")).await;
    click(c, "#pay").await;
}

async fn outcome(c: &Client, kind: &str) -> String {
    until(
        c,
        &format!("the outcome {kind}"),
        &format!("document.getElementById('checkout-outcome').dataset.kind === '{kind}'"),
    )
    .await;
    text(c, "#checkout-outcome").await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_seat_bought_in_one_browser_drops_the_count_in_another_without_a_reload() {
    let Some(mut browsers) =
        Browsers::start("a_seat_bought_in_one_browser_drops_the_count_in_another_without_a_reload")
            .await
    else {
        return;
    };
    let (app, plan) = shop("Starter", 3, 600).await;
    let buyer = browsers.open(false).await;
    let watcher = browsers.open(true).await;
    visit(&buyer, &app).await;
    visit(&watcher, &app).await;
    watcher
        .execute("window.notReloaded = true; return 1", vec![])
        .await
        .unwrap();
    assert_eq!(
        until(
            &watcher,
            "3 seats",
            &format!("{} === '3'", seats_left(&plan))
        )
        .await,
        true
    );
    screenshot(&buyer, "storefront").await;

    sign_in(&buyer, "cus_alice").await;
    hold(&buyer, &plan).await;
    // The hold already shows on the other screen: 2 left, 1 on hold.
    until(
        &watcher,
        "2 seats while one is held",
        &format!("{} === '2'", seats_left(&plan)),
    )
    .await;
    screenshot(&buyer, "checkout").await;
    pay_with(&buyer, "pm_card_visa").await;
    assert!(outcome(&buyer, "paid").await.contains("Paid"));
    until(&watcher, "the held seat sold", &format!("{} === '2' && document.querySelector('[data-plan-id=\"{plan}\"] [data-held]').textContent === ''", seats_left(&plan))).await;
    assert_eq!(
        watcher
            .execute("return window.notReloaded === true", vec![])
            .await
            .unwrap(),
        true
    );
    screenshot(&watcher, "storefront-phone").await;

    // Sell the last two through the API: the watcher sees the plan sold out.
    for k in ["k1", "k2"] {
        assert_eq!(
            app.purchase(&plan, &format!("cus_{k}"), k, "pm_card_visa")
                .await
                .status(),
            201
        );
    }
    until(&watcher, "sold out", &format!("document.querySelector('[data-plan-id=\"{plan}\"]').classList.contains('sold-out') && document.querySelector('[data-plan-id=\"{plan}\"] [data-buy]').disabled && {} === '0'", seats_left(&plan))).await;

    let stats = app.stats(&plan).await;
    assert_eq!(
        (stats["active"].as_u64(), stats["held"].as_u64()),
        (Some(3), Some(0))
    );
    app.assert_invariants(&plan).await;
    for w in [&buyer, &watcher] {
        for url in fetched(w).await {
            assert!(
                url.starts_with(&app.address),
                "the page fetched {url} from another origin"
            );
        }
    }
    browsers.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_card_asks_for_another_and_a_good_one_then_pays() {
    let Some(mut browsers) =
        Browsers::start("a_declined_card_asks_for_another_and_a_good_one_then_pays").await
    else {
        return;
    };
    let (app, plan) = shop("Team", 5, 600).await;
    let c = browsers.open(false).await;
    visit(&c, &app).await;
    sign_in(&c, "cus_bob").await;
    hold(&c, &plan).await;
    pay_with(&c, "pm_card_chargeDeclined").await;
    let declined = outcome(&c, "declined").await;
    assert!(
        declined.contains("declined") && declined.contains("Try another card"),
        "{declined}"
    );
    screenshot(&c, "checkout-declined").await;
    // Still held: one session, one seat.
    assert_eq!(app.stats(&plan).await["held"], 1);
    pay_with(&c, "pm_card_visa").await;
    outcome(&c, "paid").await;
    let stats = app.stats(&plan).await;
    assert_eq!(
        (
            stats["active"].as_u64(),
            stats["held"].as_u64(),
            stats["seats_left"].as_u64()
        ),
        (Some(1), Some(0), Some(4))
    );
    // My subscriptions shows it.
    click(&c, "#checkout-close").await;
    until(
        &c,
        "the subscription",
        "document.querySelectorAll('#subscriptions li .status-active').length === 1",
    )
    .await;
    app.assert_invariants(&plan).await;
    browsers.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_d_secure_check_that_fails_asks_for_another_card_and_one_that_passes_pays() {
    let Some(mut browsers) = Browsers::start(
        "a_three_d_secure_check_that_fails_asks_for_another_card_and_one_that_passes_pays",
    )
    .await
    else {
        return;
    };
    let (app, plan) = shop("Secure", 2, 600).await;
    let c = browsers.open(false).await;
    visit(&c, &app).await;
    sign_in(&c, "cus_carol").await;
    hold(&c, &plan).await;
    pay_with(&c, "pm_card_threeDSecure2Required").await;
    until(
        &c,
        "the 3-D Secure step",
        "!document.getElementById('three-ds').hidden",
    )
    .await;
    screenshot(&c, "checkout-3ds").await;
    click(&c, "#three-ds-fail").await;
    outcome(&c, "declined").await;
    assert_eq!(app.stats(&plan).await["held"], 1);
    pay_with(&c, "pm_card_threeDSecure2Required").await;
    until(
        &c,
        "the 3-D Secure step again",
        "!document.getElementById('three-ds').hidden",
    )
    .await;
    click(&c, "#three-ds-pass").await;
    outcome(&c, "paid").await;
    let stats = app.stats(&plan).await;
    assert_eq!(
        (stats["active"].as_u64(), stats["held"].as_u64()),
        (Some(1), Some(0))
    );
    app.assert_invariants(&plan).await;
    browsers.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hold_that_expires_gives_the_seat_back_and_says_so() {
    let Some(mut browsers) =
        Browsers::start("a_hold_that_expires_gives_the_seat_back_and_says_so").await
    else {
        return;
    };
    let (app, plan) = shop("Brief", 1, 3).await;
    let c = browsers.open(false).await;
    visit(&c, &app).await;
    sign_in(&c, "cus_dave").await;
    hold(&c, &plan).await;
    until(
        &c,
        "sold out while held",
        &format!("{} === '0'", seats_left(&plan)),
    )
    .await;
    let expired = outcome(&c, "expired").await;
    assert!(expired.contains("expired"), "{expired}");
    until(
        &c,
        "the seat back",
        &format!("{} === '1'", seats_left(&plan)),
    )
    .await;
    let stats = app.stats(&plan).await;
    assert_eq!(
        (stats["held"].as_u64(), stats["seats_left"].as_u64()),
        (Some(0), Some(1))
    );
    app.assert_invariants(&plan).await;
    browsers.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_customer_cancels_a_subscription_from_my_subscriptions() {
    let Some(mut browsers) =
        Browsers::start("a_customer_cancels_a_subscription_from_my_subscriptions").await
    else {
        return;
    };
    let (app, plan) = shop("Cancelable", 4, 600).await;
    assert_eq!(
        app.purchase(&plan, "cus_erin", "e1", "pm_card_visa")
            .await
            .status(),
        201
    );
    let c = browsers.open(false).await;
    visit(&c, &app).await;
    sign_in(&c, "cus_erin").await;
    until(
        &c,
        "the subscription",
        "document.querySelectorAll('#subscriptions li .status-active').length === 1",
    )
    .await;
    until(&c, "3 seats", &format!("{} === '3'", seats_left(&plan))).await;
    screenshot(&c, "my-subscriptions").await;
    click(&c, "#subscriptions li button").await;
    until(
        &c,
        "the cancellation",
        "document.querySelectorAll('#subscriptions li .status-canceled').length === 1",
    )
    .await;
    until(
        &c,
        "the seat back",
        &format!("{} === '4'", seats_left(&plan)),
    )
    .await;
    assert_eq!(app.stats(&plan).await["canceled"], 1);
    app.assert_invariants(&plan).await;
    browsers.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_offers_a_seat_already_sold_says_sold_out_and_holds_nothing() {
    let Some(mut browsers) =
        Browsers::start("a_page_that_offers_a_seat_already_sold_says_sold_out_and_holds_nothing")
            .await
    else {
        return;
    };
    let (app, plan) = shop("Last seat", 1, 600).await;
    let c = browsers.open(false).await;
    visit(&c, &app).await;
    sign_in(&c, "cus_frank").await;
    assert_eq!(
        app.purchase(&plan, "cus_other", "o1", "pm_card_visa")
            .await
            .status(),
        201
    );
    until(
        &c,
        "sold out",
        &format!(
            "document.querySelector('[data-plan-id=\"{plan}\"] [data-buy]').disabled && {} === '0'",
            seats_left(&plan)
        ),
    )
    .await;
    // A page whose stream lags behind the sale still offers the seat: the click reaches
    // the server, which refuses it.
    c.execute(&format!("document.querySelector('[data-plan-id=\"{plan}\"] [data-buy]').disabled = false; return 1"), vec![]).await.unwrap();
    click(&c, &format!("[data-plan-id=\"{plan}\"] [data-buy]")).await;
    let sold_out = outcome(&c, "sold-out").await;
    assert!(sold_out.contains("Sold out"), "{sold_out}");
    let stats = app.stats(&plan).await;
    assert_eq!(
        (stats["active"].as_u64(), stats["held"].as_u64()),
        (Some(1), Some(0))
    );
    browsers.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_storefront_names_every_control_and_a_keyboard_alone_can_sign_in_and_buy() {
    let Some(mut browsers) = Browsers::start(
        "the_storefront_names_every_control_and_a_keyboard_alone_can_sign_in_and_buy",
    )
    .await
    else {
        return;
    };
    let (app, plan) = shop("Keyboard", 2, 600).await;
    let c = browsers.open(false).await;
    visit(&c, &app).await;
    let unnamed = c
        .execute(
            "return [...document.querySelectorAll('input, select, textarea, button')].filter(e => \
               !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim() \
               && !e.closest('label')).map(e => e.outerHTML)",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(unnamed, json!([]), "controls without an accessible name");
    assert_eq!(
        c.execute(
            "return [document.documentElement.lang, document.querySelectorAll('h1').length]",
            vec![]
        )
        .await
        .unwrap(),
        json!(["en", 1])
    );

    // Tab until `css` has the focus (in at most 30 presses), then press `key`.
    async fn tab_to(c: &Client, css: &str, key: &str) {
        for _ in 0..30 {
            let here = c
                .execute(
                    &format!("return document.activeElement === document.querySelector('{css}')"),
                    vec![],
                )
                .await
                .unwrap();
            if here == json!(true) {
                c.active_element()
                    .await
                    .unwrap()
                    .send_keys(key)
                    .await
                    .unwrap();
                return;
            }
            c.active_element()
                .await
                .unwrap()
                .send_keys(&fantoccini::key::Key::Tab)
                .await
                .unwrap();
        }
        panic!("Tab never reached {css}");
    }
    tab_to(&c, "#customer-id", "cus_keys").await;
    c.active_element()
        .await
        .unwrap()
        .send_keys(&fantoccini::key::Key::Enter)
        .await
        .unwrap();
    until(
        &c,
        "signed in",
        "document.getElementById('customer-name').textContent === 'cus_keys'",
    )
    .await;
    tab_to(
        &c,
        &format!("[data-plan-id=\"{plan}\"] [data-buy]"),
        &fantoccini::key::Key::Enter,
    )
    .await;
    until(&c, "the held seat", "!document.getElementById('hold').hidden && document.getElementById('hold-left').textContent !== ''").await;
    assert_eq!(
        c.execute(
            "return document.getElementById('checkout').contains(document.activeElement)",
            vec![]
        )
        .await
        .unwrap(),
        true,
        "the focus moves into the checkout"
    );
    tab_to(&c, "#pay", &fantoccini::key::Key::Enter).await;
    outcome(&c, "paid").await;
    assert_eq!(app.stats(&plan).await["active"], 1);
    browsers.close().await;
}
