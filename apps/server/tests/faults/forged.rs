//! Forged webhooks ([`Forger`]): while a checkout load runs, a stranger posts events that
//! say an open session's payment succeeded — signed with another secret, signed with the
//! right one five minutes and more ago (stale), with a malformed header, or with none —
//! to random instances. Every one must be refused with a 400 problem and change nothing;
//! the run's end checks find any session completed without a charge.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use rand::Rng;
use seatkeeper_paysim::webhooks::signature_header;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::{
    checkout_load::CheckoutLoad, load::pause, outcomes::Tally, processes::Fleet, WEBHOOK_SECRET,
};

pub struct Forger {
    stop: Arc<AtomicBool>,
    task: JoinHandle<Tally>,
}

impl Forger {
    /// Forges one event every 50–150 ms for the sessions `load` has opened.
    pub fn start(load: Arc<CheckoutLoad>, fleet: Arc<Fleet>, http: reqwest::Client) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let tally = Tally::default();
            let mut n = 0u64;
            while !stopped.load(Ordering::SeqCst) {
                pause(50..150).await;
                let target = {
                    let opened = load.opened.lock();
                    if opened.is_empty() {
                        continue;
                    }
                    opened[rand::thread_rng().gen_range(0..opened.len())].clone()
                };
                n += 1;
                let (kind, req) = forged(&http, &fleet.random_url(), &target, n);
                tally.send(&format!("forged {kind}: "), req).await;
            }
            tally
        });
        Self { stop, task }
    }

    /// Stops forging; the violations: any forgery that got an answer but a 400 problem.
    /// Returns them with a count of forgeries for the summary.
    pub async fn finish(self) -> (Vec<String>, String) {
        self.stop.store(true, Ordering::SeqCst);
        let tally = self.task.await.expect("the forger panicked");
        let mut violations = Vec::new();
        let mut refused = 0;
        let seen = tally.seen.lock().clone();
        for s in &seen {
            match s.status {
                Some(400) if s.problem_json => refused += 1,
                // A killed instance or a lost connection answers nothing.
                None => {}
                _ => violations.push(format!("a forged webhook got {}", s.label)),
            }
        }
        if refused == 0 {
            violations.push("no forged webhook reached an instance".into());
        }
        (
            violations,
            format!("{refused} of {} forged webhooks refused", seen.len()),
        )
    }
}

/// One forgery of `payment_intent.succeeded` for `(session, intent)`, of kind `n % 4`.
fn forged(
    http: &reqwest::Client,
    api: &str,
    (session, intent): &(String, String),
    n: u64,
) -> (&'static str, reqwest::RequestBuilder) {
    let body = json!({
        "id": format!("evt_forged_{n}"), "object": "event", "type": "payment_intent.succeeded",
        "created": now(), "livemode": false,
        "data": {"object": {"id": intent, "object": "payment_intent", "status": "succeeded",
            "amount": 1500, "currency": "usd", "payment_method": "pm_card_visa",
            "metadata": {"checkout_session_id": session}}}
    })
    .to_string();
    let (kind, header) = match n % 4 {
        0 => (
            "another secret",
            Some(signature_header(
                "whsec_not_the_endpoints",
                now(),
                body.as_bytes(),
            )),
        ),
        1 => (
            "stale",
            Some(signature_header(
                WEBHOOK_SECRET,
                now() - 301,
                body.as_bytes(),
            )),
        ),
        2 => ("malformed", Some("t=soon,v1=zz".to_owned())),
        _ => ("unsigned", None),
    };
    let mut req = http
        .post(format!("{api}/api/webhooks/stripe"))
        .header("content-type", "application/json")
        .timeout(Duration::from_secs(5))
        .body(body);
    if let Some(header) = header {
        req = req.header("stripe-signature", header);
    }
    (kind, req)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
