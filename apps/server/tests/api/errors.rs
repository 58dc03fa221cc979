//! HTTP-level errors and request ids: unknown paths, wrong methods, `X-Request-Id`, the
//! admin bearer token. None of it reaches the store, so these run on the in-memory store
//! only.

use crate::helpers::{assert_problem, spawn_memory_app, ADMIN_TOKEN};

#[tokio::test]
async fn an_unknown_path_is_a_404_problem() {
    let app = spawn_memory_app().await;
    let problem = assert_problem(app.get("/api/nothing-here").await, 404, "not_found").await;
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("/api/nothing-here"));
}

#[tokio::test]
async fn a_wrong_method_is_a_405_problem_with_allow() {
    let app = spawn_memory_app().await;
    let res = app
        .client
        .delete(app.url("/api/plans"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["allow"], "GET, POST");
    assert_problem(res, 405, "method_not_allowed").await;

    let res = app
        .client
        .get(app.url("/api/subscriptions/purchase"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["allow"], "POST");
    assert_problem(res, 405, "method_not_allowed").await;
}

#[tokio::test]
async fn a_sane_request_id_is_echoed_and_an_insane_one_replaced() {
    let app = spawn_memory_app().await;
    let res = app
        .client
        .get(app.url("/api/nope"))
        .header("X-Request-Id", "trace-abc.123:x")
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["x-request-id"], "trace-abc.123:x");
    let problem = assert_problem(res, 404, "not_found").await;
    assert_eq!(problem["request_id"], "trace-abc.123:x");

    for insane in ["has space", &"x".repeat(129), "semi;colon"] {
        let res = app
            .client
            .get(app.url("/health"))
            .header("X-Request-Id", insane)
            .send()
            .await
            .unwrap();
        let echoed = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert_ne!(echoed, insane);
        assert!(uuid::Uuid::parse_str(&echoed).is_ok());
    }
}

#[tokio::test]
async fn the_request_id_is_the_trace_id_of_the_audit_entries_it_caused() {
    let app = spawn_memory_app().await;
    let plan = app.create_plan(5).await;
    let mut echoed = Vec::new();
    for (customer, given) in [("cus_given", Some("buy-7.a:b")), ("cus_generated", None)] {
        let mut req = app
            .client
            .post(app.url("/api/subscriptions/purchase"))
            .header("Idempotency-Key", customer)
            .json(&serde_json::json!({
                "plan_id": plan, "customer_id": customer, "payment_method": "pm_card_visa"
            }));
        if let Some(id) = given {
            req = req.header("X-Request-Id", id);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), 201);
        let id = res.headers()["x-request-id"].to_str().unwrap().to_owned();
        if let Some(given) = given {
            assert_eq!(id, given);
        }
        let subscription = crate::helpers::body(res).await["id"].clone();
        echoed.push((subscription, id));
    }
    let audit = app.audit(&plan).await;
    let actor = app.purchases_actor().await;
    for (subscription, id) in echoed {
        let entries: Vec<_> = audit
            .iter()
            .filter(|e| e["subscription_id"] == subscription)
            .collect();
        assert_eq!(entries.len(), 2, "reserved and activated: {entries:?}");
        for entry in entries {
            assert_eq!(entry["trace_id"], id.as_str(), "{entry}");
            assert_eq!(entry["actor"], actor.as_str(), "{entry}");
        }
    }
}

#[tokio::test]
async fn every_success_also_carries_a_request_id() {
    let app = spawn_memory_app().await;
    for path in ["/health", "/api/plans"] {
        assert!(app.get(path).await.headers().contains_key("x-request-id"));
    }
}

#[tokio::test]
async fn admin_routes_answer_401_without_the_right_bearer_token() {
    let app = spawn_memory_app().await;
    let plan = app.create_plan(3).await;
    let body = serde_json::json!({"name": "X", "capacity": 1, "unit_amount": 1, "currency": "usd", "interval": "month"});
    let http = &app.anonymous;
    let attempts = [
        http.post(app.url("/api/plans")).json(&body),
        http.post(app.url("/api/plans"))
            .bearer_auth("wrong-token-wrong-token")
            .json(&body),
        http.post(app.url("/api/plans"))
            .header("Authorization", format!("Basic {ADMIN_TOKEN}"))
            .json(&body),
        http.patch(app.url(&format!("/api/plans/{plan}")))
            .json(&serde_json::json!({"capacity": 1})),
        http.get(app.url(&format!("/api/plans/{plan}/audit"))),
    ];
    for req in attempts {
        let res = req.send().await.unwrap();
        assert!(res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer"));
        assert_problem(res, 401, "unauthorized").await;
    }
    // Nothing changed.
    let plans = crate::helpers::body(app.get("/api/plans").await).await;
    assert_eq!(plans["data"].as_array().unwrap().len(), 1);
    assert_eq!(app.plan(&plan).await["capacity"], 3);
}
