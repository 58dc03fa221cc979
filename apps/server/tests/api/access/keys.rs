//! API keys through the API: shown once, listed by prefix, used, revoked; bad input and
//! credentials that are not valid.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use super::{buy, send};
use crate::helpers::{assert_problem, body, spawn_memory_app, TestApp, ADMIN_TOKEN};

on_every_store!(a_keys_secret_is_shown_once_and_the_list_shows_its_prefix_and_last_use);
async fn a_keys_secret_is_shown_once_and_the_list_shows_its_prefix_and_last_use(app: TestApp) {
    let res = app
        .admin_post(
            "/api/keys",
            &json!({"role": "purchases", "name": "  web shop  "}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let created = body(res).await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/api/keys/{id}"));
    assert!(secret.starts_with("sk_") && secret.len() == 35, "{secret}");
    assert_eq!(created["name"], "web shop");
    assert_eq!(created["role"], "purchases");
    assert_eq!(created["prefix"], &secret[..11]);
    assert!(created["last_used_at"].is_null() && created["revoked_at"].is_null());

    let plan = app.create_plan(2).await;
    assert_eq!(buy(&app, &plan, "cus_1", Some(&secret)).await.status(), 201);
    let listed = body(app.admin_get("/api/keys").await).await;
    let text = listed.to_string();
    assert!(
        !text.contains(&secret[11..]),
        "a listing never shows a secret: {text}"
    );
    let key = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap()
        .clone();
    assert!(key.get("secret").is_none());
    assert_eq!(key["prefix"], &secret[..11]);
    assert_eq!(key["created_at"], created["created_at"]);
    let used = chrono::DateTime::parse_from_rfc3339(key["last_used_at"].as_str().unwrap()).unwrap();
    let made =
        chrono::DateTime::parse_from_rfc3339(created["created_at"].as_str().unwrap()).unwrap();
    assert!(used >= made, "{key}");
    app.assert_invariants(&plan).await;
}

on_every_store!(keys_are_listed_in_creation_order_one_page_at_a_time);
async fn keys_are_listed_in_creation_order_one_page_at_a_time(app: TestApp) {
    for i in 0..4 {
        let res = app
            .admin_post(
                "/api/keys",
                &json!({"role": "admin", "name": format!("k{i}")}),
            )
            .await;
        assert_eq!(res.status(), 201);
    }
    let first = body(app.admin_get("/api/keys?limit=3").await).await;
    let names: Vec<_> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].clone())
        .collect();
    // The app's own purchases key was made first.
    assert_eq!(names, vec![json!("tests"), json!("k0"), json!("k1")]);
    let cursor = first["next_cursor"].as_str().unwrap();
    let rest = body(
        app.admin_get(&format!("/api/keys?limit=3&cursor={cursor}"))
            .await,
    )
    .await;
    let names: Vec<_> = rest["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].clone())
        .collect();
    assert_eq!(names, vec![json!("k2"), json!("k3")]);
    assert!(rest["next_cursor"].is_null());
    let bad = app.admin_get("/api/keys?cursor=nope").await;
    assert_eq!(
        assert_problem(bad, 400, "invalid_request").await["errors"][0]["field"],
        "cursor"
    );
}

on_every_store!(a_revoked_key_is_refused_and_revoking_it_again_keeps_the_first_time);
async fn a_revoked_key_is_refused_and_revoking_it_again_keeps_the_first_time(app: TestApp) {
    let created = body(
        app.admin_post("/api/keys", &json!({"role": "admin", "name": "old"}))
            .await,
    )
    .await;
    let (id, secret) = (
        created["id"].as_str().unwrap(),
        created["secret"].as_str().unwrap(),
    );
    let plans = send(&app, Method::GET, "/api/keys", Some(secret), None).await;
    assert_eq!(plans.status(), 200, "the key works");
    let revoked = send(
        &app,
        Method::DELETE,
        &format!("/api/keys/{id}"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(revoked.status(), 200);
    let revoked = body(revoked).await;
    assert!(revoked["revoked_at"].is_string());
    // Within a second (the lookup cache's lifetime), on this instance and any other.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refused = send(&app, Method::GET, "/api/keys", Some(secret), None).await;
    let problem = assert_problem(refused, 401, "unauthorized").await;
    assert_eq!(
        problem["detail"],
        "the API key is not valid: unknown or revoked"
    );
    let again = send(
        &app,
        Method::DELETE,
        &format!("/api/keys/{id}"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(body(again).await, revoked);
    for unknown in ["0193a1b2-0c3d-7e4f-8a5b-000000000000", "not-a-key"] {
        let res = send(
            &app,
            Method::DELETE,
            &format!("/api/keys/{unknown}"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
        let problem = assert_problem(res, 404, "key_not_found").await;
        assert_eq!(
            problem["detail"],
            format!("there is no API key with id '{unknown}'")
        );
    }
}

#[tokio::test]
async fn making_a_key_with_bad_fields_names_each_one_and_makes_nothing() {
    let app = spawn_memory_app().await;
    for (sent, fields) in [
        (json!({"role": "root", "name": "x"}), vec!["role"]),
        (json!({"role": "admin", "name": "   "}), vec!["name"]),
        (json!({"role": "admin", "name": "a\u{7}b"}), vec!["name"]),
        (
            json!({"role": "nope", "name": "n".repeat(101)}),
            vec!["role", "name"],
        ),
        (json!({"role": "admin"}), vec!["name"]),
        (
            json!({"role": "admin", "name": "x", "secret": "sk_mine"}),
            vec!["secret"],
        ),
    ] {
        let res = app.admin_post("/api/keys", &sent).await;
        let problem = assert_problem(res, 400, "invalid_request").await;
        let named: Vec<_> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(named, fields, "{sent}");
    }
    let keys = body(app.admin_get("/api/keys").await).await;
    assert_eq!(
        keys["data"].as_array().unwrap().len(),
        1,
        "only the app's own key"
    );
}

#[tokio::test]
async fn credentials_that_are_not_valid_answer_401_and_are_never_taken_as_no_credential() {
    let app = spawn_memory_app().await;
    let plan = app.create_plan(3).await;
    let forged = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJpc3MiOiJzZWF0a2VlcGVyIiwiYXVkIjoiY3VzdG9tZXJfc2Vzc2lvbiIsInN1YiI6ImN1c18xIiwiaWF0IjowLCJleHAiOjQxMDI0NDQ4MDB9.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    for header in [
        "Bearer".to_owned(),
        "Basic dXNlcjpwYXNz".to_owned(),
        format!("Bearer sk_{}", "A".repeat(32)),
        "Bearer sk_short".to_owned(),
        format!("Bearer {forged}"),
        "Bearer not-a-credential".to_owned(),
    ] {
        let res = app
            .anonymous
            .post(app.url("/api/subscriptions/purchase"))
            .header("Authorization", &header)
            .header("Idempotency-Key", "k")
            .json(
                &json!({"plan_id": plan, "customer_id": "cus_1", "payment_method": "pm_card_visa"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.headers()["www-authenticate"],
            "Bearer realm=\"seatkeeper\""
        );
        let problem = assert_problem(res, 401, "unauthorized").await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            !detail.contains("sk_A") && !detail.contains(forged),
            "{detail}"
        );
    }
    assert_eq!(app.plan(&plan).await["seats_left"], 3, "nothing was bought");
}
