//! The purchase route's answers: created, declined, sold out, inactive or unknown plan,
//! invalid bodies, a lost payment answer, on every store; an unreachable store (the
//! in-memory store's off switch) on the in-memory store only.

use serde_json::json;

use crate::helpers::{assert_problem, body, spawn_memory_app, TestApp};

on_every_store!(a_purchase_returns_201_with_the_active_subscription);
async fn a_purchase_returns_201_with_the_active_subscription(app: TestApp) {
    let plan = app.create_plan(10).await;
    let res = app
        .purchase(&plan, "cus_42", "order-1", "pm_card_visa")
        .await;
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("idempotent-replayed").is_none());
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let sub = body(res).await;
    assert_eq!(
        location,
        format!("/api/subscriptions/{}", sub["id"].as_str().unwrap())
    );
    assert_eq!(sub["plan_id"], plan.as_str());
    assert_eq!(sub["customer_id"], "cus_42");
    assert_eq!(sub["status"], "active");
    assert!(sub["payment_id"].as_str().unwrap().starts_with("pi_"));
    assert!(sub["current_period_start"].is_string());
    assert!(sub["current_period_end"].is_string());
    assert!(sub["created_at"].is_string());
    assert!(sub["canceled_at"].is_null());
    assert_eq!(app.plan(&plan).await["seats_left"], 9);
    assert_eq!(app.gateway.succeeded_charges().len(), 1);
    assert_eq!(app.gateway.succeeded_charges()[0].amount, 1500);
    app.assert_invariants(&plan).await;
}

on_every_store!(a_declined_card_answers_402_and_gives_the_seat_back);
async fn a_declined_card_answers_402_and_gives_the_seat_back(app: TestApp) {
    let plan = app.create_plan(1).await;
    let res = app
        .purchase(&plan, "cus_1", "k1", "pm_card_chargeDeclined")
        .await;
    let problem = assert_problem(res, 402, "payment_declined").await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("card_declined"));
    let sub_id = problem["subscription_id"].as_str().unwrap();
    let sub = body(app.get(&format!("/api/subscriptions/{sub_id}")).await).await;
    assert_eq!(sub["status"], "incomplete_expired");
    assert_eq!(app.plan(&plan).await["seats_left"], 1);
    assert_eq!(
        app.purchase(&plan, "cus_2", "k1", "pm_card_visa")
            .await
            .status(),
        201
    );
    app.assert_invariants(&plan).await;
}

on_every_store!(a_sold_out_plan_answers_409_plan_sold_out);
async fn a_sold_out_plan_answers_409_plan_sold_out(app: TestApp) {
    let plan = app.create_plan(1).await;
    assert_eq!(
        app.purchase(&plan, "cus_1", "k", "pm_card_visa")
            .await
            .status(),
        201
    );
    let problem = assert_problem(
        app.purchase(&plan, "cus_2", "k", "pm_card_visa").await,
        409,
        "plan_sold_out",
    )
    .await;
    assert_eq!(problem["plan_id"], plan.as_str());
    assert_eq!(app.stats(&plan).await["sold_out"], true);
    app.assert_invariants(&plan).await;
}

on_every_store!(an_archived_plan_answers_409_plan_inactive_and_sells_again_when_reactivated);
async fn an_archived_plan_answers_409_plan_inactive_and_sells_again_when_reactivated(app: TestApp) {
    let plan = app.create_plan(2).await;
    app.admin_patch(
        &format!("/api/plans/{plan}"),
        &json!({"status": "archived"}),
    )
    .await;
    assert_problem(
        app.purchase(&plan, "cus_1", "k", "pm_card_visa").await,
        409,
        "plan_inactive",
    )
    .await;
    assert_eq!(app.plan(&plan).await["seats_left"], 2);
    app.admin_patch(&format!("/api/plans/{plan}"), &json!({"status": "active"}))
        .await;
    assert_eq!(
        app.purchase(&plan, "cus_1", "k2", "pm_card_visa")
            .await
            .status(),
        201
    );
    app.assert_invariants(&plan).await;
}

on_every_store!(a_plan_that_does_not_exist_answers_404_plan_not_found);
async fn a_plan_that_does_not_exist_answers_404_plan_not_found(app: TestApp) {
    let missing = uuid::Uuid::now_v7().to_string();
    assert_problem(
        app.purchase(&missing, "cus_1", "k", "pm_card_visa").await,
        404,
        "plan_not_found",
    )
    .await;
    assert_eq!(app.gateway.charge_calls(), 0);
}

on_every_store!(invalid_purchase_bodies_are_400_naming_the_field_and_store_nothing);
async fn invalid_purchase_bodies_are_400_naming_the_field_and_store_nothing(app: TestApp) {
    let plan = app.create_plan(3).await;
    let cases = vec![
        (
            json!({"plan_id": "nope", "customer_id": "cus_1", "payment_method": "pm_card_visa"}),
            "plan_id",
        ),
        (
            json!({"plan_id": plan, "customer_id": "", "payment_method": "pm_card_visa"}),
            "customer_id",
        ),
        (
            json!({"plan_id": plan, "customer_id": "c".repeat(65), "payment_method": "pm_card_visa"}),
            "customer_id",
        ),
        (
            json!({"plan_id": plan, "customer_id": "cüs", "payment_method": "pm_card_visa"}),
            "customer_id",
        ),
        (
            json!({"plan_id": plan, "customer_id": "cus_1", "payment_method": "visa"}),
            "payment_method",
        ),
        (
            json!({"plan_id": plan, "customer_id": "cus_1"}),
            "payment_method",
        ),
        (
            json!({"plan_id": plan, "customer_id": 7, "payment_method": "pm_card_visa"}),
            "customer_id",
        ),
        (
            json!({"plan_id": plan, "customer_id": "cus_1", "payment_method": "pm_card_visa", "quantity": 2}),
            "quantity",
        ),
    ];
    for (payload, field) in cases {
        let res = app
            .client
            .post(app.url("/api/subscriptions/purchase"))
            .header("Idempotency-Key", "k-invalid")
            .json(&payload)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(res, 400, "invalid_request").await;
        assert_eq!(problem["errors"][0]["field"], field, "{payload}: {problem}");
    }
    // Nothing was stored, not even the key: a valid request with it runs the flow.
    assert_eq!(app.key_count().await, 0);
    assert_eq!(
        app.purchase(&plan, "cus_1", "k-invalid", "pm_card_visa")
            .await
            .status(),
        201
    );
    app.assert_invariants(&plan).await;
}

on_every_store!(
    a_lost_payment_answer_is_503_with_retry_after_and_the_retry_completes_without_a_second_charge
);
async fn a_lost_payment_answer_is_503_with_retry_after_and_the_retry_completes_without_a_second_charge(
    app: TestApp,
) {
    let plan = app.create_plan(2).await;
    let res = app.purchase(&plan, "cus_1", "k1", "pm_card_timeout").await;
    assert_eq!(res.headers()["retry-after"], "1");
    assert_problem(res, 503, "payment_unavailable").await;
    assert_eq!(app.stats(&plan).await["incomplete"], 1);

    let res = app.purchase(&plan, "cus_1", "k1", "pm_card_timeout").await;
    assert_eq!(
        res.status(),
        201,
        "the 503 was not stored: the retry resumes"
    );
    assert!(res.headers().get("idempotent-replayed").is_none());
    let sub = body(res).await;
    assert_eq!(sub["status"], "active");
    assert_eq!(app.gateway.succeeded_charges().len(), 1);
    assert_eq!(
        app.gateway.succeeded_charges()[0].payment_id,
        sub["payment_id"].as_str().unwrap()
    );
    assert_eq!(app.stats(&plan).await["incomplete"], 0);
    app.assert_invariants(&plan).await;
}

#[tokio::test]
async fn an_unreachable_store_answers_503_store_unavailable_and_nothing_is_half_written() {
    let app = spawn_memory_app().await;
    let plan = app.create_plan(2).await;
    app.store_switch().set_unavailable(true);
    let res = app.purchase(&plan, "cus_1", "k1", "pm_card_visa").await;
    assert_eq!(res.headers()["retry-after"], "1");
    assert_problem(res, 503, "store_unavailable").await;
    assert_problem(app.get("/api/plans").await, 503, "store_unavailable").await;
    app.store_switch().set_unavailable(false);
    assert_eq!(app.gateway.charge_calls(), 0);
    assert_eq!(app.plan(&plan).await["seats_left"], 2);
    assert_eq!(
        app.purchase(&plan, "cus_1", "k1", "pm_card_visa")
            .await
            .status(),
        201
    );
    app.assert_invariants(&plan).await;
}
