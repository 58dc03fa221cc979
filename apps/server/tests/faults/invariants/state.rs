//! What a run left, read once for the checks: the simulator's [`Ledger`] (every payment
//! intent and refund, and how much of each intent was refunded) and every buyer's
//! [`Subscriptions`] through the API — with the first violations, a key holding more than
//! one subscription or one on another plan than it asked for.

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::{api::get_json, paysim::Paysim};

/// The simulator's ledger, the truth about money.
pub struct Ledger {
    pub intents: Vec<Value>,
    pub refunds: Vec<Value>,
    /// The amount refunded of each payment intent that has a refund.
    refunded: HashMap<String, i64>,
}

impl Ledger {
    pub async fn read(paysim: &Paysim, http: &reqwest::Client) -> Self {
        let intents = paysim.list_all(http, "/v1/payment_intents").await;
        let refunds = paysim.list_all(http, "/v1/refunds").await;
        let mut refunded: HashMap<String, i64> = HashMap::new();
        for r in &refunds {
            *refunded
                .entry(r["payment_intent"].as_str().unwrap_or_default().to_owned())
                .or_default() += r["amount"].as_i64().unwrap_or_default();
        }
        Self {
            intents,
            refunds,
            refunded,
        }
    }

    /// The intents that charged the customer.
    pub fn succeeded(&self) -> Vec<&Value> {
        self.intents
            .iter()
            .filter(|i| i["status"] == "succeeded")
            .collect()
    }

    /// Whether refunds give back the whole amount of the intent.
    pub fn fully_refunded(&self, intent: &Value) -> bool {
        self.refunded
            .get(intent["id"].as_str().unwrap_or_default())
            .is_some_and(|&amount| amount >= intent["amount"].as_i64().unwrap_or(i64::MAX))
    }

    /// Whether the intent has any refund at all.
    pub fn has_refund(&self, id: &str) -> bool {
        self.refunded.contains_key(id)
    }
}

/// One customer of the run: a purchase key's or a checkout's.
pub struct Buyer<'a> {
    pub customer: &'a str,
    pub plan: &'a str,
    /// The key, as violations name it.
    pub key: &'a str,
}

/// Every buyer's subscriptions (one customer per key), as the API lists them.
pub struct Subscriptions {
    /// Subscription (if any) of each customer.
    pub of_customer: HashMap<String, Value>,
    /// Every subscription of every key, by id.
    pub by_id: HashMap<String, Value>,
}

impl Subscriptions {
    pub async fn of_every_key(
        http: &reqwest::Client,
        api: &str,
        buyers: &[Buyer<'_>],
        v: &mut Vec<String>,
    ) -> Self {
        let mut subscription_of: HashMap<String, Value> = HashMap::new();
        let mut subscriptions: HashMap<String, Value> = HashMap::new();
        for b in buyers {
            let customer = b.customer;
            match get_json(
                http,
                &format!("{api}/api/customers/{customer}/subscriptions?limit=100"),
                false,
            )
            .await
            {
                Ok(page) => {
                    let data = page["data"].as_array().cloned().unwrap_or_default();
                    if data.len() > 1 {
                        v.push(format!(
                            "key {} has {} subscriptions: {:?}",
                            b.key,
                            data.len(),
                            data.iter().map(|s| s["id"].clone()).collect::<Vec<_>>()
                        ));
                    }
                    for s in data {
                        if s["plan_id"] != b.plan {
                            v.push(format!(
                                "key {}: subscription {} is on plan {} instead of {}",
                                b.key, s["id"], s["plan_id"], b.plan
                            ));
                        }
                        subscriptions
                            .insert(s["id"].as_str().unwrap_or_default().to_owned(), s.clone());
                        subscription_of.insert(customer.to_owned(), s);
                    }
                }
                Err(e) => v.push(format!("subscriptions of {customer}: {e}")),
            }
        }
        Self {
            of_customer: subscription_of,
            by_id: subscriptions,
        }
    }

    /// How many subscriptions have each status, for the summary.
    pub fn by_status(&self) -> BTreeMap<String, u64> {
        let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
        for s in self.by_id.values() {
            *by_status
                .entry(s["status"].as_str().unwrap_or("?").to_owned())
                .or_default() += 1;
        }
        by_status
    }
}
