//! The reconciler inside the server, and `GET /api/admin/reconciliation`.

use std::time::Duration;

use crate::helpers::{assert_problem, body, spawn_app_with, StoreKind, TestApp};

on_every_store!(the_reconciliation_report_is_for_admins_only);
async fn the_reconciliation_report_is_for_admins_only(app: TestApp) {
    let res = app
        .anonymous
        .get(app.url("/api/admin/reconciliation"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "unauthorized").await;
    let res = app.get("/api/admin/reconciliation").await;
    assert_problem(res, 403, "forbidden").await;
    let res = app.admin_get("/api/admin/reconciliation").await;
    assert_eq!(res.status(), 200);
    let report = body(res).await;
    assert_eq!(report["in_doubt"]["stale_incomplete"], 0);
    assert_eq!(report["in_doubt"]["pending_verifications"], 0);
    assert_eq!(report["lease_ms"], 60_000);
    assert!(report["runs"].as_array().unwrap().is_empty());
}

on_every_store!(a_purchase_whose_answer_was_lost_is_finished_by_the_reconciler_and_reported(kind));
async fn a_purchase_whose_answer_was_lost_is_finished_by_the_reconciler_and_reported(
    kind: StoreKind,
) {
    let Some(app) = spawn_app_with(kind, Duration::ZERO, |s| {
        s.idempotency.lock_lease_ms = 300;
        s.recovery.lease_ms = 600;
        s.recovery.interval_ms = 100;
    })
    .await
    else {
        return;
    };
    let plan = app.create_plan(2).await;
    let res = app.purchase(&plan, "cus_1", "k1", "pm_card_timeout").await;
    assert_problem(res, 503, "payment_unavailable").await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while app.stats(&plan).await["active"] != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the reconciler never finished the purchase"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let report = body(app.admin_get("/api/admin/reconciliation").await).await;
    let runs = report["runs"].as_array().unwrap();
    assert!(runs.iter().any(|r| r["activated"] == 1), "{report}");
    assert_eq!(report["in_doubt"]["stale_incomplete"], 0);
    let audit = app.audit(&plan).await;
    assert_eq!(audit.last().unwrap()["action"], "purchase_activated");
    assert_eq!(audit.last().unwrap()["actor"], "reconciler");

    let replay = app.purchase(&plan, "cus_1", "k1", "pm_card_timeout").await;
    assert_eq!(replay.status(), 201);
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(app.gateway.succeeded_charges().len(), 1);
    app.assert_invariants(&plan).await;
}
