//! Live availability as Server-Sent Events: `GET /api/plans/{id}/events` (one plan) and
//! `GET /api/plans/events` (every active plan), fed by this instance's [`Hub`](crate::live::Hub), which
//! hears every instance's changes. Public, as the plans are.
//!
//! Each event is `event: availability`, `data:` an [`Availability`] as JSON. A stream
//! opens with the current availability, then sends one event per change (changes close
//! together may come as one), never an older one after a newer. An idle stream sends a
//! comment every `live.heartbeat_secs`; `retry:` tells the client to reconnect after
//! `live.retry_ms`.

use std::{collections::HashMap, sync::Arc, time::Duration};

use actix_web::{get, web, HttpRequest, Responder};
use actix_web_lab::sse;
use futures::{stream, Stream, StreamExt};
use seatkeeper_domain::PlanId;
use tokio::sync::broadcast::error::RecvError;

use super::AppState;
use crate::{
    errors::no_such_plan,
    live::Availability,
    openapi::{responses::*, schemas},
    problem::ApiError,
};

/// What the streams' timing settings are.
#[derive(Debug, Clone, Copy)]
pub struct StreamTiming {
    pub heartbeat: Duration,
    pub retry: Duration,
}

/// Follow a plan's availability
///
/// A Server-Sent Events stream (`text/event-stream`) of the plan's availability: first
/// the current one, then one event after every change — a sale, a hold and its end, a
/// cancellation, a capacity or status change — on any instance, within a second. Each
/// event is `event: availability` with `id:` the plan's audit `seq` (increasing) and
/// `data:` `{plan_id, status, capacity, seats_left, held, sold_out, seq}`. A client that
/// reconnects with `Last-Event-ID` equal to the plan's current `seq` gets no first event
/// (nothing changed); with any other it gets the current availability, which sums up
/// what it missed. Idle streams get a comment every 15 s. Public.
#[utoipa::path(
    operation_id = "followPlan",
    tag = "plans",
    params(
        ("id" = schemas::PlanId, Path, description = "The plan's id (a UUID). Any other value answers 404 `plan_not_found`.", example = "0190f5c2-8a4b-7c3d-9e1f-2a3b4c5d6e7f"),
        ("Last-Event-ID" = Option<String>, Header, description = "The `id` of the last event received, when reconnecting."),
    ),
    responses(
        (status = 200, description = "The stream of availability events.", content_type = "text/event-stream", body = String, example = "event: availability\nid: 42\ndata: {\"plan_id\":\"0190f5c2-8a4b-7c3d-9e1f-2a3b4c5d6e7f\",\"status\":\"active\",\"capacity\":10,\"seats_left\":7,\"held\":1,\"sold_out\":false,\"seq\":42}\n\n"),
        (status = 404, response = PlanNotFound),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[get("/api/plans/{id}/events")]
pub async fn plan(
    state: web::Data<AppState>,
    timing: web::Data<StreamTiming>,
    path: web::Path<String>,
    req: HttpRequest,
) -> Result<impl Responder, ApiError> {
    let id: PlanId = path.parse().map_err(|_| no_such_plan(&path))?;
    // Listen before reading, so that no change falls between the two.
    let rx = state.live.subscribe();
    let now = state
        .live
        .availability(id)
        .await?
        .ok_or_else(|| no_such_plan(&path))?;
    let last_seen = req
        .headers()
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let first = (last_seen != Some(now.seq)).then_some(now.clone());
    let hub = state.live.clone();
    let changes = stream::unfold(rx, move |mut rx| {
        let hub = hub.clone();
        async move {
            loop {
                match rx.recv().await {
                    Ok(a) if a.plan_id == id => return Some((a, rx)),
                    Ok(_) => continue,
                    // Behind the ring: the latest instead of what was missed.
                    Err(RecvError::Lagged(_)) => match hub.cached(id) {
                        Some(a) => return Some((a, rx)),
                        None => continue,
                    },
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    let events = newest_only(
        stream::iter(first).chain(changes),
        last_seen.unwrap_or(0),
        |_| String::new(),
    );
    Ok(respond(events, *timing.get_ref()))
}

/// Follow every active plan
///
/// A Server-Sent Events stream of the availability of every plan: first the current one
/// of each active plan, then one event after every change of any plan (a plan archived
/// shows `status: archived`; one created or activated appears). Events are as those of
/// `GET /api/plans/{id}/events`, with `id:` `<plan_id>/<seq>`; a reconnecting client gets
/// every active plan again. Public.
#[utoipa::path(
    operation_id = "followPlans",
    tag = "plans",
    responses(
        (status = 200, description = "The stream of availability events.", content_type = "text/event-stream", body = String),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[get("/api/plans/events")]
pub async fn all(
    state: web::Data<AppState>,
    timing: web::Data<StreamTiming>,
) -> Result<impl Responder, ApiError> {
    let rx = state.live.subscribe();
    let mut first = Vec::new();
    for p in state.plans.on_sale().await? {
        if let Some(a) = state.live.availability(p.id()).await? {
            first.push(a);
        }
    }
    let hub = state.live.clone();
    let changes = stream::unfold((rx, Vec::new()), move |(mut rx, mut pending)| {
        let hub = hub.clone();
        async move {
            loop {
                if let Some(a) = pending.pop() {
                    return Some((a, (rx, pending)));
                }
                match rx.recv().await {
                    Ok(a) => return Some((a, (rx, pending))),
                    // Behind the ring: the latest of every plan the hub knows.
                    Err(RecvError::Lagged(_)) => pending = hub.all_cached(),
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    let events = newest_only(stream::iter(first).chain(changes), 0, |a| {
        format!("{}/", a.plan_id)
    });
    Ok(respond(events, *timing.get_ref()))
}

/// The events of `availabilities`, each plan's never older than the last sent (nor
/// than `since`), with `id:` the `prefix` of the plan and its `seq`.
fn newest_only(
    availabilities: impl Stream<Item = Arc<Availability>> + 'static,
    since: u64,
    prefix: fn(&Availability) -> String,
) -> impl Stream<Item = sse::Event> + 'static {
    let mut sent: HashMap<PlanId, u64> = HashMap::new();
    availabilities.filter_map(move |a| {
        let last = sent.entry(a.plan_id).or_insert(since);
        let event = (a.seq > *last).then(|| {
            *last = a.seq;
            let data = serde_json::to_string(&*a).expect("an availability serializes");
            sse::Data::new(data)
                .event("availability")
                .id(format!("{}{}", prefix(&a), a.seq))
                .into()
        });
        async move { event }
    })
}

fn respond(
    events: impl Stream<Item = sse::Event> + 'static,
    timing: StreamTiming,
) -> impl Responder {
    metrics::gauge!("seatkeeper_live_streams").increment(1.0);
    sse::Sse::from_infallible_stream(Counted(Box::pin(events)))
        .with_keep_alive(timing.heartbeat)
        .with_retry_duration(timing.retry)
}

/// A stream that counts itself in `seatkeeper_live_streams` until it is dropped (the
/// client went away).
struct Counted(std::pin::Pin<Box<dyn Stream<Item = sse::Event>>>);

impl Stream for Counted {
    type Item = sse::Event;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.as_mut().poll_next(cx)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!("seatkeeper_live_streams").decrement(1.0);
    }
}
