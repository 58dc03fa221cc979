//! The scenarios under a load of purchases (1–4 of the suite): `kill -9` of servers at
//! random moments, payment faults (declines, dropped answers, provider 500s and 429s), a
//! database outage, and all of them at once with two clients per key retrying every
//! failure with the same key. Each starts its [`Scenario`], runs a [`Load`] while it
//! injects its faults, and ends with [`Scenario::conclude`]; its own checks (what the
//! faults should have made the clients see) join the violations.

use std::time::Duration;

use seatkeeper_paysim::Faults;

use crate::{
    common::stores::DatabaseKind,
    knobs::Knobs,
    load::{Load, LoadSpec},
    outcomes::Seen,
    paysim::Provider,
    scenario::{Outage, Scenario},
    SERIAL,
};

pub async fn kill_9_at_random_moments_during_load_loses_no_purchase_and_charges_no_key_twice(
    kind: DatabaseKind,
) {
    let _serial = SERIAL.lock().await;
    let Some(sc) = Scenario::start(
        kind,
        "kill-9",
        Knobs::FAST,
        2,
        Provider::new(
            Faults {
                latency: Duration::from_millis(20),
                ..Faults::default()
            },
            Duration::from_millis(30),
        ),
        false,
    )
    .await
    else {
        return;
    };
    let load = Load::start(
        &sc,
        LoadSpec {
            workers: 12,
            max_jobs: 900,
            decline_share: 0.05,
            cancel_share: 0.1,
            abandon_share: 0.3,
            senders: 1,
            job_deadline: Duration::from_secs(30),
        },
    );
    // 12 kill events, 250–700 ms apart; the 4th and the 8th kill both instances at once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sc.kill_at_random(12, 250..700, &[3, 7]).await;
    let jobs = load.finish().await;
    let kills = sc.fleet.kills();
    assert!(kills >= 10, "only {kills} kills");
    sc.conclude(&load, &jobs, &[]).await;
}

pub async fn payment_declines_dropped_answers_provider_500s_and_429s_during_load_leave_every_charge_attached_or_refunded(
    kind: DatabaseKind,
) {
    let _serial = SERIAL.lock().await;
    let Some(sc) = Scenario::start(
        kind,
        "payment-faults",
        Knobs::FAST,
        1,
        Provider::new(
            Faults {
                latency: Duration::from_millis(10),
                error_rate: 0.05,
                drop_rate: 0.1,
                // Longer than the adapter's timeout: the answer is lost, the charge is not.
                drop_hang: Duration::from_millis(1500),
            },
            Duration::from_millis(20),
        ),
        false,
    )
    .await
    else {
        return;
    };
    sc.paysim.lane.set_rate_limit(0.03);
    let load = Load::start(
        &sc,
        LoadSpec {
            workers: 12,
            max_jobs: 600,
            decline_share: 0.3,
            cancel_share: 0.05,
            // A client that got 503 payment_unavailable sometimes never comes back: the
            // reconciler finds its charge.
            abandon_share: 0.3,
            senders: 1,
            job_deadline: Duration::from_secs(30),
        },
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    let jobs = load.finish().await;
    let extra = payment_faults_reached_the_clients(&load);
    sc.conclude(&load, &jobs, &extra).await;
}

pub async fn a_database_outage_during_load_answers_503_problems_then_recovers_by_itself_with_invariants_intact(
    kind: DatabaseKind,
) {
    let _serial = SERIAL.lock().await;
    let Some(sc) = Scenario::start(
        kind,
        "database-outage",
        Knobs::FAST,
        2,
        Provider::new(
            Faults {
                latency: Duration::from_millis(20),
                ..Faults::default()
            },
            Duration::from_millis(30),
        ),
        true,
    )
    .await
    else {
        return;
    };
    let load = Load::start(
        &sc,
        LoadSpec {
            workers: 12,
            max_jobs: 900,
            decline_share: 0.1,
            cancel_share: 0.05,
            abandon_share: 0.2,
            senders: 1,
            job_deadline: Duration::from_secs(30),
        },
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut extra = Vec::new();
    let outage = sc.outage(Duration::from_secs(6), &mut extra).await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let jobs = load.finish().await;

    answers_during_the_outage(&sc, &load, &outage, &mut extra);
    extra.dedup();
    sc.conclude(&load, &jobs, &extra).await;
}

pub async fn clients_retrying_every_failure_with_the_same_key_through_kills_payment_faults_and_an_outage_are_charged_once_per_key(
    kind: DatabaseKind,
) {
    let _serial = SERIAL.lock().await;
    let Some(sc) = Scenario::start(
        kind,
        "same-key-retries",
        // The adapter retries once here (backoff included it fits in the 4 s lock lease).
        Knobs::RETRYING,
        2,
        Provider::new(
            Faults {
                latency: Duration::from_millis(20),
                error_rate: 0.05,
                drop_rate: 0.1,
                drop_hang: Duration::from_millis(1000),
            },
            Duration::from_millis(30),
        ),
        true,
    )
    .await
    else {
        return;
    };
    sc.paysim.lane.set_rate_limit(0.05);
    let load = Load::start(
        &sc,
        LoadSpec {
            workers: 8,
            max_jobs: 500,
            decline_share: 0.3,
            cancel_share: 0.0,
            abandon_share: 0.0,
            // Two clients send every key at once, to different instances, each retrying
            // until it has a definitive answer.
            senders: 2,
            job_deadline: Duration::from_secs(40),
        },
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    sc.kill_at_random(5, 250..700, &[2]).await;
    let mut extra = Vec::new();
    sc.outage(Duration::from_secs(3), &mut extra).await;
    sc.kill_at_random(5, 250..700, &[]).await;
    let jobs = load.finish().await;
    sc.conclude(&load, &jobs, &extra).await;
}

/// The payment-faults scenario's own check: its declines reached the server and its
/// dropped answers and 500s reached the clients as 503 `payment_unavailable`.
fn payment_faults_reached_the_clients(load: &Load) -> Vec<String> {
    let mut extra = Vec::new();
    let outcomes = load.tally.outcomes();
    let declines = outcomes
        .get("402 payment_declined")
        .copied()
        .unwrap_or_default();
    if declines == 0 {
        extra.push("no request was declined: the decline share did not reach the server".into());
    }
    let unknown = outcomes
        .get("503 payment_unavailable")
        .copied()
        .unwrap_or_default();
    if unknown == 0 {
        extra.push(
            "no 503 payment_unavailable: the dropped answers and 500s did not reach the client"
                .into(),
        );
    }
    extra
}

/// What the clients saw while the database was away: every answer a 503 problem with
/// `Retry-After`, none hanging (the acquire timeout is 1 s), and sales again once it was
/// back. Notes the outage's figures for the summary.
fn answers_during_the_outage(sc: &Scenario, load: &Load, outage: &Outage, extra: &mut Vec<String>) {
    let seen = load.tally.seen.lock().clone();
    let during: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.at >= outage.cut && s.at + s.took <= outage.restored)
        .collect();
    if during.is_empty() {
        extra.push("no request was answered during the outage".into());
    }
    for s in &during {
        if s.status != Some(503) || !s.problem_json || !s.retry_after {
            extra.push(format!(
                "during the outage a request got {} (problem+json: {}, Retry-After: {}) instead of a 503 problem",
                s.label, s.problem_json, s.retry_after
            ));
        }
    }
    let slowest = during.iter().map(|s| s.took).max().unwrap_or_default();
    if slowest > Duration::from_secs(5) {
        extra.push(format!(
            "a request hung for {slowest:?} while the database was away (acquire timeout 1 s)"
        ));
    }
    let after = seen
        .iter()
        .filter(|s| s.at >= outage.ready && s.status == Some(201))
        .count();
    if after == 0 {
        extra.push("no purchase succeeded after the database came back".into());
    }
    sc.note(format!(
        "outage {:.1} s: {} answers during it, slowest {:.2} s, ready again {:.1} s after restore, {after} sales after",
        (outage.restored - outage.cut).as_secs_f64(),
        during.len(),
        slowest.as_secs_f64(),
        (outage.ready - outage.restored).as_secs_f64(),
    ));
}
