//! The load: clients ([`Load`]) buying seats, each sending its key to any instance and
//! retrying every non-definitive answer (409 `idempotency_key_in_use`, 503, no answer)
//! with the same key until a definitive one, the deadline, or (by [`LoadSpec`]'s chance)
//! walking away; some cancel what they bought. Every attempt goes into the load's
//! [`Tally`].

use std::{
    ops::Range,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use rand::Rng;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::{
    api::get_json,
    outcomes::{Attempt, Final, Job, JobResult, Tally},
    processes::Fleet,
    scenario::Scenario,
};

#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    /// Concurrent keys.
    pub workers: usize,
    /// The most keys the load starts.
    pub max_jobs: usize,
    /// Share of keys paying with `pm_card_chargeDeclined`.
    pub decline_share: f64,
    /// Share of sold subscriptions the client cancels right away.
    pub cancel_share: f64,
    /// Chance that a client walks away after a request that got no answer or a 503 (a
    /// purchase that only the reconciler can finish, if it reserved a seat).
    pub abandon_share: f64,
    /// Clients sending each key at once.
    pub senders: usize,
    /// How long a client keeps retrying one key.
    pub job_deadline: Duration,
}

/// The clients of one scenario: `spec.workers` tasks, each taking the next key until the
/// load is stopped or `spec.max_jobs` keys were started.
pub struct Load {
    spec: LoadSpec,
    tag: String,
    plans: Vec<String>,
    fleet: Arc<Fleet>,
    http: reqwest::Client,
    pub tally: Tally,
    next: AtomicUsize,
    stop: AtomicBool,
    workers: Mutex<Vec<JoinHandle<Vec<JobResult>>>>,
}

/// True with probability `p` (never for 0).
pub fn chance(p: f64) -> bool {
    p > 0.0 && rand::thread_rng().gen_bool(p.min(1.0))
}

pub async fn pause(ms: Range<u64>) {
    let ms = rand::thread_rng().gen_range(ms);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

impl Load {
    pub fn start(sc: &Scenario, spec: LoadSpec) -> Arc<Self> {
        let load = Arc::new(Self {
            spec,
            tag: sc.name.replace('-', ""),
            plans: sc.plans.iter().map(|(id, _)| id.clone()).collect(),
            fleet: sc.fleet.clone(),
            http: sc.http.clone(),
            tally: Tally::default(),
            next: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            workers: Mutex::new(Vec::new()),
        });
        let workers = (0..spec.workers)
            .map(|_| tokio::spawn(load.clone().worker()))
            .collect();
        *load.workers.lock() = workers;
        load
    }

    /// Stops starting keys and waits until every client is done with its key.
    pub async fn finish(self: &Arc<Self>) -> Vec<JobResult> {
        self.stop.store(true, Ordering::SeqCst);
        let workers = std::mem::take(&mut *self.workers.lock());
        let mut jobs = Vec::new();
        for w in workers {
            jobs.extend(w.await.expect("a client task panicked"));
        }
        jobs
    }

    fn job(&self, i: usize) -> Job {
        let mut rng = rand::thread_rng();
        Job {
            // One customer per key: a charge's metadata[customer_id] names its key.
            customer: format!("cus_{}_{i:05}", self.tag),
            key: format!("order-{}-{i}", self.tag),
            plan: self.plans[rng.gen_range(0..self.plans.len())].clone(),
            method: if rng.gen_bool(self.spec.decline_share) {
                "pm_card_chargeDeclined"
            } else {
                "pm_card_visa"
            },
        }
    }

    async fn worker(self: Arc<Self>) -> Vec<JobResult> {
        let mut done = Vec::new();
        while !self.stop.load(Ordering::SeqCst) {
            let i = self.next.fetch_add(1, Ordering::SeqCst);
            if i >= self.spec.max_jobs {
                break;
            }
            let job = self.job(i);
            let finals = if self.spec.senders == 1 {
                vec![self.drive(&job).await]
            } else {
                futures::future::join_all((0..self.spec.senders).map(|s| {
                    let job = &job;
                    let this = &self;
                    async move {
                        if s > 0 {
                            pause(0..30).await;
                        }
                        this.drive(job).await
                    }
                }))
                .await
            };
            let mut canceled = false;
            if let Some(Final::Created { subscription, .. }) = finals.first() {
                if chance(self.spec.cancel_share) {
                    canceled = self.cancel(subscription).await;
                }
            }
            done.push(JobResult {
                job,
                finals,
                canceled,
            });
        }
        done
    }

    /// One purchase request for the key, to any instance.
    pub async fn purchase_once(&self, job: &Job) -> Attempt {
        let req = self
            .http
            .post(format!("{}/api/subscriptions/purchase", self.fleet.random_url()))
            .header("Idempotency-Key", &job.key)
            .json(&json!({"plan_id": job.plan, "customer_id": job.customer, "payment_method": job.method}));
        self.tally.send("", req).await
    }

    /// Sends the key until a definitive answer, the deadline, or (sometimes, after a
    /// non-definitive failure) the client walks away.
    pub async fn drive(&self, job: &Job) -> Final {
        let deadline = Instant::now() + self.spec.job_deadline;
        loop {
            let walk_away = match self.purchase_once(job).await {
                Attempt::Answer {
                    status: 201, body, ..
                } => {
                    return Final::Created {
                        subscription: body["id"].as_str().unwrap_or_default().to_owned(),
                        payment: body["payment_id"].as_str().unwrap_or_default().to_owned(),
                    }
                }
                Attempt::Answer { status: 402, .. } => return Final::Declined,
                Attempt::Answer {
                    status: 409, code, ..
                } if code == "plan_sold_out" => return Final::SoldOut,
                Attempt::Answer {
                    status: 409, code, ..
                } if code == "idempotency_key_in_use" => false,
                Attempt::Answer { status: 503, .. } => chance(self.spec.abandon_share),
                // Never expected; retried so that the end state still gets checked.
                Attempt::Answer { status: 500, .. } => false,
                Attempt::Answer { status, code, .. } => return Final::Unexpected(status, code),
                Attempt::Lost => chance(self.spec.abandon_share),
            };
            if walk_away {
                return Final::Abandoned;
            }
            if Instant::now() > deadline {
                return Final::GaveUp;
            }
            pause(50..200).await;
        }
    }

    /// Cancels a subscription, retrying failures; whether it ended canceled.
    async fn cancel(&self, subscription: &str) -> bool {
        let deadline = Instant::now() + self.spec.job_deadline;
        while Instant::now() < deadline {
            let url = self.fleet.random_url();
            let req = self
                .http
                .post(format!("{url}/api/subscriptions/{subscription}/cancel"));
            match self.tally.send("cancel ", req).await {
                Attempt::Answer { status: 200, .. } => return true,
                // An earlier attempt may have cancelled it before its answer was lost.
                Attempt::Answer { status: 409, .. } => {
                    return get_json(
                        &self.http,
                        &format!("{url}/api/subscriptions/{subscription}"),
                        false,
                    )
                    .await
                    .is_ok_and(|s| s["status"] == "canceled")
                }
                Attempt::Answer { status, .. } if status < 500 => return false,
                _ => pause(50..200).await,
            }
        }
        false
    }
}
