//! Reading a Stripe event: `payment_intent.succeeded`, `payment_intent.payment_failed`
//! and `payment_intent.canceled` of an intent made for a checkout session (its
//! `metadata.checkout_session_id`) become a [`PaymentEvent`]; every other event (other
//! types, and the intents of one-call purchases) is acknowledged and ignored.

use std::collections::HashMap;

use seatkeeper_domain::{
    ports::WebhookEvent,
    service::{PaymentEvent, PaymentEventKind},
    CheckoutSessionId, PaymentMethod, Timestamp,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Event {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    data: Data,
}

#[derive(Deserialize)]
struct Data {
    object: serde_json::Value,
}

#[derive(Deserialize)]
struct Intent {
    id: String,
    #[serde(default)]
    metadata: HashMap<String, serde_json::Value>,
    #[serde(default)]
    payment_method: Option<serde_json::Value>,
    #[serde(default)]
    last_payment_error: Option<LastError>,
}

#[derive(Deserialize)]
struct LastError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// What an event is to us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    Payment(PaymentEvent),
    /// Acknowledged, nothing to do; `kind` is the event's type.
    Ignored {
        id: String,
        kind: String,
    },
}

/// Reads a verified event body. `Err` says what is wrong with it (a 400).
pub fn read(body: &[u8], received_at: Timestamp) -> Result<Read, String> {
    let event: Event =
        serde_json::from_slice(body).map_err(|e| format!("the body is not a Stripe event: {e}"))?;
    if event.id.is_empty() || event.id.len() > 255 {
        return Err("the event's id must be 1 to 255 characters".into());
    }
    let ignored = || Read::Ignored {
        id: event.id.clone(),
        kind: event.kind.clone(),
    };
    let payment = matches!(
        event.kind.as_str(),
        "payment_intent.succeeded" | "payment_intent.payment_failed" | "payment_intent.canceled"
    );
    if !payment {
        return Ok(ignored());
    }
    let intent: Intent = serde_json::from_value(event.data.object.clone())
        .map_err(|e| format!("data.object is not a payment intent: {e}"))?;
    let Some(session_id) = intent
        .metadata
        .get("checkout_session_id")
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse::<CheckoutSessionId>().ok())
    else {
        // A one-call purchase's intent, or someone else's: not a checkout's.
        return Ok(ignored());
    };
    let kind = match event.kind.as_str() {
        "payment_intent.succeeded" => {
            let pm = intent
                .payment_method
                .as_ref()
                .and_then(|v| {
                    v.as_str()
                        .or_else(|| v.get("id").and_then(|id| id.as_str()))
                })
                .ok_or("data.object.payment_method is missing from a succeeded intent")?;
            let payment_method =
                PaymentMethod::parse(pm).map_err(|e| format!("data.object.payment_method {e}"))?;
            PaymentEventKind::Succeeded { payment_method }
        }
        "payment_intent.payment_failed" => {
            let reason = match intent.last_payment_error {
                Some(LastError {
                    code: Some(code),
                    message,
                }) => format!("{code}: {}", message.unwrap_or_default()),
                Some(LastError {
                    message: Some(m), ..
                }) => m,
                _ => "the payment failed".to_owned(),
            };
            PaymentEventKind::Failed { reason }
        }
        _ => PaymentEventKind::Canceled,
    };
    Ok(Read::Payment(PaymentEvent {
        event: WebhookEvent {
            id: event.id,
            kind: event.kind,
            received_at,
        },
        session_id,
        intent_id: intent.id,
        kind,
    }))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn body(v: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&v).unwrap()
    }

    fn intent_event(kind: &str, object: serde_json::Value) -> Vec<u8> {
        body(json!({"id": "evt_1", "object": "event", "type": kind, "data": {"object": object}}))
    }

    #[test]
    fn a_succeeded_intent_of_a_checkout_session_is_its_payment() {
        let session = CheckoutSessionId::generate();
        let b = intent_event(
            "payment_intent.succeeded",
            json!({"id": "pi_1", "status": "succeeded", "payment_method": "pm_card_visa",
                   "metadata": {"checkout_session_id": session.to_string()}}),
        );
        let Read::Payment(ev) = read(&b, chrono::Utc::now()).unwrap() else {
            panic!("a payment event")
        };
        assert_eq!((ev.session_id, ev.intent_id.as_str()), (session, "pi_1"));
        assert_eq!(
            ev.kind,
            PaymentEventKind::Succeeded {
                payment_method: PaymentMethod::parse("pm_card_visa").unwrap()
            }
        );
    }

    #[test]
    fn a_failure_carries_the_providers_reason() {
        let session = CheckoutSessionId::generate();
        let b = intent_event(
            "payment_intent.payment_failed",
            json!({"id": "pi_1", "metadata": {"checkout_session_id": session.to_string()},
                   "last_payment_error": {"code": "card_declined", "message": "Your card was declined."}}),
        );
        let Read::Payment(ev) = read(&b, chrono::Utc::now()).unwrap() else {
            panic!("a payment event")
        };
        assert_eq!(
            ev.kind,
            PaymentEventKind::Failed {
                reason: "card_declined: Your card was declined.".into()
            }
        );
    }

    #[test]
    fn other_types_and_intents_of_no_session_are_ignored() {
        for b in [
            intent_event("charge.succeeded", json!({"id": "ch_1"})),
            intent_event(
                "payment_intent.succeeded",
                json!({"id": "pi_1", "metadata": {}}),
            ),
            intent_event(
                "payment_intent.succeeded",
                json!({"id": "pi_1", "metadata": {"checkout_session_id": "not-a-uuid"}}),
            ),
        ] {
            assert!(matches!(
                read(&b, chrono::Utc::now()),
                Ok(Read::Ignored { .. })
            ));
        }
    }

    #[test]
    fn malformed_events_say_what_is_wrong() {
        let session = CheckoutSessionId::generate().to_string();
        for (b, wrong) in [
            (b"not json".to_vec(), "not a Stripe event"),
            (
                body(json!({"type": "x", "data": {"object": {}}})),
                "not a Stripe event",
            ),
            (
                body(json!({"id": "", "type": "x", "data": {"object": {}}})),
                "1 to 255",
            ),
            (
                intent_event("payment_intent.succeeded", json!({"metadata": {}})),
                "not a payment intent",
            ),
            (
                intent_event(
                    "payment_intent.succeeded",
                    json!({"id": "pi_1", "metadata": {"checkout_session_id": session}}),
                ),
                "payment_method is missing",
            ),
        ] {
            let e = read(&b, chrono::Utc::now()).unwrap_err();
            assert!(e.contains(wrong), "{e}");
        }
    }
}
