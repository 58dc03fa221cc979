//! The checkout modes' connection task. One iteration is one checkout, three requests on
//! the task's keep-alive connection:
//!
//! 1. `POST /api/checkout_sessions` with a new `Idempotency-Key` and a new customer
//!    (a customer may have one open session per plan) → 201, the session `open`;
//! 2. `POST /api/checkout_sessions/{id}/confirm` with the payment method → 200
//!    `complete`;
//! 3. `POST /api/webhooks/stripe`: the intent's `payment_intent.succeeded`, as the
//!    provider sends it after the payment, signed with the endpoint's secret → 200
//!    (`handled`, `duplicate` or `ignored`).
//!
//! A step whose outcome is unknown (503, no answer) is sent again, unchanged, until it is
//! known (within [`SETTLE_LIMIT`]). Abandoned checkouts stop after the first step: their
//! sessions hold a seat until they expire.

use std::{
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use hyper::Method;
use serde::Deserialize;
use serde_json::json;

use crate::{
    client::{Answer, Conn},
    run::{exchange, Shared, WorkerResult, SETTLE_LIMIT},
    signature::stripe_signature,
    tally::{
        steps::{Next, Step, StepAnswer},
        Mode, Tally,
    },
};

const CHECKOUT_PATH: &str = "/api/checkout_sessions";
const WEBHOOK_PATH: &str = "/api/webhooks/stripe";

/// What the loadgen reads of a session.
#[derive(Debug, Deserialize)]
struct SessionFields {
    id: String,
    amount: i64,
    currency: String,
    customer_id: String,
    payment: Option<PaymentFields>,
}

#[derive(Debug, Deserialize)]
struct PaymentFields {
    payment_intent: String,
}

/// What the loadgen reads of a confirmation (its `outcome` is the tally's).
#[derive(Debug, Deserialize)]
struct ConfirmFields {
    session: SessionFields,
    subscription: Option<SubscriptionFields>,
}

#[derive(Debug, Deserialize)]
struct SubscriptionFields {
    id: String,
}

/// A webhook receipt's `outcome`, a session's `status` or a confirmation's `outcome`.
#[derive(Debug, Deserialize)]
struct Outcome {
    #[serde(alias = "status")]
    outcome: String,
}

#[derive(Debug, Deserialize)]
struct ProblemFields {
    code: Option<String>,
}

/// The body of the `payment_intent.succeeded` event of a confirmed session, as Stripe
/// sends it: the intent in `data.object`, with the metadata the server put on it.
fn succeeded_event(
    event_id: &str,
    created: i64,
    session: &SessionFields,
    intent: &str,
    payment_method: &str,
    subscription_id: Option<&str>,
) -> Bytes {
    let mut metadata = json!({
        "checkout_session_id": session.id,
        "customer_id": session.customer_id,
    });
    if let Some(sub) = subscription_id {
        metadata["subscription_id"] = json!(sub);
        metadata["provider_key"] = json!(format!("seatkeeper-sub-{sub}"));
    }
    let event = json!({
        "id": event_id,
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": created,
        "data": {"object": {
            "id": intent,
            "object": "payment_intent",
            "status": "succeeded",
            "amount": session.amount,
            "amount_received": session.amount,
            "currency": session.currency,
            "payment_method": payment_method,
            "metadata": metadata,
        }},
    });
    Bytes::from(serde_json::to_vec(&event).expect("a JSON value serialises"))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// One connection's checkouts.
struct Driver<'a> {
    shared: &'a Shared,
    conn: Option<Conn>,
    tally: Tally,
    /// Each step's latencies, by [`Step::ALL`]'s order.
    steps: Vec<Vec<u32>>,
    requests: u64,
    resent: u64,
}

impl Driver<'_> {
    /// Sends one step until its outcome is known; the answer when the checkout goes on.
    async fn step(
        &mut self,
        plan: usize,
        step: Step,
        path: &str,
        headers: &[(&'static str, &str)],
        body: &Bytes,
    ) -> Option<Answer> {
        let mut resent = false;
        let mut until = None;
        loop {
            let t0 = Instant::now();
            let answer = exchange(
                &mut self.conn,
                &self.shared.target,
                Method::POST,
                path,
                headers,
                Some(body),
            )
            .await;
            let micros = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
            self.requests += 1;
            self.shared.answered.fetch_add(1, Ordering::Relaxed);
            if answer.as_ref().is_none_or(|a| a.status >= 500) {
                self.shared.failed.fetch_add(1, Ordering::Relaxed);
            }
            if answer.is_some() {
                self.steps[step as usize].push(micros);
            }
            let observed = observe(plan, step, answer.as_ref(), resent);
            match self.tally.record_step(&observed) {
                Next::Go => return answer,
                Next::Stop => return None,
                Next::Resend => {
                    let until = *until.get_or_insert_with(|| Instant::now() + SETTLE_LIMIT);
                    if Instant::now() >= until {
                        self.tally.gave_up(step);
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    self.resent += 1;
                    resent = true;
                }
            }
        }
    }

    /// The answer's body as `T`; `None` (counted as unexpected) when it is not one.
    fn read<T: serde::de::DeserializeOwned>(&mut self, answer: &Answer, what: &str) -> Option<T> {
        match serde_json::from_slice(&answer.body) {
            Ok(v) => Some(v),
            Err(e) => {
                self.tally
                    .unexpected_because(|| format!("{what} that could not be read: {e}"));
                None
            }
        }
    }

    /// Checkout number `n`: its latency when it completed (abandoned: when it opened).
    async fn checkout(&mut self, n: u64) -> Option<u32> {
        let shared = self.shared;
        let opts = &shared.opts;
        let plan = (n % shared.plan_ids.len() as u64) as usize;
        let auth = shared.authorization.as_deref().unwrap_or_default();
        let customer = format!("lg{}-{n}", shared.run_id);
        let key = format!("ck{n}");
        let mut body = json!({"plan_id": shared.plan_ids[plan], "customer_id": customer});
        if let Some(secs) = opts.expires_in_secs {
            body["expires_in"] = json!(secs);
        }
        let body = Bytes::from(serde_json::to_vec(&body).ok()?);
        let t0 = Instant::now();
        let opened = self
            .step(
                plan,
                Step::Open,
                CHECKOUT_PATH,
                &[("idempotency-key", &key), ("authorization", auth)],
                &body,
            )
            .await?;
        let session: SessionFields = self.read(&opened, "an opened session")?;
        if opts.mode == Mode::CheckoutAbandon {
            return Some(elapsed_micros(t0));
        }
        let method = &shared.schedule[0];
        let confirm = Bytes::from(format!(r#"{{"payment_method":"{method}"}}"#));
        let path = format!("{CHECKOUT_PATH}/{}/confirm", session.id);
        let confirmed = self
            .step(
                plan,
                Step::Confirm,
                &path,
                &[("authorization", auth)],
                &confirm,
            )
            .await?;
        let confirmed: ConfirmFields = self.read(&confirmed, "a confirmation")?;
        let subscription = confirmed.subscription.as_ref().map(|s| s.id.as_str());
        let Some(intent) = confirmed
            .session
            .payment
            .as_ref()
            .or(session.payment.as_ref())
            .map(|p| p.payment_intent.as_str())
        else {
            self.tally
                .unexpected_because(|| "a complete session without a payment intent".to_owned());
            return None;
        };
        let secret = opts.webhook_secret.as_deref().unwrap_or_default();
        let now = unix_now();
        let event_id = format!("evt_lg{}_{n}", shared.run_id);
        let event = succeeded_event(
            &event_id,
            now,
            &confirmed.session,
            intent,
            method,
            subscription,
        );
        let signature = stripe_signature(secret, now, &event);
        self.step(
            plan,
            Step::Webhook,
            WEBHOOK_PATH,
            &[("stripe-signature", &signature)],
            &event,
        )
        .await?;
        self.tally.complete(plan, subscription);
        Some(elapsed_micros(t0))
    }
}

fn elapsed_micros(t0: Instant) -> u32 {
    t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32
}

/// The answer as the tally reads it: the problem code of an error, what a 2xx said.
fn observe(plan: usize, step: Step, answer: Option<&Answer>, resent: bool) -> StepAnswer {
    let (status, replayed, code, state) = match answer {
        None => (0, false, None, None),
        Some(a) if (200..300).contains(&a.status) => {
            let state = serde_json::from_slice::<Outcome>(&a.body)
                .ok()
                .map(|o| o.outcome);
            (a.status, a.replayed, None, state)
        }
        Some(a) => {
            let code = serde_json::from_slice::<ProblemFields>(&a.body)
                .ok()
                .and_then(|p| p.code);
            (a.status, a.replayed, code, None)
        }
    };
    StepAnswer {
        plan,
        step,
        status,
        replayed,
        resent,
        code,
        state,
    }
}

/// Runs checkouts on one connection until the budget or the time is used up; a checkout
/// begun is carried to its end.
pub(crate) async fn worker(shared: Arc<Shared>, conn: Option<Conn>) -> WorkerResult {
    let budget = shared.opts.requests.unwrap_or(u64::MAX);
    let mut driver = Driver {
        shared: &shared,
        conn,
        tally: Tally::new(shared.opts.mode, shared.plan_ids.len()),
        steps: vec![Vec::new(); Step::ALL.len()],
        requests: 0,
        resent: 0,
    };
    let mut latencies = Vec::new();
    loop {
        if Instant::now() >= shared.deadline {
            break;
        }
        let n = shared.issued.fetch_add(1, Ordering::Relaxed);
        if n >= budget {
            break;
        }
        if !shared.pace(n).await {
            break;
        }
        if let Some(micros) = driver.checkout(n).await {
            latencies.push(micros);
        }
    }
    let main_end = Instant::now();
    let created = match shared.opts.mode {
        Mode::CheckoutAbandon => driver.tally.opened(),
        _ => driver.tally.created(),
    };
    WorkerResult {
        latencies,
        steps: driver.steps,
        tally: driver.tally,
        requests: driver.requests,
        created,
        main_end,
        settle_requests: driver.resent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_event_is_read_by_the_server_as_the_payment_of_the_session() {
        use seatkeeper_server::webhooks::event::{read, Read};
        let session_id = "0193b0c1-2d3e-7f40-8a5b-6c7d8e9f0a1b";
        let session: SessionFields = serde_json::from_value(json!({
            "id": session_id, "status": "complete", "amount": 1500, "currency": "usd",
            "customer_id": "lgab12cd34-7", "payment": {"payment_intent": "pi_1"},
        }))
        .unwrap();
        let sub = "0190f5d0-1b2c-7d3e-8f40-5a6b7c8d9e01";
        let body = succeeded_event("evt_1", 1, &session, "pi_1", "pm_card_visa", Some(sub));
        let Read::Payment(ev) = read(&body, chrono::Utc::now()).unwrap() else {
            panic!("the server ignored the event");
        };
        assert_eq!(ev.session_id.to_string(), session_id);
        assert_eq!(
            (ev.intent_id.as_str(), ev.event.id.as_str()),
            ("pi_1", "evt_1")
        );
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v["data"]["object"]["metadata"]["provider_key"],
            format!("seatkeeper-sub-{sub}")
        );
    }

    #[test]
    fn a_problem_answer_is_read_as_its_code_and_a_2xx_as_what_it_said() {
        let answer = |status, body: serde_json::Value| Answer {
            status,
            replayed: false,
            body: Bytes::from(serde_json::to_vec(&body).unwrap()),
        };
        let o = observe(
            0,
            Step::Open,
            Some(&answer(503, json!({"code": "payment_unavailable"}))),
            false,
        );
        assert_eq!(
            (o.status, o.code.as_deref(), o.state),
            (503, Some("payment_unavailable"), None)
        );
        let o = observe(
            0,
            Step::Open,
            Some(&answer(201, json!({"id": "x", "status": "open"}))),
            false,
        );
        assert_eq!(o.state.as_deref(), Some("open"));
        let o = observe(
            0,
            Step::Confirm,
            Some(&answer(
                200,
                json!({"outcome": "complete", "session": {"status": "complete"}}),
            )),
            false,
        );
        assert_eq!(o.state.as_deref(), Some("complete"));
        let o = observe(0, Step::Webhook, None, true);
        assert_eq!((o.status, o.resent), (0, true));
    }
}
