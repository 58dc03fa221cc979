//! The documents of checkout sessions and webhook events, and their conversions from and
//! to the domain types, with the same conventions as [`crate::documents`]: ids as
//! [`bson::Uuid`] (binary subtype 4), times as [`bson::DateTime`], the amount as `i64`,
//! statuses and causes as the domain's lower-case names. A session reads back through
//! [`CheckoutSession::restore`], so a document whose fields disagree with its status is
//! [`Corrupt`], never a session.
//!
//! `check_at` is left out of the document when the session has nothing left to check
//! (rather than stored as `null`): the `check_at_due` index is partial on `{check_at:
//! {$exists: true}}`, so it holds only the sessions the worker may still have to look at,
//! and the due query `{check_at: {$lte: now}}` implies that filter and uses it.
//!
//! [`bson::Uuid`]: mongodb::bson::Uuid
//! [`bson::DateTime`]: mongodb::bson::DateTime

use mongodb::bson::{DateTime as BsonDateTime, Uuid as BsonUuid};
use seatkeeper_domain::{
    CheckoutSession, CheckoutSessionId, CheckoutStatus, Currency, CustomerId, ExpiryCause,
    Fingerprint, IdempotencyKey, LatePayment, PaymentIntentRef, PlanId, StoredCheckoutSession,
    SubscriptionId, Timestamp, UnitAmount,
};
use serde::{Deserialize, Serialize};

use crate::documents::{date, from_date, from_opt_date, from_uuid, uuid, valid, Corrupt, Result};

/// A session's PaymentIntent: its id and the secret a browser confirms it with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentIntentDoc {
    pub id: String,
    pub client_secret: String,
}

/// A payment that succeeded after its session expired, with no seat to take it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatePaymentDoc {
    pub payment_id: String,
    pub refunded: bool,
}

/// A checkout session: collection `checkout_sessions`, `_id` the session id, unique on
/// `(customer_id, idempotency_key)`. Every field of [`StoredCheckoutSession`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckoutDoc {
    #[serde(rename = "_id")]
    pub id: BsonUuid,
    pub plan_id: BsonUuid,
    pub customer_id: String,
    pub subscription_id: BsonUuid,
    pub idempotency_key: String,
    pub fingerprint: String,
    pub amount: i64,
    pub currency: String,
    pub status: String,
    pub payment_intent: Option<PaymentIntentDoc>,
    pub payment_error: Option<String>,
    pub intent_closed: bool,
    pub late_payment: Option<LatePaymentDoc>,
    pub created_at: BsonDateTime,
    pub expires_at: BsonDateTime,
    pub updated_at: BsonDateTime,
    pub ended_at: Option<BsonDateTime>,
    pub expiry: Option<String>,
    /// Absent (not `null`) when there is nothing left to check: see the module's doc.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub check_at: Option<BsonDateTime>,
}

impl From<&CheckoutSession> for CheckoutDoc {
    fn from(session: &CheckoutSession) -> Self {
        let s = session.stored();
        Self {
            id: uuid(s.id.as_uuid()),
            plan_id: uuid(s.plan_id.as_uuid()),
            customer_id: s.customer_id.as_str().to_owned(),
            subscription_id: uuid(s.subscription_id.as_uuid()),
            idempotency_key: s.idempotency_key.as_str().to_owned(),
            fingerprint: s.fingerprint.as_str().to_owned(),
            amount: s.amount.get(),
            currency: s.currency.as_str().to_owned(),
            status: s.status.as_str().to_owned(),
            payment_intent: s.payment_intent.as_ref().map(|i| PaymentIntentDoc {
                id: i.id.clone(),
                client_secret: i.client_secret.clone(),
            }),
            payment_error: s.payment_error.clone(),
            intent_closed: s.intent_closed,
            late_payment: s.late_payment.as_ref().map(|l| LatePaymentDoc {
                payment_id: l.payment_id.clone(),
                refunded: l.refunded,
            }),
            created_at: date(s.created_at),
            expires_at: date(s.expires_at),
            updated_at: date(s.updated_at),
            ended_at: s.ended_at.map(date),
            expiry: s.expiry.map(|e| e.as_str().to_owned()),
            check_at: s.check_at.map(date),
        }
    }
}

impl TryFrom<CheckoutDoc> for CheckoutSession {
    type Error = Corrupt;
    fn try_from(d: CheckoutDoc) -> Result<Self> {
        let stored = StoredCheckoutSession {
            id: CheckoutSessionId::from_uuid(from_uuid(d.id)),
            plan_id: PlanId::from_uuid(from_uuid(d.plan_id)),
            customer_id: valid("customer_id", CustomerId::parse(&d.customer_id))?,
            subscription_id: SubscriptionId::from_uuid(from_uuid(d.subscription_id)),
            idempotency_key: valid("idempotency_key", IdempotencyKey::parse(&d.idempotency_key))?,
            fingerprint: Fingerprint::from_stored(d.fingerprint),
            amount: valid("amount", UnitAmount::new(d.amount))?,
            currency: valid("currency", Currency::parse(&d.currency))?,
            status: valid("status", CheckoutStatus::parse(&d.status))?,
            payment_intent: d.payment_intent.map(|i| PaymentIntentRef {
                id: i.id,
                client_secret: i.client_secret,
            }),
            payment_error: d.payment_error,
            intent_closed: d.intent_closed,
            late_payment: d.late_payment.map(|l| LatePayment {
                payment_id: l.payment_id,
                refunded: l.refunded,
            }),
            created_at: from_date("created_at", d.created_at)?,
            expires_at: from_date("expires_at", d.expires_at)?,
            updated_at: from_date("updated_at", d.updated_at)?,
            ended_at: from_opt_date("ended_at", d.ended_at)?,
            expiry: d
                .expiry
                .map(|e| valid("expiry", ExpiryCause::parse(&e)))
                .transpose()?,
            check_at: from_opt_date("check_at", d.check_at)?,
        };
        valid("checkout session", CheckoutSession::restore(stored))
    }
}

/// A webhook event seen: collection `webhook_events`, `_id` the provider's event id (so
/// that two records of one id are impossible), `kind` kept for operators, `received_at`
/// for the purge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEventDoc {
    #[serde(rename = "_id")]
    pub id: String,
    pub kind: String,
    pub received_at: BsonDateTime,
}

impl WebhookEventDoc {
    pub fn new(id: &str, kind: &str, received_at: Timestamp) -> Self {
        Self {
            id: id.to_owned(),
            kind: kind.to_owned(),
            received_at: date(received_at),
        }
    }
}

#[cfg(test)]
mod tests {
    //! A session survives the trip domain → document → BSON bytes → document → domain in
    //! every status, with BSON-native ids, dates and amount; documents the domain would
    //! not restore are refused.

    use chrono::Duration;
    use mongodb::bson::{self, spec::BinarySubtype, Bson, Document};
    use seatkeeper_domain::{
        AuditContext, Capacity, ChangeCheckout, CheckoutChange, Interval, NewPlan, OpenCheckout,
        PaymentMethod, Plan, PlanName,
    };
    use serde::de::DeserializeOwned;

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn through_bson<D: Serialize + DeserializeOwned>(d: &D) -> (Document, D) {
        let raw = bson::to_raw_document_buf(d).unwrap();
        (
            raw.to_document().unwrap(),
            bson::from_slice(raw.as_bytes()).unwrap(),
        )
    }

    fn is_uuid(b: Option<&Bson>) -> bool {
        matches!(b, Some(Bson::Binary(bin)) if bin.subtype == BinarySubtype::Uuid && bin.bytes.len() == 16)
    }

    fn plan() -> Plan {
        Plan::create(
            NewPlan {
                name: PlanName::parse("Team").unwrap(),
                capacity: Capacity::new(3).unwrap(),
                unit_amount: UnitAmount::new(4900).unwrap(),
                currency: Currency::parse("eur").unwrap(),
                interval: Interval::Month,
            },
            ts("2026-03-01T10:00:00.123Z"),
        )
    }

    fn opened(plan: &mut Plan) -> CheckoutSession {
        let customer_id = CustomerId::parse("cus_A.b-c:d_1").unwrap();
        let cmd = OpenCheckout {
            session_id: CheckoutSessionId::generate(),
            subscription_id: SubscriptionId::generate(),
            fingerprint: Fingerprint::of_checkout(plan.id(), &customer_id, Some(600)),
            ctx: AuditContext::customer(&customer_id, "req-1"),
            key: IdempotencyKey::parse("order #1 / retry ~ok").unwrap(),
            customer_id,
            plan_id: plan.id(),
            expires_in: Duration::seconds(600),
            max_open: 1,
            now: ts("2026-03-01T10:00:01.001Z"),
        };
        cmd.hold(plan).0
    }

    fn changed(
        session: &CheckoutSession,
        plan: &mut Plan,
        change: CheckoutChange,
    ) -> CheckoutSession {
        let mut s = session.clone();
        let cmd = ChangeCheckout {
            session_id: s.id(),
            change,
            ctx: AuditContext::admin("req-2"),
            now: ts("2026-03-01T10:01:00.5Z"),
            recheck_after: Duration::seconds(60),
        };
        s.apply(&cmd, Some(plan)).unwrap();
        s
    }

    /// Open, open with an intent and a failure, complete, expired with its intent still
    /// charging, expired with a late payment.
    fn sessions_in_every_state() -> Vec<CheckoutSession> {
        let mut p = plan();
        let open = opened(&mut p);
        let intent = CheckoutChange::AttachIntent(PaymentIntentRef {
            id: "pi_1".into(),
            client_secret: "pi_1_secret_x".into(),
        });
        let with_intent = changed(&open, &mut p, intent);
        let failed = changed(
            &with_intent,
            &mut p,
            CheckoutChange::PaymentFailed {
                reason: "card_declined".into(),
            },
        );
        let paid = CheckoutChange::PaymentSucceeded {
            payment_id: "pi_1".into(),
            payment_method: PaymentMethod::parse("pm_card_visa").unwrap(),
        };
        let complete = changed(&with_intent, &mut p, paid.clone());
        let expire = CheckoutChange::Expire(ExpiryCause::Request);
        let expired = changed(&with_intent, &mut p, expire);
        let mut sold_out = p.clone();
        while sold_out.seats_left() > 0 {
            opened(&mut sold_out);
        }
        let late = changed(&expired, &mut sold_out, paid);
        assert!(late.late_payment().is_some());
        vec![open, with_intent, failed, complete, expired, late]
    }

    #[test]
    fn a_session_round_trips_in_every_state_with_native_bson_types() {
        for s in sessions_in_every_state() {
            let (document, back) = through_bson(&CheckoutDoc::from(&s));
            for field in ["_id", "plan_id", "subscription_id"] {
                assert!(is_uuid(document.get(field)), "{field}");
            }
            for field in ["created_at", "expires_at", "updated_at"] {
                assert!(matches!(document.get(field), Some(Bson::DateTime(_))));
            }
            assert!(matches!(document.get("amount"), Some(Bson::Int64(4900))));
            assert_eq!(document.get_str("status"), Ok(s.status().as_str()));
            assert_eq!(CheckoutSession::try_from(back).unwrap(), s);
        }
    }

    #[test]
    fn check_at_is_a_date_while_there_is_something_to_check_and_absent_after() {
        let all = sessions_in_every_state();
        let (open, complete) = (&all[0], &all[3]);
        let document = bson::to_document(&CheckoutDoc::from(open)).unwrap();
        assert!(matches!(document.get("check_at"), Some(Bson::DateTime(_))));
        assert_eq!(complete.check_at(), None);
        let document = bson::to_document(&CheckoutDoc::from(complete)).unwrap();
        assert!(!document.contains_key("check_at"), "{document:?}");
        let back: CheckoutDoc = bson::from_document(document).unwrap();
        assert_eq!(back.check_at, None);
    }

    #[test]
    fn documents_the_domain_would_not_restore_are_corrupt() {
        let all = sessions_in_every_state();
        let open = CheckoutDoc::from(&all[0]);
        let bad_status = CheckoutDoc {
            status: "paused".into(),
            ..open.clone()
        };
        assert!(CheckoutSession::try_from(bad_status).is_err());
        let open_without_check = CheckoutDoc {
            check_at: None,
            ..open.clone()
        };
        assert!(CheckoutSession::try_from(open_without_check).is_err());
        let complete_without_end = CheckoutDoc {
            ended_at: None,
            ..CheckoutDoc::from(&all[3])
        };
        assert!(CheckoutSession::try_from(complete_without_end).is_err());
        let bad_cause = CheckoutDoc {
            expiry: Some("boredom".into()),
            ..CheckoutDoc::from(&all[4])
        };
        assert!(CheckoutSession::try_from(bad_cause).is_err());
        let negative = CheckoutDoc { amount: -1, ..open };
        assert!(CheckoutSession::try_from(negative).is_err());
    }

    #[test]
    fn a_webhook_event_is_keyed_by_its_id_with_a_date() {
        let (document, back) = through_bson(&WebhookEventDoc::new(
            "evt_1",
            "payment_intent.succeeded",
            ts("2026-03-01T10:00:00.5Z"),
        ));
        assert_eq!(document.get_str("_id"), Ok("evt_1"));
        assert!(matches!(
            document.get("received_at"),
            Some(Bson::DateTime(_))
        ));
        assert_eq!(back.kind, "payment_intent.succeeded");
    }
}
