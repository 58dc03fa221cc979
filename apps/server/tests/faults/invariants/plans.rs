//! The checks of each plan: its seats add up and its stats count what the keys hold
//! ([`seats_and_stats_add_up`]); its audit log, every page, replays from `plan_created` at
//! 0 to the seats left, each entry starting where the last ended
//! ([`replay_the_audit_log`]); each subscription has the entries its status says
//! ([`each_subscription_audited_as_its_status_says`]), a checkout's as it ended
//! ([`a_checkout_audited_as_it_ended`]); and the database's own view agrees
//! (`check_store_plan`). What the audit logs say about refunds and the reconciler's work
//! comes back in [`Audited`], for the money check and the summary.

use std::collections::{BTreeMap, HashMap, HashSet};

use seatkeeper_domain::{invariants::check_store_plan, PlanId};
use serde_json::Value;

use super::state::Subscriptions;
use crate::{
    api::{fetch_audit, get_json},
    scenario::Scenario,
};

/// What the audit logs of every plan said beyond each plan.
#[derive(Default)]
pub struct Audited {
    /// The subscriptions with a `payment_refunded` entry.
    pub refunds: HashSet<String>,
    /// The reconciler's entries by what it did, for the summary.
    pub reconciler: BTreeMap<&'static str, u64>,
}

/// Each subscription's audit entries, counted by action.
type Actions = HashMap<String, BTreeMap<String, u64>>;

/// Seats, stats and the audit log of each plan.
pub async fn check_every_plan(
    sc: &Scenario,
    subscriptions: &Subscriptions,
    v: &mut Vec<String>,
) -> Audited {
    let api = sc.fleet.url(0);
    let http = &sc.http;
    let mut audited = Audited::default();
    for (plan, capacity) in &sc.plans {
        let stats = match get_json(http, &format!("{api}/api/plans/{plan}/stats"), false).await {
            Ok(s) => s,
            Err(e) => {
                v.push(format!("stats of {plan}: {e}"));
                continue;
            }
        };
        seats_and_stats_add_up(plan, *capacity, &stats, subscriptions, v);

        let audit = match fetch_audit(http, &api, plan).await {
            Ok(audit) => audit,
            Err(e) => {
                v.push(e);
                Vec::new()
            }
        };
        let seats_left = count(&stats, "seats_left");
        let actions = replay_the_audit_log(plan, *capacity, &audit, seats_left, &mut audited, v);
        each_subscription_audited_as_its_status_says(plan, &actions, subscriptions, v);

        // The database agrees.
        let plan_id: PlanId = plan.parse().unwrap();
        for problem in check_store_plan(sc.db.store.as_ref(), plan_id).await {
            v.push(format!("plan {plan} in the database: {problem}"));
        }
    }
    audited
}

/// A count of the plan's stats (absurdly large when missing, so that it fails every check).
fn count(stats: &Value, field: &str) -> u64 {
    stats[field].as_u64().unwrap_or(u64::MAX / 4)
}

/// `capacity == seats_left + held + incomplete + active`, nothing held or `incomplete`
/// left, and the stats' counts are the buyers' subscriptions on the plan.
fn seats_and_stats_add_up(
    plan: &str,
    capacity: u64,
    stats: &Value,
    subscriptions: &Subscriptions,
    v: &mut Vec<String>,
) {
    let n = |f: &str| count(stats, f);
    let taken = n("held") + n("incomplete") + n("active");
    if n("capacity") != capacity || n("capacity") != n("seats_left") + taken {
        v.push(format!(
            "plan {plan}: capacity {} != seats_left {} + held {} + incomplete {} + active {}",
            n("capacity"),
            n("seats_left"),
            n("held"),
            n("incomplete"),
            n("active")
        ));
    }
    if n("held") != 0 {
        v.push(format!(
            "plan {plan}: {} seats still held once every checkout session ended",
            n("held")
        ));
    }
    if n("incomplete") != 0 {
        v.push(format!(
            "plan {plan}: {} incomplete subscriptions after recovery",
            n("incomplete")
        ));
    }
    let ours = |status: &str| {
        subscriptions
            .by_id
            .values()
            .filter(|s| s["plan_id"] == plan && s["status"] == status)
            .count() as u64
    };
    for status in ["active", "canceled", "incomplete_expired"] {
        if ours(status) != n(status) {
            v.push(format!(
                "plan {plan}: stats count {} {status}, the keys' subscriptions {}",
                n(status),
                ours(status)
            ));
        }
    }
}

/// Replays the plan's audit log: `seq` 1, 2, …; `plan_created` from 0 first; each entry
/// starting at the seats the last one left, moving them as its action may, never above
/// the capacity; ending at `seats_left`. Returns each subscription's entries by action,
/// and adds the refunds and the reconciler's work to `audited`.
fn replay_the_audit_log(
    plan: &str,
    capacity: u64,
    audit: &[Value],
    seats_left: u64,
    audited: &mut Audited,
    v: &mut Vec<String>,
) -> Actions {
    let mut seats: Option<u64> = None;
    let mut actions: Actions = HashMap::new();
    for (i, e) in audit.iter().enumerate() {
        let action = e["action"].as_str().unwrap_or("?");
        let before = e["seats_left_before"].as_u64().unwrap_or(u64::MAX);
        let after = e["seats_left_after"].as_u64().unwrap_or(u64::MAX);
        if e["seq"].as_u64() != Some(i as u64 + 1) {
            v.push(format!("plan {plan}: audit entry {i} has seq {}", e["seq"]));
        }
        match seats {
            None if action != "plan_created" || before != 0 => v.push(format!(
                "plan {plan}: the audit log starts with {action} from {before}, not plan_created from 0"
            )),
            Some(prev) if prev != before => v.push(format!(
                "plan {plan}: audit seq {} starts at {before} seats but the previous entry left {prev}",
                e["seq"]
            )),
            _ => {}
        }
        let delta = after as i64 - before as i64;
        let allowed = match action {
            "seat_reserved" | "seat_held" => delta == -1,
            "seat_released" | "subscription_canceled" | "hold_expired" => delta == 1,
            "purchase_activated" | "payment_refunded" | "checkout_completed" => delta == 0,
            "plan_created" => i == 0,
            other => {
                v.push(format!("plan {plan}: unexpected audit action {other}"));
                true
            }
        };
        if !allowed || after > capacity {
            v.push(format!(
                "plan {plan}: audit seq {} {action} moves seats {before} -> {after}",
                e["seq"]
            ));
        }
        seats = Some(after);
        if let Some(sub) = e["subscription_id"].as_str() {
            *actions
                .entry(sub.to_owned())
                .or_default()
                .entry(action.to_owned())
                .or_default() += 1;
            if action == "payment_refunded" {
                audited.refunds.insert(sub.to_owned());
            }
        }
        if e["actor"] == "reconciler" {
            let what = match action {
                "purchase_activated" => "activated",
                "seat_released" => "expired",
                "payment_refunded" => "refunded",
                _ => "other",
            };
            *audited.reconciler.entry(what).or_default() += 1;
        }
    }
    if seats != Some(seats_left) {
        v.push(format!(
            "plan {plan}: the audit log replays to {seats:?} seats left, the plan has {seats_left}"
        ));
    }
    actions
}

/// Each subscription of the plan's audit log belongs to a key and has the entries its
/// status says (reserved once; activated, released, cancelled as it ended; refunded at
/// most once); each of the keys' subscriptions on the plan has entries.
fn each_subscription_audited_as_its_status_says(
    plan: &str,
    actions: &Actions,
    subscriptions: &Subscriptions,
    v: &mut Vec<String>,
) {
    for (sub, counts) in actions {
        if counts.contains_key("seat_held") {
            a_checkout_audited_as_it_ended(sub, counts, subscriptions.by_id.get(sub), v);
            continue;
        }
        let Some(s) = subscriptions.by_id.get(sub) else {
            v.push(format!(
                "plan {plan}: the audit log names subscription {sub}, which belongs to no key"
            ));
            continue;
        };
        let c = |a: &str| counts.get(a).copied().unwrap_or(0);
        let expected: [u64; 4] = match s["status"].as_str() {
            Some("active") => [1, 1, 0, 0],
            Some("canceled") => [1, 1, 0, 1],
            Some("incomplete_expired") => [1, 0, 1, 0],
            _ => [1, 0, 0, 0],
        };
        let actual = [
            c("seat_reserved"),
            c("purchase_activated"),
            c("seat_released"),
            c("subscription_canceled"),
        ];
        if actual != expected || c("payment_refunded") > 1 {
            v.push(format!(
                "subscription {sub} ({}): audit entries {counts:?}",
                s["status"]
            ));
        }
    }
    for (id, s) in &subscriptions.by_id {
        if s["plan_id"] == plan && !actions.contains_key(id) {
            v.push(format!("subscription {id} has no audit entry"));
        }
    }
}

/// A checkout's subscription id in the audit log: every hold ended (`hold_expired`) but
/// the one a payment kept, with one `checkout_completed`, when it became a subscription
/// (`active`, or `canceled` since); no hold left and no completion when it never did (a
/// late payment refunded at most once). No purchase step names it.
fn a_checkout_audited_as_it_ended(
    sub: &str,
    counts: &BTreeMap<String, u64>,
    subscription: Option<&Value>,
    v: &mut Vec<String>,
) {
    let c = |a: &str| counts.get(a).copied().unwrap_or(0);
    let status = subscription.and_then(|s| s["status"].as_str());
    let paid = matches!(status, Some("active") | Some("canceled"));
    let holds_kept = c("seat_held") - c("hold_expired").min(c("seat_held"));
    let right = if paid {
        holds_kept == 1
            && c("hold_expired") + 1 == c("seat_held")
            && c("checkout_completed") == 1
            && c("subscription_canceled") == u64::from(status == Some("canceled"))
            && c("payment_refunded") == 0
    } else {
        subscription.is_none()
            && c("hold_expired") == c("seat_held")
            && c("checkout_completed") == 0
            && c("subscription_canceled") == 0
            && c("payment_refunded") <= 1
    };
    let purchase_steps = c("seat_reserved") + c("purchase_activated") + c("seat_released");
    if !right || purchase_steps > 0 {
        v.push(format!(
            "checkout subscription {sub} ({status:?}): audit entries {counts:?}"
        ));
    }
}
