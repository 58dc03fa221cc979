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
use uuid::Uuid;

use super::PaymentGateway;

mod intents;
pub use intents::AUTHENTICATE_PATH;

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

/// A ledger row: a [`SimulatedCharge`] without its provider key, which is the row's key,
/// and with its payment id as the UUID it is written from. The in-memory benchmarks keep a
/// million of these.
#[derive(Debug)]
struct Row {
    payment: Uuid,
    amount: i64,
    currency: Currency,
    payment_method: String,
    status: SimulatedStatus,
}

impl Row {
    fn payment_id(&self) -> String {
        payment_id(self.payment)
    }

    fn to_charge(&self, provider_key: &str) -> SimulatedCharge {
        SimulatedCharge {
            provider_key: provider_key.to_owned(),
            payment_id: self.payment_id(),
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
    /// Checkout PaymentIntents by their payment UUID, and which provider key made each.
    intents: DashMap<Uuid, intents::IntentRow, ahash::RandomState>,
    intent_keys: DashMap<String, Uuid, ahash::RandomState>,
    /// While set, cancelling an intent fails as an unreachable provider does.
    cancellations_down: std::sync::atomic::AtomicBool,
    /// How long a cancelled intent is kept (no money moved, nothing more can happen to
    /// it); `None`: for as long as the gateway lives.
    canceled_retention: Option<Duration>,
    /// Cancelled intents, oldest first, with when each was cancelled.
    canceled: std::sync::Mutex<std::collections::VecDeque<(std::time::Instant, Uuid)>>,
}

impl Default for SimulatedGateway {
    fn default() -> Self {
        Self {
            latency: Duration::ZERO,
            // As many shards as the in-memory store's maps, for the same reason: a shard's
            // table doubles at once, and with a million rows in the default 8 shards a
            // charge landing on a growing shard waits for 60,000 rows to move.
            ledger: DashMap::with_hasher_and_shard_amount(ahash::RandomState::new(), 256),
            calls: AtomicU64::new(0),
            hold: watch::Sender::new(false),
            held: AtomicUsize::new(0),
            held_changed: Notify::new(),
            intents: DashMap::default(),
            intent_keys: DashMap::default(),
            cancellations_down: std::sync::atomic::AtomicBool::new(false),
            canceled_retention: None,
            canceled: std::sync::Mutex::default(),
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

    /// Forgets each cancelled intent `retention` after its cancellation (its id and its
    /// key then answer as unknown), so that a long-running server whose customers abandon
    /// checkouts keeps flat memory. Intents that succeeded are kept, as charges are.
    pub fn forgetting_canceled_intents_after(mut self, retention: Duration) -> Self {
        self.canceled_retention = Some(retention);
        self
    }

    /// How many intents the simulator holds.
    pub fn intent_count(&self) -> usize {
        self.intents.len()
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

const PAYMENT_PREFIX: &str = "pi_sim_";

/// `pi_sim_` and the 32 lowercase hex digits of `payment`.
fn payment_id(payment: Uuid) -> String {
    let mut id = String::with_capacity(PAYMENT_PREFIX.len() + uuid::fmt::Simple::LENGTH);
    id.push_str(PAYMENT_PREFIX);
    id.push_str(payment.simple().encode_lower(&mut Uuid::encode_buffer()));
    id
}

/// The UUID a payment id of this simulator was written from; `None` for any other text.
fn parse_payment_id(id: &str) -> Option<Uuid> {
    let hex = id.strip_prefix(PAYMENT_PREFIX)?;
    let written_here = hex.len() == uuid::fmt::Simple::LENGTH
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if !written_here {
        return None;
    }
    Uuid::try_parse(hex).ok()
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
            payment_id: charge.payment_id(),
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
        // The answer is read from the row under the shard's lock, never from a copy of it.
        let (result, first) = match self.ledger.entry(req.provider_key.clone()) {
            Entry::Occupied(o) => (answer(o.get()), false),
            Entry::Vacant(v) => {
                let status = match pm {
                    "pm_card_visa" | "pm_card_mastercard" | "pm_card_amex" | "pm_card_timeout" => {
                        SimulatedStatus::Succeeded
                    }
                    _ => SimulatedStatus::Declined,
                };
                let row = Row {
                    payment: Uuid::new_v4(),
                    amount: req.amount.get(),
                    currency: req.currency,
                    payment_method: pm.to_owned(),
                    status,
                };
                (answer(v.insert(row).value()), true)
            }
        };
        if first && pm == "pm_card_timeout" {
            return Err(ChargeError::Unknown(
                "the simulated provider charged but its answer was lost (pm_card_timeout)".into(),
            ));
        }
        result
    }

    async fn lookup(&self, provider_key: &str) -> Result<ChargeStatus, GatewayError> {
        self.wait().await;
        Ok(match self.ledger.get(provider_key) {
            None => ChargeStatus::NotFound,
            Some(c) => match c.status {
                SimulatedStatus::Succeeded => ChargeStatus::Succeeded {
                    payment_id: c.payment_id(),
                },
                SimulatedStatus::Refunded => ChargeStatus::Refunded {
                    payment_id: c.payment_id(),
                },
                SimulatedStatus::Declined => ChargeStatus::Failed {
                    reason: answer(&c).err().map(|e| e.to_string()).unwrap_or_default(),
                },
            },
        })
    }

    async fn refund(&self, payment_id: &str) -> Result<(), GatewayError> {
        self.wait().await;
        let payment = parse_payment_id(payment_id);
        for mut c in self.ledger.iter_mut() {
            if Some(c.payment) == payment {
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
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let (id_a, id_b) = (payment_id(a), payment_id(b));
        assert_ne!(id_a, id_b);
        for (uuid, id) in [(a, id_a), (b, id_b)] {
            let hex = id.strip_prefix("pi_sim_").expect("the pi_sim_ prefix");
            assert_eq!(hex.len(), 32);
            assert!(hex
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
            assert_eq!(parse_payment_id(&id), Some(uuid));
        }
    }

    #[test]
    fn only_the_simulators_own_payment_ids_are_read_back() {
        let id = payment_id(Uuid::new_v4());
        for other in [
            id.to_uppercase(),
            id.replace("pi_sim_", "pi_"),
            format!("{id}0"),
            id[..id.len() - 1].to_owned(),
            "pi_sim_0123456789abcdef0123456789abcdeg".to_owned(),
            "pi_sim_01234567-89ab-cdef-0123-456789abcdef".to_owned(),
        ] {
            assert_eq!(parse_payment_id(&other), None, "{other}");
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
