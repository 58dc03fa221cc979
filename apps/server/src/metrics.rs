//! Metrics, in Prometheus' text format at `GET /metrics` (admin only), recorded through the
//! `metrics` facade and rendered by `metrics-exporter-prometheus` (`docs/operations.md`).
//!
//! | metric | kind | labels |
//! | --- | --- | --- |
//! | `http_requests_total` | counter | `method`, `route` (the matched pattern, or `unmatched`), `status` |
//! | `http_request_duration_seconds` | histogram | `method`, `route` |
//! | `seatkeeper_purchases_total` | counter | `outcome` (`created`, `declined`, `sold_out`, …), `replayed` |
//! | `seatkeeper_plan_seats_left`, `seatkeeper_plan_capacity` | gauge, read at each scrape | `plan_id`, for at most [`PLAN_GAUGES`] active plans |
//! | `seatkeeper_recovery_stale_incomplete`, `seatkeeper_recovery_pending_verifications` | gauge, read at each scrape | |
//! | `seatkeeper_recovery_actions_total` | counter | `action` (`activated`, `expired`, `refunded`, `verified`, `in_doubt`) |
//! | `seatkeeper_payment_call_duration_seconds` | histogram | `call` (`charge`, `lookup`, `refund`), `outcome` |
//! | `seatkeeper_store_connections` | gauge, read at each scrape | `state` (`in_use`, `idle`); the database stores |
//! | `seatkeeper_store_step_seconds`, `seatkeeper_store_batch_seconds`, `seatkeeper_store_batch_size` | histogram | `coalescer` (the lanes of coalesced steps of the PostgreSQL and MongoDB stores: `docs/operations.md`) |
//!
//! One recorder serves the whole process (tests start many apps in one); every label has
//! a bounded set of values. Histograms keep raw samples until an upkeep folds them into
//! their buckets, so the app runs one every few seconds ([`upkeep`]).

use std::{
    future::Future,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use actix_web::{
    body::MessageBody,
    dev::{Service, ServiceRequest, ServiceResponse},
    Error,
};
use async_trait::async_trait;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use seatkeeper_domain::{
    ports::{
        Charge, ChargeError, ChargeRequest, ChargeStatus, GatewayError, IntentGateway,
        IntentRequest, IntentStatus, PaymentGateway, PaymentIntent,
    },
    PaymentMethod,
};

/// At most this many plans get seat gauges (label values stay bounded).
pub const PLAN_GAUGES: u32 = 100;

/// Latency buckets, in seconds: 0.5 ms to 10 s.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Batch size buckets.
const SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's recorder, installed on first use. When another recorder was installed
/// first (an embedding program's), ours still renders, but records nothing of the facade.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("seatkeeper_store_batch_size".into()),
                    SIZE_BUCKETS,
                )
            })
            .expect("the buckets are not empty")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("another metrics recorder is installed; /metrics shows only ours");
        }
        handle
    })
}

/// Folds histogram samples into buckets every `every`, so that they do not pile up between
/// scrapes.
pub async fn upkeep(every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        handle().run_upkeep();
    }
}

/// The request metrics middleware, for `App::wrap_fn`.
pub fn middleware<S, B>(
    req: ServiceRequest,
    srv: &S,
) -> impl Future<Output = Result<ServiceResponse<B>, Error>> + 'static
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error>,
    S::Future: 'static,
    B: MessageBody + 'static,
{
    let started = Instant::now();
    let fut = srv.call(req);
    async move {
        let res = fut.await?;
        let method = method_label(res.request().method());
        let route = res
            .request()
            .match_pattern()
            .unwrap_or_else(|| "unmatched".to_owned());
        let status = res.status().as_u16().to_string();
        metrics::counter!(
            "http_requests_total",
            "method" => method,
            "route" => route.clone(),
            "status" => status
        )
        .increment(1);
        metrics::histogram!(
            "http_request_duration_seconds",
            "method" => method,
            "route" => route
        )
        .record(started.elapsed().as_secs_f64());
        Ok(res)
    }
}

/// The method as a label, from a fixed set.
fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// A payment gateway whose calls are timed by outcome.
pub struct MeteredGateway(pub Arc<dyn PaymentGateway>);

fn observe_call(call: &'static str, outcome: &'static str, started: Instant) {
    metrics::histogram!(
        "seatkeeper_payment_call_duration_seconds",
        "call" => call,
        "outcome" => outcome
    )
    .record(started.elapsed().as_secs_f64());
}

fn gateway_outcome(e: &GatewayError) -> &'static str {
    match e {
        GatewayError::Unavailable(_) => "unavailable",
        GatewayError::Rejected(_) => "rejected",
    }
}

#[async_trait]
impl PaymentGateway for MeteredGateway {
    async fn charge(&self, req: &ChargeRequest) -> Result<Charge, ChargeError> {
        let started = Instant::now();
        let result = self.0.charge(req).await;
        let outcome = match &result {
            Ok(_) => "charged",
            Err(ChargeError::Declined { .. }) => "declined",
            Err(ChargeError::Unknown(_)) => "unknown",
        };
        observe_call("charge", outcome, started);
        result
    }

    async fn lookup(&self, provider_key: &str) -> Result<ChargeStatus, GatewayError> {
        let started = Instant::now();
        let result = self.0.lookup(provider_key).await;
        let outcome = match &result {
            Ok(ChargeStatus::NotFound) => "not_found",
            Ok(ChargeStatus::Succeeded { .. }) => "succeeded",
            Ok(ChargeStatus::Failed { .. }) => "failed",
            Ok(ChargeStatus::Refunded { .. }) => "refunded",
            Err(e) => gateway_outcome(e),
        };
        observe_call("lookup", outcome, started);
        result
    }

    async fn refund(&self, payment_id: &str) -> Result<(), GatewayError> {
        let started = Instant::now();
        let result = self.0.refund(payment_id).await;
        let outcome = match &result {
            Ok(()) => "refunded",
            Err(e) => gateway_outcome(e),
        };
        observe_call("refund", outcome, started);
        result
    }
}

/// The checkout sessions' [`IntentGateway`] with each call timed into
/// `seatkeeper_payment_call_duration_seconds` (`call`: `create_intent`, `confirm_intent`,
/// `retrieve_intent`, `cancel_intent`; `outcome`: the intent's status, or the failure).
pub struct MeteredIntents(pub Arc<dyn IntentGateway>);

fn intent_outcome(status: &IntentStatus) -> &'static str {
    match status {
        IntentStatus::RequiresPaymentMethod { .. } => "requires_payment_method",
        IntentStatus::RequiresAction { .. } => "requires_action",
        IntentStatus::Processing => "processing",
        IntentStatus::Succeeded { .. } => "succeeded",
        IntentStatus::Canceled => "canceled",
    }
}

fn observe_intent(
    call: &'static str,
    result: &Result<PaymentIntent, GatewayError>,
    started: Instant,
) {
    let outcome = match result {
        Ok(pi) => intent_outcome(&pi.status),
        Err(e) => gateway_outcome(e),
    };
    observe_call(call, outcome, started);
}

#[async_trait]
impl IntentGateway for MeteredIntents {
    fn provider(&self) -> &'static str {
        self.0.provider()
    }

    async fn create_intent(&self, req: &IntentRequest) -> Result<PaymentIntent, GatewayError> {
        let started = Instant::now();
        let result = self.0.create_intent(req).await;
        observe_intent("create_intent", &result, started);
        result
    }

    async fn confirm_intent(
        &self,
        intent_id: &str,
        payment_method: &PaymentMethod,
    ) -> Result<PaymentIntent, ChargeError> {
        let started = Instant::now();
        let result = self.0.confirm_intent(intent_id, payment_method).await;
        let outcome = match &result {
            Ok(pi) => intent_outcome(&pi.status),
            Err(ChargeError::Declined { .. }) => "declined",
            Err(ChargeError::Unknown(_)) => "unknown",
        };
        observe_call("confirm_intent", outcome, started);
        result
    }

    async fn retrieve_intent(&self, intent_id: &str) -> Result<PaymentIntent, GatewayError> {
        let started = Instant::now();
        let result = self.0.retrieve_intent(intent_id).await;
        observe_intent("retrieve_intent", &result, started);
        result
    }

    async fn cancel_intent(&self, intent_id: &str) -> Result<PaymentIntent, GatewayError> {
        let started = Instant::now();
        let result = self.0.cancel_intent(intent_id).await;
        observe_intent("cancel_intent", &result, started);
        result
    }
}
