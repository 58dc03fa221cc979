//! The checks of each key (one customer per key): charged at most once, with payment
//! intents for at most one subscription, keeping a charge exactly when its subscription
//! holds the seat it paid for; what each of its clients was told is what the store holds;
//! and its clients agree. Counts how the clients' work on the keys ended, for the summary.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::Value;

use super::state::{Ledger, Subscriptions};
use crate::outcomes::{Final, JobResult};

/// Each key: one subscription, one charge, and what its clients were told. Returns how
/// many clients' work ended each way.
pub fn check_every_key(
    jobs: &[JobResult],
    subscriptions: &Subscriptions,
    intents_of_customer: &HashMap<String, Vec<&Value>>,
    ledger: &Ledger,
    v: &mut Vec<String>,
) -> BTreeMap<&'static str, u64> {
    let mut finals: BTreeMap<&'static str, u64> = BTreeMap::new();
    for r in jobs {
        let customer = &r.job.customer;
        let sub = subscriptions.of_customer.get(customer);
        let theirs = intents_of_customer.get(customer.as_str());
        charged_once_and_kept_as_held(r, sub, theirs, ledger, v);
        told_what_the_store_holds(r, sub, v);
        its_clients_agree(r, v);
        for f in &r.finals {
            *finals.entry(ending(f)).or_default() += 1;
        }
    }
    finals
}

/// At most one succeeded charge, payment intents for at most one subscription, and one
/// charge kept (not fully refunded) exactly when the subscription is `active` or
/// `canceled`.
fn charged_once_and_kept_as_held(
    r: &JobResult,
    sub: Option<&Value>,
    theirs: Option<&Vec<&Value>>,
    ledger: &Ledger,
    v: &mut Vec<String>,
) {
    let key = &r.job.key;
    let charged: Vec<&&Value> = theirs
        .iter()
        .flat_map(|v| v.iter())
        .filter(|i| i["status"] == "succeeded")
        .collect();
    if charged.len() > 1 {
        v.push(format!(
            "key {key} was charged {} times: {:?}",
            charged.len(),
            charged.iter().map(|i| i["id"].clone()).collect::<Vec<_>>()
        ));
    }
    let paid_subs: HashSet<&str> = theirs
        .iter()
        .flat_map(|v| v.iter())
        .filter_map(|i| i["metadata"]["subscription_id"].as_str())
        .collect();
    if paid_subs.len() > 1 {
        v.push(format!(
            "key {key} has payment intents for {} subscriptions",
            paid_subs.len()
        ));
    }
    let kept = charged.iter().filter(|i| !ledger.fully_refunded(i)).count();
    let holds =
        sub.is_some_and(|s| matches!(s["status"].as_str(), Some("active") | Some("canceled")));
    if (kept == 1) != holds || kept > 1 {
        v.push(format!(
            "key {key}: {kept} charges kept, subscription {:?}",
            sub.map(|s| s["status"].clone())
        ));
    }
}

/// What each client was told (201 with a subscription and payment, 402, 409 sold out) is
/// what the store holds, and a 201's subscription is cancelled exactly when the client
/// cancelled it.
fn told_what_the_store_holds(r: &JobResult, sub: Option<&Value>, v: &mut Vec<String>) {
    let key = &r.job.key;
    for f in &r.finals {
        match f {
            Final::Created {
                subscription,
                payment,
            } => {
                let ok = sub.is_some_and(|s| {
                    s["id"] == subscription.as_str()
                        && s["payment_id"] == payment.as_str()
                        && matches!(s["status"].as_str(), Some("active") | Some("canceled"))
                });
                if !ok {
                    v.push(format!(
                        "key {key}: the client got 201 {subscription} paid by {payment}, the store has {sub:?}"
                    ));
                }
                if (sub.map(|s| s["status"] == "canceled") == Some(true)) != r.canceled {
                    v.push(format!(
                        "key {key}: cancelled by the client: {}, status {:?}",
                        r.canceled,
                        sub.map(|s| s["status"].clone())
                    ));
                }
            }
            Final::Declined => {
                if sub.map(|s| s["status"] == "incomplete_expired") != Some(true) {
                    v.push(format!(
                        "key {key}: the client got 402, the store has {sub:?}"
                    ));
                }
            }
            Final::SoldOut => {
                if sub.is_some() {
                    v.push(format!(
                        "key {key}: the client got 409 sold out, the store has {sub:?}"
                    ));
                }
            }
            Final::Unexpected(status, code) => {
                v.push(format!("key {key}: unexpected answer {status} {code}"))
            }
            Final::Abandoned | Final::GaveUp => {}
        }
    }
}

/// The clients sending one key were told the same, whenever they were told anything
/// definitive.
fn its_clients_agree(r: &JobResult, v: &mut Vec<String>) {
    let definitive: Vec<&Final> = r.finals.iter().filter(|f| f.definitive()).collect();
    if definitive.windows(2).any(|w| w[0] != w[1]) {
        v.push(format!(
            "key {}: its clients were told different things: {:?}",
            r.job.key, r.finals
        ));
    }
}

/// How a client's work on a key ended, as the summary counts it.
fn ending(f: &Final) -> &'static str {
    match f {
        Final::Created { .. } => "created",
        Final::Declined => "declined",
        Final::SoldOut => "sold out",
        Final::Abandoned => "abandoned",
        Final::GaveUp => "gave up",
        Final::Unexpected(..) => "unexpected",
    }
}
