//! The rows of `docs/idempotency.md` that the HTTP layer decides, one test each.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{assert_problem, body, spawn_app_with, StoreKind, TestApp};

async fn raw_purchase(
    app: &crate::helpers::TestApp,
    key: Option<&str>,
    plan: &str,
) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/api/subscriptions/purchase"))
        .json(&json!({"plan_id": plan, "customer_id": "cus_1", "payment_method": "pm_card_visa"}));
    if let Some(k) = key {
        req = req.header("Idempotency-Key", k);
    }
    req.send().await.unwrap()
}

on_every_store!(row_1_a_purchase_without_a_key_is_400_idempotency_key_missing);
async fn row_1_a_purchase_without_a_key_is_400_idempotency_key_missing(app: TestApp) {
    let plan = app.create_plan(1).await;
    assert_problem(
        raw_purchase(&app, None, &plan).await,
        400,
        "idempotency_key_missing",
    )
    .await;
    assert_eq!(app.plan(&plan).await["seats_left"], 1);
    assert_eq!(app.key_count().await, 0);
}

// Found reading schemathesis' findings: the document's pattern allowed a key of spaces,
// which arrives empty (HTTP drops the spaces around a header value) and answers 400.
on_every_store!(spaces_around_a_key_are_not_part_of_it_and_a_key_of_spaces_is_invalid);
async fn spaces_around_a_key_are_not_part_of_it_and_a_key_of_spaces_is_invalid(app: TestApp) {
    let plan = app.create_plan(2).await;
    assert_problem(
        raw_purchase(&app, Some("   "), &plan).await,
        400,
        "idempotency_key_invalid",
    )
    .await;
    let first = raw_purchase(&app, Some("k 1"), &plan).await;
    assert_eq!(first.status(), 201);
    let again = raw_purchase(&app, Some("  k 1 "), &plan).await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(app.stats(&plan).await["seats_left"], 1);
}

on_every_store!(row_2_an_empty_long_or_non_ascii_key_is_400_idempotency_key_invalid);
async fn row_2_an_empty_long_or_non_ascii_key_is_400_idempotency_key_invalid(app: TestApp) {
    let plan = app.create_plan(1).await;
    let long = "k".repeat(256);
    for key in ["", long.as_str()] {
        assert_problem(
            raw_purchase(&app, Some(key), &plan).await,
            400,
            "idempotency_key_invalid",
        )
        .await;
    }
    let res = app
        .client
        .post(app.url("/api/subscriptions/purchase"))
        .header(
            "Idempotency-Key",
            reqwest::header::HeaderValue::from_bytes("clé".as_bytes()).unwrap(),
        )
        .json(&json!({"plan_id": plan, "customer_id": "cus_1", "payment_method": "pm_card_visa"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "idempotency_key_invalid").await;
    let res = app
        .client
        .post(app.url("/api/subscriptions/purchase"))
        .header("Idempotency-Key", "a")
        .header("Idempotency-Key", "b")
        .json(&json!({"plan_id": plan, "customer_id": "cus_1", "payment_method": "pm_card_visa"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "idempotency_key_invalid").await;
    assert_eq!(app.key_count().await, 0);
    assert_eq!(
        raw_purchase(&app, Some(&"k".repeat(255)), &plan)
            .await
            .status(),
        201
    );
}

on_every_store!(row_5_a_finished_key_replays_the_byte_identical_response_marked_replayed);
async fn row_5_a_finished_key_replays_the_byte_identical_response_marked_replayed(app: TestApp) {
    let plan = app.create_plan(5).await;
    let first = app.purchase(&plan, "cus_1", "k1", "pm_card_visa").await;
    assert_eq!(first.status(), 201);
    let first_body = first.bytes().await.unwrap();
    let again = app.purchase(&plan, "cus_1", "k1", "pm_card_visa").await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.bytes().await.unwrap(), first_body);
    assert_eq!(app.gateway.charge_calls(), 1);
    assert_eq!(app.plan(&plan).await["seats_left"], 4);
}

on_every_store!(row_6_the_same_key_with_a_different_body_is_422_idempotency_key_reused);
async fn row_6_the_same_key_with_a_different_body_is_422_idempotency_key_reused(app: TestApp) {
    let plan = app.create_plan(5).await;
    let other = app.create_plan(5).await;
    app.purchase(&plan, "cus_1", "k1", "pm_card_visa").await;
    assert_problem(
        app.purchase(&other, "cus_1", "k1", "pm_card_visa").await,
        422,
        "idempotency_key_reused",
    )
    .await;
    assert_problem(
        app.purchase(&plan, "cus_1", "k1", "pm_card_mastercard")
            .await,
        422,
        "idempotency_key_reused",
    )
    .await;
    assert_eq!(app.plan(&other).await["seats_left"], 5);
    assert_eq!(app.gateway.charge_calls(), 1);
}

on_every_store!(row_7_the_same_key_while_the_first_request_runs_is_409_idempotency_key_in_use);
async fn row_7_the_same_key_while_the_first_request_runs_is_409_idempotency_key_in_use(
    app: TestApp,
) {
    let plan = app.create_plan(5).await;
    app.gateway.hold_charges();
    let slow = {
        let (client, url, plan) = (
            app.client.clone(),
            app.url("/api/subscriptions/purchase"),
            plan.clone(),
        );
        tokio::spawn(async move {
            client
                .post(url)
                .header("Idempotency-Key", "k1")
                .json(&json!({"plan_id": plan, "customer_id": "cus_1", "payment_method": "pm_card_visa"}))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    app.gateway.charges_held(1).await;
    assert_problem(
        app.purchase(&plan, "cus_1", "k1", "pm_card_visa").await,
        409,
        "idempotency_key_in_use",
    )
    .await;
    app.gateway.release_charges();
    assert_eq!(slow.await.unwrap(), 201);
    let replay = app.purchase(&plan, "cus_1", "k1", "pm_card_visa").await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(app.gateway.charge_calls(), 1);
}

on_every_store!(row_9_the_same_key_from_two_customers_makes_two_purchases);
async fn row_9_the_same_key_from_two_customers_makes_two_purchases(app: TestApp) {
    let plan = app.create_plan(5).await;
    let a = body(app.purchase(&plan, "cus_a", "shared", "pm_card_visa").await).await;
    let b = body(app.purchase(&plan, "cus_b", "shared", "pm_card_visa").await).await;
    assert_ne!(a["id"], b["id"]);
    assert_eq!(a["customer_id"], "cus_a");
    assert_eq!(b["customer_id"], "cus_b");
    assert_eq!(app.gateway.succeeded_charges().len(), 2);
}

on_every_store!(row_10_declines_and_sold_outs_are_stored_and_replayed_with_the_first_request_id);
async fn row_10_declines_and_sold_outs_are_stored_and_replayed_with_the_first_request_id(
    app: TestApp,
) {
    let plan = app.create_plan(1).await;
    let declined = app
        .purchase(&plan, "cus_1", "k-declined", "pm_card_chargeDeclined")
        .await;
    assert_eq!(declined.status(), 402);
    let declined_body = declined.bytes().await.unwrap();
    let again = app
        .purchase(&plan, "cus_1", "k-declined", "pm_card_chargeDeclined")
        .await;
    assert_eq!(again.status(), 402);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["content-type"], "application/problem+json");
    assert_eq!(again.bytes().await.unwrap(), declined_body);

    assert_eq!(
        app.purchase(&plan, "cus_2", "k", "pm_card_visa")
            .await
            .status(),
        201
    );
    let sold_out = app.purchase(&plan, "cus_3", "k", "pm_card_visa").await;
    assert_eq!(sold_out.status(), 409);
    let sold_out_body = sold_out.bytes().await.unwrap();
    // A seat frees up; the stored outcome still replays.
    let sub = body(app.get("/api/customers/cus_2/subscriptions").await).await["data"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.client
        .post(app.url(&format!("/api/subscriptions/{sub}/cancel")))
        .send()
        .await
        .unwrap();
    let again = app.purchase(&plan, "cus_3", "k", "pm_card_visa").await;
    assert_eq!(again.status(), 409);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.bytes().await.unwrap(), sold_out_body);
    assert_eq!(app.gateway.charge_calls(), 2);
    app.assert_invariants(&plan).await;
}

on_every_store!(row_13_keys_past_the_retention_are_swept_and_may_start_a_new_purchase(kind));
async fn row_13_keys_past_the_retention_are_swept_and_may_start_a_new_purchase(kind: StoreKind) {
    let Some(app) = spawn_app_with(kind, Duration::ZERO, |s| {
        s.idempotency.retention_secs = 1;
        s.idempotency.lock_lease_ms = 500;
        s.idempotency.sweep_interval_secs = 1;
    })
    .await
    else {
        return;
    };
    let plan = app.create_plan(5).await;
    assert_eq!(
        app.purchase(&plan, "cus_1", "k1", "pm_card_visa")
            .await
            .status(),
        201
    );
    assert_eq!(app.key_count().await, 1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.key_count().await > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sweeper never removed the key"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = app.purchase(&plan, "cus_1", "k1", "pm_card_visa").await;
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("idempotent-replayed").is_none());
    assert_eq!(app.gateway.succeeded_charges().len(), 2);
}
