//! The checks of the checkout sessions, once the run settled: every session the clients
//! were given or the ledger names ended (none is open, so none holds a seat past its
//! expiry); each has at most one payment intent; a complete one is the `active` (or
//! `canceled`) subscription its intent paid, kept; an expired one's intent was cancelled,
//! or refunded when it was paid too late; each client was told what the store holds; and
//! each client's key, sent again, replays its session instead of opening another.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Value};

use super::state::{Ledger, Subscriptions};
use crate::{
    checkout_load::{session_json, CheckoutResult, Told, Way},
    scenario::Scenario,
    REQUEST_TIMEOUT,
};

/// Every check of the checkouts; returns the sessions by status, for the summary.
pub async fn check_every_checkout(
    sc: &Scenario,
    results: &[CheckoutResult],
    ledger: &Ledger,
    subscriptions: &Subscriptions,
    v: &mut Vec<String>,
) -> String {
    let api = sc.fleet.url(0);
    let mut intents_of: HashMap<&str, Vec<&Value>> = HashMap::new();
    for intent in &ledger.intents {
        if let Some(session) = intent["metadata"]["checkout_session_id"].as_str() {
            intents_of.entry(session).or_default().push(intent);
        }
    }
    let mut ids: HashSet<&str> = intents_of.keys().copied().collect();
    ids.extend(results.iter().filter_map(|r| r.session.as_deref()));

    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    let mut sessions: HashMap<&str, Value> = HashMap::new();
    for id in ids {
        let session = session_json(&sc.http, &api, id).await;
        let intents = intents_of.get(id).cloned().unwrap_or_default();
        each_session_ended_as_its_payment_says(id, &session, &intents, ledger, subscriptions, v);
        *by_status
            .entry(
                session["status"]
                    .as_str()
                    .unwrap_or("unreadable")
                    .to_owned(),
            )
            .or_default() += 1;
        sessions.insert(id, session);
    }
    for r in results {
        told_what_the_store_holds(r, &sessions, subscriptions, v);
    }
    every_key_replays_its_session(sc, results, v).await;
    by_status
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One session: ended, with at most one intent, and its intent as its ending says.
fn each_session_ended_as_its_payment_says(
    id: &str,
    session: &Value,
    intents: &[&Value],
    ledger: &Ledger,
    subscriptions: &Subscriptions,
    v: &mut Vec<String>,
) {
    if intents.len() > 1 {
        v.push(format!(
            "checkout session {id} has {} payment intents: {:?}",
            intents.len(),
            intents.iter().map(|i| i["id"].clone()).collect::<Vec<_>>()
        ));
    }
    let intent = intents.first();
    let named = &session["payment"]["payment_intent"];
    if let Some(intent) = intent {
        if !named.is_null() && *named != intent["id"] {
            v.push(format!(
                "checkout session {id} names intent {named}, the ledger's is {}",
                intent["id"]
            ));
        }
    }
    match session["status"].as_str() {
        Some("complete") => {
            let sub_id = session["subscription_id"].as_str().unwrap_or_default();
            let sub = subscriptions.by_id.get(sub_id);
            let status = sub.and_then(|s| s["status"].as_str());
            if !matches!(status, Some("active") | Some("canceled")) {
                v.push(format!(
                    "complete checkout session {id}: its subscription {sub_id} is {status:?}"
                ));
            }
            match intent {
                Some(i) if i["status"] == "succeeded" && !ledger.has_refund(id_of(i)) => {
                    if sub.is_some_and(|s| s["payment_id"] != i["id"]) {
                        v.push(format!(
                            "complete checkout session {id}: subscription {sub_id} is paid by {}, not by its intent {}",
                            sub.unwrap()["payment_id"], i["id"]
                        ));
                    }
                }
                other => v.push(format!(
                    "complete checkout session {id} without a kept charge: intent {:?}",
                    other.map(|i| (&i["id"], &i["status"]))
                )),
            }
        }
        Some("expired") => {
            if let Some(i) = intent {
                let settled = i["status"] == "canceled"
                    || (i["status"] == "succeeded" && ledger.fully_refunded(i));
                if !settled {
                    v.push(format!(
                        "expired checkout session {id}: its intent {} is {} (neither cancelled nor refunded)",
                        i["id"], i["status"]
                    ));
                }
            }
        }
        Some(other) => v.push(format!(
            "checkout session {id} is still {other} (expires at {}) once the run settled",
            session["expires_at"]
        )),
        None => v.push(format!("checkout session {id} cannot be read: {session}")),
    }
}

fn id_of(intent: &Value) -> &str {
    intent["id"].as_str().unwrap_or_default()
}

/// A completion is final: a client told `complete` finds its session complete with the
/// subscription it was told; a client that asked for its seat back finds the session
/// expired; a client told the plan was sold out has no subscription.
fn told_what_the_store_holds(
    r: &CheckoutResult,
    sessions: &HashMap<&str, Value>,
    subscriptions: &Subscriptions,
    v: &mut Vec<String>,
) {
    let session = r.session.as_deref().and_then(|id| sessions.get(id));
    let status = session.and_then(|s| s["status"].as_str());
    match &r.told {
        Told::Complete(sub)
            if status != Some("complete")
                || session.is_some_and(|s| s["subscription_id"] != sub.as_str()) =>
        {
            v.push(format!(
                "checkout {} was told complete with {sub}, the session is {status:?} ({:?})",
                r.job.key,
                session.map(|s| &s["subscription_id"])
            ))
        }
        Told::Expired if r.job.way == Way::Expire && status != Some("expired") => v.push(format!(
            "checkout {} got its seat back, but the session is {status:?}",
            r.job.key
        )),
        Told::SoldOut if subscriptions.of_customer.contains_key(&r.job.customer) => {
            v.push(format!(
                "checkout {} was told sold out but has a subscription",
                r.job.key
            ))
        }
        Told::Unexpected(status, code) => v.push(format!(
            "checkout {} got an answer no checkout should: {status} {code}",
            r.job.key
        )),
        _ => {}
    }
}

/// Every key that was given a session, sent again: the same session, replayed.
async fn every_key_replays_its_session(
    sc: &Scenario,
    results: &[CheckoutResult],
    v: &mut Vec<String>,
) {
    for r in results {
        let Some(id) = &r.session else { continue };
        let res = sc
            .http
            .post(format!("{}/api/checkout_sessions", sc.fleet.url(0)))
            .header("Idempotency-Key", &r.job.key)
            .json(
                &json!({"plan_id": r.job.plan, "customer_id": r.job.customer,
                "expires_in": r.job.expires_in}),
            )
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await;
        let replayed = match res {
            Ok(res) => {
                let flagged = res
                    .headers()
                    .get("idempotent-replayed")
                    .is_some_and(|h| h == "true");
                let status = res.status();
                let body: Value = res.json().await.unwrap_or(Value::Null);
                (status == 201 && flagged && body["id"] == id.as_str())
                    .then_some(())
                    .ok_or(format!("{status} {}", body["id"]))
            }
            Err(e) => Err(e.to_string()),
        };
        if let Err(got) = replayed {
            v.push(format!(
                "checkout key {} sent again: {got}, not a replay of session {id}",
                r.job.key
            ));
        }
    }
}
