//! What the clients saw and were told: every attempt as a client saw it ([`Seen`], kept in
//! the [`Tally`], which also names the answers no client should ever get), the keys
//! ([`Job`]), how a client's work on a key ended ([`Final`], one per sender in a
//! [`JobResult`]), and one request's outcome ([`Attempt`]).

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use serde_json::Value;

use crate::REQUEST_TIMEOUT;

/// One attempt as the client saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    pub took: Duration,
    pub status: Option<u16>,
    pub label: String,
    pub problem_json: bool,
    pub retry_after: bool,
}

#[derive(Default)]
pub struct Tally {
    pub seen: Mutex<Vec<Seen>>,
}

impl Tally {
    /// Answers no client should ever get, whatever the fault: a 500, an error that is not
    /// a problem document, a 503 without `Retry-After`, or no answer within the timeout.
    pub fn bad_answers(&self) -> Vec<String> {
        let mut bad = BTreeMap::<String, u64>::new();
        for s in self.seen.lock().iter() {
            let why = match s.status {
                Some(503) if !s.retry_after => "a 503 without Retry-After",
                Some(500..) if s.status != Some(503) => "a 5xx other than 503",
                Some(400..) if !s.problem_json => "an error that is not application/problem+json",
                None if s.took >= REQUEST_TIMEOUT => {
                    "no answer within the request timeout (a hang)"
                }
                _ => continue,
            };
            *bad.entry(format!("{why}: {}", s.label)).or_default() += 1;
        }
        bad.into_iter()
            .map(|(why, n)| format!("{n} × {why}"))
            .collect()
    }

    fn record(
        &self,
        at: Instant,
        status: Option<u16>,
        label: String,
        headers: Option<&reqwest::header::HeaderMap>,
    ) {
        let problem_json = headers
            .and_then(|h| h.get("content-type"))
            .is_some_and(|v| v == "application/problem+json");
        let retry_after = headers.is_some_and(|h| h.contains_key("retry-after"));
        self.seen.lock().push(Seen {
            at,
            took: at.elapsed(),
            status,
            label,
            problem_json,
            retry_after,
        });
    }

    fn lost_label(prefix: &str, e: &reqwest::Error) -> String {
        if e.is_timeout() {
            format!("{prefix}no answer (timeout)")
        } else if e.is_connect() {
            format!("{prefix}connection refused")
        } else {
            format!("{prefix}connection lost")
        }
    }

    /// Sends one request (with the request timeout) and records what came back.
    pub async fn send(&self, prefix: &str, req: reqwest::RequestBuilder) -> Attempt {
        let at = Instant::now();
        match req.timeout(REQUEST_TIMEOUT).send().await {
            Err(e) => {
                self.record(at, None, Self::lost_label(prefix, &e), None);
                Attempt::Lost
            }
            Ok(res) => {
                let status = res.status().as_u16();
                let headers = res.headers().clone();
                match res.json::<Value>().await {
                    Ok(body) => {
                        let code = body["code"]
                            .as_str()
                            .unwrap_or(match status {
                                201 => "created",
                                s if s < 300 => "ok",
                                _ => "-",
                            })
                            .to_owned();
                        self.record(
                            at,
                            Some(status),
                            format!("{prefix}{status} {code}"),
                            Some(&headers),
                        );
                        Attempt::Answer { status, code, body }
                    }
                    Err(e) => {
                        self.record(at, None, Self::lost_label(prefix, &e), None);
                        Attempt::Lost
                    }
                }
            }
        }
    }

    pub fn outcomes(&self) -> BTreeMap<String, u64> {
        let mut counts = BTreeMap::new();
        for s in self.seen.lock().iter() {
            *counts.entry(s.label.clone()).or_default() += 1;
        }
        counts
    }
}

#[derive(Debug, Clone)]
pub struct Job {
    pub customer: String,
    pub key: String,
    pub plan: String,
    pub method: &'static str,
}

/// How a client's work on a key ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Final {
    Created {
        subscription: String,
        payment: String,
    },
    Declined,
    SoldOut,
    /// The client walked away after a non-definitive failure.
    Abandoned,
    /// No definitive answer before the deadline.
    GaveUp,
    /// An answer no purchase should get.
    Unexpected(u16, String),
}

impl Final {
    pub fn definitive(&self) -> bool {
        matches!(
            self,
            Final::Created { .. } | Final::Declined | Final::SoldOut
        )
    }
}

#[derive(Debug, Clone)]
pub struct JobResult {
    pub job: Job,
    /// One per sender.
    pub finals: Vec<Final>,
    pub canceled: bool,
}

pub enum Attempt {
    Answer {
        status: u16,
        code: String,
        body: Value,
    },
    Lost,
}
