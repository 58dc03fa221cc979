//! The last check of each run: every key that reached a subscription or a definitive
//! answer is sent once more, after recovery, and must replay what the store holds
//! without the ledger growing ([`replay_every_key`]).

use serde_json::{json, Value};

use super::Checked;
use crate::{
    outcomes::{Final, JobResult},
    scenario::Scenario,
    REQUEST_TIMEOUT,
};

/// Sends every key that reached a subscription or a definitive answer once more, after
/// recovery: each must replay (`Idempotent-Replayed: true`) what the store holds, and the
/// ledger must not grow.
pub async fn replay_every_key(sc: &Scenario, jobs: &[JobResult], checked: &Checked) -> Vec<String> {
    let mut v = Vec::new();
    for r in jobs {
        let sub = checked.subscription_of.get(&r.job.customer);
        let sold_out = r.finals.contains(&Final::SoldOut);
        if sub.is_none() && !sold_out {
            // Never reserved anything: sending it now would be a new purchase.
            continue;
        }
        let res = sc
            .http
            .post(format!("{}/api/subscriptions/purchase", sc.fleet.url(0)))
            .header("Idempotency-Key", &r.job.key)
            .json(&json!({"plan_id": r.job.plan, "customer_id": r.job.customer, "payment_method": r.job.method}))
            .timeout(REQUEST_TIMEOUT)
            .send()
            .await;
        let res = match res {
            Ok(res) => res,
            Err(e) => {
                v.push(format!("replay of {}: {e}", r.job.key));
                continue;
            }
        };
        let status = res.status().as_u16();
        let replayed = res
            .headers()
            .get("idempotent-replayed")
            .is_some_and(|h| h == "true");
        let body: Value = res.json().await.unwrap_or(Value::Null);
        let expected = match sub.and_then(|s| s["status"].as_str()) {
            Some("active") | Some("canceled") => 201,
            Some("incomplete_expired") => 402,
            None => 409,
            Some(_) => 0,
        };
        let same = status != 201 || sub.is_some_and(|s| s["id"] == body["id"]);
        if !replayed || status != expected || !same {
            v.push(format!(
                "key {} sent again after recovery: {status} (replayed: {replayed}), expected a replayed {expected}: {body}",
                r.job.key
            ));
        }
    }
    let after = sc
        .paysim
        .list_all(&sc.http, "/v1/payment_intents")
        .await
        .len();
    if after != checked.intents {
        v.push(format!(
            "sending every key again made {} new payment intents",
            after - checked.intents
        ));
    }
    v
}
