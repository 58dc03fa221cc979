//! Confirming a checkout session with the server: a card that pays, one that is
//! declined (the session stays open for another), 3-D Secure passed and failed through
//! the simulator's page, a lost answer, and confirming after the session ended.

use serde_json::json;

use crate::helpers::{assert_problem, body, TestApp};

on_every_store!(a_visa_card_completes_the_session_with_an_active_subscription);
async fn a_visa_card_completes_the_session_with_an_active_subscription(app: TestApp) {
    let plan = app.create_plan(2).await;
    let s = app.opened(&plan, "cus_1", "k1").await;
    let id = s["id"].as_str().unwrap();
    let res = app.confirm(id, "pm_card_visa").await;
    assert_eq!(res.status(), 200);
    let c = body(res).await;
    assert_eq!(c["outcome"], "complete");
    assert_eq!(c["session"]["status"], "complete");
    let sub = &c["subscription"];
    assert_eq!(sub["status"], "active");
    assert_eq!(sub["id"], c["session"]["subscription_id"]);
    assert_eq!(sub["payment_id"], s["payment"]["payment_intent"]);
    assert_eq!(sub["customer_id"], "cus_1");
    let read = body(
        app.get(&format!(
            "/api/subscriptions/{}",
            sub["id"].as_str().unwrap()
        ))
        .await,
    )
    .await;
    assert_eq!(&read, sub);
    // Confirming again answers the same completion.
    let again = body(app.confirm(id, "pm_card_visa").await).await;
    assert_eq!(again["subscription"], *sub);
    let stats = app.stats(&plan).await;
    assert_eq!(
        (
            stats["seats_left"].as_i64(),
            stats["held"].as_i64(),
            stats["active"].as_i64()
        ),
        (Some(1), Some(0), Some(1))
    );
    assert_eq!(
        app.audit(&plan).await.last().unwrap()["action"],
        "checkout_completed"
    );
    assert_eq!(app.gateway.succeeded_charges().len(), 1);
    app.assert_invariants(&plan).await;
}

on_every_store!(a_declined_card_answers_402_and_the_session_stays_open_for_another);
async fn a_declined_card_answers_402_and_the_session_stays_open_for_another(app: TestApp) {
    let plan = app.create_plan(1).await;
    let s = app.opened(&plan, "cus_1", "k1").await;
    let id = s["id"].as_str().unwrap();
    let p = assert_problem(
        app.confirm(id, "pm_card_chargeDeclined").await,
        402,
        "payment_declined",
    )
    .await;
    assert!(
        p["detail"].as_str().unwrap().contains("card_declined"),
        "{p}"
    );
    let open = app.session(id).await;
    assert_eq!(open["status"], "open");
    assert!(open["payment_error"]
        .as_str()
        .unwrap()
        .contains("card_declined"));
    assert_eq!(app.stats(&plan).await["held"], 1);
    assert_eq!(
        body(app.confirm(id, "pm_card_visa").await).await["outcome"],
        "complete"
    );
    assert!(app.session(id).await["payment_error"].is_null());
    app.assert_invariants(&plan).await;
}

on_every_store!(three_d_secure_requires_action_then_completes_when_passed);
async fn three_d_secure_requires_action_then_completes_when_passed(app: TestApp) {
    let plan = app.create_plan(2).await;
    let s = app.opened(&plan, "cus_1", "k1").await;
    let id = s["id"].as_str().unwrap();
    let res = app.confirm(id, "pm_card_authenticationRequired").await;
    assert_eq!(res.status(), 200);
    let c = body(res).await;
    assert_eq!(c["outcome"], "requires_action");
    assert_eq!(c["next_action"]["type"], "redirect_to_url");
    assert!(c["subscription"].is_null());
    let url = c["next_action"]["redirect_url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(app.session(id).await["status"], "open");
    // The customer fails the check first: the session stays open with the reason.
    let failed = app
        .anonymous
        .post(app.url(&url))
        .json(&json!({"result": "fail"}))
        .send()
        .await
        .unwrap();
    assert_eq!(body(failed).await["status"], "requires_payment_method");
    let open = app.session(id).await;
    assert_eq!(open["status"], "open");
    assert!(open["payment_error"]
        .as_str()
        .unwrap()
        .contains("authentication"));
    // Then tries again and passes: the simulator tells the server at once.
    assert_eq!(
        body(app.confirm(id, "pm_card_authenticationRequired").await).await["outcome"],
        "requires_action"
    );
    let passed = app
        .anonymous
        .post(app.url(&url))
        .json(&json!({"result": "pass"}))
        .send()
        .await
        .unwrap();
    assert_eq!(body(passed).await["status"], "succeeded");
    let done = app.session(id).await;
    assert_eq!(done["status"], "complete");
    let sub = body(
        app.get(&format!(
            "/api/subscriptions/{}",
            done["subscription_id"].as_str().unwrap()
        ))
        .await,
    )
    .await;
    assert_eq!(
        (sub["status"].as_str(), sub["customer_id"].as_str()),
        (Some("active"), Some("cus_1"))
    );
    let last = app.audit(&plan).await.last().unwrap().clone();
    assert_eq!(
        (last["action"].as_str(), last["actor"].as_str()),
        (Some("checkout_completed"), Some("webhook"))
    );
    app.assert_invariants(&plan).await;
}

#[tokio::test]
async fn a_lost_confirmation_answer_is_503_and_a_retry_completes_without_a_second_charge() {
    let app = crate::helpers::spawn_memory_app().await;
    let plan = app.create_plan(1).await;
    let s = app.opened(&plan, "cus_1", "k1").await;
    let id = s["id"].as_str().unwrap();
    let res = app.confirm(id, "pm_card_timeout").await;
    assert!(res.headers().get("retry-after").is_some());
    assert_problem(res, 503, "payment_unavailable").await;
    assert_eq!(app.session(id).await["status"], "open");
    assert_eq!(
        body(app.confirm(id, "pm_card_timeout").await).await["outcome"],
        "complete"
    );
    assert_eq!(app.gateway.succeeded_charges().len(), 1);
    app.assert_invariants(&plan).await;
}

#[tokio::test]
async fn the_simulators_page_refuses_bad_answers_and_unknown_intents() {
    let app = crate::helpers::spawn_memory_app().await;
    let post =
        |path: String, b: serde_json::Value| app.anonymous.post(app.url(&path)).json(&b).send();
    let res = post(
        "/api/simulated_payments/pi_sim_nope/authenticate".into(),
        json!({"result": "pass"}),
    )
    .await
    .unwrap();
    assert_problem(res, 404, "not_found").await;
    let plan = app.create_plan(1).await;
    let s = app.opened(&plan, "cus_1", "k1").await;
    let pi = s["payment"]["payment_intent"].as_str().unwrap();
    let res = post(
        format!("/api/simulated_payments/{pi}/authenticate"),
        json!({"result": "maybe"}),
    )
    .await
    .unwrap();
    let p = assert_problem(res, 400, "invalid_request").await;
    assert!(p.to_string().contains("result"));
    // An intent that is not waiting for authentication is answered unchanged.
    let res = post(
        format!("/api/simulated_payments/{pi}/authenticate"),
        json!({"result": "pass"}),
    )
    .await
    .unwrap();
    assert_eq!(body(res).await["status"], "requires_payment_method");
    assert_eq!(
        app.session(s["id"].as_str().unwrap()).await["status"],
        "open"
    );
}
