//! Purchases that really overlap: many tasks released together by a barrier, on a
//! multi-threaded runtime, against a server with several workers. After each, the
//! invariants of purchase-flow.md, audit replay included.

use std::{collections::HashMap, sync::Arc, time::Duration};

use serde_json::json;
use tokio::sync::{Barrier, Semaphore};

use crate::helpers::{body, spawn_app_with, StoreKind, TestApp};

/// Runs `n` purchases released at once; returns the count of each (status, code).
async fn stampede(
    app: &Arc<TestApp>,
    n: usize,
    in_flight: usize,
    request: impl Fn(usize) -> (String, String, String, String),
) -> HashMap<(u16, String), usize> {
    stampede_counting(app, n, in_flight, Arc::new(Semaphore::new(0)), request).await
}

/// [`stampede`], adding a permit to `answered` as each response arrives.
async fn stampede_counting(
    app: &Arc<TestApp>,
    n: usize,
    in_flight: usize,
    answered: Arc<Semaphore>,
    request: impl Fn(usize) -> (String, String, String, String),
) -> HashMap<(u16, String), usize> {
    let barrier = Arc::new(Barrier::new(n));
    let gate = Arc::new(Semaphore::new(in_flight));
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (app, barrier, gate) = (app.clone(), barrier.clone(), gate.clone());
            let answered = answered.clone();
            let (plan, customer, key, pm) = request(i);
            tokio::spawn(async move {
                barrier.wait().await;
                let _permit = gate.acquire().await.unwrap();
                let res = app.purchase(&plan, &customer, &key, &pm).await;
                answered.add_permits(1);
                let status = res.status().as_u16();
                let replayed = res.headers().contains_key("idempotent-replayed");
                let b = body(res).await;
                let code = match (b["code"].as_str(), replayed) {
                    (Some(c), _) => c.to_owned(),
                    (None, true) => "replayed".to_owned(),
                    (None, false) => "created".to_owned(),
                };
                (status, code)
            })
        })
        .collect();
    let mut counts = HashMap::new();
    for t in tasks {
        *counts.entry(t.await.unwrap()).or_insert(0) += 1;
    }
    counts
}

fn count(counts: &HashMap<(u16, String), usize>, status: u16, code: &str) -> usize {
    counts.get(&(status, code.to_owned())).copied().unwrap_or(0)
}

on_every_store!(fifty_simultaneous_purchases_of_a_ten_seat_plan_give_ten_201_and_forty_409(kind));
async fn fifty_simultaneous_purchases_of_a_ten_seat_plan_give_ten_201_and_forty_409(
    kind: StoreKind,
) {
    let Some(app) = spawn_app_with(kind, Duration::from_millis(10), |_| {}).await else {
        return;
    };
    let app = Arc::new(app);
    let plan = app.create_plan(10).await;
    let counts = stampede(&app, 50, 50, |i| {
        (
            plan.clone(),
            format!("cus_{i}"),
            format!("k{i}"),
            "pm_card_visa".into(),
        )
    })
    .await;
    assert_eq!(count(&counts, 201, "created"), 10, "{counts:?}");
    assert_eq!(count(&counts, 409, "plan_sold_out"), 40, "{counts:?}");
    let p = app.plan(&plan).await;
    assert_eq!(p["seats_left"], 0);
    let stats = app.stats(&plan).await;
    assert_eq!(
        (stats["active"].as_u64(), stats["incomplete"].as_u64()),
        (Some(10), Some(0))
    );
    assert_eq!(app.gateway.succeeded_charges().len(), 10);
    app.assert_invariants(&plan).await;
}

on_every_store!(
    two_thousand_purchases_over_four_plans_of_a_hundred_seats_sell_exactly_four_hundred
);
async fn two_thousand_purchases_over_four_plans_of_a_hundred_seats_sell_exactly_four_hundred(
    app: TestApp,
) {
    let app = Arc::new(app);
    let mut plans = Vec::new();
    for _ in 0..4 {
        plans.push(app.create_plan(100).await);
    }
    let counts = stampede(&app, 2000, 256, |i| {
        (
            plans[i % 4].clone(),
            format!("cus_{i}"),
            format!("k{i}"),
            "pm_card_visa".into(),
        )
    })
    .await;
    assert_eq!(count(&counts, 201, "created"), 400, "{counts:?}");
    assert_eq!(count(&counts, 409, "plan_sold_out"), 1600, "{counts:?}");
    assert_eq!(app.gateway.succeeded_charges().len(), 400);
    for plan in &plans {
        assert_eq!(app.plan(plan).await["seats_left"], 0);
        app.assert_invariants(plan).await;
    }
}

on_every_store!(a_hundred_simultaneous_requests_with_one_key_charge_once_and_never_answer_5xx);
async fn a_hundred_simultaneous_requests_with_one_key_charge_once_and_never_answer_5xx(
    app: TestApp,
) {
    let app = Arc::new(app);
    let plan = app.create_plan(10).await;
    // Whichever request wins the key is held inside its charge until the other 99 have
    // their answers: they overlap it for certain, whatever the machine's load.
    app.gateway.hold_charges();
    let answered = Arc::new(Semaphore::new(0));
    let releaser = {
        let (app, answered) = (app.clone(), answered.clone());
        tokio::spawn(async move {
            let all_but_one = answered.acquire_many(99);
            let waited = tokio::time::timeout(Duration::from_secs(60), all_but_one).await;
            app.gateway.release_charges();
            waited.is_ok()
        })
    };
    let counts = stampede_counting(&app, 100, 100, answered, |_| {
        (
            plan.clone(),
            "cus_1".into(),
            "one-key".into(),
            "pm_card_visa".into(),
        )
    })
    .await;
    assert!(
        releaser.await.unwrap(),
        "99 requests were not answered while the first was charging: {counts:?}"
    );
    assert_eq!(count(&counts, 201, "created"), 1, "{counts:?}");
    assert_eq!(
        count(&counts, 409, "idempotency_key_in_use"),
        99,
        "{counts:?}"
    );
    assert_eq!(app.gateway.charge_calls(), 1);
    let replay = app
        .purchase(&plan, "cus_1", "one-key", "pm_card_visa")
        .await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(app.gateway.charge_calls(), 1);
    let subs = body(app.get("/api/customers/cus_1/subscriptions").await).await;
    assert_eq!(subs["data"].as_array().unwrap().len(), 1);
    assert_eq!(app.plan(&plan).await["seats_left"], 9);
    app.assert_invariants(&plan).await;
}

on_every_store!(simultaneous_declines_give_every_seat_back(kind));
async fn simultaneous_declines_give_every_seat_back(kind: StoreKind) {
    let Some(app) = spawn_app_with(kind, Duration::from_millis(10), |_| {}).await else {
        return;
    };
    let app = Arc::new(app);
    let plan = app.create_plan(10).await;
    let counts = stampede(&app, 60, 60, |i| {
        (
            plan.clone(),
            format!("cus_{i}"),
            "k".into(),
            "pm_card_chargeDeclined".into(),
        )
    })
    .await;
    let declined = count(&counts, 402, "payment_declined");
    // While a declined charge is in flight its seat is held, so some buyers see sold out.
    let sold_out = count(&counts, 409, "plan_sold_out");
    assert_eq!(declined + sold_out, 60, "{counts:?}");
    assert!(declined >= 10, "{counts:?}");
    let stats = app.stats(&plan).await;
    assert_eq!(
        stats["incomplete_expired"].as_u64().unwrap() as usize,
        declined
    );
    assert_eq!(
        (stats["active"].as_u64(), stats["incomplete"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(
        app.plan(&plan).await["seats_left"],
        10,
        "every seat came back"
    );
    app.assert_invariants(&plan).await;

    let counts = stampede(&app, 10, 10, |i| {
        (
            plan.clone(),
            format!("buyer_{i}"),
            "k".into(),
            "pm_card_visa".into(),
        )
    })
    .await;
    assert_eq!(count(&counts, 201, "created"), 10, "{counts:?}");
    app.assert_invariants(&plan).await;
}

on_every_store!(purchases_racing_cancellations_and_capacity_changes_over_http_keep_the_invariants);
async fn purchases_racing_cancellations_and_capacity_changes_over_http_keep_the_invariants(
    app: TestApp,
) {
    let app = Arc::new(app);
    let plan = app.create_plan(30).await;
    let mut subs = Vec::new();
    for i in 0..15 {
        let s = body(
            app.purchase(&plan, "cus_seed", &format!("s{i}"), "pm_card_visa")
                .await,
        )
        .await;
        subs.push(s["id"].as_str().unwrap().to_owned());
    }
    let barrier = Arc::new(Barrier::new(80));
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (app, barrier, plan) = (app.clone(), barrier.clone(), plan.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            app.purchase(&plan, &format!("cus_{i}"), "k", "pm_card_visa")
                .await
                .status()
                .as_u16()
        }));
    }
    for id in subs {
        let (app, barrier) = (app.clone(), barrier.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            app.client
                .post(app.url(&format!("/api/subscriptions/{id}/cancel")))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for n in 0..15 {
        let (app, barrier, plan) = (app.clone(), barrier.clone(), plan.clone());
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            app.admin_patch(&format!("/api/plans/{plan}"), &json!({"capacity": 20 + n}))
                .await
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        let status = t.await.unwrap();
        assert!(
            matches!(status, 200 | 201 | 409),
            "unexpected status {status}"
        );
    }
    app.assert_invariants(&plan).await;
}
