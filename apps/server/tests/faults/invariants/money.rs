//! The money checks, the simulator's ledger against the API: every payment intent names
//! a buyer's customer; every succeeded intent is the payment of its `active` or `canceled`
//! subscription, or is refunded (and the refund audited) — a checkout's late payment has
//! no subscription to be one of; every refund is of a succeeded
//! charge; and every `active` or `canceled` subscription has exactly one succeeded intent.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use super::state::{Buyer, Ledger, Subscriptions};
use crate::api::get_json;

/// Every payment intent by the customer it names; an intent naming no buyer's customer
/// is a violation.
pub fn intents_by_customer<'a>(
    ledger: &'a Ledger,
    buyers: &[Buyer<'_>],
    v: &mut Vec<String>,
) -> HashMap<String, Vec<&'a Value>> {
    let mut intents_of_customer: HashMap<String, Vec<&Value>> = HashMap::new();
    let customers: HashSet<&str> = buyers.iter().map(|b| b.customer).collect();
    for intent in &ledger.intents {
        let customer = intent["metadata"]["customer_id"]
            .as_str()
            .unwrap_or_default();
        if !customers.contains(customer) {
            v.push(format!(
                "payment intent {} names customer {customer:?}, no key's",
                intent["id"]
            ));
        }
        intents_of_customer
            .entry(customer.to_owned())
            .or_default()
            .push(intent);
    }
    intents_of_customer
}

/// Every succeeded intent is attached to a live subscription of its customer, or is fully
/// refunded with the refund in the audit log (`refund_audited`). Returns the succeeded
/// intents by the subscription they name.
pub async fn every_charge_attached_or_refunded<'a>(
    http: &reqwest::Client,
    api: &str,
    ledger: &'a Ledger,
    refund_audited: &HashSet<String>,
    v: &mut Vec<String>,
) -> HashMap<String, Vec<&'a Value>> {
    let mut charges_of: HashMap<String, Vec<&Value>> = HashMap::new();
    for intent in ledger.succeeded() {
        let id = intent["id"].as_str().unwrap_or_default();
        let sub_id = intent["metadata"]["subscription_id"]
            .as_str()
            .unwrap_or_default();
        charges_of
            .entry(sub_id.to_owned())
            .or_default()
            .push(intent);
        let sub = match get_json(http, &format!("{api}/api/subscriptions/{sub_id}"), false).await {
            Ok(s) => s,
            // A checkout's subscription exists once it is paid: a payment that landed
            // after its session ended unpaid, with no seat free, is refunded instead.
            Err(e)
                if e.ends_with("404") && intent["metadata"]["checkout_session_id"].is_string() =>
            {
                if !ledger.fully_refunded(intent) {
                    v.push(format!(
                        "payment intent {id} of checkout session {} succeeded, has no subscription and was not refunded",
                        intent["metadata"]["checkout_session_id"]
                    ));
                } else if !refund_audited.contains(sub_id) {
                    v.push(format!(
                        "the refund of {id} (checkout subscription {sub_id}) is not in the audit log"
                    ));
                }
                continue;
            }
            Err(e) => {
                v.push(format!(
                    "succeeded payment intent {id} names subscription {sub_id}: {e}"
                ));
                continue;
            }
        };
        if sub["customer_id"] != intent["metadata"]["customer_id"] {
            v.push(format!(
                "payment intent {id} of customer {} pays subscription {sub_id} of {}",
                intent["metadata"]["customer_id"], sub["customer_id"]
            ));
        }
        match sub["status"].as_str() {
            Some("active") | Some("canceled") => {
                if sub["payment_id"] != id {
                    v.push(format!(
                        "succeeded payment intent {id} is not the payment of its {} subscription {sub_id} (payment_id {})",
                        sub["status"], sub["payment_id"]
                    ));
                    if !ledger.fully_refunded(intent) {
                        v.push(format!(
                            "payment intent {id} is neither attached nor refunded"
                        ));
                    }
                } else if ledger.has_refund(id) {
                    v.push(format!(
                        "payment intent {id} pays the {} subscription {sub_id} but was refunded",
                        sub["status"]
                    ));
                }
            }
            status => {
                if !ledger.fully_refunded(intent) {
                    v.push(format!(
                        "succeeded payment intent {id} belongs to the {status:?} subscription {sub_id} and was not refunded"
                    ));
                } else if !refund_audited.contains(sub_id) {
                    v.push(format!(
                        "the refund of {id} (subscription {sub_id}) is not in the audit log"
                    ));
                }
            }
        }
    }
    charges_of
}

/// Every refund gives back a succeeded charge.
pub fn every_refund_of_a_succeeded_charge(ledger: &Ledger, v: &mut Vec<String>) {
    let succeeded = ledger.succeeded();
    for r in &ledger.refunds {
        let pi = r["payment_intent"].as_str().unwrap_or_default();
        if !succeeded.iter().any(|i| i["id"] == pi) {
            v.push(format!(
                "refund {} of {pi}, which is not a succeeded charge",
                r["id"]
            ));
        }
    }
}

/// Every `active` or `canceled` subscription has exactly one succeeded payment intent
/// (`charges_of`, by subscription).
pub fn every_live_subscription_charged_once(
    subscriptions: &Subscriptions,
    charges_of: &HashMap<String, Vec<&Value>>,
    v: &mut Vec<String>,
) {
    for (id, s) in &subscriptions.by_id {
        if matches!(s["status"].as_str(), Some("active") | Some("canceled")) {
            let charges = charges_of.get(id).map(Vec::len).unwrap_or(0);
            if charges != 1 {
                v.push(format!(
                    "{} subscription {id} has {charges} succeeded payment intents",
                    s["status"]
                ));
            }
        }
    }
}
