//! The scenarios about the reconciler (5 and 6 of the suite), driven request by request
//! rather than by a load: a charge that lands after the reconciler gave its purchase up
//! (the simulator's slow lane holds it while a server is killed), and a provider that
//! cannot answer the reconciler's look-ups. Each scenario is a list of named steps; each
//! step adds what it finds wrong to the scenario's own violations.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use seatkeeper_paysim::Faults;
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::{
    api::get_json,
    common::stores::DatabaseKind,
    knobs::Knobs,
    load::{Load, LoadSpec},
    outcomes::{Attempt, Final, Job, JobResult},
    paysim::{Hold, Provider},
    scenario::Scenario,
    SERIAL,
};

pub async fn a_charge_that_lands_after_the_reconciler_gave_its_purchase_up_is_refunded_and_audited(
    kind: DatabaseKind,
) {
    let _serial = SERIAL.lock().await;
    let Some(sc) = Scenario::start(
        kind,
        "late-charge",
        Knobs::LATE,
        1,
        Provider::new(Faults::default(), Duration::ZERO),
        false,
    )
    .await
    else {
        return;
    };
    let load = Load::start(
        &sc,
        LoadSpec {
            workers: 0,
            max_jobs: 0,
            decline_share: 0.0,
            cancel_share: 0.0,
            abandon_share: 0.0,
            senders: 1,
            job_deadline: Duration::from_secs(20),
        },
    );
    let mut extra = Vec::new();

    let first = late_charge_job(&sc, 1);
    let s1 = the_charge_lands_after_the_give_up(&sc, &load, &first).await;
    let second = late_charge_job(&sc, 2);
    let (s2, second_final) =
        the_retrys_charge_lands_after_the_give_up(&sc, &load, &second, &mut extra).await;
    each_refund_is_audited_once_by_whoever_made_it(
        &sc,
        [
            (s1.as_str(), "reconciler".to_owned()),
            (s2.as_str(), sc.buyer.clone()),
        ],
        &mut extra,
    )
    .await;
    the_one_shot_reconciler_runs_and_exits(&sc, &mut extra).await;

    let jobs = vec![
        JobResult {
            job: first,
            finals: vec![Final::Abandoned],
            canceled: false,
        },
        JobResult {
            job: second,
            finals: vec![second_final],
            canceled: false,
        },
    ];
    sc.conclude(&load, &jobs, &extra).await;
}

/// Key `n` of the late-charge scenario, on the 120-seat plan.
fn late_charge_job(sc: &Scenario, n: usize) -> Job {
    Job {
        customer: format!("cus_latecharge_{n}"),
        key: format!("order-latecharge-{n}"),
        plan: sc.plans[1].0.clone(),
        method: "pm_card_visa",
    }
}

/// One purchase request for the key, in a task of its own.
fn purchase_once(load: &Arc<Load>, job: &Job) -> JoinHandle<Attempt> {
    let (load, job) = (load.clone(), job.clone());
    tokio::spawn(async move { load.purchase_once(&job).await })
}

/// 1. The server dies while its charge is on the way; the charge lands after the
///    reconciler gave the purchase up (never charged: expired, seat released); the
///    late-charge check refunds it. Returns the subscription.
async fn the_charge_lands_after_the_give_up(
    sc: &Scenario,
    load: &Arc<Load>,
    first: &Job,
) -> String {
    let lane = &sc.paysim.lane;
    let before = lane.arm(Hold::ChargeOnRelease);
    let attempt = purchase_once(load, first);
    lane.wait_arrival(before).await;
    sc.fleet.kill(0);
    sc.fleet.boot(0).await;
    let _ = attempt.await;
    let s1 = sc.only_subscription_of(&first.customer).await;
    sc.wait_for_status(&s1, "incomplete_expired").await;
    lane.release();
    let refunded = sc.wait_for_refund_of(&s1).await;
    sc.note(format!(
        "1: charge {refunded} landed after the give-up, refunded by the late-charge check"
    ));
    s1
}

/// 2. The server dies before its charge reaches the provider; the client retries after
///    the lock lease, and its charge is on the way while the reconciler gives the
///    purchase up: the request itself refunds it and answers 402. Returns the
///    subscription and how the client's work on the key ended.
async fn the_retrys_charge_lands_after_the_give_up(
    sc: &Scenario,
    load: &Arc<Load>,
    second: &Job,
    extra: &mut Vec<String>,
) -> (String, Final) {
    let lane = &sc.paysim.lane;
    let before = lane.arm(Hold::Swallow);
    let attempt = purchase_once(load, second);
    lane.wait_arrival(before).await;
    let reserved = Instant::now();
    sc.fleet.kill(0);
    sc.fleet.boot(0).await;
    lane.release();
    let _ = attempt.await;
    let s2 = sc.only_subscription_of(&second.customer).await;
    tokio::time::sleep(
        (reserved + Duration::from_millis(sc.knobs.lock_lease_ms + 50))
            .saturating_duration_since(Instant::now()),
    )
    .await;
    let before = lane.arm(Hold::ChargeOnRelease);
    let retry = purchase_once(load, second);
    lane.wait_arrival(before).await;
    sc.wait_for_status(&s2, "incomplete_expired").await;
    lane.release();
    let second_final = match retry.await.unwrap() {
        Attempt::Answer { status: 402, .. } => Final::Declined,
        Attempt::Answer { status, code, .. } => {
            extra.push(format!(
                "the retry whose charge landed late got {status} {code}, not 402"
            ));
            Final::Unexpected(status, code)
        }
        Attempt::Lost => {
            extra.push("the retry whose charge landed late got no answer".into());
            Final::GaveUp
        }
    };
    let refunded = sc.wait_for_refund_of(&s2).await;
    sc.note(format!(
        "2: the retry's charge {refunded} landed after the give-up, refunded at once, 402"
    ));
    (s2, second_final)
}

/// Each refund is audited once, by whoever made it: `(subscription, actor)`.
async fn each_refund_is_audited_once_by_whoever_made_it(
    sc: &Scenario,
    expected: [(&str, String); 2],
    extra: &mut Vec<String>,
) {
    let audit = sc.audit(&sc.plans[1].0).await;
    for (sub, actor) in expected {
        let refunds: Vec<&Value> = audit
            .iter()
            .filter(|e| e["action"] == "payment_refunded" && e["subscription_id"] == sub)
            .collect();
        if refunds.len() != 1 || refunds[0]["actor"] != actor.as_str() {
            extra.push(format!(
                "subscription {sub}: refund audit entries {refunds:?}, expected one by {actor}"
            ));
        }
    }
}

/// The one-shot reconciler runs against the same database and simulator, reports, and
/// exits.
async fn the_one_shot_reconciler_runs_and_exits(sc: &Scenario, extra: &mut Vec<String>) {
    let output = sc.fleet.reconcile_once().await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let reports: Vec<Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if !output.status.success()
        || reports.is_empty()
        || reports.iter().any(|r| r["found"].as_u64().is_none())
    {
        extra.push(format!(
            "seatkeeper-server reconcile: {} with {stdout:?} {:?}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
}

pub async fn while_the_provider_is_down_purchases_wait_in_doubt_without_a_busy_loop_and_finish_when_it_is_back(
    kind: DatabaseKind,
) {
    let _serial = SERIAL.lock().await;
    let Some(sc) = Scenario::start(
        kind,
        "provider-down",
        Knobs::FAST,
        1,
        Provider::new(Faults::default(), Duration::ZERO),
        false,
    )
    .await
    else {
        return;
    };
    let load = Load::start(
        &sc,
        LoadSpec {
            workers: 0,
            max_jobs: 0,
            decline_share: 0.0,
            cancel_share: 0.0,
            abandon_share: 1.0,
            senders: 1,
            job_deadline: Duration::from_secs(20),
        },
    );
    let mut extra = Vec::new();

    let jobs = five_purchases_wait_in_doubt(&sc, &load, &mut extra).await;
    the_reconciler_asks_each_interval_not_in_a_busy_loop(&sc, &mut extra).await;

    // The provider is back: nothing was charged, so every seat comes back.
    sc.paysim.lane.set_rate_limit(0.0);
    sc.conclude(&load, &jobs, &extra).await;
}

/// The provider answers nothing but 429s: each purchase reserves its seat, cannot
/// charge (503 payment_unavailable) and its client walks away.
async fn five_purchases_wait_in_doubt(
    sc: &Scenario,
    load: &Load,
    extra: &mut Vec<String>,
) -> Vec<JobResult> {
    sc.paysim.lane.set_rate_limit(1.0);
    let mut jobs = Vec::new();
    for n in 0..5 {
        let job = Job {
            customer: format!("cus_providerdown_{n}"),
            key: format!("order-providerdown-{n}"),
            plan: sc.plans[1].0.clone(),
            method: "pm_card_visa",
        };
        let final_ = match load.drive(&job).await {
            Final::Abandoned => Final::Abandoned,
            other => {
                extra.push(format!(
                    "{}: {other:?} while the provider was down",
                    job.key
                ));
                other
            }
        };
        jobs.push(JobResult {
            job,
            finals: vec![final_],
            canceled: false,
        });
    }
    jobs
}

/// Once stale, the reconciler asks the provider each interval and leaves the five
/// purchases in doubt, as the admin report shows.
async fn the_reconciler_asks_each_interval_not_in_a_busy_loop(
    sc: &Scenario,
    extra: &mut Vec<String>,
) {
    let lane = &sc.paysim.lane;
    let stale_at = Instant::now() + Duration::from_millis(sc.knobs.recovery_lease_ms + 200);
    tokio::time::sleep(stale_at.saturating_duration_since(Instant::now())).await;
    let window = Duration::from_secs(3);
    let before = lane.searches.load(Ordering::SeqCst);
    tokio::time::sleep(window).await;
    let lookups = lane.searches.load(Ordering::SeqCst) - before;
    let runs = window.as_millis() as usize / sc.knobs.recovery_interval_ms as usize;
    // Five purchases per run, a run every interval, with slack for timing.
    let bound = 5 * (runs + 2) * 2;
    if lookups > bound {
        extra.push(format!(
            "the reconciler asked the unreachable provider {lookups} times in {window:?} (a run every {} ms should ask about {}): it retries in-doubt purchases in a busy loop",
            sc.knobs.recovery_interval_ms,
            5 * runs
        ));
    }
    let state = get_json(
        &sc.http,
        &format!("{}/api/admin/reconciliation", sc.fleet.url(0)),
        true,
    )
    .await
    .unwrap_or(Value::Null);
    if state["in_doubt"]["stale_incomplete"] != 5 {
        extra.push(format!(
            "the admin report does not show the 5 purchases in doubt: {}",
            state["in_doubt"]
        ));
    }
    sc.note(format!(
        "provider down: {lookups} look-ups in {:.0} s, {} in doubt",
        window.as_secs_f64(),
        state["in_doubt"]["stale_incomplete"]
    ));
}
