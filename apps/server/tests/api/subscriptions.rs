//! Subscriptions over HTTP: read by id, cancel, and a customer's list in pages, on every
//! store.

use crate::helpers::{assert_problem, body, TestApp};

on_every_store!(a_subscription_can_be_read_by_id);
async fn a_subscription_can_be_read_by_id(app: TestApp) {
    let plan = app.create_plan(2).await;
    let created = body(app.purchase(&plan, "cus_1", "k", "pm_card_visa").await).await;
    let res = app
        .get(&format!(
            "/api/subscriptions/{}",
            created["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(body(res).await, created);
}

on_every_store!(an_unknown_or_malformed_subscription_id_is_404);
async fn an_unknown_or_malformed_subscription_id_is_404(app: TestApp) {
    for id in [uuid::Uuid::now_v7().to_string(), "nope".to_owned()] {
        assert_problem(
            app.get(&format!("/api/subscriptions/{id}")).await,
            404,
            "subscription_not_found",
        )
        .await;
        let res = app
            .client
            .post(app.url(&format!("/api/subscriptions/{id}/cancel")))
            .send()
            .await
            .unwrap();
        assert_problem(res, 404, "subscription_not_found").await;
    }
}

on_every_store!(cancelling_releases_the_seat_and_cancelling_again_returns_the_same_200);
async fn cancelling_releases_the_seat_and_cancelling_again_returns_the_same_200(app: TestApp) {
    let plan = app.create_plan(1).await;
    let sub = body(app.purchase(&plan, "cus_1", "k", "pm_card_visa").await).await;
    let id = sub["id"].as_str().unwrap();
    let res = app
        .client
        .post(app.url(&format!("/api/subscriptions/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let canceled = body(res).await;
    assert_eq!(canceled["status"], "canceled");
    assert!(canceled["canceled_at"].is_string());
    assert_eq!(app.plan(&plan).await["seats_left"], 1);
    let res = app
        .client
        .post(app.url(&format!("/api/subscriptions/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(body(res).await, canceled);
    assert_eq!(app.plan(&plan).await["seats_left"], 1);
    let audit = app.audit(&plan).await;
    assert_eq!(audit.last().unwrap()["action"], "subscription_canceled");
    assert_eq!(
        audit.last().unwrap()["actor"],
        app.purchases_actor().await.as_str()
    );
    assert_eq!(
        app.purchase(&plan, "cus_2", "k", "pm_card_visa")
            .await
            .status(),
        201
    );
    app.assert_invariants(&plan).await;
}

on_every_store!(cancelling_a_subscription_that_is_not_active_is_409);
async fn cancelling_a_subscription_that_is_not_active_is_409(app: TestApp) {
    let plan = app.create_plan(2).await;
    let declined = body(
        app.purchase(&plan, "cus_1", "k1", "pm_card_chargeDeclined")
            .await,
    )
    .await;
    let id = declined["subscription_id"].as_str().unwrap();
    let res = app
        .client
        .post(app.url(&format!("/api/subscriptions/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_problem(res, 409, "subscription_not_active").await;

    let unknown = body(app.purchase(&plan, "cus_1", "k2", "pm_card_timeout").await).await;
    assert_eq!(unknown["code"], "payment_unavailable");
    let incomplete = body(app.get("/api/customers/cus_1/subscriptions").await).await["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["status"] == "incomplete")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let res = app
        .client
        .post(app.url(&format!("/api/subscriptions/{incomplete}/cancel")))
        .send()
        .await
        .unwrap();
    assert_problem(res, 409, "subscription_not_active").await;
    app.assert_invariants(&plan).await;
}

on_every_store!(a_customers_subscriptions_are_listed_in_pages);
async fn a_customers_subscriptions_are_listed_in_pages(app: TestApp) {
    let plan = app.create_plan(10).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let s = body(
            app.purchase(&plan, "cus_7", &format!("k{i}"), "pm_card_visa")
                .await,
        )
        .await;
        ids.push(s["id"].as_str().unwrap().to_owned());
    }
    app.purchase(&plan, "cus_other", "k", "pm_card_visa").await;
    let first = body(app.get("/api/customers/cus_7/subscriptions?limit=3").await).await;
    let second = body(
        app.get(&format!(
            "/api/customers/cus_7/subscriptions?limit=3&cursor={}",
            first["next_cursor"].as_str().unwrap()
        ))
        .await,
    )
    .await;
    assert!(second["next_cursor"].is_null());
    let seen: Vec<String> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["data"].as_array().unwrap())
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, ids);
    let none = body(app.get("/api/customers/cus_nobody/subscriptions").await).await;
    assert_eq!(none["data"].as_array().unwrap().len(), 0);
    assert!(none["next_cursor"].is_null());
}

on_every_store!(a_malformed_customer_id_or_cursor_is_400);
async fn a_malformed_customer_id_or_cursor_is_400(app: TestApp) {
    let problem = assert_problem(
        app.get("/api/customers/bad%20id/subscriptions").await,
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "customer_id");
    let problem = assert_problem(
        app.get("/api/customers/cus_1/subscriptions?cursor=zzz")
            .await,
        400,
        "invalid_request",
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "cursor");
}
