//! Live availability streams (`GET /api/plans/{id}/events`, `GET /api/plans/events`):
//! the first event, one after every change (a sale, a hold, a cancellation, a capacity
//! change), `Last-Event-ID`, heartbeats, 404 for an unknown plan, and the changes of
//! another instance on the same database.

use std::{pin::Pin, time::Duration};

use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use serde_json::{json, Value};

use crate::helpers::{assert_problem, spawn_app_with, StoreKind, TestApp};

type Events = Pin<Box<dyn Stream<Item = Result<Event, EventStreamError<reqwest::Error>>> + Send>>;

/// How long a change may take to reach a stream: "within a second", with room for a
/// loaded machine.
const SOON: Duration = Duration::from_secs(3);

async fn follow(app: &TestApp, path: &str, last_event_id: Option<&str>) -> Events {
    let mut req = app.anonymous.get(app.url(path));
    if let Some(id) = last_event_id {
        req = req.header("Last-Event-ID", id);
    }
    let res = req.send().await.unwrap();
    assert_eq!(res.status(), 200, "{path}");
    assert_eq!(
        res.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    Box::pin(res.bytes_stream().eventsource())
}

/// The next availability event within [`SOON`], as `(id, data)`.
async fn next(events: &mut Events) -> (String, Value) {
    let event = tokio::time::timeout(SOON, events.next())
        .await
        .expect("no event within the time")
        .expect("the stream ended")
        .expect("a well-formed event");
    assert_eq!(event.event, "availability");
    (event.id, serde_json::from_str(&event.data).unwrap())
}

/// Asserts that no event comes within `wait`.
async fn quiet(events: &mut Events, wait: Duration) {
    if let Ok(event) = tokio::time::timeout(wait, events.next()).await {
        panic!("an event came: {event:?}");
    }
}

/// The fields a buyer sees, without the id and seq.
fn seats(data: &Value) -> Value {
    json!({"status": data["status"], "capacity": data["capacity"],
        "seats_left": data["seats_left"], "held": data["held"], "sold_out": data["sold_out"]})
}

on_every_store!(a_plan_stream_opens_with_the_availability_and_follows_every_change);
async fn a_plan_stream_opens_with_the_availability_and_follows_every_change(app: TestApp) {
    let plan = app.create_plan(2).await;
    let mut events = follow(&app, &format!("/api/plans/{plan}/events"), None).await;
    let (id, first) = next(&mut events).await;
    assert_eq!(first["plan_id"], plan.as_str());
    assert_eq!(id, first["seq"].to_string());
    assert_eq!(
        seats(&first),
        json!({"status": "active", "capacity": 2, "seats_left": 2, "held": 0, "sold_out": false})
    );

    let res = app.purchase(&plan, "cus_1", "k1", "pm_card_visa").await;
    assert_eq!(res.status(), 201);
    let sale = loop {
        let (_, data) = next(&mut events).await;
        if data["seats_left"] == 1 {
            break data;
        }
    };
    assert!(sale["seq"].as_u64() > first["seq"].as_u64());

    let res = app
        .client
        .post(app.url("/api/checkout_sessions"))
        .header("Idempotency-Key", "c1")
        .json(&json!({"plan_id": plan, "customer_id": "cus_2"}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let (_, held) = next(&mut events).await;
    assert_eq!(
        seats(&held),
        json!({"status": "active", "capacity": 2, "seats_left": 0, "held": 1, "sold_out": true})
    );

    let res = app
        .admin_patch(&format!("/api/plans/{plan}"), &json!({"capacity": 5}))
        .await;
    assert_eq!(res.status(), 200);
    let (_, grown) = next(&mut events).await;
    assert_eq!(
        seats(&grown),
        json!({"status": "active", "capacity": 5, "seats_left": 3, "held": 1, "sold_out": false})
    );
    // Ids only grow.
    assert!(grown["seq"].as_u64() > held["seq"].as_u64());
}

on_every_store!(reconnecting_with_the_last_event_id_sends_only_what_changed_since);
async fn reconnecting_with_the_last_event_id_sends_only_what_changed_since(app: TestApp) {
    let plan = app.create_plan(3).await;
    let path = format!("/api/plans/{plan}/events");
    let (id, _) = next(&mut follow(&app, &path, None).await).await;
    // Nothing changed since: no first event.
    let mut events = follow(&app, &path, Some(&id)).await;
    quiet(&mut events, Duration::from_millis(700)).await;
    assert_eq!(
        app.purchase(&plan, "cus_1", "k1", "pm_card_visa")
            .await
            .status(),
        201
    );
    let (_, data) = next(&mut events).await;
    assert_eq!(data["seats_left"], 2);
    // A client that missed changes gets the current availability at once.
    let (_, now) = next(&mut follow(&app, &path, Some(&id)).await).await;
    assert_eq!(now["seats_left"], 2);
}

on_every_store!(the_stream_of_every_plan_lists_the_active_ones_then_follows_any_change);
async fn the_stream_of_every_plan_lists_the_active_ones_then_follows_any_change(app: TestApp) {
    let a = app.create_plan(4).await;
    let b = app.create_plan(4).await;
    let res = app
        .admin_patch(&format!("/api/plans/{b}"), &json!({"status": "archived"}))
        .await;
    assert_eq!(res.status(), 200);
    let mut events = follow(&app, "/api/plans/events", None).await;
    let (id, first) = next(&mut events).await;
    assert_eq!(first["plan_id"], a.as_str(), "only the active plan");
    assert_eq!(id, format!("{a}/{}", first["seq"]));
    let res = app
        .admin_patch(&format!("/api/plans/{a}"), &json!({"status": "archived"}))
        .await;
    assert_eq!(res.status(), 200);
    // b's archiving may still be on its way (it says `archived`: nothing to show).
    let archived = loop {
        let (_, data) = next(&mut events).await;
        if data["plan_id"] == a.as_str() {
            break data;
        }
        assert_eq!(
            (data["plan_id"].as_str(), data["status"].as_str()),
            (Some(b.as_str()), Some("archived"))
        );
    };
    assert_eq!(archived["status"], "archived");
    let c = app.create_plan(1).await;
    let created = loop {
        let (_, data) = next(&mut events).await;
        if data["plan_id"] == c.as_str() {
            break data;
        }
        assert_eq!(
            data["status"], "archived",
            "only the archived plans came before"
        );
    };
    assert_eq!(
        (created["status"].as_str(), created["seats_left"].as_u64()),
        (Some("active"), Some(1))
    );
}

on_every_store!(an_unknown_plan_has_no_stream);
async fn an_unknown_plan_has_no_stream(app: TestApp) {
    for path in [
        "/api/plans/0190f5c2-8a4b-7c3d-9e1f-2a3b4c5d6e7f/events",
        "/api/plans/not-a-uuid/events",
    ] {
        assert_problem(
            app.anonymous.get(app.url(path)).send().await.unwrap(),
            404,
            "plan_not_found",
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_stream_sends_heartbeats() {
    let app = spawn_app_with(StoreKind::Memory, Duration::ZERO, |s| {
        s.live.heartbeat_secs = 1;
    })
    .await
    .unwrap();
    let plan = app.create_plan(1).await;
    let res = app
        .anonymous
        .get(app.url(&format!("/api/plans/{plan}/events")))
        .send()
        .await
        .unwrap();
    let mut bytes = res.bytes_stream();
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_millis(3500);
    // The first event, then a comment line (`:`) while nothing changes.
    while !seen.contains("\n:") && !seen.starts_with(':') {
        let chunk = tokio::time::timeout_at(deadline, bytes.next())
            .await
            .expect("no heartbeat within 3.5 s")
            .expect("the stream ended")
            .unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(seen.contains("event: availability"), "{seen}");
}

/// Two instances on one database: a sale on the second reaches a stream of the first.
async fn a_sale_on_another_instance_reaches_this_ones_streams(app: TestApp) {
    let other = app.second_instance(|_| {}).await;
    let plan = app.create_plan(5).await;
    let mut here = follow(&app, &format!("/api/plans/{plan}/events"), None).await;
    let mut all_here = follow(&app, "/api/plans/events", None).await;
    assert_eq!(next(&mut here).await.1["seats_left"], 5);
    assert_eq!(next(&mut all_here).await.1["seats_left"], 5);
    let res = other.purchase(&plan, "cus_1", "k1", "pm_card_visa").await;
    assert_eq!(res.status(), 201);
    for events in [&mut here, &mut all_here] {
        loop {
            let (_, data) = next(events).await;
            if data["seats_left"] == 4 {
                break;
            }
        }
    }
}

mod a_sale_on_another_instance_reaches_this_ones_streams {
    use crate::helpers::{run, StoreKind};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn on_postgres() {
        run(
            super::a_sale_on_another_instance_reaches_this_ones_streams,
            StoreKind::Postgres,
        )
        .await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn on_mongodb() {
        run(
            super::a_sale_on_another_instance_reaches_this_ones_streams,
            StoreKind::Mongo,
        )
        .await
    }
}
