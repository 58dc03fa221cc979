//! Opening, reading and expiring checkout sessions: the held seat, once per key; the
//! refusals (each changing nothing); another customer's session; bad input.

use serde_json::json;

use crate::helpers::{assert_problem, body, TestApp};

on_every_store!(opening_a_session_holds_a_seat_and_answers_its_payment_intent);
async fn opening_a_session_holds_a_seat_and_answers_its_payment_intent(app: TestApp) {
    let plan = app.create_plan(3).await;
    let res = app
        .open_checkout(&plan, "cus_1", "co-1", json!({"expires_in": 600}))
        .await;
    assert_eq!(res.status(), 201);
    assert!(res.headers().get("idempotent-replayed").is_none());
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let s = body(res).await;
    let id = s["id"].as_str().unwrap();
    assert_eq!(location, format!("/api/checkout_sessions/{id}"));
    assert_eq!(s["status"], "open");
    assert_eq!(
        (s["plan_id"].as_str(), s["customer_id"].as_str()),
        (Some(plan.as_str()), Some("cus_1"))
    );
    assert_eq!(
        (s["amount"].as_i64(), s["currency"].as_str()),
        (Some(1500), Some("usd"))
    );
    assert_eq!(s["payment"]["provider"], "simulated");
    let pi = s["payment"]["payment_intent"].as_str().unwrap();
    assert!(s["payment"]["client_secret"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{pi}_secret_")));
    let created = chrono::DateTime::parse_from_rfc3339(s["created_at"].as_str().unwrap()).unwrap();
    let expires = chrono::DateTime::parse_from_rfc3339(s["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!((expires - created).num_seconds(), 600);
    assert!(s["subscription_id"].is_null() && s["ended_at"].is_null() && s["expiry"].is_null());
    assert_eq!(
        app.session(id).await,
        s,
        "a read shows what the creation answered"
    );
    let stats = app.stats(&plan).await;
    assert_eq!(
        (stats["seats_left"].as_i64(), stats["held"].as_i64()),
        (Some(2), Some(1))
    );
    let audit = app.audit(&plan).await;
    let last = audit.last().unwrap();
    assert_eq!(last["action"], "seat_held");
    assert_eq!(last["actor"], app.purchases_actor().await.as_str());
    app.assert_invariants(&plan).await;
}

on_every_store!(a_retry_with_the_same_key_answers_the_same_session_and_holds_nothing_more);
async fn a_retry_with_the_same_key_answers_the_same_session_and_holds_nothing_more(app: TestApp) {
    let plan = app.create_plan(3).await;
    let first = app.opened(&plan, "cus_1", "co-1").await;
    let res = app.open_checkout(&plan, "cus_1", "co-1", json!({})).await;
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["idempotent-replayed"], "true");
    assert_eq!(body(res).await, first);
    // The same key with another body is a client bug.
    let other = app.create_plan(3).await;
    let res = app.open_checkout(&other, "cus_1", "co-1", json!({})).await;
    assert_problem(res, 422, "idempotency_key_reused").await;
    let res = app
        .open_checkout(&plan, "cus_1", "co-1", json!({"expires_in": 60}))
        .await;
    assert_problem(res, 422, "idempotency_key_reused").await;
    assert_eq!(app.stats(&plan).await["held"], 1);
    assert_eq!(app.stats(&other).await["held"], 0);
    app.assert_invariants(&plan).await;
}

on_every_store!(refusals_name_the_reason_and_change_nothing);
async fn refusals_name_the_reason_and_change_nothing(app: TestApp) {
    let plan = app.create_plan(1).await;
    let first = app.opened(&plan, "cus_1", "k1").await;
    let before = (app.plan(&plan).await, app.audit(&plan).await);
    let res = app.open_checkout(&plan, "cus_1", "k2", json!({})).await;
    let p = assert_problem(res, 409, "checkout_session_open").await;
    assert!(p["detail"]
        .as_str()
        .unwrap()
        .contains(first["id"].as_str().unwrap()));
    let res = app.open_checkout(&plan, "cus_2", "k1", json!({})).await;
    assert_problem(res, 409, "plan_sold_out").await;
    let unknown = "0190f5c2-8a4b-7c3d-9e1f-000000000000";
    let res = app.open_checkout(unknown, "cus_2", "k2", json!({})).await;
    assert_problem(res, 404, "plan_not_found").await;
    assert_eq!((app.plan(&plan).await, app.audit(&plan).await), before);
    let archived = app.create_plan(5).await;
    app.admin_patch(
        &format!("/api/plans/{archived}"),
        &json!({"status": "archived"}),
    )
    .await;
    let res = app.open_checkout(&archived, "cus_2", "k3", json!({})).await;
    assert_problem(res, 409, "plan_inactive").await;
    assert_eq!(app.stats(&archived).await["held"], 0);
    // Refusals are not stored: the key works once there is a seat.
    app.expire(first["id"].as_str().unwrap()).await;
    assert_eq!(
        app.open_checkout(&plan, "cus_2", "k1", json!({}))
            .await
            .status(),
        201
    );
    app.assert_invariants(&plan).await;
}

on_every_store!(expiring_gives_the_seat_back_at_once_and_twice_is_a_conflict);
async fn expiring_gives_the_seat_back_at_once_and_twice_is_a_conflict(app: TestApp) {
    let plan = app.create_plan(1).await;
    let s = app.opened(&plan, "cus_1", "k1").await;
    let id = s["id"].as_str().unwrap();
    let res = app.expire(id).await;
    assert_eq!(res.status(), 200);
    let expired = body(res).await;
    assert_eq!(
        (expired["status"].as_str(), expired["expiry"].as_str()),
        (Some("expired"), Some("request"))
    );
    assert!(expired["ended_at"].is_string());
    assert_eq!(app.stats(&plan).await["seats_left"], 1);
    assert_eq!(
        app.audit(&plan).await.last().unwrap()["action"],
        "hold_expired"
    );
    assert_problem(app.expire(id).await, 409, "checkout_session_not_open").await;
    assert_problem(
        app.confirm(id, "pm_card_visa").await,
        409,
        "checkout_session_not_open",
    )
    .await;
    // The intent was cancelled at the provider: it can never charge.
    let pi = s["payment"]["payment_intent"].as_str().unwrap();
    assert!(app
        .gateway
        .succeeded_charges()
        .iter()
        .all(|c| c.payment_id != pi));
    assert_eq!(app.opened(&plan, "cus_2", "k1").await["status"], "open");
    app.assert_invariants(&plan).await;
}

on_every_store!(the_worker_expires_an_unpaid_session_when_its_time_is_up);
async fn the_worker_expires_an_unpaid_session_when_its_time_is_up(app: TestApp) {
    let plan = app.create_plan(2).await;
    let res = app
        .open_checkout(&plan, "cus_1", "k1", json!({"expires_in": 1}))
        .await;
    let s = body(res).await;
    let id = s["id"].as_str().unwrap();
    assert_eq!(app.stats(&plan).await["held"], 1);
    let expired = app.session_becomes(id, "expired").await;
    assert_eq!(expired["expiry"], "timeout");
    let stats = app.stats(&plan).await;
    assert_eq!(
        (stats["seats_left"].as_i64(), stats["held"].as_i64()),
        (Some(2), Some(0))
    );
    let last = app.audit(&plan).await.last().unwrap().clone();
    assert_eq!(
        (last["action"].as_str(), last["actor"].as_str()),
        (Some("hold_expired"), Some("checkout-worker"))
    );
    app.assert_invariants(&plan).await;
}

#[tokio::test]
async fn another_customers_session_and_unknown_ids_answer_404_and_change_nothing() {
    let app = crate::helpers::spawn_memory_app().await;
    let plan = app.create_plan(2).await;
    let s = app.opened(&plan, "cus_1", "k1").await;
    let id = s["id"].as_str().unwrap();
    let session = crate::access::session(&app, &app.purchases_key, "cus_2").await;
    for res in [
        app.anonymous
            .get(app.url(&format!("/api/checkout_sessions/{id}")))
            .bearer_auth(&session)
            .send()
            .await
            .unwrap(),
        app.anonymous
            .post(app.url(&format!("/api/checkout_sessions/{id}/expire")))
            .bearer_auth(&session)
            .send()
            .await
            .unwrap(),
        app.anonymous
            .post(app.url(&format!("/api/checkout_sessions/{id}/confirm")))
            .bearer_auth(&session)
            .json(&json!({"payment_method": "pm_card_visa"}))
            .send()
            .await
            .unwrap(),
    ] {
        assert_problem(res, 404, "checkout_session_not_found").await;
    }
    assert_eq!(app.session(id).await, s);
    for bad in [
        "nope",
        "0193b0c1-2d3e-7f40-8a5b-000000000000",
        "0193B0C1-2D3E-7F40-8A5B-000000000000",
    ] {
        let res = app.get(&format!("/api/checkout_sessions/{bad}")).await;
        assert_problem(res, 404, "checkout_session_not_found").await;
    }
    // A customer session may open only for its own customer.
    let res = app
        .anonymous
        .post(app.url("/api/checkout_sessions"))
        .bearer_auth(&session)
        .header("Idempotency-Key", "k9")
        .json(&json!({"plan_id": plan, "customer_id": "cus_1"}))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "forbidden").await;
    assert_eq!(app.stats(&plan).await["held"], 1);
}

#[tokio::test]
async fn bad_bodies_and_keys_answer_400_naming_the_field_and_hold_nothing() {
    let app = crate::helpers::spawn_memory_app().await;
    let plan = app.create_plan(2).await;
    let post = |key: Option<&'static str>, b: serde_json::Value| {
        let mut req = app.client.post(app.url("/api/checkout_sessions")).json(&b);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        req.send()
    };
    let res = post(None, json!({"plan_id": plan, "customer_id": "c"}))
        .await
        .unwrap();
    assert_problem(res, 400, "idempotency_key_missing").await;
    for (b, field) in [
        (json!({"plan_id": "x", "customer_id": "c"}), "plan_id"),
        (
            json!({"plan_id": plan, "customer_id": "bad id"}),
            "customer_id",
        ),
        (
            json!({"plan_id": plan, "customer_id": "c", "expires_in": 0}),
            "expires_in",
        ),
        (
            json!({"plan_id": plan, "customer_id": "c", "expires_in": 86_401}),
            "expires_in",
        ),
        (
            json!({"plan_id": plan, "customer_id": "c", "expires_in": 1.5}),
            "expires_in",
        ),
        (
            json!({"plan_id": plan, "customer_id": "c", "expires_in": null}),
            "expires_in",
        ),
        (
            json!({"plan_id": plan, "customer_id": "c", "extra": 1}),
            "extra",
        ),
        (json!({"customer_id": "c"}), "plan_id"),
    ] {
        let p = assert_problem(
            post(Some("k"), b.clone()).await.unwrap(),
            400,
            "invalid_request",
        )
        .await;
        assert!(p.to_string().contains(field), "{b}: {p}");
    }
    let s = app.opened(&plan, "cus_1", "k1").await;
    let id = s["id"].as_str().unwrap();
    for (b, field) in [
        (json!({"payment_method": "visa"}), "payment_method"),
        (json!({}), "payment_method"),
        (json!({"payment_method": "pm_card_visa", "x": 1}), "x"),
    ] {
        let res = app
            .client
            .post(app.url(&format!("/api/checkout_sessions/{id}/confirm")))
            .json(&b)
            .send()
            .await
            .unwrap();
        let p = assert_problem(res, 400, "invalid_request").await;
        assert!(p.to_string().contains(field), "{b}: {p}");
    }
    assert_eq!(app.stats(&plan).await["held"], 1);
    assert_eq!(app.session(id).await, s);
}
