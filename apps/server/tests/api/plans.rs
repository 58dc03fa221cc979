//! Plans over HTTP: create, read, list, update, archive, and the validation of each, on
//! every store.

use serde_json::{json, Value};

use crate::helpers::{assert_problem, body, TestApp};

fn valid_plan() -> Value {
    json!({"name": "Team", "capacity": 25, "unit_amount": 4900, "currency": "eur", "interval": "year"})
}

async fn plan_count(app: &TestApp) -> usize {
    body(app.get("/api/plans?limit=100").await).await["data"]
        .as_array()
        .unwrap()
        .len()
}

on_every_store!(creating_a_plan_returns_201_with_every_field_and_a_location);
async fn creating_a_plan_returns_201_with_every_field_and_a_location(app: TestApp) {
    let res = app.admin_post("/api/plans", &valid_plan()).await;
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let plan = body(res).await;
    assert_eq!(
        location,
        format!("/api/plans/{}", plan["id"].as_str().unwrap())
    );
    assert_eq!(plan["name"], "Team");
    assert_eq!(plan["capacity"], 25);
    assert_eq!(plan["seats_left"], 25);
    assert_eq!(plan["unit_amount"], 4900);
    assert_eq!(plan["currency"], "eur");
    assert_eq!(plan["interval"], "year");
    assert_eq!(plan["status"], "active");
    assert!(plan["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(app.get(&location).await.status(), 200);
    assert_eq!(app.plan(plan["id"].as_str().unwrap()).await, plan);
}

on_every_store!(a_unicode_plan_name_is_accepted_and_trimmed);
async fn a_unicode_plan_name_is_accepted_and_trimmed(app: TestApp) {
    let mut p = valid_plan();
    p["name"] = json!("  Équipe 東京 🚀 ");
    let res = app.admin_post("/api/plans", &p).await;
    assert_eq!(res.status(), 201);
    assert_eq!(body(res).await["name"], "Équipe 東京 🚀");
}

on_every_store!(invalid_plans_are_400_problems_naming_the_field_and_store_nothing);
async fn invalid_plans_are_400_problems_naming_the_field_and_store_nothing(app: TestApp) {
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"capacity": 1, "unit_amount": 1, "currency": "usd", "interval": "month"}),
            "name",
        ),
        (
            json!({"name": "", "capacity": 1, "unit_amount": 1, "currency": "usd", "interval": "month"}),
            "name",
        ),
        (
            json!({"name": "   ", "capacity": 1, "unit_amount": 1, "currency": "usd", "interval": "month"}),
            "name",
        ),
        (
            json!({"name": "x".repeat(101), "capacity": 1, "unit_amount": 1, "currency": "usd", "interval": "month"}),
            "name",
        ),
        (
            json!({"name": 42, "capacity": 1, "unit_amount": 1, "currency": "usd", "interval": "month"}),
            "name",
        ),
        (
            json!({"name": "A", "capacity": 0, "unit_amount": 1, "currency": "usd", "interval": "month"}),
            "capacity",
        ),
        (
            json!({"name": "A", "capacity": -3, "unit_amount": 1, "currency": "usd", "interval": "month"}),
            "capacity",
        ),
        (
            json!({"name": "A", "capacity": 1_000_001, "unit_amount": 1, "currency": "usd", "interval": "month"}),
            "capacity",
        ),
        (
            json!({"name": "A", "capacity": 1e30, "unit_amount": 1, "currency": "usd", "interval": "month"}),
            "capacity",
        ),
        (
            json!({"name": "A", "capacity": "10", "unit_amount": 1, "currency": "usd", "interval": "month"}),
            "capacity",
        ),
        (
            json!({"name": "A", "capacity": 2.5, "unit_amount": 1, "currency": "usd", "interval": "month"}),
            "capacity",
        ),
        (
            json!({"name": "A", "capacity": 1, "unit_amount": -1, "currency": "usd", "interval": "month"}),
            "unit_amount",
        ),
        (
            json!({"name": "A", "capacity": 1, "unit_amount": 100_000_000, "currency": "usd", "interval": "month"}),
            "unit_amount",
        ),
        (
            json!({"name": "A", "capacity": 1, "unit_amount": 1, "currency": "USD", "interval": "month"}),
            "currency",
        ),
        (
            json!({"name": "A", "capacity": 1, "unit_amount": 1, "currency": "xyz", "interval": "month"}),
            "currency",
        ),
        (
            json!({"name": "A", "capacity": 1, "unit_amount": 1, "currency": "usd", "interval": "week"}),
            "interval",
        ),
        (
            json!({"name": "A", "capacity": 1, "unit_amount": 1, "currency": "usd", "interval": "month", "seats_left": 5}),
            "seats_left",
        ),
        (json!(["not", "an", "object"]), "body"),
    ];
    for (payload, field) in cases {
        let res = app.admin_post("/api/plans", &payload).await;
        let problem = assert_problem(res, 400, "invalid_request").await;
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors for {payload}: {problem}"))
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(
            fields.contains(&field),
            "{payload}: expected {field} in {problem}"
        );
    }
    assert_eq!(plan_count(&app).await, 0);
}

// Found by schemathesis: JSON Schema counts `25.0` as an integer, and the server
// answered 400 to it.
on_every_store!(integers_written_with_a_zero_fraction_are_taken_as_the_integers_they_are);
async fn integers_written_with_a_zero_fraction_are_taken_as_the_integers_they_are(app: TestApp) {
    let mut p = valid_plan();
    p["capacity"] = json!(25.0);
    p["unit_amount"] = json!(4900.0);
    let res = app.admin_post("/api/plans", &p).await;
    assert_eq!(res.status(), 201);
    let plan = body(res).await;
    assert_eq!(
        (plan["capacity"].as_i64(), plan["unit_amount"].as_i64()),
        (Some(25), Some(4900))
    );
    let id = plan["id"].as_str().unwrap();
    let res = app
        .admin_patch(&format!("/api/plans/{id}"), &json!({"capacity": 30.0}))
        .await;
    assert_eq!(res.status(), 200);
    assert_eq!(body(res).await["capacity"], 30);
    for capacity in [json!(30.5), json!(1e30), json!(-0.5)] {
        let res = app
            .admin_patch(
                &format!("/api/plans/{id}"),
                &json!({ "capacity": capacity }),
            )
            .await;
        let problem = assert_problem(res, 400, "invalid_request").await;
        assert_eq!(
            problem["errors"][0]["field"], "capacity",
            "{capacity}: {problem}"
        );
    }
}

on_every_store!(every_invalid_field_is_named_at_once);
async fn every_invalid_field_is_named_at_once(app: TestApp) {
    let res = app
        .admin_post(
            "/api/plans",
            &json!({"name": "", "capacity": 0, "unit_amount": -5, "currency": "US", "interval": "day"}),
        )
        .await;
    let problem = assert_problem(res, 400, "invalid_request").await;
    assert_eq!(problem["errors"].as_array().unwrap().len(), 5, "{problem}");
}

on_every_store!(malformed_json_wrong_content_type_and_oversized_bodies_are_rejected_cleanly);
async fn malformed_json_wrong_content_type_and_oversized_bodies_are_rejected_cleanly(app: TestApp) {
    let post = |body: Vec<u8>, content_type: &str| {
        app.client
            .post(app.url("/api/plans"))
            .bearer_auth(crate::helpers::ADMIN_TOKEN)
            .header("content-type", content_type)
            .body(body)
    };
    let res = post(b"{\"name\": ".to_vec(), "application/json")
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "invalid_request").await;
    let res = post(b"".to_vec(), "application/json").send().await.unwrap();
    assert_problem(res, 400, "invalid_request").await;
    let res = post(b"\xff\xfe".to_vec(), "application/json")
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "invalid_request").await;
    let res = post(valid_plan().to_string().into_bytes(), "text/plain")
        .send()
        .await
        .unwrap();
    assert_problem(res, 415, "unsupported_media_type").await;
    let huge = json!({"name": "x".repeat(100_000), "capacity": 1, "unit_amount": 1, "currency": "usd", "interval": "month"});
    let res = post(huge.to_string().into_bytes(), "application/json")
        .send()
        .await
        .unwrap();
    assert_problem(res, 413, "payload_too_large").await;
    let res = post(
        valid_plan().to_string().into_bytes(),
        "application/json; charset=utf-8",
    )
    .send()
    .await
    .unwrap();
    assert_eq!(res.status(), 201, "a charset parameter is fine");
    assert_eq!(plan_count(&app).await, 1);
}

on_every_store!(plans_are_listed_in_pages_that_follow_the_cursor);
async fn plans_are_listed_in_pages_that_follow_the_cursor(app: TestApp) {
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(app.create_plan(1).await);
    }
    let mut seen = Vec::new();
    let mut path = "/api/plans?limit=2".to_owned();
    loop {
        let page = body(app.get(&path).await).await;
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|p| p["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/plans?limit=2&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen, ids);
}

on_every_store!(bad_list_parameters_are_400_problems_naming_the_parameter);
async fn bad_list_parameters_are_400_problems_naming_the_parameter(app: TestApp) {
    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("cursor=not-a-cursor", "cursor"),
    ] {
        let problem = assert_problem(
            app.get(&format!("/api/plans?{query}")).await,
            400,
            "invalid_request",
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{query}: {problem}");
    }
    assert_eq!(app.get("/api/plans?limit=100").await.status(), 200);
    assert_eq!(app.get("/api/plans?limit=1").await.status(), 200);
}

// Found by schemathesis: the document says the audit cursor is a non-negative int64;
// the server took any u64.
on_every_store!(an_audit_cursor_that_is_not_a_non_negative_int64_is_400_naming_cursor);
async fn an_audit_cursor_that_is_not_a_non_negative_int64_is_400_naming_cursor(app: TestApp) {
    let id = app.create_plan(5).await;
    for cursor in [
        "",
        "-1",
        "abc",
        "1.5",
        "9223372036854775808",
        "18446744073709551615",
    ] {
        let problem = assert_problem(
            app.admin_get(&format!("/api/plans/{id}/audit?cursor={cursor}"))
                .await,
            400,
            "invalid_request",
        )
        .await;
        assert_eq!(
            problem["errors"][0]["field"], "cursor",
            "{cursor:?}: {problem}"
        );
    }
    for cursor in ["0", "1", "9223372036854775807"] {
        let res = app
            .admin_get(&format!("/api/plans/{id}/audit?cursor={cursor}"))
            .await;
        assert_eq!(res.status(), 200, "{cursor}");
    }
}

on_every_store!(an_unknown_or_malformed_plan_id_is_404_plan_not_found);
async fn an_unknown_or_malformed_plan_id_is_404_plan_not_found(app: TestApp) {
    for id in [
        uuid::Uuid::now_v7().to_string(),
        "not-a-uuid".into(),
        "%F0%9F%9A%80".into(),
        uuid::Uuid::now_v7().simple().to_string(),
    ] {
        assert_problem(
            app.get(&format!("/api/plans/{id}")).await,
            404,
            "plan_not_found",
        )
        .await;
        assert_problem(
            app.get(&format!("/api/plans/{id}/stats")).await,
            404,
            "plan_not_found",
        )
        .await;
        assert_problem(
            app.admin_get(&format!("/api/plans/{id}/audit")).await,
            404,
            "plan_not_found",
        )
        .await;
        assert_problem(
            app.admin_patch(&format!("/api/plans/{id}"), &json!({"capacity": 3}))
                .await,
            404,
            "plan_not_found",
        )
        .await;
    }
}

on_every_store!(patching_a_plan_changes_name_capacity_and_status_and_audits_each);
async fn patching_a_plan_changes_name_capacity_and_status_and_audits_each(app: TestApp) {
    let id = app.create_plan(10).await;
    let res = app
        .admin_patch(
            &format!("/api/plans/{id}"),
            &json!({"name": "Pro", "capacity": 12}),
        )
        .await;
    assert_eq!(res.status(), 200);
    let plan = body(res).await;
    assert_eq!(
        (
            plan["name"].as_str(),
            plan["capacity"].as_i64(),
            plan["seats_left"].as_i64()
        ),
        (Some("Pro"), Some(12), Some(12))
    );
    let res = app
        .admin_patch(&format!("/api/plans/{id}"), &json!({"status": "archived"}))
        .await;
    assert_eq!(body(res).await["status"], "archived");
    let actions: Vec<String> = app
        .audit(&id)
        .await
        .iter()
        .map(|e| e["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        [
            "plan_created",
            "plan_updated",
            "capacity_changed",
            "plan_archived"
        ]
    );
    app.assert_invariants(&id).await;
}

on_every_store!(invalid_patches_are_400_and_change_nothing);
async fn invalid_patches_are_400_and_change_nothing(app: TestApp) {
    let id = app.create_plan(10).await;
    for (payload, field) in [
        (json!({}), "body"),
        (json!({"capacity": 0}), "capacity"),
        (json!({"status": "deleted"}), "status"),
        (json!({"name": ""}), "name"),
        (json!({"seats_left": 3}), "seats_left"),
        (json!({"capacity": "many"}), "capacity"),
        (json!({"name": null, "capacity": 5}), "name"),
        (json!({"status": null}), "status"),
    ] {
        let res = app.admin_patch(&format!("/api/plans/{id}"), &payload).await;
        let problem = assert_problem(res, 400, "invalid_request").await;
        assert_eq!(problem["errors"][0]["field"], field, "{payload}: {problem}");
    }
    let plan = app.plan(&id).await;
    assert_eq!(
        (plan["capacity"].as_i64(), plan["status"].as_str()),
        (Some(10), Some("active"))
    );
    assert_eq!(app.audit(&id).await.len(), 1);
}

on_every_store!(capacity_may_not_drop_below_the_seats_held);
async fn capacity_may_not_drop_below_the_seats_held(app: TestApp) {
    let id = app.create_plan(5).await;
    for i in 0..3 {
        assert_eq!(
            app.purchase(&id, &format!("cus_{i}"), "k", "pm_card_visa")
                .await
                .status(),
            201
        );
    }
    let res = app
        .admin_patch(&format!("/api/plans/{id}"), &json!({"capacity": 2}))
        .await;
    let problem = assert_problem(res, 409, "capacity_below_held").await;
    assert!(problem["detail"].as_str().unwrap().contains('3'));
    assert_eq!(app.plan(&id).await["capacity"], 5);
    let res = app
        .admin_patch(&format!("/api/plans/{id}"), &json!({"capacity": 3}))
        .await;
    assert_eq!(body(res).await["seats_left"], 0);
    app.assert_invariants(&id).await;
}

on_every_store!(stats_count_subscriptions_by_status);
async fn stats_count_subscriptions_by_status(app: TestApp) {
    let id = app.create_plan(3).await;
    app.purchase(&id, "cus_1", "k", "pm_card_visa").await;
    app.purchase(&id, "cus_2", "k", "pm_card_chargeDeclined")
        .await;
    let sub = body(app.purchase(&id, "cus_3", "k", "pm_card_visa").await).await;
    app.client
        .post(app.url(&format!(
            "/api/subscriptions/{}/cancel",
            sub["id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    app.purchase(&id, "cus_4", "k", "pm_card_timeout").await;
    let stats = app.stats(&id).await;
    assert_eq!(
        stats,
        json!({"plan_id": id, "capacity": 3, "seats_left": 1, "held": 0, "incomplete": 1,
               "active": 1, "canceled": 1, "incomplete_expired": 1, "sold_out": false})
    );
    // An open checkout session holds a seat of its own.
    let res = app.open_checkout(&id, "cus_5", "k", json!({})).await;
    assert_eq!(res.status(), 201);
    let stats = app.stats(&id).await;
    assert_eq!(
        (stats["seats_left"].as_i64(), stats["held"].as_i64()),
        (Some(0), Some(1))
    );
    assert_eq!(stats["sold_out"], true);
    app.assert_invariants(&id).await;
}

on_every_store!(the_audit_log_is_paged_in_the_order_changes_took_effect);
async fn the_audit_log_is_paged_in_the_order_changes_took_effect(app: TestApp) {
    let id = app.create_plan(5).await;
    for i in 0..4 {
        app.purchase(&id, &format!("cus_{i}"), "k", "pm_card_visa")
            .await;
    }
    let first = body(
        app.admin_get(&format!("/api/plans/{id}/audit?limit=3"))
            .await,
    )
    .await;
    let data = first["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[0]["action"], "plan_created");
    assert_eq!(data[0]["actor"], "admin");
    assert_eq!(data[1]["action"], "seat_reserved");
    assert_eq!(data[1]["actor"], app.purchases_actor().await.as_str());
    assert!(data[1]["subscription_id"].is_string());
    assert!(data[1]["trace_id"].is_string());
    assert_eq!(first["next_cursor"], "3");
    let all = app.audit(&id).await;
    assert_eq!(all.len(), 1 + 4 * 2);
    app.assert_invariants(&id).await;
}
