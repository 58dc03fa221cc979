//! The Stripe adapter's `IntentGateway` against `seatkeeper-paysim` started on port 0 by
//! each test: intents created once per key, confirmed with Stripe's test cards (declines,
//! 3-D Secure passed or failed at paysim's page), cancelled, and what an unreachable or
//! refusing provider looks like.

use std::time::Duration;

use seatkeeper_domain::{
    ports::{
        ChargeError, ChargeStatus, GatewayError, IntentGateway, IntentRequest, IntentStatus,
        PaymentGateway,
    },
    CheckoutSessionId, Currency, CustomerId, PaymentMethod, SubscriptionId, UnitAmount,
};
use seatkeeper_payments::{StripeGateway, StripeSettings};
use seatkeeper_paysim::{start, Faults, Running, Simulator};
use serde_json::Value;

const SECRET: &str = "sk_test_intents_0123456789";

fn sim(faults: Faults) -> Running {
    start("127.0.0.1:0", Simulator::new(None, faults).unwrap()).unwrap()
}

fn gateway_at(base_url: String, key: &str, timeout_ms: u64, max_retries: u32) -> StripeGateway {
    StripeGateway::new(StripeSettings {
        base_url,
        secret_key: key.into(),
        timeout: Duration::from_millis(timeout_ms),
        max_retries,
    })
    .unwrap()
}

fn gateway(sim: &Running) -> StripeGateway {
    gateway_at(sim.base_url(), SECRET, 2000, 2)
}

fn request() -> IntentRequest {
    let session = CheckoutSessionId::generate();
    IntentRequest {
        provider_key: format!("seatkeeper-checkout-{session}"),
        checkout_session_id: session,
        subscription_id: SubscriptionId::generate(),
        customer_id: CustomerId::parse("cus_1").unwrap(),
        amount: UnitAmount::new(1500).unwrap(),
        currency: Currency::parse("usd").unwrap(),
    }
}

fn pm(s: &str) -> PaymentMethod {
    PaymentMethod::parse(s).unwrap()
}

/// The intent as paysim holds it.
async fn raw(sim: &Running, id: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}/v1/payment_intents/{id}", sim.base_url()))
        .bearer_auth(SECRET)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Passes or fails the 3-D Secure check at the URL the intent sent the customer to.
async fn authenticate(url: &str, result: &str) {
    let res = reqwest::Client::new()
        .post(url)
        .form(&[("result", result)])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn an_intent_is_created_once_per_key_and_a_visa_card_pays_it_once() {
    let sim = sim(Faults::default());
    let g = gateway(&sim);
    assert_eq!(g.provider(), "stripe");
    let req = request();
    let intent = g.create_intent(&req).await.unwrap();
    assert_eq!(
        intent.status,
        IntentStatus::RequiresPaymentMethod { last_error: None }
    );
    assert!(intent
        .client_secret
        .starts_with(&format!("{}_secret_", intent.id)));
    assert_eq!(g.create_intent(&req).await.unwrap(), intent, "same key");
    assert_ne!(g.create_intent(&request()).await.unwrap().id, intent.id);
    let held = raw(&sim, &intent.id).await;
    assert_eq!(held["amount"], 1500);
    assert_eq!(held["currency"], "usd");
    assert_eq!(held["payment_method_types"][0], "card");
    let metadata = &held["metadata"];
    assert_eq!(
        metadata["checkout_session_id"],
        req.checkout_session_id.to_string()
    );
    assert_eq!(metadata["subscription_id"], req.subscription_id.to_string());
    assert_eq!(metadata["customer_id"], "cus_1");
    assert_eq!(metadata["provider_key"], req.provider_key.as_str());

    let paid = g
        .confirm_intent(&intent.id, &pm("pm_card_visa"))
        .await
        .unwrap();
    let succeeded = IntentStatus::Succeeded {
        payment_method: pm("pm_card_visa"),
    };
    assert_eq!(paid.status, succeeded);
    // A second confirmation (a retry after a lost answer) answers the intent as it is.
    let again = g
        .confirm_intent(&intent.id, &pm("pm_card_chargeDeclined"))
        .await
        .unwrap();
    assert_eq!(again.status, succeeded);
    assert_eq!(g.retrieve_intent(&intent.id).await.unwrap(), paid);
    // The payment is a charge like the one-call ones: found by its key, refunded.
    assert_eq!(
        g.lookup(&req.provider_key).await.unwrap(),
        ChargeStatus::Succeeded {
            payment_id: intent.id.clone()
        }
    );
    g.refund(&intent.id).await.unwrap();
    assert!(matches!(
        g.lookup(&req.provider_key).await.unwrap(),
        ChargeStatus::Refunded { .. }
    ));
    sim.stop().await;
}

#[tokio::test]
async fn a_declined_card_leaves_the_intent_waiting_and_another_card_can_pay_it() {
    let sim = sim(Faults::default());
    let g = gateway(&sim);
    let intent = g.create_intent(&request()).await.unwrap();
    for (card, code) in [
        ("pm_card_chargeDeclined", "generic_decline"),
        ("pm_card_insufficientFunds", "insufficient_funds"),
        ("pm_card_doesNotExist", "resource_missing"),
    ] {
        match g.confirm_intent(&intent.id, &pm(card)).await {
            Err(ChargeError::Declined { code: c, .. }) => assert_eq!(c, code, "{card}"),
            other => panic!("{card}: expected a decline, got {other:?}"),
        }
    }
    let waiting = g.retrieve_intent(&intent.id).await.unwrap();
    assert!(
        matches!(
            &waiting.status,
            IntentStatus::RequiresPaymentMethod { last_error: Some(e) } if e.starts_with("insufficient_funds: ")
        ),
        "{waiting:?}"
    );
    let paid = g
        .confirm_intent(&intent.id, &pm("pm_card_mastercard"))
        .await
        .unwrap();
    assert_eq!(
        paid.status,
        IntentStatus::Succeeded {
            payment_method: pm("pm_card_mastercard")
        }
    );
    assert!(matches!(
        g.confirm_intent("pi_doesnotexist", &pm("pm_card_visa")).await,
        Err(ChargeError::Declined { ref code, .. }) if code == "resource_missing"
    ));
    sim.stop().await;
}

#[tokio::test]
async fn a_3ds_card_requires_action_until_passed_or_failed_and_can_be_tried_again() {
    let sim = sim(Faults::default());
    let g = gateway(&sim);
    let intent = g.create_intent(&request()).await.unwrap();
    let three_ds = pm("pm_card_authenticationRequired");
    let pending = g.confirm_intent(&intent.id, &three_ds).await.unwrap();
    let IntentStatus::RequiresAction { next_action } = pending.status else {
        panic!("expected requires_action, got {pending:?}");
    };
    assert_eq!(next_action.kind, "redirect_to_url");
    let url = next_action.redirect_url.unwrap();
    assert_eq!(
        url,
        format!(
            "{}/v1/payment_intents/{}/authenticate",
            sim.base_url(),
            intent.id
        )
    );
    authenticate(&url, "fail").await;
    let failed = g.retrieve_intent(&intent.id).await.unwrap();
    assert!(
        matches!(
            &failed.status,
            IntentStatus::RequiresPaymentMethod { last_error: Some(e) }
                if e.starts_with("payment_intent_authentication_failure: ")
        ),
        "{failed:?}"
    );
    // The same card again is a new confirmation (a new idempotency key), not a replay of
    // the first one: the intent really waits for authentication again.
    let again = g.confirm_intent(&intent.id, &three_ds).await.unwrap();
    assert!(matches!(again.status, IntentStatus::RequiresAction { .. }));
    authenticate(&url, "pass").await;
    assert_eq!(
        g.retrieve_intent(&intent.id).await.unwrap().status,
        IntentStatus::Succeeded {
            payment_method: three_ds
        }
    );
    sim.stop().await;
}

#[tokio::test]
async fn cancelling_an_open_intent_cancels_it_and_a_succeeded_one_is_returned_as_it_is() {
    let sim = sim(Faults::default());
    let g = gateway(&sim);
    let open = g.create_intent(&request()).await.unwrap();
    assert_eq!(
        g.cancel_intent(&open.id).await.unwrap().status,
        IntentStatus::Canceled
    );
    assert_eq!(
        g.cancel_intent(&open.id).await.unwrap().status,
        IntentStatus::Canceled
    );
    let after = g
        .confirm_intent(&open.id, &pm("pm_card_visa"))
        .await
        .unwrap();
    assert_eq!(after.status, IntentStatus::Canceled, "it never charges");

    let action = g.create_intent(&request()).await.unwrap();
    g.confirm_intent(&action.id, &pm("pm_card_threeDSecure2Required"))
        .await
        .unwrap();
    assert_eq!(
        g.cancel_intent(&action.id).await.unwrap().status,
        IntentStatus::Canceled
    );

    let paid = g.create_intent(&request()).await.unwrap();
    g.confirm_intent(&paid.id, &pm("pm_card_amex"))
        .await
        .unwrap();
    assert_eq!(
        g.cancel_intent(&paid.id).await.unwrap().status,
        IntentStatus::Succeeded {
            payment_method: pm("pm_card_amex")
        }
    );
    assert!(matches!(
        g.cancel_intent("pi_doesnotexist").await,
        Err(GatewayError::Rejected(_))
    ));
    assert!(matches!(
        g.retrieve_intent("pi_doesnotexist").await,
        Err(GatewayError::Rejected(_))
    ));
    sim.stop().await;
}

#[tokio::test]
async fn a_lost_confirmation_answer_is_unknown_and_a_retry_finds_the_one_payment() {
    let sim = sim(Faults {
        drop_hang: Duration::from_secs(5),
        ..Faults::default()
    });
    let no_retries = gateway_at(sim.base_url(), SECRET, 300, 0);
    let timeout = pm("pm_card_timeout");
    let intent = no_retries.create_intent(&request()).await.unwrap();
    assert!(matches!(
        no_retries.confirm_intent(&intent.id, &timeout).await,
        Err(ChargeError::Unknown(_))
    ));
    let retried = no_retries
        .confirm_intent(&intent.id, &timeout)
        .await
        .unwrap();
    assert_eq!(
        retried.status,
        IntentStatus::Succeeded {
            payment_method: timeout.clone()
        }
    );

    // With retries, the adapter replays its own request under the same key.
    let retrying = gateway_at(sim.base_url(), SECRET, 300, 2);
    let intent = retrying.create_intent(&request()).await.unwrap();
    let paid = retrying.confirm_intent(&intent.id, &timeout).await.unwrap();
    assert!(matches!(paid.status, IntentStatus::Succeeded { .. }));
    assert!(raw(&sim, &intent.id).await["latest_charge"]
        .as_str()
        .is_some_and(|c| c.starts_with("ch_")));
    sim.stop().await;
}

#[tokio::test]
async fn an_unreachable_or_failing_provider_is_unavailable_or_unknown_never_declined() {
    let failing = sim(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let down = sim(Faults::default());
    let down_url = down.base_url();
    down.stop().await;
    for base_url in [failing.base_url(), down_url] {
        let g = gateway_at(base_url, SECRET, 500, 1);
        assert!(matches!(
            g.create_intent(&request()).await,
            Err(GatewayError::Unavailable(_))
        ));
        assert!(matches!(
            g.retrieve_intent("pi_1").await,
            Err(GatewayError::Unavailable(_))
        ));
        assert!(matches!(
            g.cancel_intent("pi_1").await,
            Err(GatewayError::Unavailable(_))
        ));
        assert!(matches!(
            g.confirm_intent("pi_1", &pm("pm_card_visa")).await,
            Err(ChargeError::Unknown(_))
        ));
    }
    failing.stop().await;
}

#[tokio::test]
async fn a_wrong_secret_key_is_refused_and_never_taken_for_a_decline() {
    let sim = start(
        "127.0.0.1:0",
        Simulator::new(None, Faults::default())
            .unwrap()
            .with_secret_key(SECRET),
    )
    .unwrap();
    let intent = gateway(&sim).create_intent(&request()).await.unwrap();
    let wrong = gateway_at(sim.base_url(), "sk_test_wrong_key", 2000, 2);
    let refused = wrong.create_intent(&request()).await.unwrap_err();
    assert!(
        matches!(refused, GatewayError::Rejected(ref m) if m.starts_with("401")),
        "{refused:?}"
    );
    assert!(!refused.to_string().contains("wrong_key"));
    assert!(matches!(
        wrong.retrieve_intent(&intent.id).await,
        Err(GatewayError::Rejected(_))
    ));
    assert!(matches!(
        wrong.cancel_intent(&intent.id).await,
        Err(GatewayError::Rejected(_))
    ));
    assert!(matches!(
        wrong.confirm_intent(&intent.id, &pm("pm_card_visa")).await,
        Err(ChargeError::Unknown(_))
    ));
    assert_eq!(
        gateway(&sim)
            .retrieve_intent(&intent.id)
            .await
            .unwrap()
            .status,
        IntentStatus::RequiresPaymentMethod { last_error: None },
        "nothing happened to it"
    );
    sim.stop().await;
}
