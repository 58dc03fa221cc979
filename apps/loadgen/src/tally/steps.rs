//! A checkout's answers, step by step: what each answer to one of its three requests
//! (open, confirm, webhook) means for the checkout — go on, send the same request again,
//! or stop — and how it is counted. A checkout counts as completed
//! ([`Tally::complete`]) only once all three answered as expected.

use serde::{Deserialize, Serialize};

use super::Tally;

/// One request of a checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// `POST /api/checkout_sessions`
    Open,
    /// `POST /api/checkout_sessions/{id}/confirm`
    Confirm,
    /// `POST /api/webhooks/stripe` with the intent's `payment_intent.succeeded`
    Webhook,
}

impl Step {
    pub const ALL: [Step; 3] = [Step::Open, Step::Confirm, Step::Webhook];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Open => "open",
            Step::Confirm => "confirm",
            Step::Webhook => "webhook",
        }
    }
}

/// One answer to a step, as the tally needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepAnswer {
    /// Index of the plan the checkout is for.
    pub plan: usize,
    pub step: Step,
    /// 0 stands for no answer (a transport error).
    pub status: u16,
    /// The `Idempotent-Replayed: true` header.
    pub replayed: bool,
    /// Whether the request was sent again after an unknown outcome.
    pub resent: bool,
    /// The problem `code` of a 4xx/5xx.
    pub code: Option<String>,
    /// What a 2xx said: the session's `status` (open), the confirmation's `outcome`,
    /// the webhook receipt's `outcome`.
    pub state: Option<String>,
}

/// What the checkout does after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// The step answered as expected: on to the next one.
    Go,
    /// The outcome is unknown (503, no answer): send the same request again.
    Resend,
    /// The checkout ends here, not completed.
    Stop,
}

impl Tally {
    /// Counts one answer to a step and says what the checkout does next.
    pub fn record_step(&mut self, a: &StepAnswer) -> Next {
        let step = a.step.as_str();
        let status = match (a.status, a.state.as_deref()) {
            (0, _) => format!("{step} transport_error"),
            (s @ 200..=299, Some(state)) => format!("{step} {s} {state}"),
            (s, _) => format!("{step} {s}"),
        };
        *self.statuses.entry(status).or_default() += 1;
        if let Some(code) = &a.code {
            *self.codes.entry(code.clone()).or_default() += 1;
        }
        if a.replayed {
            self.replayed += 1;
        }
        let why = |why: &str| {
            let a = a.clone();
            let why = why.to_owned();
            move || {
                format!(
                    "{why}: {} answered {} code {} state {} replayed {}",
                    a.step.as_str(),
                    a.status,
                    a.code.as_deref().unwrap_or("-"),
                    a.state.as_deref().unwrap_or("-"),
                    a.replayed
                )
            }
        };
        match (a.status, a.code.as_deref()) {
            (0, _) => {
                self.unexpected_because(why("no answer"));
                return Next::Resend;
            }
            (503, Some("payment_unavailable")) => {
                self.unknown_outcomes += 1;
                return Next::Resend;
            }
            (503, _) => {
                self.unexpected_because(why("unavailable"));
                return Next::Resend;
            }
            _ => {}
        }
        match (a.step, a.status, a.code.as_deref(), a.state.as_deref()) {
            (Step::Open, 201, _, Some("open")) => {
                if a.replayed && !a.resent {
                    self.unexpected_because(why("a fresh key was answered with a replay"));
                }
                self.plans[a.plan].opened += 1;
                Next::Go
            }
            (Step::Open, 409, Some("plan_sold_out"), _) => {
                self.plans[a.plan].sold_out += 1;
                Next::Stop
            }
            (Step::Confirm, 200, _, Some("complete")) => Next::Go,
            (Step::Webhook, 200, _, Some("handled" | "duplicate" | "ignored")) => Next::Go,
            _ => {
                self.unexpected_because(why("not an answer a checkout should get"));
                Next::Stop
            }
        }
    }

    /// Counts a checkout whose three steps all answered as expected.
    pub fn complete(&mut self, plan: usize, subscription_id: Option<&str>) {
        self.plans[plan].created += 1;
        match subscription_id.map(uuid::Uuid::parse_str) {
            Some(Ok(id)) => self.created_ids.push(id.as_u128()),
            _ => self
                .unexpected_because(|| "a completed checkout without a subscription id".to_owned()),
        }
    }

    /// Counts a checkout that gave up on an outcome that stayed unknown.
    pub fn gave_up(&mut self, step: Step) {
        self.unexpected_because(|| {
            format!(
                "the outcome of a checkout's {} stayed unknown past the time limit",
                step.as_str()
            )
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tally::{verify, Mode, PlanSnapshot, StatsSnapshot};

    const SUB_A: &str = "0190f5d0-1b2c-7d3e-8f40-5a6b7c8d9e01";

    fn answer(step: Step, status: u16, code: Option<&str>, state: Option<&str>) -> StepAnswer {
        StepAnswer {
            plan: 0,
            step,
            status,
            replayed: false,
            resent: false,
            code: code.map(str::to_owned),
            state: state.map(str::to_owned),
        }
    }

    fn plan(capacity: u64, seats_left: u64, active: u64, held: u64) -> PlanSnapshot {
        PlanSnapshot {
            id: "plan".into(),
            capacity,
            seats_left,
            stats: StatsSnapshot {
                capacity,
                seats_left,
                incomplete: 0,
                active,
                canceled: 0,
                incomplete_expired: 0,
                held,
            },
        }
    }

    /// One checkout whose open met a 503 once, then completed.
    fn completed_checkout() -> Tally {
        let mut t = Tally::new(Mode::Checkout, 1);
        let unknown = answer(Step::Open, 503, Some("payment_unavailable"), None);
        assert_eq!(t.record_step(&unknown), Next::Resend);
        let mut replay = answer(Step::Open, 201, None, Some("open"));
        replay.replayed = true;
        replay.resent = true;
        assert_eq!(t.record_step(&replay), Next::Go);
        let confirmed = answer(Step::Confirm, 200, None, Some("complete"));
        assert_eq!(t.record_step(&confirmed), Next::Go);
        let received = answer(Step::Webhook, 200, None, Some("handled"));
        assert_eq!(t.record_step(&received), Next::Go);
        t.complete(0, Some(SUB_A));
        t
    }

    #[test]
    fn a_checkout_retried_through_a_503_and_completed_passes_with_its_seat_active() {
        let t = completed_checkout();
        assert_eq!((t.created(), t.opened(), t.unknown_outcomes), (1, 1, 1));
        assert_eq!(t.statuses["confirm 200 complete"], 1);
        let v = verify(&t, &[plan(10, 9, 1, 0)]);
        assert!(v.passed, "{v:#?}");
    }

    #[test]
    fn a_seat_still_held_after_a_checkout_run_fails_it() {
        let t = completed_checkout();
        let v = verify(&t, &[plan(10, 8, 1, 1)]);
        let failed: Vec<_> = v
            .checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| &c.name)
            .collect();
        assert_eq!(
            failed,
            [
                "completed checkouts equal seats taken",
                "no seat is still held"
            ]
        );
    }

    #[test]
    fn a_confirmation_that_does_not_complete_stops_the_checkout_and_fails_the_run() {
        let mut t = Tally::new(Mode::Checkout, 1);
        t.record_step(&answer(Step::Open, 201, None, Some("open")));
        let pending = answer(Step::Confirm, 200, None, Some("requires_action"));
        assert_eq!(t.record_step(&pending), Next::Stop);
        assert_eq!(t.unexpected, 1);
        assert!(!verify(&t, &[plan(10, 9, 0, 1)]).passed);
    }

    #[test]
    fn a_duplicate_or_ignored_webhook_is_still_a_taken_delivery_but_a_400_is_not() {
        let mut t = Tally::new(Mode::Checkout, 1);
        for outcome in ["handled", "duplicate", "ignored"] {
            let ok = answer(Step::Webhook, 200, None, Some(outcome));
            assert_eq!(t.record_step(&ok), Next::Go);
        }
        let refused = answer(Step::Webhook, 400, Some("webhook_signature_invalid"), None);
        assert_eq!(t.record_step(&refused), Next::Stop);
        assert_eq!(t.unexpected, 1);
    }

    #[test]
    fn abandoned_sessions_pass_while_every_seat_taken_is_held_by_one_of_them() {
        let mut t = Tally::new(Mode::CheckoutAbandon, 1);
        for _ in 0..3 {
            t.record_step(&answer(Step::Open, 201, None, Some("open")));
        }
        // Two of the three expired already and gave their seats back.
        assert!(verify(&t, &[plan(10, 9, 0, 1)]).passed);
        // The worker expired one more between the read of the plan and that of its stats.
        let mut moved = plan(10, 9, 0, 0);
        moved.stats.seats_left = 10;
        assert!(verify(&t, &[moved]).passed);
        assert!(!verify(&t, &[plan(10, 8, 0, 1)]).passed);
        assert!(!verify(&t, &[plan(10, 6, 0, 4)]).passed);
        assert!(!verify(&t, &[plan(10, 8, 1, 1)]).passed);
    }
}
