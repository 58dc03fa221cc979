//! How every scenario ends ([`Scenario::conclude`], [`Scenario::conclude_all`] with
//! checkouts): once the load has stopped, it waits until recovery has settled (checkout
//! sessions ended and their unpaid intents cancelled included), runs [`check_invariants`]
//! and [`replay_every_key`], looks for panics in the server logs and for answers no client
//! should get, prints the scenario's one-line summary, and fails on any violation (keeping
//! the server logs).

use std::{
    path::Path,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::{
    api::get_json,
    checkout_load::{told_counts, CheckoutResult},
    invariants::{check_invariants, replay_every_key},
    load::Load,
    outcomes::{JobResult, Tally},
    scenario::Scenario,
};

impl Scenario {
    /// Waits (bounded) until recovery has nothing left in doubt and no plan holds an
    /// `incomplete` subscription.
    async fn wait_for_recovery(&self) -> Result<Duration, String> {
        let started = Instant::now();
        let bound = Duration::from_millis(
            self.knobs.recovery_lease_ms + self.knobs.verify_delay_ms + 20_000,
        );
        let api = self.fleet.url(0);
        loop {
            let state = get_json(&self.http, &format!("{api}/api/admin/reconciliation"), true)
                .await
                .unwrap_or(Value::Null);
            let stale = state["in_doubt"]["stale_incomplete"].as_u64();
            let pending = state["in_doubt"]["pending_verifications"].as_u64();
            let (mut incomplete, mut held) = (0, 0);
            for (plan, _) in &self.plans {
                let stats = get_json(&self.http, &format!("{api}/api/plans/{plan}/stats"), false)
                    .await
                    .unwrap_or(Value::Null);
                incomplete += stats["incomplete"].as_u64().unwrap_or(1);
                held += stats["held"].as_u64().unwrap_or(1);
            }
            let unsettled = self.unsettled_checkout_intents().await;
            if stale == Some(0)
                && pending == Some(0)
                && incomplete == 0
                && held == 0
                && unsettled == 0
            {
                return Ok(started.elapsed());
            }
            if started.elapsed() > bound {
                return Err(format!(
                    "recovery did not settle in {bound:?}: stale incomplete {stale:?}, pending verifications {pending:?}, incomplete {incomplete}, held {held}, checkout intents neither paid nor cancelled {unsettled}; last state {state}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The payment intents of checkout sessions neither `succeeded` nor `canceled` (the
    /// worker cancels those of sessions that ended unpaid).
    async fn unsettled_checkout_intents(&self) -> usize {
        let intents = self
            .paysim
            .list_all(&self.http, "/v1/payment_intents")
            .await;
        intents
            .iter()
            .filter(|i| i["metadata"]["checkout_session_id"].is_string())
            .filter(|i| i["status"] != "succeeded" && i["status"] != "canceled")
            .count()
    }

    /// Waits for recovery, checks every invariant, replays every finished key once more,
    /// prints the summary and fails on any violation (`extra` are the scenario's own).
    pub async fn conclude(self, load: &Load, jobs: &[JobResult], extra: &[String]) {
        self.conclude_all(&[&load.tally], jobs, &[], extra).await
    }

    /// [`Scenario::conclude`] for a run with checkouts: `tallies` are every load's,
    /// `jobs` the purchase keys (if any), `checkouts` what the checkout clients were told.
    pub async fn conclude_all(
        self,
        tallies: &[&Tally],
        jobs: &[JobResult],
        checkouts: &[CheckoutResult],
        extra: &[String],
    ) {
        let mut violations: Vec<String> = extra.to_vec();
        let settled = match self.wait_for_recovery().await {
            Ok(took) => format!(
                "recovery settled {:.1} s after the load",
                took.as_secs_f64()
            ),
            Err(e) => {
                violations.push(e);
                "recovery did not settle".into()
            }
        };
        let checked = check_invariants(&self, jobs, checkouts).await;
        violations.extend(checked.violations.iter().cloned());
        violations.extend(replay_every_key(&self, jobs, &checked).await);
        violations.extend(server_panics(&self.fleet.logs));
        let mut outcomes = std::collections::BTreeMap::<String, u64>::new();
        for tally in tallies {
            violations.extend(tally.bad_answers());
            for (label, n) in tally.outcomes() {
                *outcomes.entry(label).or_default() += n;
            }
        }
        let relayed = self.paysim.relay.answers();
        if !relayed.is_empty() {
            self.note(format!("webhooks relayed: {relayed:?}"));
        }
        if !checkouts.is_empty() {
            self.note(format!("checkout clients: {}", told_counts(checkouts)));
        }
        self.fleet.stop_all();

        let requests: u64 = outcomes.values().sum();
        let outcomes = outcomes
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let verdict = if violations.is_empty() {
            "invariants OK".to_owned()
        } else {
            format!("{} INVARIANT VIOLATIONS", violations.len())
        };
        let rate_limited = self.paysim.lane.rate_limited.load(Ordering::SeqCst);
        if rate_limited > 0 {
            self.note(format!(
                "the provider answered 429 to {rate_limited} requests"
            ));
        }
        let notes = self.notes.lock().join("; ");
        println!(
            "[faults/{}/{}] {} kills · {} keys, {requests} requests ({outcomes}) · {} · {} · {settled} · {notes}{}{verdict} · {:.1} s",
            self.name,
            self.db.kind,
            self.fleet.kills(),
            jobs.len() + checkouts.len(),
            checked.keys,
            checked.money,
            if notes.is_empty() { "" } else { " · " },
            self.started.elapsed().as_secs_f64(),
        );
        if violations.is_empty() {
            if std::env::var_os("SEATKEEPER_FAULTS_KEEP_LOGS").is_none() {
                let _ = std::fs::remove_dir_all(&self.fleet.logs);
            } else {
                println!(
                    "[faults/{}] server logs in {}",
                    self.name,
                    self.fleet.logs.display()
                );
            }
        } else {
            for v in violations.iter().take(40) {
                eprintln!("  violation: {v}");
            }
            panic!(
                "{}: {} violations (first: {}); server logs in {}",
                self.name,
                violations.len(),
                violations[0],
                self.fleet.logs.display()
            );
        }
        self.paysim.handle.stop(false).await;
    }
}

/// `panicked at` in any server log.
fn server_panics(logs: &Path) -> Vec<String> {
    let mut found = Vec::new();
    if let Ok(dir) = std::fs::read_dir(logs) {
        for entry in dir.flatten() {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            for line in text.lines().filter(|l| l.contains("panicked at")) {
                found.push(format!("{}: {line}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}
