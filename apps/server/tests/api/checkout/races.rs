//! Checkouts racing over HTTP, on every store: many customers for the last seats, and a
//! confirmation, an expiry and webhooks of one session at once; the invariants hold after
//! each (audit replay included).

use std::sync::Arc;

use serde_json::json;
use tokio::sync::Barrier;

use super::succeeded;
use crate::helpers::{body, TestApp};

on_every_store!(forty_customers_opening_sessions_for_eight_seats_hold_exactly_eight);
async fn forty_customers_opening_sessions_for_eight_seats_hold_exactly_eight(app: TestApp) {
    let app = Arc::new(app);
    let plan = app.create_plan(8).await;
    let barrier = Arc::new(Barrier::new(40));
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (app, plan, barrier) = (app.clone(), plan.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                app.open_checkout(&plan, &format!("cus_{i}"), "k", json!({}))
                    .await
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.unwrap());
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        8,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        32,
        "{statuses:?}"
    );
    let stats = app.stats(&plan).await;
    assert_eq!(
        (stats["seats_left"].as_i64(), stats["held"].as_i64()),
        (Some(0), Some(8))
    );
    app.assert_invariants(&plan).await;
}

on_every_store!(a_confirmation_an_expiry_and_webhooks_of_one_session_at_once_settle_it_once);
async fn a_confirmation_an_expiry_and_webhooks_of_one_session_at_once_settle_it_once(app: TestApp) {
    let app = Arc::new(app);
    for round in 0..4 {
        let plan = app.create_plan(1).await;
        let s = app.opened(&plan, "cus_1", &format!("k{round}")).await;
        let id = s["id"].as_str().unwrap().to_owned();
        let barrier = Arc::new(Barrier::new(5));
        let mut tasks = Vec::new();
        for n in 0..5 {
            let (app, s, id, barrier) = (app.clone(), s.clone(), id.clone(), barrier.clone());
            tasks.push(tokio::spawn(async move {
                barrier.wait().await;
                match n {
                    0 => app.confirm(&id, "pm_card_visa").await.status().as_u16(),
                    1 => app.expire(&id).await.status().as_u16(),
                    _ => app
                        .webhook(&succeeded(&format!("evt_{round}_{}", n % 3), &s))
                        .await
                        .status()
                        .as_u16(),
                }
            }));
        }
        for t in tasks {
            let status = t.await.unwrap();
            assert!([200, 409].contains(&status), "round {round}: {status}");
        }
        // Whoever came first, the payment is the customer's seat: complete, once.
        let done = app.session_becomes(&id, "complete").await;
        let sub = body(
            app.get(&format!(
                "/api/subscriptions/{}",
                done["subscription_id"].as_str().unwrap()
            ))
            .await,
        )
        .await;
        assert_eq!(sub["status"], "active");
        let stats = app.stats(&plan).await;
        assert_eq!(
            (stats["active"].as_i64(), stats["held"].as_i64()),
            (Some(1), Some(0)),
            "round {round}"
        );
        let completions = app
            .audit(&plan)
            .await
            .iter()
            .filter(|e| e["action"] == "checkout_completed")
            .count();
        assert_eq!(completions, 1, "round {round}");
        app.assert_invariants(&plan).await;
    }
}
