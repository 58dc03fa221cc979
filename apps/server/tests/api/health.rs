//! Liveness and readiness. Readiness following the store down and back up uses the
//! in-memory store's off switch, so that test runs on it only.

use crate::helpers::{assert_problem, body, spawn_memory_app, TestApp};

on_every_store!(health_answers_ok);
async fn health_answers_ok(app: TestApp) {
    let res = app.get("/health").await;
    assert_eq!(res.status(), 200);
    assert_eq!(body(res).await["status"], "ok");
}

#[tokio::test]
async fn ready_answers_ok_while_the_store_answers_and_503_while_it_does_not() {
    let app = spawn_memory_app().await;
    let res = app.get("/health/ready").await;
    assert_eq!(res.status(), 200);
    let ready = body(res).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["checks"]["store"]["status"], "up");
    assert!(ready["checks"]["store"]["latency_ms"].as_f64().unwrap() >= 0.0);

    app.store_switch().set_unavailable(true);
    let res = app.get("/health/ready").await;
    assert_eq!(res.headers()["retry-after"], "1");
    assert_problem(res, 503, "store_unavailable").await;
    assert_eq!(
        app.get("/health").await.status(),
        200,
        "liveness does not depend on the store"
    );

    app.store_switch().set_unavailable(false);
    assert_eq!(app.get("/health/ready").await.status(), 200);
}
