//! The Stripe adapter against `seatkeeper-paysim`, a real HTTP server speaking Stripe's
//! API, started on port 0 by each test: outcomes, faults, retries that never charge twice,
//! refunds, look-ups, and a secret key that never reaches the logs.

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use seatkeeper_domain::{
    ports::{ChargeError, ChargeRequest, ChargeStatus, PaymentGateway},
    provider_key_for, Currency, CustomerId, PaymentMethod, SubscriptionId, UnitAmount,
};
use seatkeeper_payments::{StripeGateway, StripeSettings};
use seatkeeper_paysim::{start, Faults, Running, Simulator};
use serde_json::Value;

const SECRET: &str = "sk_test_do_not_leak_0123456789";

fn sim(faults: Faults) -> Running {
    start("127.0.0.1:0", Simulator::new(None, faults).unwrap()).unwrap()
}

fn gateway(sim: &Running, timeout_ms: u64, max_retries: u32) -> StripeGateway {
    StripeGateway::new(StripeSettings {
        base_url: sim.base_url(),
        secret_key: SECRET.into(),
        timeout: Duration::from_millis(timeout_ms),
        max_retries,
    })
    .unwrap()
}

fn request(pm: &str) -> ChargeRequest {
    let id = SubscriptionId::generate();
    ChargeRequest {
        provider_key: provider_key_for(id),
        subscription_id: id,
        customer_id: CustomerId::parse("cus_1").unwrap(),
        amount: UnitAmount::new(1500).unwrap(),
        currency: Currency::parse("usd").unwrap(),
        payment_method: PaymentMethod::parse(pm).unwrap(),
    }
}

/// Every PaymentIntent the simulator holds, through its list endpoint.
async fn ledger(sim: &Running) -> Vec<Value> {
    let client = reqwest::Client::new();
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let mut req = client
            .get(format!("{}/v1/payment_intents", sim.base_url()))
            .bearer_auth(SECRET)
            .query(&[("limit", "2")]);
        if let Some(a) = &after {
            req = req.query(&[("starting_after", a.as_str())]);
        }
        let page: Value = req.send().await.unwrap().json().await.unwrap();
        let data = page["data"].as_array().unwrap().clone();
        after = data.last().map(|i| i["id"].as_str().unwrap().to_owned());
        all.extend(data);
        if !page["has_more"].as_bool().unwrap() {
            return all;
        }
    }
}

#[tokio::test]
async fn a_visa_charge_creates_one_succeeded_payment_intent_carrying_the_subscription() {
    let sim = sim(Faults::default());
    let g = gateway(&sim, 2000, 2);
    let req = request("pm_card_visa");
    let charge = g.charge(&req).await.unwrap();
    let again = g.charge(&req).await.unwrap();
    assert_eq!(charge, again, "the same provider key is the same charge");
    let intents = ledger(&sim).await;
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0]["id"], charge.payment_id.as_str());
    assert_eq!(intents[0]["status"], "succeeded");
    assert_eq!(intents[0]["amount"], 1500);
    assert_eq!(intents[0]["currency"], "usd");
    assert_eq!(
        intents[0]["metadata"]["subscription_id"],
        req.subscription_id.to_string()
    );
    sim.stop().await;
}

#[tokio::test]
async fn declines_and_unknown_payment_methods_are_declined_with_stripes_codes() {
    let sim = sim(Faults::default());
    let g = gateway(&sim, 2000, 2);
    for (pm, code) in [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_insufficientFunds", "insufficient_funds"),
        ("pm_card_doesNotExist", "resource_missing"),
    ] {
        match g.charge(&request(pm)).await {
            Err(ChargeError::Declined { code: c, .. }) => assert_eq!(c, code, "{pm}"),
            other => panic!("{pm}: expected a decline, got {other:?}"),
        }
    }
    assert!(ledger(&sim)
        .await
        .iter()
        .all(|i| i["status"] != "succeeded"));
    sim.stop().await;
}

#[tokio::test]
async fn a_dropped_answer_is_unknown_and_the_retry_with_the_same_key_gets_the_one_charge() {
    let sim = sim(Faults {
        drop_hang: Duration::from_secs(5),
        ..Faults::default()
    });
    let no_retries = gateway(&sim, 300, 0);
    let req = request("pm_card_timeout");
    match no_retries.charge(&req).await {
        Err(ChargeError::Unknown(_)) => {}
        other => panic!("a timeout must be unknown, got {other:?}"),
    }
    let charge = no_retries.charge(&req).await.unwrap();
    let intents = ledger(&sim).await;
    assert_eq!(intents.len(), 1, "charged once");
    assert_eq!(intents[0]["id"], charge.payment_id.as_str());

    // With retries, the adapter recovers from a dropped answer by itself.
    let retrying = gateway(&sim, 300, 2);
    let req = request("pm_card_timeout");
    let charge = retrying.charge(&req).await.unwrap();
    let intents = ledger(&sim).await;
    assert_eq!(intents.len(), 2);
    assert!(intents
        .iter()
        .any(|i| i["id"] == charge.payment_id.as_str()));
    sim.stop().await;
}

#[tokio::test]
async fn server_errors_are_retried_and_a_charge_never_happens_twice() {
    let sim = sim(Faults {
        error_rate: 0.5,
        ..Faults::default()
    });
    let g = gateway(&sim, 2000, 6);
    let mut charged = Vec::new();
    let mut unknown = 0;
    for _ in 0..30 {
        match g.charge(&request("pm_card_visa")).await {
            Ok(c) => charged.push(c.payment_id),
            Err(ChargeError::Unknown(_)) => unknown += 1,
            Err(e) => panic!("a 500 is never a decline: {e:?}"),
        }
    }
    assert!(
        charged.len() > 20,
        "retries should get most through: {} ok, {unknown} unknown",
        charged.len()
    );
    // Listing is not subject to injected faults; injected 500s change nothing.
    let intents = ledger(&sim).await;
    assert_eq!(intents.len(), charged.len());
    sim.stop().await;
}

#[tokio::test]
async fn only_500s_end_as_unknown_and_create_nothing() {
    let sim = sim(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let g = gateway(&sim, 2000, 2);
    assert!(matches!(
        g.charge(&request("pm_card_visa")).await,
        Err(ChargeError::Unknown(_))
    ));
    assert!(ledger(&sim).await.is_empty());
    sim.stop().await;
}

#[tokio::test]
async fn a_refund_is_idempotent_and_lookups_tell_succeeded_failed_refunded_and_not_found() {
    let sim = sim(Faults::default());
    let g = gateway(&sim, 2000, 2);
    let paid = request("pm_card_visa");
    let charge = g.charge(&paid).await.unwrap();
    assert_eq!(
        g.lookup(&paid.provider_key).await.unwrap(),
        ChargeStatus::Succeeded {
            payment_id: charge.payment_id.clone()
        }
    );
    g.refund(&charge.payment_id).await.unwrap();
    g.refund(&charge.payment_id).await.unwrap();
    assert_eq!(
        g.lookup(&paid.provider_key).await.unwrap(),
        ChargeStatus::Refunded {
            payment_id: charge.payment_id.clone()
        }
    );
    let refunds: Value = reqwest::Client::new()
        .get(format!("{}/v1/refunds", sim.base_url()))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        refunds["data"].as_array().unwrap().len(),
        1,
        "refunded once"
    );

    let declined = request("pm_card_chargeDeclined");
    let _ = g.charge(&declined).await;
    assert!(matches!(
        g.lookup(&declined.provider_key).await.unwrap(),
        ChargeStatus::Failed { .. }
    ));
    assert_eq!(
        g.lookup(&request("pm_card_visa").provider_key)
            .await
            .unwrap(),
        ChargeStatus::NotFound
    );
    assert!(g.refund("pi_unknown").await.is_err());
    sim.stop().await;
}

/// A log sink the test can read back.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_secret_key_never_appears_in_logs_or_errors() {
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let sim = sim(Faults {
        error_rate: 0.3,
        drop_hang: Duration::from_secs(2),
        ..Faults::default()
    });
    let g = gateway(&sim, 200, 1);
    let mut errors = String::new();
    for pm in [
        "pm_card_visa",
        "pm_card_chargeDeclined",
        "pm_card_timeout",
        "pm_card_nope",
    ] {
        if let Err(e) = g.charge(&request(pm)).await {
            errors.push_str(&format!("{e} {e:?}\n"));
        }
    }
    let refused = gateway(&sim, 200, 0);
    let _ = refused.lookup("nothing").await;
    let _ = refused
        .refund("pi_nothing")
        .await
        .map_err(|e| errors.push_str(&e.to_string()));
    tracing::info!(gateway = ?g, "done");
    let logs = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    assert!(!logs.is_empty(), "the test captured no logs");
    assert!(!logs.contains(SECRET), "the secret key was logged");
    assert!(!errors.contains(SECRET), "the secret key is in an error");
    sim.stop().await;
}
