//! An endpoint's delivery task.

use std::sync::{atomic::Ordering, Arc};

use tokio::time::Instant;

use super::{now, signature_header, Endpoint, Inner, Pending, REORDER_WINDOW};

/// An endpoint's task: waits for due deliveries and posts them, forever.
pub(super) async fn run(inner: Arc<Inner>, ep: Arc<Endpoint>) {
    loop {
        if ep.deleted.load(Ordering::SeqCst) {
            return;
        }
        let first_due = ep.queue.lock().iter().map(|p| p.due).min();
        let Some(due) = first_due else {
            ep.notify.notified().await;
            continue;
        };
        let reorder = inner.settings.read().faults.reorder;
        let wake = if reorder { due + REORDER_WINDOW } else { due };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            // Something new: look at the queue again (the first due time may be earlier).
            _ = ep.notify.notified() => continue,
        }
        let now = Instant::now();
        let mut batch: Vec<Pending> = {
            let mut queue = ep.queue.lock();
            let (due, later) = std::mem::take(&mut *queue)
                .into_iter()
                .partition(|p| p.due <= now);
            *queue = later;
            due
        };
        if reorder {
            batch.sort_by_key(|p| std::cmp::Reverse(p.seq));
        } else {
            batch.sort_by_key(|p| (p.due, p.seq));
        }
        for pending in batch {
            if ep.deleted.load(Ordering::SeqCst) {
                return;
            }
            attempt(&inner, &ep, pending).await;
        }
    }
}

/// One attempt of one delivery; a failure is queued again, or given up.
async fn attempt(inner: &Inner, ep: &Endpoint, mut pending: Pending) {
    let secret = ep.info.secret.as_deref().unwrap_or_default();
    let header = signature_header(secret, now(), pending.body.as_bytes());
    let res = inner
        .client
        .post(&ep.info.url)
        .header("Content-Type", "application/json; charset=utf-8")
        .header("Stripe-Signature", header)
        .body(pending.body.to_string())
        .send()
        .await;
    let (ok, status, error) = match res {
        Ok(r) => (r.status().is_success(), Some(r.status().as_u16()), None),
        Err(e) => (false, None, Some(e.to_string())),
    };
    let settings = inner.settings.read().clone();
    let mut deliveries = inner.deliveries.lock();
    let d = &mut deliveries[pending.record];
    d.attempts += 1;
    d.last_status = status;
    d.last_error = error;
    if ok {
        d.state = "delivered".into();
        d.delivered_at = Some(now());
    } else if d.attempts >= settings.max_attempts.max(1) {
        d.state = "failed".into();
        tracing::warn!(event = %d.event, url = %d.url, attempts = d.attempts, "webhook given up");
    } else if ep.deleted.load(Ordering::SeqCst) {
        d.state = "abandoned".into();
    } else {
        pending.due = Instant::now() + settings.retry_after(d.attempts);
        drop(deliveries);
        ep.queue.lock().push(pending);
    }
}
