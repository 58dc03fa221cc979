//! The simulator's memory: payment intents, refunds, idempotency records and webhook
//! endpoints, kept in a JSON-lines file of events so that the ledger survives a restart (or
//! a `kill -9`: each event is written before its answer is sent). Webhook deliveries are
//! not kept: those pending at a restart are lost.

use std::{
    collections::{HashMap, HashSet},
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A Stripe PaymentIntent, as much of it as the simulator models. Fields added after the
/// first ledgers were written have defaults, so older ledger files still load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    pub object: String,
    pub amount: i64,
    pub amount_received: i64,
    pub currency: String,
    /// `requires_payment_method`, `requires_confirmation`, `requires_action`,
    /// `succeeded` or `canceled`.
    pub status: String,
    /// `None` until a payment method is attached, and again after it failed.
    pub payment_method: Option<String>,
    pub confirmation_method: String,
    #[serde(default = "card")]
    pub payment_method_types: Vec<String>,
    #[serde(default = "automatic")]
    pub capture_method: String,
    /// `pi_…_secret_…`, for Stripe.js in the browser.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// `{"type": "redirect_to_url", "redirect_to_url": {"url", "return_url"}}` while
    /// `requires_action`.
    #[serde(default)]
    pub next_action: Option<Value>,
    #[serde(default)]
    pub canceled_at: Option<i64>,
    #[serde(default)]
    pub cancellation_reason: Option<String>,
    pub metadata: serde_json::Map<String, Value>,
    pub description: Option<String>,
    pub created: i64,
    pub latest_charge: Option<String>,
    pub last_payment_error: Option<Value>,
    pub livemode: bool,
}

fn card() -> Vec<String> {
    vec!["card".to_owned()]
}

fn automatic() -> String {
    "automatic".to_owned()
}

/// A Stripe WebhookEndpoint. Its `secret` is kept here (the ledger needs it to sign after
/// a restart) but shown only in the answer that created it, as Stripe does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    pub id: String,
    pub object: String,
    pub url: String,
    /// Event types, or `*` for all.
    pub enabled_events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub status: String,
    pub api_version: Option<String>,
    pub description: Option<String>,
    pub metadata: serde_json::Map<String, Value>,
    pub created: i64,
    pub livemode: bool,
}

impl WebhookEndpoint {
    /// Whether events of type `kind` go to this endpoint.
    pub fn wants(&self, kind: &str) -> bool {
        self.enabled_events.iter().any(|e| e == "*" || e == kind)
    }

    /// The endpoint as Stripe shows it after its creation: without its secret.
    pub fn public(&self) -> Self {
        Self {
            secret: None,
            ..self.clone()
        }
    }
}

/// A Stripe Refund.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refund {
    pub id: String,
    pub object: String,
    pub amount: i64,
    pub currency: String,
    pub payment_intent: String,
    pub charge: Option<String>,
    pub status: String,
    pub created: i64,
}

/// A finished request under an `Idempotency-Key`: replayed to later requests with the same
/// key and parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotentResponse {
    pub params: String,
    pub status: u16,
    pub body: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Event {
    Intent {
        intent: Box<PaymentIntent>,
    },
    Refund {
        refund: Refund,
    },
    Idempotency {
        key: String,
        response: IdempotentResponse,
    },
    Endpoint {
        endpoint: WebhookEndpoint,
    },
    EndpointDeleted {
        id: String,
    },
}

/// Everything the simulator knows.
#[derive(Debug, Default)]
pub struct State {
    /// In creation order.
    pub intents: Vec<PaymentIntent>,
    pub intent_index: HashMap<String, usize>,
    /// In creation order.
    pub refunds: Vec<Refund>,
    pub idempotency: HashMap<String, IdempotentResponse>,
    /// Webhook endpoints registered through the API, in creation order.
    pub endpoints: Vec<WebhookEndpoint>,
    /// Keys whose first request is being processed now.
    pub in_progress: HashSet<String>,
    file: Option<(PathBuf, File)>,
}

impl State {
    /// An empty state that is never written anywhere.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// The state recorded in `path` (created when missing); later changes are appended.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let mut state = Self::default();
        if path.exists() {
            let reader = BufReader::new(
                File::open(path).with_context(|| format!("could not read {}", path.display()))?,
            );
            for (n, line) in reader.lines().enumerate() {
                let line = line.with_context(|| format!("could not read {}", path.display()))?;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Event>(&line) {
                    Ok(event) => state.apply(event),
                    // A line cut short by a crash mid-write is the only thing lost.
                    Err(e) => {
                        tracing::warn!(line = n + 1, error = %e, "skipping an unreadable ledger line")
                    }
                }
            }
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("could not open the ledger {}", path.display()))?;
        state.file = Some((path.to_owned(), file));
        Ok(state)
    }

    fn apply(&mut self, event: Event) {
        match event {
            Event::Intent { intent } => match self.intent_index.get(&intent.id) {
                Some(&i) => self.intents[i] = *intent,
                None => {
                    self.intent_index
                        .insert(intent.id.clone(), self.intents.len());
                    self.intents.push(*intent);
                }
            },
            Event::Refund { refund } => self.refunds.push(refund),
            Event::Idempotency { key, response } => {
                self.idempotency.insert(key, response);
            }
            Event::Endpoint { endpoint } => {
                self.endpoints.retain(|e| e.id != endpoint.id);
                self.endpoints.push(endpoint);
            }
            Event::EndpointDeleted { id } => self.endpoints.retain(|e| e.id != id),
        }
    }

    fn record(&mut self, event: Event) -> anyhow::Result<()> {
        if let Some((path, file)) = &mut self.file {
            let mut line = serde_json::to_vec(&event)?;
            line.push(b'\n');
            file.write_all(&line)
                .with_context(|| format!("could not write the ledger {}", path.display()))?;
        }
        self.apply(event);
        Ok(())
    }

    pub fn put_intent(&mut self, intent: PaymentIntent) -> anyhow::Result<()> {
        self.record(Event::Intent {
            intent: Box::new(intent),
        })
    }

    pub fn put_refund(&mut self, refund: Refund) -> anyhow::Result<()> {
        self.record(Event::Refund { refund })
    }

    pub fn put_response(
        &mut self,
        key: String,
        response: IdempotentResponse,
    ) -> anyhow::Result<()> {
        self.record(Event::Idempotency { key, response })
    }

    pub fn put_endpoint(&mut self, endpoint: WebhookEndpoint) -> anyhow::Result<()> {
        self.record(Event::Endpoint { endpoint })
    }

    pub fn delete_endpoint(&mut self, id: &str) -> anyhow::Result<()> {
        self.record(Event::EndpointDeleted { id: id.to_owned() })
    }

    pub fn intent(&self, id: &str) -> Option<&PaymentIntent> {
        self.intent_index.get(id).map(|&i| &self.intents[i])
    }

    /// The amount refunded so far for a payment intent.
    pub fn refunded(&self, payment_intent: &str) -> i64 {
        self.refunds
            .iter()
            .filter(|r| r.payment_intent == payment_intent && r.status == "succeeded")
            .map(|r| r.amount)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intent(id: &str, status: &str) -> PaymentIntent {
        PaymentIntent {
            id: id.into(),
            object: "payment_intent".into(),
            amount: 100,
            amount_received: 100,
            currency: "usd".into(),
            status: status.into(),
            payment_method: Some("pm_card_visa".into()),
            confirmation_method: "automatic".into(),
            payment_method_types: card(),
            capture_method: automatic(),
            client_secret: None,
            next_action: None,
            canceled_at: None,
            cancellation_reason: None,
            metadata: Default::default(),
            description: None,
            created: 1,
            latest_charge: None,
            last_payment_error: None,
            livemode: false,
        }
    }

    #[test]
    fn a_ledger_file_brings_back_intents_refunds_and_idempotent_responses() {
        let dir = std::env::temp_dir().join(format!("paysim-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ledger.jsonl");
        {
            let mut s = State::open(&path).unwrap();
            s.put_intent(intent("pi_1", "processing")).unwrap();
            s.put_intent(intent("pi_1", "succeeded")).unwrap();
            s.put_intent(intent("pi_2", "requires_payment_method"))
                .unwrap();
            s.put_response(
                "k1".into(),
                IdempotentResponse {
                    params: "p".into(),
                    status: 200,
                    body: "{}".into(),
                },
            )
            .unwrap();
        }
        let s = State::open(&path).unwrap();
        assert_eq!(s.intents.len(), 2);
        assert_eq!(s.intent("pi_1").unwrap().status, "succeeded");
        assert_eq!(s.idempotency["k1"].status, 200);
        std::fs::remove_dir_all(dir).unwrap();
    }

    fn endpoint(id: &str) -> WebhookEndpoint {
        WebhookEndpoint {
            id: id.into(),
            object: "webhook_endpoint".into(),
            url: "http://127.0.0.1:1/hook".into(),
            enabled_events: vec!["*".into()],
            secret: Some("whsec_1".into()),
            status: "enabled".into(),
            api_version: None,
            description: None,
            metadata: Default::default(),
            created: 1,
            livemode: false,
        }
    }

    #[test]
    fn webhook_endpoints_and_their_deletion_survive_and_old_intent_lines_still_load() {
        let dir = std::env::temp_dir().join(format!("paysim-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("ledger.jsonl");
        // A line written before intents had a client secret, next action or cancellation.
        std::fs::write(
            &path,
            r#"{"event":"intent","intent":{"id":"pi_old","object":"payment_intent","amount":5,"amount_received":5,"currency":"usd","status":"succeeded","payment_method":"pm_card_visa","confirmation_method":"automatic","metadata":{},"description":null,"created":1,"latest_charge":"ch_1","last_payment_error":null,"livemode":false}}"#
                .to_owned()
                + "\n",
        )
        .unwrap();
        {
            let mut s = State::open(&path).unwrap();
            s.put_endpoint(endpoint("we_1")).unwrap();
            s.put_endpoint(endpoint("we_2")).unwrap();
            s.delete_endpoint("we_1").unwrap();
        }
        let s = State::open(&path).unwrap();
        let old = s.intent("pi_old").unwrap();
        assert_eq!(old.payment_method.as_deref(), Some("pm_card_visa"));
        assert_eq!(old.payment_method_types, ["card"]);
        assert_eq!(old.client_secret, None);
        assert_eq!(s.endpoints.len(), 1);
        assert_eq!(s.endpoints[0].secret.as_deref(), Some("whsec_1"));
        assert_eq!(s.endpoints[0].public().secret, None);
        assert!(s.endpoints[0].wants("payment_intent.succeeded"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
