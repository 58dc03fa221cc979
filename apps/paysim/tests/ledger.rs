//! The simulator's promises that the adapter tests do not cover: its ledger survives a
//! restart (idempotent replays included), and it answers like Stripe to bad requests.

use std::time::Duration;

use seatkeeper_paysim::{start, Faults, Simulator};
use serde_json::Value;

const KEY: &str = "sk_test_paysim";

fn form(pm: &str) -> Vec<(&'static str, String)> {
    vec![
        ("amount", "2500".into()),
        ("currency", "eur".into()),
        ("payment_method", pm.into()),
        ("confirm", "true".into()),
        ("metadata[subscription_id]", "sub_1".into()),
    ]
}

#[tokio::test]
async fn the_ledger_survives_a_restart_and_keeps_replaying_idempotent_answers() {
    let dir = std::env::temp_dir().join(format!("paysim-test-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ledger.jsonl");
    let client = reqwest::Client::new();

    let first = start(
        "127.0.0.1:0",
        Simulator::new(Some(path.clone()), Faults::default()).unwrap(),
    )
    .unwrap();
    let created: Value = client
        .post(format!("{}/v1/payment_intents", first.base_url()))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "order-1")
        .form(&form("pm_card_visa"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    first.stop().await;

    let second = start(
        "127.0.0.1:0",
        Simulator::new(Some(path.clone()), Faults::default()).unwrap(),
    )
    .unwrap();
    let fetched: Value = client
        .get(format!(
            "{}/v1/payment_intents/{}",
            second.base_url(),
            created["id"].as_str().unwrap()
        ))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(fetched, created);
    let replay = client
        .post(format!("{}/v1/payment_intents", second.base_url()))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "order-1")
        .form(&form("pm_card_visa"))
        .send()
        .await
        .unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    assert_eq!(replay.json::<Value>().await.unwrap(), created);
    let reused = client
        .post(format!("{}/v1/payment_intents", second.base_url()))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "order-1")
        .form(&form("pm_card_mastercard"))
        .send()
        .await
        .unwrap();
    assert_eq!(reused.status(), 400);
    assert_eq!(
        reused.json::<Value>().await.unwrap()["error"]["type"],
        "idempotency_error"
    );
    second.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn requests_without_a_key_or_with_bad_parameters_get_stripe_shaped_errors() {
    let sim = start(
        "127.0.0.1:0",
        Simulator::new(None, Faults::default()).unwrap(),
    )
    .unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/v1/payment_intents", sim.base_url());
    let res = client
        .post(&url)
        .form(&form("pm_card_visa"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let mut bad = form("pm_card_visa");
    bad[0].1 = "-5".into();
    let res = client
        .post(&url)
        .bearer_auth(KEY)
        .form(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["param"], "amount");
    let res = client
        .post(&url)
        .bearer_auth(KEY)
        .form(&form("pm_card_chargeDeclined"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 402);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["type"], "card_error");
    assert_eq!(
        body["error"]["payment_intent"]["status"],
        "requires_payment_method"
    );
    let res = client
        .get(format!("{url}?limit=0"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    sim.stop().await;
}

#[tokio::test]
async fn a_request_under_a_key_still_in_progress_is_a_409() {
    let sim = start(
        "127.0.0.1:0",
        Simulator::new(
            None,
            Faults {
                latency: Duration::from_millis(300),
                ..Faults::default()
            },
        )
        .unwrap(),
    )
    .unwrap();
    let client = reqwest::Client::new();
    let url = format!("{}/v1/payment_intents", sim.base_url());
    let send = || {
        client
            .post(&url)
            .bearer_auth(KEY)
            .header("Idempotency-Key", "same")
            .form(&form("pm_card_visa"))
            .send()
    };
    let (a, b) = tokio::join!(send(), async {
        tokio::time::sleep(Duration::from_millis(350)).await;
        send().await
    });
    let statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
    assert!(statuses.contains(&200), "{statuses:?}");
    sim.stop().await;
}
