//! Webhooks: endpoints, Stripe's event shape and signature, retries, and the faults
//! (dropped, duplicated, delayed, reordered deliveries).

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use actix_web::{dev::ServerHandle, web, App, HttpRequest, HttpResponse, HttpServer};
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use seatkeeper_paysim::{start, Faults, Running, Simulator, WebhookFaults, WebhookSettings};
use serde_json::Value;
use sha2::Sha256;

const KEY: &str = "sk_test_paysim";

/// A webhook receiver: answers 500 to its first `fail_first` calls, then 200.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<(String, String)>>>,
    handle: ServerHandle,
}

impl Receiver {
    fn start(fail_first: usize) -> Self {
        let got: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
        let calls = Arc::new(AtomicUsize::new(0));
        let (g, c) = (got.clone(), calls);
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            let (g, c) = (g.clone(), c.clone());
            App::new().route(
                "/hook",
                web::post().to(move |req: HttpRequest, body: web::Bytes| {
                    let (g, c) = (g.clone(), c.clone());
                    async move {
                        if c.fetch_add(1, Ordering::SeqCst) < fail_first {
                            return HttpResponse::InternalServerError().finish();
                        }
                        let sig = req
                            .headers()
                            .get("stripe-signature")
                            .unwrap()
                            .to_str()
                            .unwrap()
                            .to_owned();
                        g.lock()
                            .push((sig, String::from_utf8(body.to_vec()).unwrap()));
                        HttpResponse::Ok().finish()
                    }
                }),
            )
        })
        .listen(listener)
        .unwrap()
        .workers(1)
        .disable_signals()
        .run();
        let handle = server.handle();
        tokio::spawn(server);
        Self {
            url: format!("http://127.0.0.1:{port}/hook"),
            got,
            handle,
        }
    }

    /// The events received, once there are `n` of them (or after 10 s).
    async fn events(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.got.lock().len() < n && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let got = self.got.lock();
        got.iter()
            .map(|(_, body)| serde_json::from_str(body).unwrap())
            .collect()
    }
}

fn fast(faults: WebhookFaults, max_attempts: u32) -> WebhookSettings {
    WebhookSettings {
        retry_scale: 0.01,
        max_attempts,
        faults,
    }
}

async fn post(sim: &Running, path: &str, form: &[(&str, &str)]) -> Value {
    reqwest::Client::new()
        .post(format!("{}{path}", sim.base_url()))
        .bearer_auth(KEY)
        .form(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn get(sim: &Running, path: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}{path}", sim.base_url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Creates an intent and confirms it with `pm`; its id.
async fn pay(sim: &Running, pm: &str) -> String {
    let intent = post(
        sim,
        "/v1/payment_intents",
        &[
            ("amount", "700"),
            ("currency", "eur"),
            ("metadata[checkout_session_id]", "cs_1"),
        ],
    )
    .await;
    let id = intent["id"].as_str().unwrap().to_owned();
    post(
        sim,
        &format!("/v1/payment_intents/{id}/confirm"),
        &[("payment_method", pm)],
    )
    .await;
    id
}

async fn wait_for(sim: &Running, done: impl Fn(&[seatkeeper_paysim::Delivery]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done(&sim.simulator().webhooks().deliveries()) {
        assert!(
            Instant::now() < deadline,
            "{:#?}",
            sim.simulator().webhooks().deliveries()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_api_endpoint_gets_its_events_in_stripes_shape_signed_with_its_secret() {
    let sim = start(
        "127.0.0.1:0",
        Simulator::new(None, Faults::default()).unwrap(),
    )
    .unwrap();
    let rx = Receiver::start(0);
    let endpoint = post(
        &sim,
        "/v1/webhook_endpoints",
        &[
            ("url", rx.url.as_str()),
            ("enabled_events[0]", "payment_intent.succeeded"),
            ("enabled_events[1]", "payment_intent.payment_failed"),
        ],
    )
    .await;
    let secret = endpoint["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(endpoint["object"], "webhook_endpoint");
    let listed = get(&sim, "/v1/webhook_endpoints").await;
    assert_eq!(listed["data"][0]["id"], endpoint["id"]);
    assert_eq!(
        listed["data"][0].get("secret"),
        None,
        "the secret is shown once"
    );

    let declined = pay(&sim, "pm_card_chargeDeclined").await;
    let paid = pay(&sim, "pm_card_visa").await;
    let events = rx.events(2).await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["type"], "payment_intent.payment_failed");
    assert_eq!(events[0]["data"]["object"]["id"], declined.as_str());
    let event = &events[1];
    assert_eq!(event["type"], "payment_intent.succeeded");
    assert_eq!(event["object"], "event");
    assert_eq!(event["api_version"], "2024-06-20");
    assert_eq!(event["livemode"], false);
    assert_eq!(event["pending_webhooks"], 1);
    assert!(event["id"].as_str().unwrap().starts_with("evt_"));
    assert_eq!(
        event["data"]["object"],
        get(&sim, &format!("/v1/payment_intents/{paid}")).await
    );
    assert_eq!(
        event["data"]["object"]["metadata"]["checkout_session_id"],
        "cs_1"
    );

    // Stripe's signature: v1 = HMAC-SHA256("<t>.<body>") keyed with the whole secret.
    let (header, body) = rx.got.lock()[1].clone();
    let (t, v1) = header.split_once(',').unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    assert_eq!(
        v1,
        format!("v1={}", hex::encode(mac.finalize().into_bytes()))
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let age = now - t.parse::<i64>().unwrap();
    assert!((0..10).contains(&age));

    // Not subscribed to cancellations; deleted endpoints get nothing more.
    let id = endpoint["id"].as_str().unwrap();
    let deleted = reqwest::Client::new()
        .delete(format!("{}/v1/webhook_endpoints/{id}", sim.base_url()))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.json::<Value>().await.unwrap()["deleted"], true);
    pay(&sim, "pm_card_visa").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.got.lock().len(), 2);
    assert_eq!(
        get(&sim, "/v1/webhook_endpoints").await["data"],
        serde_json::json!([])
    );
    sim.stop().await;
    rx.handle.stop(false).await;
}

#[tokio::test]
async fn failed_deliveries_are_retried_until_a_2xx_and_given_up_after_the_last_attempt() {
    let flaky = Receiver::start(2);
    let sim = start(
        "127.0.0.1:0",
        Simulator::new(None, Faults::default())
            .unwrap()
            .with_webhook_settings(fast(WebhookFaults::default(), 3))
            .with_webhook_endpoint(&flaky.url, "whsec_cli")
            // Nothing listens there.
            .with_webhook_endpoint("http://127.0.0.1:9/hook", "whsec_down"),
    )
    .unwrap();
    let id = pay(&sim, "pm_card_visa").await;
    wait_for(&sim, |d| {
        d.len() == 2 && d.iter().all(|d| d.state != "pending")
    })
    .await;
    let deliveries = get(&sim, "/v1/_sim/webhook_deliveries").await["data"].clone();
    let by_url = |url: &str| {
        deliveries
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["url"] == url)
            .unwrap()
            .clone()
    };
    let ok = by_url(&flaky.url);
    assert_eq!(ok["state"], "delivered");
    assert_eq!(ok["attempts"], 3);
    assert_eq!(ok["last_status"], 200);
    assert_eq!(ok["payment_intent"], id.as_str());
    assert_eq!(ok["event_type"], "payment_intent.succeeded");
    let down = by_url("http://127.0.0.1:9/hook");
    assert_eq!(down["state"], "failed");
    assert_eq!(down["attempts"], 3);
    assert_eq!(down["last_status"], Value::Null);
    assert_eq!(flaky.events(1).await.len(), 1);
    sim.stop().await;
    flaky.handle.stop(false).await;
}

#[tokio::test]
async fn faults_drop_duplicate_delay_and_reorder_deliveries() {
    let rx = Receiver::start(0);
    let with = |faults| {
        start(
            "127.0.0.1:0",
            Simulator::new(None, Faults::default())
                .unwrap()
                .with_webhook_settings(fast(faults, 3))
                .with_webhook_endpoint(&rx.url, "whsec_f"),
        )
        .unwrap()
    };

    let sim = with(WebhookFaults {
        drop_rate: 1.0,
        ..WebhookFaults::default()
    });
    pay(&sim, "pm_card_visa").await;
    wait_for(&sim, |d| d.len() == 1 && d[0].state == "dropped").await;
    sim.stop().await;

    let sim = with(WebhookFaults {
        duplicate_rate: 1.0,
        ..WebhookFaults::default()
    });
    pay(&sim, "pm_card_visa").await;
    let events = rx.events(2).await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["id"], events[1]["id"], "the same event twice");
    sim.stop().await;

    let sim = with(WebhookFaults {
        delay: Duration::from_millis(400),
        reorder: true,
        ..WebhookFaults::default()
    });
    let started = Instant::now();
    let id = pay(&sim, "pm_card_authenticationRequired").await;
    let res = reqwest::Client::new()
        .post(format!(
            "{}/v1/payment_intents/{id}/authenticate?result=pass",
            sim.base_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let events = rx.events(4).await;
    assert!(started.elapsed() >= Duration::from_millis(400), "delayed");
    let kinds: Vec<_> = events[2..].iter().map(|e| e["type"].clone()).collect();
    assert_eq!(
        kinds,
        ["payment_intent.succeeded", "payment_intent.requires_action"],
        "newest first"
    );
    sim.stop().await;
    rx.handle.stop(false).await;
}
