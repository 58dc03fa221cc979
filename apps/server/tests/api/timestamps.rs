//! Every timestamp an answer carries is the one the store keeps: what a create (or a
//! cancel) answers is, to the digit, what every later read returns — by id, in lists,
//! and in replays. A store that keeps less precision than the answer was written with
//! (milliseconds, microseconds) would show here as a differing fraction.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::helpers::{body, TestApp};

/// The timestamp fields of an API object (`…_at`, `current_period_…`), by name.
fn timestamps(object: &Value) -> BTreeMap<String, Value> {
    let fields: BTreeMap<String, Value> = object
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {object}"))
        .iter()
        .filter(|(k, _)| k.ends_with("_at") || k.starts_with("current_period_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert!(!fields.is_empty(), "no timestamps in {object}");
    fields
}

/// The element of a list page whose `id` is `id`.
fn find(page: &Value, id: &str) -> Value {
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|item| item["id"] == id)
        .unwrap_or_else(|| panic!("{id} is not listed in {page}"))
        .clone()
}

on_every_store!(a_plans_timestamps_are_read_back_exactly_as_its_create_answer_gave_them);
async fn a_plans_timestamps_are_read_back_exactly_as_its_create_answer_gave_them(app: TestApp) {
    let res = app
        .admin_post(
            "/api/plans",
            &json!({"name": "Clock", "capacity": 3, "unit_amount": 100, "currency": "usd", "interval": "month"}),
        )
        .await;
    assert_eq!(res.status(), 201);
    let created = body(res).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let expected = timestamps(&created);

    assert_eq!(timestamps(&app.plan(&id).await), expected, "GET by id");
    let listed = body(app.get("/api/plans?limit=100").await).await;
    assert_eq!(timestamps(&find(&listed, &id)), expected, "the list");

    let patched = app
        .admin_patch(&format!("/api/plans/{id}"), &json!({"capacity": 5}))
        .await;
    assert_eq!(patched.status(), 200);
    assert_eq!(
        timestamps(&body(patched).await),
        expected,
        "the PATCH answer"
    );
    assert_eq!(
        timestamps(&app.plan(&id).await),
        expected,
        "GET after PATCH"
    );
}

on_every_store!(a_subscriptions_timestamps_are_read_back_exactly_as_its_answers_gave_them);
async fn a_subscriptions_timestamps_are_read_back_exactly_as_its_answers_gave_them(app: TestApp) {
    let plan = app.create_plan(2).await;
    let res = app.purchase(&plan, "cus_clock", "k1", "pm_card_visa").await;
    assert_eq!(res.status(), 201);
    let created = body(res).await;
    let id = created["id"].as_str().unwrap().to_owned();
    let expected = timestamps(&created);
    for field in ["created_at", "current_period_start", "current_period_end"] {
        assert!(expected[field].is_string(), "{field} missing: {created}");
    }

    let by_id = body(app.get(&format!("/api/subscriptions/{id}")).await).await;
    assert_eq!(timestamps(&by_id), expected, "GET by id");
    let listed = body(app.get("/api/customers/cus_clock/subscriptions").await).await;
    assert_eq!(timestamps(&find(&listed, &id)), expected, "the list");
    let replay = app.purchase(&plan, "cus_clock", "k1", "pm_card_visa").await;
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(timestamps(&body(replay).await), expected, "the replay");

    let res = app
        .client
        .post(app.url(&format!("/api/subscriptions/{id}/cancel")))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let canceled = timestamps(&body(res).await);
    assert!(canceled["canceled_at"].is_string(), "{canceled:?}");
    let mut unchanged = canceled.clone();
    unchanged.insert("canceled_at".into(), Value::Null);
    assert_eq!(unchanged, expected, "cancelling changes only canceled_at");
    let by_id = body(app.get(&format!("/api/subscriptions/{id}")).await).await;
    assert_eq!(timestamps(&by_id), canceled, "GET after cancel");
    let listed = body(app.get("/api/customers/cus_clock/subscriptions").await).await;
    assert_eq!(
        timestamps(&find(&listed, &id)),
        canceled,
        "the list after cancel"
    );
}
