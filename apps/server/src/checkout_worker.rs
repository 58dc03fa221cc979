//! The checkout worker as this instance runs it: every `checkout.worker_interval_ms` it
//! takes the sessions whose time has come (expiry, a payment to ask the provider about,
//! an intent to cancel, a late payment to refund) and goes on at once while runs come
//! back full. Several instances may run it: each step is atomic and decided on the
//! session as it is, so two workers on one session change it once.

use std::time::Duration;

use seatkeeper_domain::service::CheckoutService;

/// Runs the worker forever.
pub async fn run(checkouts: CheckoutService, every: Duration) {
    let batch = checkouts.batch();
    loop {
        tokio::time::sleep(every).await;
        loop {
            match checkouts.run_due().await {
                Ok(run) => {
                    for (action, n) in [
                        ("expired", run.expired),
                        ("completed", run.completed),
                        ("intents_canceled", run.intents_canceled),
                        ("refunded", run.refunded),
                        ("deferred", run.deferred),
                    ] {
                        metrics::counter!("seatkeeper_checkout_worker_total", "action" => action)
                            .increment(n);
                    }
                    if run.found > 0 {
                        tracing::info!(
                            found = run.found,
                            expired = run.expired,
                            completed = run.completed,
                            intents_canceled = run.intents_canceled,
                            refunded = run.refunded,
                            deferred = run.deferred,
                            "checkout worker run"
                        );
                    }
                    // A full batch may have more behind it; a run of nothing but
                    // deferrals waits (the provider is down: no busy loop).
                    if run.found < u64::from(batch) || run.deferred == run.found {
                        break;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "checkout worker run failed");
                    break;
                }
            }
        }
    }
}
