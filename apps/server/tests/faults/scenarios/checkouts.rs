//! The checkout scenarios (7–9 of the suite): checkout sessions under webhooks that are
//! lost, duplicated, reordered, delayed past the sessions' expiry and forged; under
//! `kill -9` of the servers while purchases race the checkouts for the same seats; and
//! with the database cut away while the provider's webhooks arrive. The simulator delivers
//! its signed webhooks through the suite's [`crate::relay::Relay`] to the fleet. Each ends
//! with [`Scenario::conclude_all`]: nothing held once the sessions ended, each session
//! ended as its payment says, the ledger and the audit log agree.

use std::time::{Duration, Instant};

use seatkeeper_paysim::{Delivery, Faults, WebhookFaults, WebhookSettings};

use crate::{
    checkout_load::{session_json, CheckoutLoad, CheckoutResult, CheckoutSpec, Way, EVERY_WAY},
    common::stores::DatabaseKind,
    forged::Forger,
    knobs::Knobs,
    load::{Load, LoadSpec},
    paysim::Provider,
    scenario::Scenario,
    SERIAL,
};

pub async fn webhooks_lost_duplicated_reordered_delayed_past_expiry_and_forged_leave_each_paid_checkout_complete_once(
    kind: DatabaseKind,
) {
    let _serial = SERIAL.lock().await;
    let provider = Provider::new(
        Faults {
            latency: Duration::from_millis(15),
            error_rate: 0.03,
            drop_rate: 0.03,
            drop_hang: Duration::from_millis(1500),
        },
        Duration::from_millis(20),
    )
    .with_webhooks(WebhookSettings {
        retry_scale: 0.1,
        max_attempts: 8,
        faults: WebhookFaults {
            drop_rate: 0.3,
            duplicate_rate: 0.3,
            // Longer than many sessions live: their webhooks come after they expired.
            delay: Duration::from_millis(2500),
            reorder: true,
        },
    });
    let Some(sc) =
        Scenario::start(kind, "checkout-webhooks", Knobs::FAST, 2, provider, false).await
    else {
        return;
    };
    // Half the cancellations fail: the worker gives an expired session's seat back and
    // cancels its intent later, and a customer paying just too late may get through.
    sc.paysim.lane.set_cancel_failures(0.5);
    let load = CheckoutLoad::start(
        &sc,
        CheckoutSpec {
            ways: EVERY_WAY,
            workers: 16,
            max_jobs: 400,
            expires_in: (1, 5),
            abandon_share: 0.2,
            job_deadline: Duration::from_secs(20),
        },
    );
    let forger = Forger::start(load.clone(), sc.fleet.clone(), sc.http.clone());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let results = load.finish().await;
    let (mut extra, forged) = forger.finish().await;
    sc.note(forged);
    extra.extend(lost_webhooks_were_made_up_for(&sc, &results).await);
    extra.extend(late_payments_were_taken_or_refunded(&sc).await);
    extra.extend(genuine_webhooks_were_accepted(&sc, true));
    sc.conclude_all(&[&load.tally], &[], &results, &extra).await;
}

pub async fn kill_9_during_checkouts_and_purchases_for_the_same_seats_holds_nothing_past_expiry_and_charges_each_seat_once(
    kind: DatabaseKind,
) {
    let _serial = SERIAL.lock().await;
    let provider = Provider::new(
        Faults {
            latency: Duration::from_millis(20),
            ..Faults::default()
        },
        Duration::from_millis(30),
    )
    .with_webhooks(WebhookSettings {
        retry_scale: 0.1,
        max_attempts: 8,
        faults: WebhookFaults {
            drop_rate: 0.1,
            duplicate_rate: 0.2,
            ..WebhookFaults::default()
        },
    });
    let Some(sc) = Scenario::start(kind, "checkout-kill-9", Knobs::FAST, 2, provider, false).await
    else {
        return;
    };
    let purchases = Load::start(
        &sc,
        LoadSpec {
            workers: 6,
            max_jobs: 400,
            decline_share: 0.05,
            cancel_share: 0.05,
            abandon_share: 0.2,
            senders: 1,
            job_deadline: Duration::from_secs(30),
        },
    );
    let checkouts = CheckoutLoad::start(
        &sc,
        CheckoutSpec {
            ways: EVERY_WAY,
            workers: 10,
            max_jobs: 400,
            expires_in: (1, 4),
            abandon_share: 0.2,
            job_deadline: Duration::from_secs(20),
        },
    );
    // 10 kill events, 300–800 ms apart; the 5th kills both instances at once.
    tokio::time::sleep(Duration::from_millis(500)).await;
    sc.kill_at_random(10, 300..800, &[4]).await;
    let jobs = purchases.finish().await;
    let results = checkouts.finish().await;
    let kills = sc.fleet.kills();
    assert!(kills >= 10, "only {kills} kills");
    let extra = genuine_webhooks_were_accepted(&sc, false);
    sc.conclude_all(
        &[&purchases.tally, &checkouts.tally],
        &jobs,
        &results,
        &extra,
    )
    .await;
}

pub async fn a_database_outage_while_webhooks_arrive_is_made_up_for_by_the_providers_retries(
    kind: DatabaseKind,
) {
    let _serial = SERIAL.lock().await;
    let provider = Provider::new(
        Faults {
            latency: Duration::from_millis(20),
            ..Faults::default()
        },
        Duration::from_millis(30),
    )
    .with_webhooks(WebhookSettings {
        // 0.5 s, 1 s, 2 s, 4 s …: a 5 s outage costs a delivery three or four attempts.
        retry_scale: 0.5,
        max_attempts: 10,
        faults: WebhookFaults::default(),
    });
    // The worker asks the provider about an open session only after a minute: within the
    // run, only a webhook can tell the servers of a payment made in the browser.
    let knobs = Knobs {
        recheck_after_secs: 60,
        ..Knobs::FAST
    };
    let Some(sc) = Scenario::start(kind, "checkout-outage", knobs, 2, provider, true).await else {
        return;
    };
    let load = CheckoutLoad::start(
        &sc,
        CheckoutSpec {
            // Mostly payments in the browser, which only a webhook reports within the run.
            ways: &[
                (Way::InBrowser, 6),
                (Way::Pay, 2),
                (Way::ThreeDsPass, 2),
                (Way::Expire, 1),
                (Way::WalkAway, 1),
            ],
            workers: 12,
            max_jobs: 300,
            expires_in: (12, 15),
            abandon_share: 0.2,
            job_deadline: Duration::from_secs(25),
        },
    );
    // The cut comes once webhooks flow (40 relayed), or after 4 s: on a fast machine the
    // whole load could end within a fixed 4 s, leaving no delivery for the outage.
    let flowing = Instant::now();
    while flowing.elapsed() < Duration::from_secs(4) {
        let relayed: u64 = sc.paysim.relay.answers().values().sum();
        if relayed >= 40 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut extra = Vec::new();
    sc.outage(Duration::from_secs(5), &mut extra).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let results = load.finish().await;
    extra.extend(webhooks_refused_in_the_outage_were_delivered_later(&sc, &results).await);
    extra.extend(genuine_webhooks_were_accepted(&sc, false));
    sc.conclude_all(&[&load.tally], &[], &results, &extra).await;
}

/// Every genuine delivery that reached an instance was taken (200), or refused for want
/// of the database (503); none was refused as forged (400). With `duplicates`, some
/// redelivery was recognised (`200 duplicate`).
fn genuine_webhooks_were_accepted(sc: &Scenario, duplicates: bool) -> Vec<String> {
    let answers = sc.paysim.relay.answers();
    let mut v: Vec<String> = answers
        .iter()
        .filter(|(label, _)| !label.starts_with("200 ") && !label.starts_with("503 "))
        .filter(|(label, _)| *label != "no answer")
        .map(|(label, n)| format!("{n} genuine webhook deliveries answered {label}"))
        .collect();
    if duplicates && !answers.contains_key("200 duplicate") {
        v.push(format!(
            "no redelivered webhook was answered as a duplicate: {answers:?}"
        ));
    }
    v
}

/// Payments that landed after their session ended: some were, each honoured with a seat
/// held again (`seat_held` naming the late payment) or refunded (`payment_refunded`).
async fn late_payments_were_taken_or_refunded(sc: &Scenario) -> Vec<String> {
    let (mut honoured, mut refunded) = (0, 0);
    for (plan, _) in &sc.plans {
        for e in sc.audit(plan).await {
            let late = e["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("late payment"));
            match e["action"].as_str() {
                Some("seat_held") if late => honoured += 1,
                Some("payment_refunded") => refunded += 1,
                _ => {}
            }
        }
    }
    sc.note(format!(
        "late payments: {honoured} honoured, {refunded} refunded"
    ));
    if honoured + refunded == 0 {
        vec!["no payment landed after its session ended".into()]
    } else {
        Vec::new()
    }
}

/// The payments made in the browser or after 3-D Secure whose every `succeeded` webhook
/// was dropped: each session still completed (the worker asked the provider) or, paid
/// after it ended with no seat free, had the payment refunded; and there was at least one
/// such.
async fn lost_webhooks_were_made_up_for(sc: &Scenario, results: &[CheckoutResult]) -> Vec<String> {
    let deliveries = sc.paysim.deliveries();
    let refunds = sc.paysim.list_all(&sc.http, "/v1/refunds").await;
    let mut v = Vec::new();
    let mut made_up = 0;
    for r in results {
        if !matches!(r.job.way, Way::InBrowser | Way::PayLate | Way::ThreeDsPass) {
            continue;
        }
        let Some(id) = &r.session else { continue };
        let session = session_json(&sc.http, &sc.fleet.url(0), id).await;
        let Some(pi) = session["payment"]["payment_intent"].as_str() else {
            continue;
        };
        let succeeded: Vec<&Delivery> = deliveries
            .iter()
            .filter(|d| d.payment_intent.as_deref() == Some(pi))
            .filter(|d| d.event_type == "payment_intent.succeeded")
            .collect();
        if !succeeded.is_empty() && succeeded.iter().all(|d| d.state == "dropped") {
            made_up += 1;
            // Paid too late with no seat free: refunded, the session stays expired. The
            // worker refunds after it learns of the payment, which may be after recovery
            // looked settled: give it a bounded while.
            let mut refunded = refunds.iter().any(|r| r["payment_intent"] == pi);
            if session["status"] == "expired" && !refunded {
                refunded = refund_appears(sc, pi).await;
            }
            if session["status"] != "complete" && !(session["status"] == "expired" && refunded) {
                v.push(format!(
                    "session {id} was paid, its webhook lost, and it is {}",
                    session["status"]
                ));
            }
        }
    }
    sc.note(format!(
        "{made_up} paid sessions whose every webhook was lost"
    ));
    if made_up == 0 {
        v.push("no paid session lost all its webhooks: the drop rate did not bite".into());
    }
    v
}

/// Whether a refund of the intent `pi` shows at the provider within 15 s.
async fn refund_appears(sc: &Scenario, pi: &str) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while std::time::Instant::now() < deadline {
        let refunds = sc.paysim.list_all(&sc.http, "/v1/refunds").await;
        if refunds.iter().any(|r| r["payment_intent"] == pi) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    false
}

/// Deliveries refused while the database was away (an attempt answered 503, the event
/// delivered at a later attempt) completed their sessions before they expired: the
/// provider's retries, not the worker, told the servers.
async fn webhooks_refused_in_the_outage_were_delivered_later(
    sc: &Scenario,
    results: &[CheckoutResult],
) -> Vec<String> {
    let answers = sc.paysim.relay.answers();
    let refused: u64 = answers
        .iter()
        .filter(|(label, _)| label.starts_with("503 "))
        .map(|(_, n)| n)
        .sum();
    let retried: Vec<Delivery> = sc
        .paysim
        .deliveries()
        .into_iter()
        .filter(|d| d.event_type == "payment_intent.succeeded")
        .filter(|d| d.state == "delivered" && d.attempts > 1)
        .collect();
    let mut v = Vec::new();
    let mut by_webhook = 0;
    for r in results {
        let Some(id) = &r.session else { continue };
        let session = session_json(&sc.http, &sc.fleet.url(0), id).await;
        let pi = session["payment"]["payment_intent"].as_str();
        if !retried.iter().any(|d| d.payment_intent.as_deref() == pi) || pi.is_none() {
            continue;
        }
        let completed_in_time = session["status"] == "complete"
            && session["ended_at"].as_str() < session["expires_at"].as_str();
        if completed_in_time {
            by_webhook += 1;
        }
    }
    sc.note(format!(
        "{refused} webhook deliveries refused during the outage, {} delivered at a later attempt, {by_webhook} of which completed their session before it expired",
        retried.len()
    ));
    if refused == 0 || by_webhook == 0 {
        v.push(format!(
            "no webhook refused in the outage completed its session later (refused {refused}, retried deliveries {})",
            retried.len()
        ));
    }
    v
}
