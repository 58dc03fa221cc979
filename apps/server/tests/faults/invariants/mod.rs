//! The checks after each run: [`check_invariants`], through the API of instance 0 and the
//! simulator's ledger, and [`replay_every_key`], which sends every finished key once more.
//! The check reads what the run left ([`state`]: the ledger and every buyer's
//! subscriptions), then checks, in this order, each plan — seats, stats and its audit log
//! replayed entry by entry ([`plans`]) —, the money ([`money`]), each key ([`keys`]) and
//! each checkout session ([`checkouts`]).
//! Every step adds what it finds to one list of violations, in the order it finds them.

mod checkouts;
mod keys;
mod money;
mod plans;
mod replay;
mod state;

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Display,
};

use serde_json::Value;

pub use self::replay::replay_every_key;
use self::state::{Buyer, Ledger, Subscriptions};
use crate::{
    checkout_load::CheckoutResult,
    outcomes::{Final, JobResult},
    scenario::Scenario,
};

/// What the final check found.
pub struct Checked {
    pub violations: Vec<String>,
    /// Subscriptions by status, for the summary.
    pub keys: String,
    /// The ledger and the reconciler's work, for the summary.
    pub money: String,
    /// Subscription (if any) of each customer.
    pub subscription_of: HashMap<String, Value>,
    /// How many payment intents the ledger held.
    pub intents: usize,
}

/// The full check, through the API (`fleet.url(0)`) and the simulator's ledger:
///
/// - every plan: `capacity == seats_left + held + incomplete + active`, nothing held or
///   `incomplete` left, the stats' counts match the subscriptions, and the audit log
///   (admin, every page) replays from `plan_created` at 0 to `seats_left`, each entry
///   starting where the last ended, every subscription reserved (or held) once and
///   activated / released / cancelled / refunded as its status says;
/// - every succeeded PaymentIntent belongs to exactly one `active` or `canceled`
///   subscription whose `payment_id` it is, or is refunded (and the refund audited);
/// - every active or canceled subscription has exactly one succeeded PaymentIntent;
/// - each key (one customer per key) has at most one subscription and at most one charge,
///   and keeps one exactly when its subscription holds the seat it paid for;
/// - what each client was told (201 with a subscription and payment, 402, 409 sold out)
///   is what the store holds, and clients sending one key agree;
/// - the database's own view agrees (`check_store_plan`);
/// - every checkout session ended as its payment says (`checkouts`), and its client's key
///   replays it.
pub async fn check_invariants(
    sc: &Scenario,
    jobs: &[JobResult],
    checkouts: &[CheckoutResult],
) -> Checked {
    let api = sc.fleet.url(0);
    let http = &sc.http;
    let mut v: Vec<String> = Vec::new();

    // What the run left: the ledger, and every buyer's subscriptions (one customer per
    // purchase key or checkout).
    let ledger = Ledger::read(&sc.paysim, http).await;
    let buyers: Vec<Buyer<'_>> = jobs
        .iter()
        .map(|r| Buyer {
            customer: &r.job.customer,
            plan: &r.job.plan,
            key: &r.job.key,
        })
        .chain(checkouts.iter().map(|r| Buyer {
            customer: &r.job.customer,
            plan: &r.job.plan,
            key: &r.job.key,
        }))
        .collect();
    let subscriptions = Subscriptions::of_every_key(http, &api, &buyers, &mut v).await;

    // Seats, stats and the audit log of each plan.
    let audited = plans::check_every_plan(sc, &subscriptions, &mut v).await;

    // Money: every succeeded intent is attached to a live subscription or refunded.
    let intents_of_customer = money::intents_by_customer(&ledger, &buyers, &mut v);
    let charges_of =
        money::every_charge_attached_or_refunded(http, &api, &ledger, &audited.refunds, &mut v)
            .await;
    money::every_refund_of_a_succeeded_charge(&ledger, &mut v);
    money::every_live_subscription_charged_once(&subscriptions, &charges_of, &mut v);

    // Each key: one subscription, one charge, and what its clients were told.
    let finals = keys::check_every_key(jobs, &subscriptions, &intents_of_customer, &ledger, &mut v);
    // Each checkout session: ended as its payment says, and what its client was told.
    let sessions = if checkouts.is_empty() {
        String::new()
    } else {
        let by_status =
            checkouts::check_every_checkout(sc, checkouts, &ledger, &subscriptions, &mut v).await;
        format!(" · checkout sessions: {by_status}")
    };
    let without_answer = jobs
        .iter()
        .filter(|r| !r.finals.iter().any(Final::definitive))
        .count();

    let by_status = listed(&subscriptions.by_status());
    let finals = listed(&finals);
    let reconciler = listed(&audited.reconciler);
    Checked {
        violations: v,
        keys: format!(
            "clients: {finals}; keys without a definitive answer: {without_answer} · subscriptions: {by_status}{sessions}"
        ),
        money: format!(
            "ledger: {} intents, {} succeeded, {} refunds · reconciler: {}",
            ledger.intents.len(),
            ledger.succeeded().len(),
            ledger.refunds.len(),
            if reconciler.is_empty() { "nothing to do".to_owned() } else { reconciler }
        ),
        subscription_of: subscriptions.of_customer,
        intents: ledger.intents.len(),
    }
}

/// `key n, key n, …`, for the summary.
fn listed<K: Display>(counts: &BTreeMap<K, u64>) -> String {
    counts
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}
