//! An in-process payment gateway with Stripe's test payment methods.
//!
//! | payment method            | result                                             |
//! |---------------------------|----------------------------------------------------|
//! | `pm_card_visa`, `pm_card_mastercard`, `pm_card_amex` | succeeds               |
//! | `pm_card_chargeDeclined`  | declined, `card_declined`                          |
//! | `pm_card_insufficientFunds` | declined, `insufficient_funds`                   |
//! | `pm_card_timeout`         | charged, but the answer never arrives: `Unknown`   |
//! | anything else             | declined, `payment_method_unknown`                 |
//!
//! Charges are idempotent per provider key, as Stripe's are per `Idempotency-Key`: a
//! second call with the same key returns the first result (for `pm_card_timeout`, the
//! retry sees the success that the first answer lost) and never charges again.

use std::{
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    time::Duration,
};

use async_trait::async_trait;
use dashmap::{mapref::entry::Entry, DashMap};
use seatkeeper_domain::{
    ports::{Charge, ChargeError, ChargeRequest, ChargeStatus, GatewayError},
    Currency,
};
use tokio::sync::{watch, Notify};

use super::PaymentGateway;

/// One charge the simulator made or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulatedCharge {
    pub provider_key: String,
    pub payment_id: String,
    pub amount: i64,
    pub currency: String,
    pub payment_method: String,
    pub status: SimulatedStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimulatedStatus {
    Succeeded,
    Declined,
    Refunded,
}

/// A ledger row: a [`SimulatedCharge`] without its provider key, which is the row's key.
/// The in-memory benchmarks keep a million of these.
#[derive(Debug, Clone)]
struct Row {
    payment_id: String,
    amount: i64,
    currency: Currency,
    payment_method: String,
    status: SimulatedStatus,
}

impl Row {
    fn to_charge(&self, provider_key: &str) -> SimulatedCharge {
        SimulatedCharge {
            provider_key: provider_key.to_owned(),
            payment_id: self.payment_id.clone(),
            amount: self.amount,
            currency: self.currency.to_string(),
            payment_method: self.payment_method.clone(),
            status: self.status,
        }
    }
}

/// The in-process simulated gateway. Its ledger lives as long as it does.
///
/// Tests that need a purchase to be *inside* its charge while something else happens
/// (a retry with the same key, a crash, a cancellation) call [`hold_charges`]: every
/// charge then parks before touching the ledger until [`release_charges`], and
/// [`charges_held`] waits until a given number are parked. No sleeps, no timing luck.
///
/// [`hold_charges`]: SimulatedGateway::hold_charges
/// [`release_charges`]: SimulatedGateway::release_charges
/// [`charges_held`]: SimulatedGateway::charges_held
#[derive(Debug)]
pub struct SimulatedGateway {
    latency: Duration,
    ledger: DashMap<String, Row, ahash::RandomState>,
    calls: AtomicU64,
    hold: watch::Sender<bool>,
    held: AtomicUsize,
    held_changed: Notify,
}

impl Default for SimulatedGateway {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            ledger: DashMap::default(),
            calls: AtomicU64::new(0),
            hold: watch::Sender::new(false),
            held: AtomicUsize::new(0),
            held_changed: Notify::new(),
        }
    }
}

impl SimulatedGateway {
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call waits this long before answering, like a remote provider.
    pub fn with_latency(latency: Duration) -> Self {
        Self {
            latency,
            ..Self::default()
        }
    }

    /// How many charge calls were made, retries included.
    pub fn charge_calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Every charge made, in no particular order.
    pub fn ledger(&self) -> Vec<SimulatedCharge> {
        self.ledger
            .iter()
            .map(|c| c.value().to_charge(c.key()))
            .collect()
    }

    /// Charges that succeeded and were not refunded.
    pub fn succeeded_charges(&self) -> Vec<SimulatedCharge> {
        self.ledger()
            .into_iter()
            .filter(|c| c.status == SimulatedStatus::Succeeded)
            .collect()
    }

    /// From now on every charge parks until [`release_charges`](Self::release_charges).
    pub fn hold_charges(&self) {
        self.hold.send_replace(true);
    }

    /// Lets every parked charge (and every later one) go on.
    pub fn release_charges(&self) {
        self.hold.send_replace(false);
    }

    /// Waits until at least `n` charges are parked by [`hold_charges`](Self::hold_charges).
    pub async fn charges_held(&self, n: usize) {
        loop {
            let changed = self.held_changed.notified();
            if self.held.load(Ordering::SeqCst) >= n {
                return;
            }
            changed.await;
        }
    }

    async fn wait(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }

    async fn park_while_held(&self) {
        let mut hold = self.hold.subscribe();
        if !*hold.borrow_and_update() {
            return;
        }
        self.held.fetch_add(1, Ordering::SeqCst);
        self.held_changed.notify_waiters();
        // The sender lives in `self`, so `wait_for` only ends when the hold is lifted.
        let _ = hold.wait_for(|held| !*held).await;
        self.held.fetch_sub(1, Ordering::SeqCst);
        self.held_changed.notify_waiters();
    }
}

/// `pi_sim_` and 32 hex digits.
fn payment_id() -> String {
    let mut id = String::with_capacity(7 + uuid::fmt::Simple::LENGTH);
    id.push_str("pi_sim_");
    id.push_str(
        uuid::Uuid::new_v4()
            .simple()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    );
    id
}

fn decline(code: &str, message: &str) -> ChargeError {
    ChargeError::Declined {
        code: code.into(),
        message: message.into(),
    }
}

fn answer(charge: &Row) -> Result<Charge, ChargeError> {
    match charge.status {
        SimulatedStatus::Succeeded | SimulatedStatus::Refunded => Ok(Charge {
            payment_id: charge.payment_id.clone(),
        }),
        SimulatedStatus::Declined => Err(match charge.payment_method.as_str() {
            "pm_card_chargeDeclined" => decline("card_declined", "Your card was declined."),
            "pm_card_insufficientFunds" => {
                decline("insufficient_funds", "Your card has insufficient funds.")
            }
            _ => decline(
                "payment_method_unknown",
                "No such payment method in the simulator.",
            ),
        }),
    }
}

#[async_trait]
impl PaymentGateway for SimulatedGateway {
    #[tracing::instrument(skip_all, fields(provider_key = %req.provider_key))]
    async fn charge(&self, req: &ChargeRequest) -> Result<Charge, ChargeError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.park_while_held().await;
        self.wait().await;
        let pm = req.payment_method.as_str();
        let (charge, first) = match self.ledger.entry(req.provider_key.clone()) {
            Entry::Occupied(o) => (o.get().clone(), false),
            Entry::Vacant(v) => {
                let status = match pm {
                    "pm_card_visa" | "pm_card_mastercard" | "pm_card_amex" | "pm_card_timeout" => {
                        SimulatedStatus::Succeeded
                    }
                    _ => SimulatedStatus::Declined,
                };
                let charge = Row {
                    payment_id: payment_id(),
                    amount: req.amount.get(),
                    currency: req.currency,
                    payment_method: pm.to_owned(),
                    status,
                };
                v.insert(charge.clone());
                (charge, true)
            }
        };
        if first && pm == "pm_card_timeout" {
            return Err(ChargeError::Unknown(
                "the simulated provider charged but its answer was lost (pm_card_timeout)".into(),
            ));
        }
        answer(&charge)
    }

    async fn lookup(&self, provider_key: &str) -> Result<ChargeStatus, GatewayError> {
        self.wait().await;
        Ok(match self.ledger.get(provider_key) {
            None => ChargeStatus::NotFound,
            Some(c) => match c.status {
                SimulatedStatus::Succeeded => ChargeStatus::Succeeded {
                    payment_id: c.payment_id.clone(),
                },
                SimulatedStatus::Refunded => ChargeStatus::Refunded {
                    payment_id: c.payment_id.clone(),
                },
                SimulatedStatus::Declined => ChargeStatus::Failed {
                    reason: answer(&c).err().map(|e| e.to_string()).unwrap_or_default(),
                },
            },
        })
    }

    async fn refund(&self, payment_id: &str) -> Result<(), GatewayError> {
        self.wait().await;
        for mut c in self.ledger.iter_mut() {
            if c.payment_id == payment_id {
                return match c.status {
                    SimulatedStatus::Succeeded | SimulatedStatus::Refunded => {
                        c.status = SimulatedStatus::Refunded;
                        Ok(())
                    }
                    SimulatedStatus::Declined => Err(GatewayError::Rejected(format!(
                        "{payment_id} was never charged"
                    ))),
                };
            }
        }
        Err(GatewayError::Rejected(format!(
            "no such payment: {payment_id}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use seatkeeper_domain::{Currency, CustomerId, PaymentMethod, SubscriptionId, UnitAmount};

    use super::*;

    fn req(key: &str, pm: &str) -> ChargeRequest {
        ChargeRequest {
            provider_key: key.into(),
            subscription_id: SubscriptionId::generate(),
            customer_id: CustomerId::parse("cus_1").unwrap(),
            amount: UnitAmount::new(1500).unwrap(),
            currency: Currency::parse("usd").unwrap(),
            payment_method: PaymentMethod::parse(pm).unwrap(),
        }
    }

    #[test]
    fn payment_ids_look_like_the_simulators_and_differ() {
        let (a, b) = (payment_id(), payment_id());
        assert_ne!(a, b);
        for id in [a, b] {
            let hex = id.strip_prefix("pi_sim_").expect("the pi_sim_ prefix");
            assert_eq!(hex.len(), 32);
            assert!(hex
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        }
    }

    #[tokio::test]
    async fn a_visa_card_is_charged_once_however_often_the_key_is_retried() {
        let g = SimulatedGateway::new();
        let first = g.charge(&req("k1", "pm_card_visa")).await.unwrap();
        let again = g.charge(&req("k1", "pm_card_visa")).await.unwrap();
        assert_eq!(first, again);
        assert_eq!(g.succeeded_charges().len(), 1);
        assert_eq!(g.charge_calls(), 2);
    }

    #[tokio::test]
    async fn the_declined_test_card_is_declined_and_charges_nothing() {
        let g = SimulatedGateway::new();
        let err = g
            .charge(&req("k1", "pm_card_chargeDeclined"))
            .await
            .unwrap_err();
        assert!(matches!(err, ChargeError::Declined { ref code, .. } if code == "card_declined"));
        assert!(g.succeeded_charges().is_empty());
        assert!(matches!(
            g.lookup("k1").await.unwrap(),
            ChargeStatus::Failed { .. }
        ));
    }

    #[tokio::test]
    async fn the_timeout_card_charges_but_loses_the_answer_and_a_retry_sees_the_charge() {
        let g = SimulatedGateway::new();
        let err = g.charge(&req("k1", "pm_card_timeout")).await.unwrap_err();
        assert!(matches!(err, ChargeError::Unknown(_)));
        assert!(matches!(
            g.lookup("k1").await.unwrap(),
            ChargeStatus::Succeeded { .. }
        ));
        let retried = g.charge(&req("k1", "pm_card_timeout")).await.unwrap();
        assert_eq!(g.succeeded_charges().len(), 1);
        assert_eq!(g.succeeded_charges()[0].payment_id, retried.payment_id);
    }

    #[tokio::test]
    async fn a_refund_marks_the_charge_refunded_and_unknown_payments_are_refused() {
        let g = SimulatedGateway::new();
        let c = g.charge(&req("k1", "pm_card_visa")).await.unwrap();
        g.refund(&c.payment_id).await.unwrap();
        assert!(matches!(
            g.lookup("k1").await.unwrap(),
            ChargeStatus::Refunded { .. }
        ));
        assert!(g.refund("pi_nope").await.is_err());
        assert_eq!(g.lookup("k2").await.unwrap(), ChargeStatus::NotFound);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn held_charges_park_before_charging_until_released() {
        let g = std::sync::Arc::new(SimulatedGateway::new());
        g.hold_charges();
        let parked: Vec<_> = ["k1", "k2"]
            .into_iter()
            .map(|k| {
                let g = g.clone();
                tokio::spawn(async move { g.charge(&req(k, "pm_card_visa")).await })
            })
            .collect();
        g.charges_held(2).await;
        assert!(g.ledger().is_empty(), "a held charge touched the ledger");
        assert_eq!(g.charge_calls(), 2);
        g.release_charges();
        for p in parked {
            p.await.unwrap().unwrap();
        }
        assert_eq!(g.succeeded_charges().len(), 2);
        g.charge(&req("k3", "pm_card_visa")).await.unwrap();
        assert_eq!(g.succeeded_charges().len(), 3);
    }
}
