//! The simulator's memory: payment intents, refunds and idempotency records, kept in a
//! JSON-lines file of events so that the ledger survives a restart (or a `kill -9`: each
//! event is written before its answer is sent).

use std::{
    collections::{HashMap, HashSet},
    fs::{File, OpenOptions},
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A Stripe PaymentIntent, as much of it as the simulator models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentIntent {
    pub id: String,
    pub object: String,
    pub amount: i64,
    pub amount_received: i64,
    pub currency: String,
    pub status: String,
    pub payment_method: String,
    pub confirmation_method: String,
    pub metadata: serde_json::Map<String, Value>,
    pub description: Option<String>,
    pub created: i64,
    pub latest_charge: Option<String>,
    pub last_payment_error: Option<Value>,
    pub livemode: bool,
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
            payment_method: "pm_card_visa".into(),
            confirmation_method: "automatic".into(),
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
}
