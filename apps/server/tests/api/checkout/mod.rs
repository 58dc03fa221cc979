//! Checkout sessions over HTTP: opening (a held seat, once per key), reading, confirming
//! (cards, declines, 3-D Secure), expiring (by request and by the worker), Stripe
//! webhooks (signatures, deduplication, order), and races for the last seats, each ending
//! with the invariants (`capacity == seats_left + held + incomplete + active`, audit
//! replay).

mod confirm;
mod races;
mod sessions;
mod webhooks;

use reqwest::Response;
use serde_json::{json, Value};

use crate::helpers::{body, TestApp, WEBHOOK_SECRET};

impl TestApp {
    /// `POST /api/checkout_sessions` with `key` and `extra` fields merged into the body.
    pub async fn open_checkout(
        &self,
        plan: &str,
        customer: &str,
        key: &str,
        extra: Value,
    ) -> Response {
        let mut b = json!({"plan_id": plan, "customer_id": customer});
        if let (Some(b), Some(extra)) = (b.as_object_mut(), extra.as_object()) {
            b.extend(extra.clone());
        }
        self.client
            .post(self.url("/api/checkout_sessions"))
            .header("Idempotency-Key", key)
            .json(&b)
            .send()
            .await
            .unwrap()
    }

    /// Opens a session; fails unless it answers 201; returns the session.
    pub async fn opened(&self, plan: &str, customer: &str, key: &str) -> Value {
        let res = self.open_checkout(plan, customer, key, json!({})).await;
        assert_eq!(res.status(), 201, "opening a checkout session");
        body(res).await
    }

    pub async fn confirm(&self, session: &str, pm: &str) -> Response {
        self.client
            .post(self.url(&format!("/api/checkout_sessions/{session}/confirm")))
            .json(&json!({"payment_method": pm}))
            .send()
            .await
            .unwrap()
    }

    pub async fn expire(&self, session: &str) -> Response {
        self.client
            .post(self.url(&format!("/api/checkout_sessions/{session}/expire")))
            .send()
            .await
            .unwrap()
    }

    pub async fn session(&self, session: &str) -> Value {
        let res = self.get(&format!("/api/checkout_sessions/{session}")).await;
        assert_eq!(res.status(), 200, "reading a checkout session");
        body(res).await
    }

    /// Posts `event` to the webhook endpoint, signed with `secret` at unix time `t`.
    pub async fn webhook_signed(&self, event: &Value, secret: &str, t: i64) -> Response {
        let raw = serde_json::to_vec(event).unwrap();
        let signature = seatkeeper_server::webhooks::signature::header_for(secret, t, &raw);
        self.anonymous
            .post(self.url("/api/webhooks/stripe"))
            .header("Content-Type", "application/json")
            .header("Stripe-Signature", signature)
            .body(raw)
            .send()
            .await
            .unwrap()
    }

    /// Posts `event`, correctly signed now.
    pub async fn webhook(&self, event: &Value) -> Response {
        self.webhook_signed(event, WEBHOOK_SECRET, chrono::Utc::now().timestamp())
            .await
    }

    /// Waits (up to 10 s) until the session has `status`, and returns it.
    pub async fn session_becomes(&self, session: &str, status: &str) -> Value {
        for _ in 0..200 {
            let s = self.session(session).await;
            if s["status"] == status {
                return s;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!(
            "session {session} did not become {status}: {}",
            self.session(session).await
        );
    }
}

/// A Stripe event about `session`'s intent.
pub fn intent_event(id: &str, kind: &str, session: &Value, extra: Value) -> Value {
    let mut object = json!({
        "id": session["payment"]["payment_intent"],
        "object": "payment_intent",
        "metadata": {"checkout_session_id": session["id"]},
    });
    if let (Some(o), Some(extra)) = (object.as_object_mut(), extra.as_object()) {
        o.extend(extra.clone());
    }
    json!({"id": id, "object": "event", "type": kind, "data": {"object": object}})
}

/// `payment_intent.succeeded` of `session`'s intent, paid with a visa card.
pub fn succeeded(id: &str, session: &Value) -> Value {
    intent_event(
        id,
        "payment_intent.succeeded",
        session,
        json!({"status": "succeeded", "payment_method": "pm_card_visa"}),
    )
}
