//! What a run measured: printed as text (its first line in `bench/pgbench.sh`'s one-line
//! form) and written by `--json` in the loadgen's field names where they mean the same
//! thing (`latency.p50_ms` …).

use std::collections::BTreeMap;

use seatkeeper_loadgen::stats::Latency;
use serde::{Deserialize, Serialize};

use crate::setup::Check;

/// One run's report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The deployment's hosts (never credentials).
    pub hosts: String,
    /// The run's own database, dropped at the end.
    pub database: String,
    pub clients: usize,
    pub plans: usize,
    /// Seconds asked for.
    pub duration_s: f64,
    /// Seconds from the clock's start to the last client's last answer.
    pub elapsed_s: f64,
    /// Transactions committed on the clock.
    pub commits: u64,
    /// `commits / elapsed_s`.
    pub throughput_tps: f64,
    /// One committed transaction per client before the clock (its connection opened, its
    /// session started), not counted above.
    pub warm_up_commits: u64,
    pub retries: Retries,
    /// Purchases the guard refused for want of a seat (0 unless the plans ran out).
    pub sold_out: u64,
    /// Purchases that failed without a retry, or whose retries ran out of time.
    pub errors: u64,
    /// Failures by the server's code name (or the driver's error kind).
    pub error_kinds: BTreeMap<String, u64>,
    /// The first failure's message, if any.
    pub first_error: Option<String>,
    /// Of committed transactions, from the first `startTransaction` to the commit's answer,
    /// retries and back-off included.
    pub latency: Latency,
    pub check: Check,
}

/// Retries, as the driver's `and_run2` would have made them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retries {
    /// Whole transactions run again on `TransientTransactionError` (WriteConflicts).
    pub transactions: u64,
    /// Commits sent again on `UnknownTransactionCommitResult`.
    pub commits: u64,
}

impl Report {
    /// The one line `bench/run.sh` keeps, in `bench/pgbench.sh`'s form.
    pub fn summary(&self) -> String {
        format!(
            "mongobench plans={} clients={} duration={} tps={:.1} latency_avg_ms={:.3} p50_ms={:.3} p99_ms={:.3} retries={} errors={}",
            self.plans,
            self.clients,
            self.duration_s,
            self.throughput_tps,
            self.latency.mean_ms,
            self.latency.p50_ms,
            self.latency.p99_ms,
            self.retries.transactions + self.retries.commits,
            self.errors,
        )
    }

    /// The whole report as text.
    pub fn render(&self) -> String {
        let l = &self.latency;
        let errors = if self.error_kinds.is_empty() {
            "none".to_owned()
        } else {
            let kinds: Vec<String> = self
                .error_kinds
                .iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            format!(
                "{} ({}); first: {}",
                self.errors,
                kinds.join(", "),
                self.first_error.as_deref().unwrap_or("?")
            )
        };
        let c = &self.check;
        format!(
            "{summary}\n\
             transactions: {commits} committed in {elapsed:.2} s = {tps:.1}/s ({clients} clients, {plans} plan(s), {warm} warm-up commits before the clock)\n\
             retries: {rt} transactions (TransientTransactionError), {rc} commits (UnknownTransactionCommitResult); sold out: {sold_out}\n\
             latency ms: p50 {p50:.2}  p90 {p90:.2}  p99 {p99:.2}  max {max:.2}  mean {mean:.2}\n\
             errors: {errors}\n\
             check: {verdict}: seats taken {seats}, entries numbered {numbered}, subscriptions {subs}, audit entries {audit}, commits {expected}\n",
            summary = self.summary(),
            commits = self.commits,
            elapsed = self.elapsed_s,
            tps = self.throughput_tps,
            clients = self.clients,
            plans = self.plans,
            warm = self.warm_up_commits,
            rt = self.retries.transactions,
            rc = self.retries.commits,
            sold_out = self.sold_out,
            p50 = l.p50_ms,
            p90 = l.p90_ms,
            p99 = l.p99_ms,
            max = l.max_ms,
            mean = l.mean_ms,
            verdict = if c.passed { "passed" } else { "FAILED" },
            seats = c.seats_taken,
            numbered = c.entries_numbered,
            subs = c.subscriptions,
            audit = c.audit_entries,
            expected = c.expected,
        )
    }
}
