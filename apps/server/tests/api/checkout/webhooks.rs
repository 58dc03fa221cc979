//! Stripe webhooks: a signed `payment_intent.succeeded` completes the session once;
//! redeliveries, out-of-order and stale events are harmless; forged, stale, malformed and
//! unsigned deliveries answer 400 and change nothing; secrets rotate.

use serde_json::json;

use super::{intent_event, succeeded};
use crate::helpers::{
    assert_problem, body, spawn_app_with, spawn_memory_app, StoreKind, TestApp, WEBHOOK_SECRET,
};

on_every_store!(a_signed_success_completes_the_session_once_however_often_it_is_delivered);
async fn a_signed_success_completes_the_session_once_however_often_it_is_delivered(app: TestApp) {
    let plan = app.create_plan(2).await;
    let s = app.opened(&plan, "cus_1", "k1").await;
    let id = s["id"].as_str().unwrap();
    let event = succeeded("evt_1", &s);
    let res = app.webhook(&event).await;
    assert_eq!(res.status(), 200);
    assert_eq!(
        body(res).await,
        json!({"received": true, "outcome": "handled"})
    );
    let done = app.session(id).await;
    assert_eq!(done["status"], "complete");
    // The same event again, and another event id for the same success: the session is
    // complete, so they change nothing and are answered without claiming their ids.
    assert_eq!(body(app.webhook(&event).await).await["outcome"], "handled");
    assert_eq!(
        body(app.webhook(&succeeded("evt_2", &s)).await).await["outcome"],
        "handled"
    );
    // A failure delivered after the success (out of order) changes nothing.
    let failed = intent_event(
        "evt_3",
        "payment_intent.payment_failed",
        &s,
        json!({"last_payment_error": {"code": "card_declined", "message": "Your card was declined."}}),
    );
    assert_eq!(body(app.webhook(&failed).await).await["outcome"], "handled");
    assert_eq!(app.session(id).await, done);
    let stats = app.stats(&plan).await;
    assert_eq!(
        (stats["active"].as_i64(), stats["held"].as_i64()),
        (Some(1), Some(0))
    );
    let completions = app
        .audit(&plan)
        .await
        .iter()
        .filter(|e| e["action"] == "checkout_completed")
        .count();
    assert_eq!(completions, 1);
    app.assert_invariants(&plan).await;
}

on_every_store!(a_failure_event_keeps_the_session_open_with_its_reason_once);
async fn a_failure_event_keeps_the_session_open_with_its_reason_once(app: TestApp) {
    let plan = app.create_plan(1).await;
    let s = app.opened(&plan, "cus_1", "k1").await;
    let failed = intent_event(
        "evt_f",
        "payment_intent.payment_failed",
        &s,
        json!({"last_payment_error": {"code": "insufficient_funds", "message": "Your card has insufficient funds."}}),
    );
    assert_eq!(body(app.webhook(&failed).await).await["outcome"], "handled");
    // About a session still open, a redelivery is known by its id.
    assert_eq!(
        body(app.webhook(&failed).await).await["outcome"],
        "duplicate"
    );
    let open = app.session(s["id"].as_str().unwrap()).await;
    assert_eq!(open["status"], "open");
    assert_eq!(
        open["payment_error"],
        "insufficient_funds: Your card has insufficient funds."
    );
    app.assert_invariants(&plan).await;
}

on_every_store!(a_payment_after_expiry_is_honoured_while_a_seat_is_free_else_refunded);
async fn a_payment_after_expiry_is_honoured_while_a_seat_is_free_else_refunded(app: TestApp) {
    // Honoured: the seat given back is still free.
    let plan = app.create_plan(1).await;
    let a = app.opened(&plan, "cus_a", "k").await;
    app.expire(a["id"].as_str().unwrap()).await;
    assert_eq!(app.webhook(&succeeded("evt_a", &a)).await.status(), 200);
    assert_eq!(
        app.session(a["id"].as_str().unwrap()).await["status"],
        "complete"
    );
    assert_eq!(app.stats(&plan).await["active"], 1);
    app.assert_invariants(&plan).await;
    // Refunded: the provider could not cancel the intent at expiry, the customer then
    // passed 3-D Secure, and someone else holds the last seat by now. The worker refunds.
    let plan = app.create_plan(1).await;
    let b = app.opened(&plan, "cus_b", "k").await;
    let b_id = b["id"].as_str().unwrap();
    let pending = body(app.confirm(b_id, "pm_card_authenticationRequired").await).await;
    let url = pending["next_action"]["redirect_url"]
        .as_str()
        .unwrap()
        .to_owned();
    app.gateway.fail_cancellations(true);
    assert_eq!(app.expire(b_id).await.status(), 200);
    app.opened(&plan, "cus_c", "k").await;
    let passed = app
        .anonymous
        .post(app.url(&url))
        .json(&json!({"result": "pass"}))
        .send()
        .await
        .unwrap();
    assert_eq!(body(passed).await["status"], "succeeded");
    let mut refunded = false;
    for _ in 0..100 {
        if app
            .audit(&plan)
            .await
            .iter()
            .any(|e| e["action"] == "payment_refunded")
        {
            refunded = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        refunded,
        "the worker refunds the late payment and audits it"
    );
    let pi = b["payment"]["payment_intent"].as_str().unwrap();
    assert!(
        app.gateway
            .succeeded_charges()
            .iter()
            .all(|c| c.payment_id != pi),
        "refunded at the provider"
    );
    app.gateway.fail_cancellations(false);
    let after = app.session(b_id).await;
    assert_eq!(after["status"], "expired");
    let stats = app.stats(&plan).await;
    assert_eq!(
        (stats["held"].as_i64(), stats["active"].as_i64()),
        (Some(1), Some(0))
    );
    app.assert_invariants(&plan).await;
}

#[tokio::test]
async fn forged_stale_malformed_and_unsigned_deliveries_answer_400_and_change_nothing() {
    let app = spawn_memory_app().await;
    let plan = app.create_plan(1).await;
    let s = app.opened(&plan, "cus_1", "k1").await;
    let event = succeeded("evt_1", &s);
    let now = chrono::Utc::now().timestamp();
    for res in [
        app.webhook_signed(&event, "whsec_forged", now).await,
        app.webhook_signed(&event, WEBHOOK_SECRET, now - 301).await,
        app.webhook_signed(&event, WEBHOOK_SECRET, now + 301).await,
    ] {
        assert_problem(res, 400, "webhook_signature_invalid").await;
    }
    for header in [None, Some("garbage"), Some("t=1,v1=zz")] {
        let mut req = app
            .anonymous
            .post(app.url("/api/webhooks/stripe"))
            .header("Content-Type", "application/json")
            .body(serde_json::to_vec(&event).unwrap());
        if let Some(h) = header {
            req = req.header("Stripe-Signature", h);
        }
        assert_problem(req.send().await.unwrap(), 400, "webhook_signature_invalid").await;
    }
    // Signed but not an event.
    let res = app.webhook(&json!({"hello": "world"})).await;
    assert_problem(res, 400, "invalid_request").await;
    let res = app
        .webhook(&intent_event(
            "evt_x",
            "payment_intent.succeeded",
            &s,
            json!({"payment_method": 42}),
        ))
        .await;
    assert_problem(res, 400, "invalid_request").await;
    // Events of no checkout session are acknowledged and ignored.
    let other = json!({"id": "evt_o", "type": "payment_intent.succeeded", "data": {"object": {"id": "pi_x", "metadata": {}}}});
    assert_eq!(body(app.webhook(&other).await).await["outcome"], "ignored");
    let unknown =
        json!({"id": "evt_u", "type": "customer.created", "data": {"object": {"id": "cus_x"}}});
    assert_eq!(
        body(app.webhook(&unknown).await).await["outcome"],
        "ignored"
    );
    assert_eq!(
        app.session(s["id"].as_str().unwrap()).await["status"],
        "open"
    );
    // The refused events were not recorded: the genuine delivery still completes it.
    assert_eq!(body(app.webhook(&event).await).await["outcome"], "handled");
    assert_eq!(
        app.session(s["id"].as_str().unwrap()).await["status"],
        "complete"
    );
}

#[tokio::test]
async fn every_secret_of_a_rotation_is_accepted_and_no_secret_turns_the_endpoint_off() {
    let app = spawn_app_with(StoreKind::Memory, std::time::Duration::ZERO, |s| {
        s.payments.webhook_secrets = vec![
            "whsec_old_000000".to_owned().into(),
            "whsec_new_111111".to_owned().into(),
        ];
    })
    .await
    .unwrap();
    let plan = app.create_plan(2).await;
    let a = app.opened(&plan, "cus_a", "k").await;
    let b = app.opened(&plan, "cus_b", "k").await;
    let now = chrono::Utc::now().timestamp();
    assert_eq!(
        app.webhook_signed(&succeeded("evt_a", &a), "whsec_old_000000", now)
            .await
            .status(),
        200
    );
    assert_eq!(
        app.webhook_signed(&succeeded("evt_b", &b), "whsec_new_111111", now)
            .await
            .status(),
        200
    );
    assert_eq!(app.stats(&plan).await["active"], 2);
    let off = spawn_app_with(StoreKind::Memory, std::time::Duration::ZERO, |s| {
        s.payments.webhook_secrets = Vec::new();
    })
    .await
    .unwrap();
    let res = off.webhook(&succeeded("evt_a", &a)).await;
    assert_problem(res, 404, "not_found").await;
}
