//! PaymentIntents confirmed later: created unconfirmed, confirmed (with declines and
//! 3-D Secure), cancelled, kept across restarts; and the simulator's own API key.

use seatkeeper_paysim::{start, Faults, Running, Simulator};
use serde_json::Value;

const KEY: &str = "sk_test_paysim";

struct Api {
    sim: Running,
    http: reqwest::Client,
}

impl Api {
    fn new(simulator: Simulator) -> Self {
        Self {
            sim: start("127.0.0.1:0", simulator).unwrap(),
            http: reqwest::Client::new(),
        }
    }

    async fn post(&self, path: &str, key: Option<&str>, form: &[(&str, &str)]) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}{path}", self.sim.base_url()))
            .bearer_auth(KEY)
            .form(form);
        if let Some(key) = key {
            req = req.header("Idempotency-Key", key);
        }
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        let res = self
            .http
            .get(format!("{}{path}", self.sim.base_url()))
            .bearer_auth(KEY)
            .send()
            .await
            .unwrap();
        (res.status().as_u16(), res.json().await.unwrap())
    }

    async fn create(&self, key: &str) -> Value {
        let (status, intent) = self
            .post(
                "/v1/payment_intents",
                Some(key),
                &[
                    ("amount", "1500"),
                    ("currency", "usd"),
                    ("payment_method_types[]", "card"),
                    ("metadata[checkout_session_id]", key),
                ],
            )
            .await;
        assert_eq!(status, 200, "{intent}");
        intent
    }

    async fn confirm(&self, id: &str, pm: &str) -> (u16, Value) {
        self.post(
            &format!("/v1/payment_intents/{id}/confirm"),
            None,
            &[("payment_method", pm)],
        )
        .await
    }
}

#[tokio::test]
async fn an_unconfirmed_intent_waits_then_declines_leave_it_waiting_until_a_card_pays() {
    let api = Api::new(Simulator::new(None, Faults::default()).unwrap());
    let intent = api.create("cs_1").await;
    let id = intent["id"].as_str().unwrap();
    assert_eq!(intent["status"], "requires_payment_method");
    assert_eq!(intent["payment_method"], Value::Null);
    assert!(intent["client_secret"]
        .as_str()
        .unwrap()
        .starts_with(&format!("{id}_secret_")));
    assert_eq!(
        api.create("cs_1").await,
        intent,
        "the same key, the same intent"
    );

    let (status, declined) = api.confirm(id, "pm_card_insufficientFunds").await;
    assert_eq!(status, 402);
    assert_eq!(declined["error"]["type"], "card_error");
    assert_eq!(declined["error"]["decline_code"], "insufficient_funds");
    let waiting = &declined["error"]["payment_intent"];
    assert_eq!(waiting["status"], "requires_payment_method");
    assert_eq!(
        waiting["last_payment_error"]["payment_method"]["id"],
        "pm_card_insufficientFunds"
    );

    let (status, unknown) = api.confirm(id, "pm_card_nope").await;
    assert_eq!(status, 400);
    assert_eq!(unknown["error"]["code"], "resource_missing");

    let (status, paid) = api.confirm(id, "pm_card_visa").await;
    assert_eq!(status, 200, "{paid}");
    assert_eq!(paid["status"], "succeeded");
    assert_eq!(paid["payment_method"], "pm_card_visa");
    assert_eq!(paid["amount_received"], 1500);
    assert_eq!(paid["last_payment_error"], Value::Null);
    assert_eq!(api.get(&format!("/v1/payment_intents/{id}")).await.1, paid);

    let (status, again) = api.confirm(id, "pm_card_visa").await;
    assert_eq!(status, 400);
    assert_eq!(again["error"]["code"], "payment_intent_unexpected_state");
    assert_eq!(again["error"]["payment_intent"]["status"], "succeeded");
    let (status, _) = api
        .post(&format!("/v1/payment_intents/{id}/cancel"), None, &[])
        .await;
    assert_eq!(status, 400, "a succeeded intent cannot be cancelled");

    // Found by its metadata, and refundable like a one-call charge.
    let (_, found) = api
        .get(
            "/v1/payment_intents/search?query=metadata%5B%27checkout_session_id%27%5D%3A%27cs_1%27",
        )
        .await;
    assert_eq!(found["data"][0]["id"], id);
    let (status, _) = api
        .post("/v1/refunds", None, &[("payment_intent", id)])
        .await;
    assert_eq!(status, 200);
    api.sim.stop().await;
}

#[tokio::test]
async fn a_3ds_card_waits_for_the_authentication_page_which_passes_or_fails_it() {
    let api = Api::new(Simulator::new(None, Faults::default()).unwrap());
    let intent = api.create("cs_3ds").await;
    let id = intent["id"].as_str().unwrap();
    let (status, pending) = api.confirm(id, "pm_card_authenticationRequired").await;
    assert_eq!(status, 200);
    assert_eq!(pending["status"], "requires_action");
    assert_eq!(pending["next_action"]["type"], "redirect_to_url");
    let url = pending["next_action"]["redirect_to_url"]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        url,
        format!(
            "{}/v1/payment_intents/{id}/authenticate",
            api.sim.base_url()
        )
    );

    // The page: no API key needed, two buttons.
    let page = api.http.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("value=\"pass\"") && html.contains("value=\"fail\""));

    let failed: Value = api
        .http
        .post(format!("{url}?result=fail"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(failed["status"], "requires_payment_method");
    assert_eq!(
        failed["last_payment_error"]["code"],
        "payment_intent_authentication_failure"
    );
    let res = api
        .http
        .post(&url)
        .form(&[("result", "pass")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400, "nothing to authenticate any more");

    // Another try, through the page's form, from a browser with a return URL.
    let (_, pending) = api
        .post(
            &format!("/v1/payment_intents/{id}/confirm"),
            None,
            &[
                ("payment_method", "pm_card_threeDSecure2Required"),
                ("return_url", "https://shop.example/back"),
            ],
        )
        .await;
    assert_eq!(
        pending["next_action"]["redirect_to_url"]["return_url"],
        "https://shop.example/back"
    );
    let res = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(&url)
        .header("Accept", "text/html")
        .form(&[("result", "pass")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(&format!(
        "https://shop.example/back?payment_intent={id}&payment_intent_client_secret={id}_secret_"
    )));
    assert!(location.ends_with("&redirect_status=succeeded"));
    let (_, paid) = api.get(&format!("/v1/payment_intents/{id}")).await;
    assert_eq!(paid["status"], "succeeded");
    assert_eq!(paid["payment_method"], "pm_card_threeDSecure2Required");
    assert_eq!(paid["next_action"], Value::Null);

    // With error_on_requires_action, as one-call charges send it, 3-D Secure is a decline.
    let (status, declined) = api
        .post(
            "/v1/payment_intents",
            None,
            &[
                ("amount", "100"),
                ("currency", "usd"),
                ("payment_method", "pm_card_authenticationRequired"),
                ("confirm", "true"),
                ("error_on_requires_action", "true"),
            ],
        )
        .await;
    assert_eq!(status, 402);
    assert_eq!(declined["error"]["decline_code"], "authentication_required");
    api.sim.stop().await;
}

#[tokio::test]
async fn cancelling_is_final_idempotent_under_its_key_and_checked() {
    let api = Api::new(Simulator::new(None, Faults::default()).unwrap());
    let id = api.create("cs_c").await["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/payment_intents/{id}/cancel");
    let (status, _) = api
        .post(&path, None, &[("cancellation_reason", "nope")])
        .await;
    assert_eq!(status, 400);
    let (status, canceled) = api
        .post(&path, Some("c1"), &[("cancellation_reason", "abandoned")])
        .await;
    assert_eq!(status, 200);
    assert_eq!(canceled["status"], "canceled");
    assert_eq!(canceled["cancellation_reason"], "abandoned");
    assert!(canceled["canceled_at"].is_i64());
    let replay = api
        .http
        .post(format!("{}{path}", api.sim.base_url()))
        .bearer_auth(KEY)
        .header("Idempotency-Key", "c1")
        .form(&[("cancellation_reason", "abandoned")])
        .send()
        .await
        .unwrap();
    assert_eq!(replay.headers()["idempotent-replayed"], "true");
    let (status, again) = api.post(&path, None, &[]).await;
    assert_eq!(status, 400);
    assert_eq!(again["error"]["code"], "payment_intent_unexpected_state");
    let (status, _) = api.confirm(&id, "pm_card_visa").await;
    assert_eq!(status, 400, "a cancelled intent never charges");
    let (status, missing) = api.confirm("pi_nope", "pm_card_visa").await;
    assert_eq!(status, 404);
    assert_eq!(missing["error"]["code"], "resource_missing");
    api.sim.stop().await;
}

#[tokio::test]
async fn unconfirmed_intents_and_their_changes_survive_a_restart() {
    let dir = std::env::temp_dir().join(format!("paysim-intents-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ledger.jsonl");
    let api = Api::new(Simulator::new(Some(path.clone()), Faults::default()).unwrap());
    let waiting = api.create("cs_r1").await;
    let id = api.create("cs_r2").await["id"].as_str().unwrap().to_owned();
    let (_, pending) = api.confirm(&id, "pm_card_authenticationRequired").await;
    api.sim.stop().await;

    let api = Api::new(Simulator::new(Some(path), Faults::default()).unwrap());
    let (_, fetched) = api
        .get(&format!(
            "/v1/payment_intents/{}",
            waiting["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(fetched, waiting);
    assert_eq!(
        api.get(&format!("/v1/payment_intents/{id}")).await.1,
        pending
    );
    assert_eq!(api.create("cs_r1").await, waiting, "the key is remembered");
    let (status, _) = api.confirm(&id, "pm_card_visa").await;
    assert_eq!(status, 200);
    api.sim.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn with_a_secret_key_any_other_key_is_a_401_in_stripes_shape() {
    let api = Api::new(
        Simulator::new(None, Faults::default())
            .unwrap()
            .with_secret_key(KEY),
    );
    api.create("cs_k").await;
    let res = api
        .http
        .get(format!("{}/v1/payment_intents", api.sim.base_url()))
        .bearer_auth("sk_test_someone_else_1234")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("Invalid API Key provided"), "{message}");
    assert!(!message.contains("someone_else"), "the key is masked");
    api.sim.stop().await;
}
