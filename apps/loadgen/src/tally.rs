//! What the answers said, and the end-of-run check against what the API reports: nothing
//! oversold, every success a seat taken and an active subscription, no purchase left
//! incomplete, every retry a replay of the first answer; for checkouts, no seat still
//! held ([`steps`] counts a checkout's answers).
//!
//! Both halves are pure, so the pass/fail decision is tested on made-up answers.

pub mod steps;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a run sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// `POST /api/subscriptions/purchase`.
    Purchase,
    /// `POST /bench/echo`, the trivial-JSON-POST baseline.
    Echo,
    /// A checkout session opened, confirmed, and its `payment_intent.succeeded` webhook
    /// delivered: one completed checkout.
    Checkout,
    /// Checkout sessions opened and abandoned (never confirmed), left to expire.
    CheckoutAbandon,
}

impl Mode {
    /// Whether the mode drives checkout sessions.
    pub fn is_checkout(self) -> bool {
        matches!(self, Mode::Checkout | Mode::CheckoutAbandon)
    }
}

/// The first answer to a key, which a retry with the same key must replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Original {
    pub status: u16,
    pub subscription_id: Option<String>,
}

/// One answer as the tally needs it. `status` 0 stands for a transport error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    /// Index of the plan the request was for.
    pub plan: usize,
    pub status: u16,
    /// The `Idempotent-Replayed: true` header.
    pub replayed: bool,
    /// The problem `code` of a 4xx/5xx.
    pub code: Option<String>,
    /// `id` of a 201, `subscription_id` of a 402.
    pub subscription_id: Option<String>,
    /// Set when the request resent an earlier key with the same body.
    pub retry_of: Option<Original>,
}

/// Counts for one plan, from first (not replayed) answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanTally {
    /// 201 Created; in the checkout modes, completed checkouts.
    pub created: u64,
    /// Checkout sessions opened (201).
    pub opened: u64,
    /// 402 payment_declined.
    pub declined: u64,
    /// 409 plan_sold_out.
    pub sold_out: u64,
}

/// Everything counted over a run (one per connection, then merged).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub mode: Mode,
    /// By HTTP status ("201", …; "transport_error" for requests that got no answer).
    pub statuses: BTreeMap<String, u64>,
    /// By problem `code`.
    pub codes: BTreeMap<String, u64>,
    /// Answers carrying `Idempotent-Replayed: true`.
    pub replayed: u64,
    pub plans: Vec<PlanTally>,
    /// Subscription ids of first 201s (of completed checkouts), to find one given twice.
    pub created_ids: Vec<u128>,
    /// Requests that resent an earlier key.
    pub retries: u64,
    /// Retries whose answer was not a replay of the first one (another status, another
    /// subscription, or no `Idempotent-Replayed`).
    pub retry_mismatches: u64,
    /// 503 `payment_unavailable`: outcome unknown, resent until it is known.
    pub unknown_outcomes: u64,
    /// Answers a healthy run never gets (5xx but `payment_unavailable`, 400, 422, 409
    /// `idempotency_key_in_use`, transport errors, a fresh key answered as a replay, …).
    pub unexpected: u64,
    /// The first few of them, for the report.
    pub unexpected_examples: Vec<String>,
}

impl Tally {
    pub fn new(mode: Mode, plans: usize) -> Self {
        Self {
            mode,
            statuses: BTreeMap::new(),
            codes: BTreeMap::new(),
            replayed: 0,
            plans: vec![PlanTally::default(); plans],
            created_ids: Vec::new(),
            retries: 0,
            retry_mismatches: 0,
            unknown_outcomes: 0,
            unexpected: 0,
            unexpected_examples: Vec::new(),
        }
    }

    pub fn record(&mut self, o: &Observation) {
        let status = if o.status == 0 {
            "transport_error".to_owned()
        } else {
            o.status.to_string()
        };
        *self.statuses.entry(status).or_default() += 1;
        if let Some(code) = &o.code {
            *self.codes.entry(code.clone()).or_default() += 1;
        }
        if o.replayed {
            self.replayed += 1;
        }
        if self.mode == Mode::Echo {
            if o.status != 200 {
                self.unexpected(o, "the echo endpoint did not answer 200");
            }
            return;
        }
        if let Some(original) = &o.retry_of {
            self.retries += 1;
            if !o.replayed
                || o.status != original.status
                || o.subscription_id != original.subscription_id
            {
                self.retry_mismatches += 1;
            }
            return;
        }
        if o.replayed {
            self.unexpected(o, "a fresh key was answered with a replay");
            return;
        }
        let plan = &mut self.plans[o.plan];
        match (o.status, o.code.as_deref()) {
            (201, _) => {
                plan.created += 1;
                match o.subscription_id.as_deref().map(uuid::Uuid::parse_str) {
                    Some(Ok(id)) => self.created_ids.push(id.as_u128()),
                    _ => self.unexpected(o, "a 201 without a subscription id"),
                }
            }
            (402, Some("payment_declined")) => plan.declined += 1,
            (409, Some("plan_sold_out")) => plan.sold_out += 1,
            (503, Some("payment_unavailable")) => self.unknown_outcomes += 1,
            _ => self.unexpected(o, "not an answer a purchase should get"),
        }
    }

    fn unexpected(&mut self, o: &Observation, why: &str) {
        self.unexpected_because(|| {
            format!(
                "{why}: status {} code {} replayed {}",
                o.status,
                o.code.as_deref().unwrap_or("-"),
                o.replayed
            )
        });
    }

    pub(crate) fn unexpected_because(&mut self, example: impl FnOnce() -> String) {
        self.unexpected += 1;
        if self.unexpected_examples.len() < 5 {
            self.unexpected_examples.push(example());
        }
    }

    pub fn merge(&mut self, other: Tally) {
        for (k, v) in other.statuses {
            *self.statuses.entry(k).or_default() += v;
        }
        for (k, v) in other.codes {
            *self.codes.entry(k).or_default() += v;
        }
        self.replayed += other.replayed;
        for (mine, theirs) in self.plans.iter_mut().zip(other.plans) {
            mine.created += theirs.created;
            mine.opened += theirs.opened;
            mine.declined += theirs.declined;
            mine.sold_out += theirs.sold_out;
        }
        self.created_ids.extend(other.created_ids);
        self.retries += other.retries;
        self.retry_mismatches += other.retry_mismatches;
        self.unknown_outcomes += other.unknown_outcomes;
        self.unexpected += other.unexpected;
        for e in other.unexpected_examples {
            if self.unexpected_examples.len() < 5 {
                self.unexpected_examples.push(e);
            }
        }
    }

    /// All 201s not replayed; in the checkout modes, completed checkouts.
    pub fn created(&self) -> u64 {
        self.plans.iter().map(|p| p.created).sum()
    }

    /// Checkout sessions opened.
    pub fn opened(&self) -> u64 {
        self.plans.iter().map(|p| p.opened).sum()
    }
}

/// A plan as the API shows it after the run: `GET /api/plans/{id}` and its `/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanSnapshot {
    pub id: String,
    pub capacity: u64,
    pub seats_left: u64,
    pub stats: StatsSnapshot,
}

/// `GET /api/plans/{id}/stats`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub capacity: u64,
    pub seats_left: u64,
    pub incomplete: u64,
    pub active: u64,
    pub canceled: u64,
    pub incomplete_expired: u64,
    /// Seats held by open checkout sessions.
    #[serde(default)]
    pub held: u64,
}

/// One named check and what it found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

/// The end-of-run verdict: passed when every check passed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub passed: bool,
    pub checks: Vec<Check>,
}

/// Decides pass/fail from the tally and the plans as the API shows them after the run
/// (`plans[i]` is the plan that `tally.plans[i]` counted).
pub fn verify(tally: &Tally, plans: &[PlanSnapshot]) -> Verdict {
    let mut checks = Vec::new();
    let mut check = |name: &str, passed: bool, detail: String| {
        checks.push(Check {
            name: name.to_owned(),
            passed,
            detail,
        })
    };
    check(
        "every answer was one a healthy run gets",
        tally.unexpected == 0,
        if tally.unexpected == 0 {
            "no transport error, no unexpected status".into()
        } else {
            format!(
                "{} unexpected answers, e.g. {}",
                tally.unexpected,
                tally.unexpected_examples.join("; ")
            )
        },
    );
    if tally.mode == Mode::Echo {
        return finish(checks);
    }
    check(
        "every retry replayed the first answer",
        tally.retry_mismatches == 0,
        format!(
            "{} retries, {} not replayed or not identical",
            tally.retries, tally.retry_mismatches
        ),
    );
    let mut ids = tally.created_ids.clone();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    check(
        "no subscription was created twice",
        ids.len() == before,
        format!("{before} created, {} distinct ids", ids.len()),
    );
    if plans.len() != tally.plans.len() {
        check(
            "every plan was read back",
            false,
            format!(
                "{} plans counted, {} read back",
                tally.plans.len(),
                plans.len()
            ),
        );
        return finish(checks);
    }
    for (name, rule) in rules(tally.mode) {
        let failures: Vec<String> = tally
            .plans
            .iter()
            .zip(plans)
            .filter_map(|(t, p)| rule(t, p).map(|why| format!("plan {}: {why}", p.id)))
            .collect();
        let passed = failures.is_empty();
        let detail = if passed {
            match tally.mode {
                Mode::Checkout => format!(
                    "{} plans, {} completed checkouts in all",
                    plans.len(),
                    tally.created()
                ),
                Mode::CheckoutAbandon => format!(
                    "{} plans, {} sessions opened in all",
                    plans.len(),
                    tally.opened()
                ),
                _ => format!(
                    "{} plans, {} successes in all",
                    plans.len(),
                    tally.created()
                ),
            }
        } else {
            failures.into_iter().take(3).collect::<Vec<_>>().join("; ")
        };
        check(name, passed, detail);
    }
    finish(checks)
}

type Rule = fn(&PlanTally, &PlanSnapshot) -> Option<String>;

/// What must hold of every plan after a run of `mode`: each rule says why a plan fails it.
fn rules(mode: Mode) -> Vec<(&'static str, Rule)> {
    let oversold: (&str, Rule) = ("nothing was oversold", |_, p| {
        let s = &p.stats;
        let taken = s.active + s.incomplete + s.held;
        (taken > p.capacity
            || p.seats_left > p.capacity
            || s.capacity != p.capacity
            || s.seats_left != p.seats_left
            || s.capacity != s.seats_left + taken)
            .then(|| {
                format!(
                    "capacity {} seats_left {} (stats: seats_left {} active {} incomplete {} held {})",
                    p.capacity, p.seats_left, s.seats_left, s.active, s.incomplete, s.held
                )
            })
    });
    match mode {
        Mode::Echo => Vec::new(),
        Mode::Purchase => vec![
            oversold,
            ("successes equal seats taken", |t, p| {
                let taken = p.capacity.saturating_sub(p.seats_left);
                (t.created != taken)
                    .then(|| format!("{} successes, {} seats taken", t.created, taken))
            }),
            ("successes equal active subscriptions", |t, p| {
                (t.created != p.stats.active).then(|| {
                    format!(
                        "{} successes, {} active subscriptions",
                        t.created, p.stats.active
                    )
                })
            }),
            ("no purchase was left incomplete", |_, p| {
                (p.stats.incomplete != 0)
                    .then(|| format!("{} incomplete subscriptions", p.stats.incomplete))
            }),
            ("declines equal expired subscriptions", |t, p| {
                (t.declined != p.stats.incomplete_expired).then(|| {
                    format!(
                        "{} declines, {} incomplete_expired subscriptions",
                        t.declined, p.stats.incomplete_expired
                    )
                })
            }),
        ],
        Mode::Checkout => vec![
            oversold,
            ("completed checkouts equal seats taken", |t, p| {
                let taken = p.capacity.saturating_sub(p.seats_left);
                (t.created != taken)
                    .then(|| format!("{} completed, {} seats taken", t.created, taken))
            }),
            ("completed checkouts equal active subscriptions", |t, p| {
                (t.created != p.stats.active).then(|| {
                    format!(
                        "{} completed, {} active subscriptions",
                        t.created, p.stats.active
                    )
                })
            }),
            ("no seat is still held", |_, p| {
                (p.stats.held != 0).then(|| format!("{} seats held", p.stats.held))
            }),
            ("nothing was left incomplete", |_, p| {
                (p.stats.incomplete != 0)
                    .then(|| format!("{} incomplete subscriptions", p.stats.incomplete))
            }),
        ],
        // The worker expires sessions while the plans are read back: the plan and its
        // stats are two reads, so only the stats (one read) are compared with themselves.
        Mode::CheckoutAbandon => vec![
            ("nothing was oversold", |_, p| {
                let s = &p.stats;
                let taken = s.active + s.incomplete + s.held;
                (s.capacity != p.capacity || s.capacity != s.seats_left + taken).then(|| {
                    format!(
                        "capacity {} (stats: capacity {} seats_left {} active {} incomplete {} held {})",
                        p.capacity, s.capacity, s.seats_left, s.active, s.incomplete, s.held
                    )
                })
            }),
            ("no abandoned session became a subscription", |_, p| {
                (p.stats.active + p.stats.incomplete != 0).then(|| {
                    format!(
                        "{} active, {} incomplete subscriptions",
                        p.stats.active, p.stats.incomplete
                    )
                })
            }),
            ("every seat taken is held by a session", |_, p| {
                let taken = p.stats.capacity.saturating_sub(p.stats.seats_left);
                (taken != p.stats.held)
                    .then(|| format!("{taken} seats taken, {} held", p.stats.held))
            }),
            ("no more seats held than sessions opened", |t, p| {
                (p.stats.held > t.opened)
                    .then(|| format!("{} held, {} opened", p.stats.held, t.opened))
            }),
        ],
    }
}

fn finish(checks: Vec<Check>) -> Verdict {
    Verdict {
        passed: checks.iter().all(|c| c.passed),
        checks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUB_A: &str = "0190f5d0-1b2c-7d3e-8f40-5a6b7c8d9e01";
    const SUB_B: &str = "0190f5d0-1b2c-7d3e-8f40-5a6b7c8d9e02";
    const SUB_C: &str = "0190f5d0-1b2c-7d3e-8f40-5a6b7c8d9e03";

    fn answer(plan: usize, status: u16, code: Option<&str>, sub: Option<&str>) -> Observation {
        Observation {
            plan,
            status,
            replayed: false,
            code: code.map(str::to_owned),
            subscription_id: sub.map(str::to_owned),
            retry_of: None,
        }
    }

    fn replay_of(first: &Observation) -> Observation {
        Observation {
            replayed: true,
            retry_of: Some(Original {
                status: first.status,
                subscription_id: first.subscription_id.clone(),
            }),
            ..first.clone()
        }
    }

    fn plan(
        capacity: u64,
        seats_left: u64,
        active: u64,
        incomplete: u64,
        expired: u64,
    ) -> PlanSnapshot {
        PlanSnapshot {
            id: "plan".into(),
            capacity,
            seats_left,
            stats: StatsSnapshot {
                capacity,
                seats_left,
                incomplete,
                active,
                canceled: 0,
                incomplete_expired: expired,
                held: 0,
            },
        }
    }

    /// Two seats sold, one declined, one sold out, and a replay of the first sale.
    fn healthy_run() -> Tally {
        let mut t = Tally::new(Mode::Purchase, 1);
        let first = answer(0, 201, None, Some(SUB_A));
        t.record(&first);
        t.record(&answer(0, 201, None, Some(SUB_B)));
        t.record(&answer(0, 402, Some("payment_declined"), Some(SUB_C)));
        t.record(&answer(0, 409, Some("plan_sold_out"), None));
        t.record(&replay_of(&first));
        t
    }

    fn failed(v: &Verdict) -> Vec<&str> {
        v.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect()
    }

    #[test]
    fn a_run_whose_successes_match_the_seats_taken_and_the_active_count_passes() {
        let v = verify(&healthy_run(), &[plan(2, 0, 2, 0, 1)]);
        assert!(v.passed, "{v:#?}");
        assert_eq!(v.checks.len(), 8);
    }

    #[test]
    fn a_seat_gone_without_a_success_fails_the_seats_check() {
        // Capacity 3, no seat left, yet only two successes and two active subscriptions.
        let v = verify(&healthy_run(), &[plan(3, 0, 2, 0, 1)]);
        assert!(!v.passed);
        assert!(failed(&v).contains(&"successes equal seats taken"));
        assert!(!failed(&v).contains(&"successes equal active subscriptions"));
    }

    #[test]
    fn more_subscriptions_holding_seats_than_the_capacity_is_overselling() {
        let v = verify(&healthy_run(), &[plan(2, 0, 3, 0, 1)]);
        assert!(failed(&v).contains(&"nothing was oversold"));
        assert!(failed(&v).contains(&"successes equal active subscriptions"));
    }

    #[test]
    fn an_incomplete_subscription_left_after_the_run_fails() {
        let mut p = plan(3, 0, 2, 1, 1);
        p.stats.capacity = 3;
        let v = verify(&healthy_run(), &[p]);
        assert!(failed(&v).contains(&"no purchase was left incomplete"));
    }

    #[test]
    fn a_retry_that_is_not_marked_as_a_replay_fails_even_with_the_same_body() {
        let mut t = healthy_run();
        let mut again = replay_of(&answer(0, 201, None, Some(SUB_A)));
        again.replayed = false;
        t.record(&again);
        let v = verify(&t, &[plan(2, 0, 2, 0, 1)]);
        assert_eq!(failed(&v), ["every retry replayed the first answer"]);
    }

    #[test]
    fn a_retry_answered_with_another_subscription_fails() {
        let mut t = healthy_run();
        let first = answer(0, 201, None, Some(SUB_A));
        let mut other = replay_of(&first);
        other.subscription_id = Some(SUB_B.into());
        t.record(&other);
        assert_eq!(t.retry_mismatches, 1);
        assert!(!verify(&t, &[plan(2, 0, 2, 0, 1)]).passed);
    }

    #[test]
    fn the_same_subscription_id_in_two_first_answers_fails() {
        let mut t = Tally::new(Mode::Purchase, 1);
        t.record(&answer(0, 201, None, Some(SUB_A)));
        t.record(&answer(0, 201, None, Some(SUB_A)));
        let v = verify(&t, &[plan(2, 0, 2, 0, 0)]);
        assert_eq!(failed(&v), ["no subscription was created twice"]);
    }

    #[test]
    fn a_server_error_or_a_transport_error_fails_the_run() {
        for status in [0, 500] {
            let mut t = healthy_run();
            t.record(&answer(0, status, None, None));
            let v = verify(&t, &[plan(2, 0, 2, 0, 1)]);
            assert_eq!(failed(&v), ["every answer was one a healthy run gets"]);
        }
    }

    #[test]
    fn an_unknown_payment_outcome_is_expected_and_counted_apart() {
        let mut t = healthy_run();
        t.record(&answer(0, 503, Some("payment_unavailable"), None));
        assert_eq!(t.unknown_outcomes, 1);
        assert!(verify(&t, &[plan(2, 0, 2, 0, 1)]).passed);
    }

    #[test]
    fn merged_tallies_add_up_per_plan() {
        let mut a = Tally::new(Mode::Purchase, 2);
        a.record(&answer(1, 201, None, Some(SUB_A)));
        let mut b = Tally::new(Mode::Purchase, 2);
        b.record(&answer(1, 201, None, Some(SUB_B)));
        b.record(&answer(0, 402, Some("payment_declined"), Some(SUB_C)));
        a.merge(b);
        assert_eq!(a.plans[1].created, 2);
        assert_eq!(a.plans[0].declined, 1);
        assert_eq!(a.statuses["201"], 2);
        assert_eq!(a.codes["payment_declined"], 1);
        assert_eq!(a.created(), 2);
    }

    #[test]
    fn an_echo_run_passes_on_200s_alone() {
        let mut t = Tally::new(Mode::Echo, 0);
        t.record(&answer(0, 200, None, None));
        assert!(verify(&t, &[]).passed);
        t.record(&answer(0, 404, Some("not_found"), None));
        assert!(!verify(&t, &[]).passed);
    }
}
