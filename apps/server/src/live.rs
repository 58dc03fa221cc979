//! Live availability: one [`Hub`] per instance listens to the store's [`PlanFeed`] (which
//! hears every instance's changes), reads each changed plan once, and broadcasts what a
//! buyer may see of it ([`Availability`]) to every Server-Sent Events stream of this
//! instance (`routes::live`).
//!
//! Memory stays bounded whatever the number of streams: the hub keeps the latest
//! availability of each plan it has read, and one broadcast ring of
//! `live.backlog` announcements that every stream reads from; a stream that falls behind
//! the ring is told so and sends the latest availability of its plans instead of what it
//! missed (availability is a state, not a log). The store is read at most once per
//! changed plan per `live.coalesce_ms`, however many streams listen and however fast
//! the plan sells. When the feed is lost (the store went away), the hub subscribes again
//! and reads every plan it knows afresh, so nothing a stream shows stays stale.

use std::{collections::HashSet, sync::Arc, time::Duration};

use futures::StreamExt;
use parking_lot::RwLock;
use seatkeeper_domain::{
    ports::{Store, StoreError},
    PlanAvailability, PlanId, PlanStatus,
};
use serde::Serialize;
use tokio::sync::broadcast;

/// What a buyer may see of a plan, after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Availability {
    pub plan_id: PlanId,
    /// `active` or `archived`.
    pub status: &'static str,
    pub capacity: u32,
    pub seats_left: u32,
    /// Seats held by open checkout sessions.
    pub held: u64,
    pub sold_out: bool,
    /// The plan's audit `seq` when it was read: the event's id, increasing with every
    /// change.
    pub seq: u64,
}

/// The live availability of this instance's plans.
pub struct Hub {
    store: Arc<dyn Store>,
    latest: RwLock<std::collections::HashMap<PlanId, Arc<Availability>>>,
    tx: broadcast::Sender<Arc<Availability>>,
    coalesce: Duration,
}

impl Hub {
    pub fn new(store: Arc<dyn Store>, backlog: usize, coalesce: Duration) -> Arc<Self> {
        Arc::new(Self {
            store,
            latest: RwLock::default(),
            tx: broadcast::channel(backlog.max(1)).0,
            coalesce,
        })
    }

    /// Every availability the hub publishes from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Availability>> {
        self.tx.subscribe()
    }

    /// The plan's availability: the latest the hub read, else read now. `None` for an
    /// unknown plan.
    pub async fn availability(&self, id: PlanId) -> Result<Option<Arc<Availability>>, StoreError> {
        if let Some(a) = self.latest.read().get(&id) {
            return Ok(Some(a.clone()));
        }
        self.refresh(id).await
    }

    /// The latest availability of every plan the hub has read.
    pub fn all_cached(&self) -> Vec<Arc<Availability>> {
        self.latest.read().values().cloned().collect()
    }

    /// The latest availability the hub read of the plan, without reading the store.
    pub fn cached(&self, id: PlanId) -> Option<Arc<Availability>> {
        self.latest.read().get(&id).cloned()
    }

    /// Reads the plan and publishes its availability if it changed. Returns it.
    async fn refresh(&self, id: PlanId) -> Result<Option<Arc<Availability>>, StoreError> {
        let Some(PlanAvailability { plan, held }) = self.store.plan_availability(id).await? else {
            return Ok(None);
        };
        let now = Arc::new(Availability {
            plan_id: id,
            status: match plan.status() {
                PlanStatus::Active => "active",
                PlanStatus::Archived => "archived",
            },
            capacity: plan.capacity().get(),
            seats_left: plan.seats_left(),
            held,
            sold_out: plan.is_sold_out(),
            seq: plan.seq(),
        });
        let changed = {
            let mut latest = self.latest.write();
            match latest.get(&id) {
                // An older read (a slower refresh) never replaces a newer one.
                Some(had) if had.seq > now.seq || **had == *now => false,
                _ => {
                    latest.insert(id, now.clone());
                    true
                }
            }
        };
        if changed {
            metrics::counter!("seatkeeper_live_events_total").increment(1);
            // No stream listening is not an error.
            let _ = self.tx.send(now.clone());
        }
        Ok(Some(now))
    }

    /// Reads each plan of `ids`; a plan that cannot be read now is left for the next
    /// change (or the next resubscription).
    async fn refresh_all(&self, ids: impl IntoIterator<Item = PlanId>) {
        for id in ids {
            if let Err(e) = self.refresh(id).await {
                tracing::warn!(error = %e, plan_id = %id, "could not read a changed plan");
            }
        }
    }

    /// Listens to the store's feed for as long as the process runs.
    pub async fn run(self: Arc<Self>) {
        let mut pause = Duration::from_millis(100);
        loop {
            match self.store.plan_changes().await {
                Ok(changes) => {
                    pause = Duration::from_millis(100);
                    // Whatever changed while nobody listened.
                    let known: Vec<PlanId> = self.latest.read().keys().copied().collect();
                    self.refresh_all(known).await;
                    self.follow(changes).await;
                    tracing::warn!("the plan feed was lost; listening again");
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not listen for plan changes");
                }
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// Reads each announced plan, at most once per `coalesce`, until the feed ends.
    async fn follow(&self, mut changes: seatkeeper_domain::ports::PlanChanges) {
        loop {
            let first = match changes.next().await {
                Some(Ok(id)) => id,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the plan feed failed");
                    return;
                }
                None => return,
            };
            let mut dirty = HashSet::from([first]);
            // Gather what else changes meanwhile: a plan selling fast is read once.
            let window = tokio::time::sleep(self.coalesce);
            tokio::pin!(window);
            let mut lost = false;
            loop {
                tokio::select! {
                    _ = &mut window => break,
                    next = changes.next() => match next {
                        Some(Ok(id)) => { dirty.insert(id); }
                        Some(Err(e)) => {
                            tracing::warn!(error = %e, "the plan feed failed");
                            lost = true;
                            break;
                        }
                        None => { lost = true; break; }
                    },
                }
            }
            self.refresh_all(dirty).await;
            if lost {
                return;
            }
        }
    }
}
