//! PaymentIntents of the in-process simulator, for checkout sessions: created
//! unconfirmed, then confirmed with one of Stripe's test payment methods, authenticated
//! (3-D Secure) through [`SimulatedGateway::authenticate`], or cancelled.
//!
//! | payment method | confirm answers |
//! | --- | --- |
//! | `pm_card_visa`, `pm_card_mastercard`, `pm_card_amex` | `succeeded` |
//! | `pm_card_authenticationRequired`, `pm_card_threeDSecure2Required` | `requires_action` (3-D Secure) |
//! | `pm_card_chargeDeclined`, `pm_card_insufficientFunds`, anything else | declined; the intent waits for another method |
//! | `pm_card_timeout` | `succeeded`, but the first answer is lost (`Unknown`) |
//!
//! A successful intent is written to the ledger under its provider key, with the intent's
//! id as its payment id, so `lookup` and `refund` treat it as any charge.

use async_trait::async_trait;
use seatkeeper_domain::{
    ports::{
        ChargeError, GatewayError, IntentGateway, IntentRequest, IntentStatus, NextAction,
        PaymentIntent,
    },
    CheckoutSessionId, PaymentMethod,
};

use super::*;

/// The path (on the server that runs this simulator) where a customer passes or fails
/// the 3-D Secure check of an intent.
pub const AUTHENTICATE_PATH: &str = "/api/simulated_payments";

/// One intent.
#[derive(Debug, Clone)]
pub(super) struct IntentRow {
    provider_key: String,
    session: CheckoutSessionId,
    payment: Uuid,
    secret: String,
    amount: i64,
    currency: Currency,
    status: IntentStatus,
    /// The method being authenticated, while `requires_action`.
    pending_method: Option<PaymentMethod>,
    /// Whether a `pm_card_timeout` confirmation already lost its answer once.
    answer_lost: bool,
}

impl IntentRow {
    fn view(&self) -> PaymentIntent {
        PaymentIntent {
            id: payment_id(self.payment),
            client_secret: self.secret.clone(),
            status: self.status.clone(),
        }
    }
}

impl SimulatedGateway {
    /// Passes (`true`) or fails the 3-D Secure check of an intent in `requires_action`:
    /// it then succeeds, or waits for another payment method. Any other intent is
    /// answered as it is.
    pub async fn authenticate(
        &self,
        intent_id: &str,
        pass: bool,
    ) -> Result<PaymentIntent, GatewayError> {
        self.wait().await;
        let mut row = self.intent_row(intent_id)?;
        let authenticating = matches!(row.status, IntentStatus::RequiresAction { .. });
        if let Some(pm) = row.pending_method.take().filter(|_| authenticating) {
            if pass {
                self.succeed(&mut row, pm);
            } else {
                row.status = IntentStatus::RequiresPaymentMethod {
                    last_error: Some(
                        "payment_intent_authentication_failure: The provided PaymentMethod has \
                         failed authentication."
                            .into(),
                    ),
                };
            }
        }
        Ok(row.view())
    }

    /// While `down`, cancelling an intent fails as an unreachable provider does: for
    /// tests of a payment that lands after its session expired.
    pub fn fail_cancellations(&self, down: bool) {
        self.cancellations_down.store(down, Ordering::SeqCst);
    }

    /// The checkout session an intent was made for.
    pub fn intent_session(&self, intent_id: &str) -> Option<CheckoutSessionId> {
        parse_payment_id(intent_id)
            .and_then(|id| self.intents.get(&id))
            .map(|row| row.session)
    }

    /// Forgets the intents cancelled more than the retention ago (oldest first: each
    /// call does only what is due).
    fn forget_old_cancellations(&self) {
        let Some(retention) = self.canceled_retention else {
            return;
        };
        loop {
            let due = {
                let mut q = self
                    .canceled
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match q.front() {
                    Some((at, _)) if at.elapsed() >= retention => q.pop_front(),
                    _ => None,
                }
            };
            let Some((_, payment)) = due else {
                return;
            };
            if let Some((_, row)) = self.intents.remove(&payment) {
                self.intent_keys.remove(&row.provider_key);
            }
        }
    }

    fn intent_row(
        &self,
        intent_id: &str,
    ) -> Result<dashmap::mapref::one::RefMut<'_, Uuid, IntentRow>, GatewayError> {
        parse_payment_id(intent_id)
            .and_then(|id| self.intents.get_mut(&id))
            .ok_or_else(|| GatewayError::Rejected(format!("no such payment_intent: {intent_id}")))
    }

    fn succeed(&self, row: &mut IntentRow, pm: PaymentMethod) {
        row.status = IntentStatus::Succeeded {
            payment_method: pm.clone(),
        };
        self.ledger.insert(
            row.provider_key.clone(),
            Row {
                payment: row.payment,
                amount: row.amount,
                currency: row.currency,
                payment_method: pm.as_str().to_owned(),
                status: SimulatedStatus::Succeeded,
            },
        );
    }
}

#[async_trait]
impl IntentGateway for SimulatedGateway {
    fn provider(&self) -> &'static str {
        "simulated"
    }

    async fn create_intent(&self, req: &IntentRequest) -> Result<PaymentIntent, GatewayError> {
        self.wait().await;
        self.forget_old_cancellations();
        let id = *self
            .intent_keys
            .entry(req.provider_key.clone())
            .or_insert_with(|| {
                let payment = Uuid::new_v4();
                let row = IntentRow {
                    provider_key: req.provider_key.clone(),
                    session: req.checkout_session_id,
                    payment,
                    secret: format!("{}_secret_{}", payment_id(payment), Uuid::new_v4().simple()),
                    amount: req.amount.get(),
                    currency: req.currency,
                    status: IntentStatus::RequiresPaymentMethod { last_error: None },
                    pending_method: None,
                    answer_lost: false,
                };
                self.intents.insert(payment, row);
                payment
            });
        let row = self
            .intents
            .get(&id)
            .expect("an intent is filed before its key");
        Ok(row.view())
    }

    async fn confirm_intent(
        &self,
        intent_id: &str,
        payment_method: &PaymentMethod,
    ) -> Result<PaymentIntent, ChargeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.park_while_held().await;
        self.wait().await;
        let mut row = self
            .intent_row(intent_id)
            .map_err(|e| ChargeError::Declined {
                code: "resource_missing".into(),
                message: e.to_string(),
            })?;
        match row.status {
            IntentStatus::RequiresPaymentMethod { .. } | IntentStatus::RequiresAction { .. } => {}
            _ => return Ok(row.view()),
        }
        let pm = payment_method.as_str();
        match pm {
            "pm_card_visa" | "pm_card_mastercard" | "pm_card_amex" => {
                self.succeed(&mut row, payment_method.clone())
            }
            "pm_card_timeout" => {
                self.succeed(&mut row, payment_method.clone());
                if !row.answer_lost {
                    row.answer_lost = true;
                    return Err(ChargeError::Unknown(
                        "the simulated provider confirmed but its answer was lost \
                         (pm_card_timeout)"
                            .into(),
                    ));
                }
            }
            "pm_card_authenticationRequired" | "pm_card_threeDSecure2Required" => {
                row.pending_method = Some(payment_method.clone());
                row.status = IntentStatus::RequiresAction {
                    next_action: NextAction {
                        kind: "redirect_to_url".into(),
                        redirect_url: Some(format!(
                            "{AUTHENTICATE_PATH}/{}/authenticate",
                            payment_id(row.payment)
                        )),
                    },
                };
            }
            _ => {
                let declined = answer(&Row {
                    payment: row.payment,
                    amount: row.amount,
                    currency: row.currency,
                    payment_method: pm.to_owned(),
                    status: SimulatedStatus::Declined,
                });
                let Err(ChargeError::Declined { code, message }) = declined else {
                    unreachable!("a declined row answers a decline")
                };
                row.status = IntentStatus::RequiresPaymentMethod {
                    last_error: Some(format!("{code}: {message}")),
                };
                return Err(ChargeError::Declined { code, message });
            }
        }
        Ok(row.view())
    }

    async fn retrieve_intent(&self, intent_id: &str) -> Result<PaymentIntent, GatewayError> {
        self.wait().await;
        Ok(self.intent_row(intent_id)?.view())
    }

    async fn cancel_intent(&self, intent_id: &str) -> Result<PaymentIntent, GatewayError> {
        self.wait().await;
        if self.cancellations_down.load(Ordering::SeqCst) {
            return Err(GatewayError::Unavailable(
                "the simulated provider is not answering cancellations".into(),
            ));
        }
        let mut row = self.intent_row(intent_id)?;
        if matches!(
            row.status,
            IntentStatus::RequiresPaymentMethod { .. } | IntentStatus::RequiresAction { .. }
        ) {
            row.status = IntentStatus::Canceled;
            row.pending_method = None;
            if self.canceled_retention.is_some() {
                self.canceled
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push_back((std::time::Instant::now(), row.payment));
            }
        }
        Ok(row.view())
    }
}

#[cfg(test)]
mod tests {
    use seatkeeper_domain::{CustomerId, SubscriptionId, UnitAmount};

    use super::*;

    fn req(key: &str) -> IntentRequest {
        IntentRequest {
            provider_key: key.into(),
            checkout_session_id: CheckoutSessionId::generate(),
            subscription_id: SubscriptionId::generate(),
            customer_id: CustomerId::parse("cus_1").unwrap(),
            amount: UnitAmount::new(1500).unwrap(),
            currency: Currency::parse("usd").unwrap(),
        }
    }

    fn pm(s: &str) -> PaymentMethod {
        PaymentMethod::parse(s).unwrap()
    }

    #[tokio::test]
    async fn cancelled_intents_are_forgotten_after_the_retention_and_paid_ones_kept() {
        let g =
            SimulatedGateway::new().forgetting_canceled_intents_after(Duration::from_millis(50));
        let paid = g.create_intent(&req("paid")).await.unwrap();
        g.confirm_intent(&paid.id, &pm("pm_card_visa"))
            .await
            .unwrap();
        let dropped = g.create_intent(&req("dropped")).await.unwrap();
        g.cancel_intent(&dropped.id).await.unwrap();
        // Cancelling a paid intent changes nothing, and keeps it.
        g.cancel_intent(&paid.id).await.unwrap();
        g.create_intent(&req("later")).await.unwrap();
        assert_eq!(g.intent_count(), 3, "not before the retention");
        tokio::time::sleep(Duration::from_millis(60)).await;
        g.create_intent(&req("after")).await.unwrap();
        assert_eq!(g.intent_count(), 3, "the cancelled one is gone");
        assert!(g.retrieve_intent(&dropped.id).await.is_err());
        assert!(matches!(
            g.retrieve_intent(&paid.id).await.unwrap().status,
            IntentStatus::Succeeded { .. }
        ));
        // Its key is free again: a new intent, not the forgotten one.
        assert_ne!(
            g.create_intent(&req("dropped")).await.unwrap().id,
            dropped.id
        );
    }

    #[tokio::test]
    async fn an_intent_is_created_once_per_key_and_confirmed_with_a_visa_card() {
        let g = SimulatedGateway::new();
        let a = g.create_intent(&req("k1")).await.unwrap();
        assert_eq!(g.create_intent(&req("k1")).await.unwrap(), a);
        assert_ne!(g.create_intent(&req("k2")).await.unwrap().id, a.id);
        assert!(a.client_secret.starts_with(&format!("{}_secret_", a.id)));
        let done = g.confirm_intent(&a.id, &pm("pm_card_visa")).await.unwrap();
        assert_eq!(
            done.status,
            IntentStatus::Succeeded {
                payment_method: pm("pm_card_visa")
            }
        );
        // The success is a charge like any other: looked up, refunded.
        assert!(matches!(
            g.lookup("k1").await.unwrap(),
            ChargeStatus::Succeeded { payment_id } if payment_id == a.id
        ));
        g.refund(&a.id).await.unwrap();
        // Confirming again changes nothing.
        let again = g.confirm_intent(&a.id, &pm("pm_card_chargeDeclined")).await;
        assert!(matches!(
            again.unwrap().status,
            IntentStatus::Succeeded { .. }
        ));
    }

    #[tokio::test]
    async fn a_3ds_card_requires_action_until_authenticated_or_refused() {
        let g = SimulatedGateway::new();
        let a = g.create_intent(&req("k1")).await.unwrap();
        let three_ds = pm("pm_card_authenticationRequired");
        let pending = g.confirm_intent(&a.id, &three_ds).await.unwrap();
        let IntentStatus::RequiresAction { next_action } = pending.status else {
            panic!("expected requires_action, got {pending:?}");
        };
        assert_eq!(
            next_action.redirect_url.unwrap(),
            format!("/api/simulated_payments/{}/authenticate", a.id)
        );
        let failed = g.authenticate(&a.id, false).await.unwrap();
        assert!(matches!(
            failed.status,
            IntentStatus::RequiresPaymentMethod { last_error: Some(ref e) } if e.contains("authentication")
        ));
        g.confirm_intent(&a.id, &three_ds).await.unwrap();
        let passed = g.authenticate(&a.id, true).await.unwrap();
        assert_eq!(
            passed.status,
            IntentStatus::Succeeded {
                payment_method: three_ds
            }
        );
    }

    #[tokio::test]
    async fn a_declined_card_leaves_the_intent_waiting_and_a_cancelled_one_never_charges() {
        let g = SimulatedGateway::new();
        let a = g.create_intent(&req("k1")).await.unwrap();
        let err = g
            .confirm_intent(&a.id, &pm("pm_card_chargeDeclined"))
            .await
            .unwrap_err();
        assert!(matches!(err, ChargeError::Declined { ref code, .. } if code == "card_declined"));
        let now = g.retrieve_intent(&a.id).await.unwrap();
        assert!(matches!(
            now.status,
            IntentStatus::RequiresPaymentMethod {
                last_error: Some(_)
            }
        ));
        assert_eq!(
            g.cancel_intent(&a.id).await.unwrap().status,
            IntentStatus::Canceled
        );
        let after = g.confirm_intent(&a.id, &pm("pm_card_visa")).await.unwrap();
        assert_eq!(after.status, IntentStatus::Canceled);
        assert!(g.succeeded_charges().is_empty());
        assert!(g.retrieve_intent("pi_sim_nope").await.is_err());
    }

    #[tokio::test]
    async fn the_timeout_card_confirms_but_loses_the_first_answer_only() {
        let g = SimulatedGateway::new();
        let a = g.create_intent(&req("k1")).await.unwrap();
        let timeout = pm("pm_card_timeout");
        assert!(matches!(
            g.confirm_intent(&a.id, &timeout).await,
            Err(ChargeError::Unknown(_))
        ));
        let seen = g.retrieve_intent(&a.id).await.unwrap();
        assert!(matches!(seen.status, IntentStatus::Succeeded { .. }));
        // Cancelling a succeeded intent answers it as it is.
        let kept = g.cancel_intent(&a.id).await.unwrap();
        assert!(matches!(kept.status, IntentStatus::Succeeded { .. }));
    }
}
