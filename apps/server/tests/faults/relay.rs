//! The fleet's load balancer for webhooks ([`Relay`]): the simulator delivers every event
//! to one URL, as Stripe delivers to one endpoint, and the relay forwards each delivery,
//! byte for byte with its `Stripe-Signature`, to a random instance — up or not — and
//! answers what the instance answered (502 when it did not answer, 503 before the fleet
//! exists). What the instances answered is counted, so that a scenario can tell that
//! deliveries failed while the database was away and that no genuine event was refused.

use std::{
    collections::BTreeMap,
    sync::{Arc, OnceLock},
    time::Duration,
};

use actix_web::{web, HttpRequest, HttpResponse};
use parking_lot::Mutex;
use serde_json::Value;

use crate::processes::Fleet;

#[derive(Default)]
pub struct Relay {
    fleet: OnceLock<Arc<Fleet>>,
    client: reqwest::Client,
    /// What the instances answered, by `<status> <outcome or code>`.
    answers: Mutex<BTreeMap<String, u64>>,
}

impl Relay {
    /// Where the simulator delivers, on the test's own server.
    pub const PATH: &'static str = "/_relay/stripe";

    /// The fleet to forward to, once it is up.
    pub fn serve(&self, fleet: Arc<Fleet>) {
        let _ = self.fleet.set(fleet);
    }

    pub fn answers(&self) -> BTreeMap<String, u64> {
        self.answers.lock().clone()
    }

    fn count(&self, label: String) {
        *self.answers.lock().entry(label).or_default() += 1;
    }
}

/// `POST /_relay/stripe`: one delivery, forwarded.
pub async fn forward(
    relay: web::Data<Arc<Relay>>,
    req: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let Some(fleet) = relay.fleet.get() else {
        return HttpResponse::ServiceUnavailable().finish();
    };
    let mut out = relay
        .client
        .post(format!("{}/api/webhooks/stripe", fleet.random_url()))
        .timeout(Duration::from_secs(5))
        .body(body.to_vec());
    for name in ["content-type", "stripe-signature"] {
        if let Some(value) = req.headers().get(name) {
            out = out.header(name, value.as_bytes());
        }
    }
    match out.send().await {
        Ok(res) => {
            let status = res.status();
            let bytes = res.bytes().await.unwrap_or_default();
            let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            let what = body["outcome"]
                .as_str()
                .or(body["code"].as_str())
                .unwrap_or("-");
            relay.count(format!("{} {what}", status.as_u16()));
            let status = actix_web::http::StatusCode::from_u16(status.as_u16())
                .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
            HttpResponse::build(status).body(bytes)
        }
        Err(_) => {
            relay.count("no answer".into());
            HttpResponse::BadGateway().finish()
        }
    }
}
