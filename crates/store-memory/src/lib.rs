//! An in-memory implementation of every Seatkeeper store port.
//!
//! It is both the zero-setup default store (`memory://`) and the fake the test suites
//! run the domain against, so it gives the same atomicity a database does: each plan
//! lives in its own cell behind its own mutex, and every operation that touches a plan
//! (reserve, complete, cancel, change) runs entirely under that plan's lock. Plans do not
//! contend with each other; there is no global lock. Subscriptions, the customer index
//! and idempotency keys live in sharded maps.
//!
//! Lock order, always: plan cell, then the key map, then the subscription map, then the
//! customer index. A subscription's status only changes under its plan's lock.
//!
//! Nothing survives a restart, and memory grows with subscriptions and audit entries;
//! idempotency keys are bounded by the retention sweep. The maps hash with aHash
//! (randomly keyed per map, so clients cannot aim keys at one bucket) rather than the
//! standard library's SipHash, which showed in profiles of the purchase path.
//!
//! Layout: this file holds the store, its plan cells and the helpers every port uses;
//! each port is a module of its own (`plans`, `subscriptions`, `idempotency`,
//! `purchases`, `recovery`, `api_keys`, `checkouts`), with `keys` (the compact key records) and `trail` (a plan's
//! audit log).

mod api_keys;
mod checkouts;
mod feed;
mod idempotency;
mod keys;
mod plans;
mod purchases;
mod recovery;
mod subscriptions;
mod trail;

use std::{collections::BTreeMap, sync::Arc};

use async_trait::async_trait;
use dashmap::mapref::entry::Entry;
use keys::{EntryState, KeyEntry, KeyId, KeyRef, StoredOutcome};
use parking_lot::{Mutex, RwLock};
use seatkeeper_domain::{
    ports::{
        AuditLog, CancelDecision, CancelError, Cancellation, ChargeResult, ClaimRecovery,
        CompleteError, CompletePurchase, Completion, IdempotencyRepository, NewKeyReservation,
        PlanRepository, PurchaseRepository, RecoveryBacklog, RecoveryPhase, RecoveryRepository,
        RecoveryTask, Reservation, ReserveError, ReserveSeat, ReserveWithNewKey, Store, StoreError,
        SubscriptionRepository, UpdatePlanError,
    },
    AuditAction, AuditContext, AuditEntry, Claim, ClaimKey, CustomerId, IdempotencyKey, LockToken,
    PatchRejection, Plan, PlanAvailability, PlanId, PlanPatch, PlanStats, RecoveryPoint, SeatMove,
    Subscription, SubscriptionId, SubscriptionStatus, Timestamp,
};
use tokio::sync::broadcast;
use trail::AuditTrail;

type DashMap<K, V> = dashmap::DashMap<K, V, ahash::RandomState>;

/// Everything about one plan that must change together.
struct PlanCell {
    plan: Plan,
    /// Entry `i` has `seq == i + 1`. Appended to through [`PlanCell::append`], which
    /// announces the change on the store's feed.
    audit: AuditTrail,
    /// The store's [`PlanFeed`](seatkeeper_domain::ports::PlanFeed) sender.
    feed: broadcast::Sender<PlanId>,
    counts: Counts,
    /// The plan's open checkout sessions, by customer.
    holds: checkouts::Holds,
}

#[derive(Default)]
struct Counts {
    /// Open checkout sessions.
    held: u64,
    incomplete: u64,
    active: u64,
    canceled: u64,
    incomplete_expired: u64,
}

impl Counts {
    fn slot(&mut self, status: SubscriptionStatus) -> &mut u64 {
        match status {
            SubscriptionStatus::Incomplete => &mut self.incomplete,
            SubscriptionStatus::Active => &mut self.active,
            SubscriptionStatus::Canceled => &mut self.canceled,
            SubscriptionStatus::IncompleteExpired => &mut self.incomplete_expired,
        }
    }

    fn moved(&mut self, from: SubscriptionStatus, to: SubscriptionStatus) {
        *self.slot(from) -= 1;
        *self.slot(to) += 1;
    }
}

impl PlanCell {
    /// Carries out `mv` on the plan and appends its audit entry.
    fn record(&mut self, mv: SeatMove, ctx: &AuditContext, now: Timestamp) {
        let entry = self.plan.move_seats(mv, ctx, now);
        self.append([entry]);
    }

    /// Appends audit entries — every change of a plan that anyone may see has one — and
    /// announces the change. Listeners that read the plan wait for the cell's lock, so
    /// they see the change whole.
    fn append(&mut self, entries: impl IntoIterator<Item = AuditEntry>) {
        self.audit.extend(entries);
        // No listener is not an error.
        let _ = self.feed.send(self.plan.id());
    }
}

/// A recovery task's lease, and for `Verify` tasks when the check is due.
#[derive(Debug, Clone)]
struct RecoveryRow {
    phase: RecoveryPhase,
    lease: Option<(LockToken, Timestamp)>,
    verify_after: Option<Timestamp>,
}

impl RecoveryRow {
    fn free_at(&self, now: Timestamp) -> bool {
        self.lease.is_none_or(|(_, until)| until <= now)
    }
}

/// Shards of each map. `dashmap` defaults to four per CPU (8 here); a shard's table
/// doubles at once when it fills, so with millions of entries in 8 shards a purchase that
/// lands on a growing shard waits for hundreds of thousands of entries to be moved —
/// milliseconds, in the latency's tail. 256 shards move 32 times fewer per doubling, for
/// 256 empty shards (32 KB) per map.
const SHARDS: usize = 256;

fn map<K: Eq + std::hash::Hash, V>() -> DashMap<K, V> {
    DashMap::with_hasher_and_shard_amount(ahash::RandomState::new(), SHARDS)
}

/// The in-memory store. Cheap to create; share it behind an `Arc`.
pub struct MemoryStore {
    plans: RwLock<BTreeMap<PlanId, Arc<Mutex<PlanCell>>>>,
    keys: DashMap<KeyId, KeyEntry>,
    /// Shared with the finished key records that replay them (copied on write).
    subscriptions: DashMap<SubscriptionId, Arc<Subscription>>,
    /// Each customer's subscription ids, sorted. A `Vec`, not a `BTreeSet`: most
    /// customers have one or a few, and ids are time-ordered (v7) so a new one goes at
    /// the end; a set's first node costs ~200 bytes per customer.
    by_customer: DashMap<CustomerId, Vec<SubscriptionId>>,
    /// The `incomplete` subscriptions: what the reconciler looks through.
    incomplete: DashMap<SubscriptionId, ()>,
    /// Recovery tasks: leases on `Complete` work, and scheduled `Verify` checks.
    recovery: DashMap<SubscriptionId, RecoveryRow>,
    /// API keys (few, rarely changed: one lock).
    api_keys: RwLock<api_keys::ApiKeys>,
    checkouts: checkouts::Checkouts,
    /// Every plan change, for [`PlanFeed`](seatkeeper_domain::ports::PlanFeed).
    feed: broadcast::Sender<PlanId>,
}

/// Plan changes a slow listener may fall behind by before it is told it lagged (and
/// reads every plan afresh).
const FEED_BACKLOG: usize = 4096;

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            plans: RwLock::default(),
            keys: map(),
            subscriptions: map(),
            by_customer: map(),
            incomplete: map(),
            recovery: map(),
            api_keys: RwLock::default(),
            checkouts: checkouts::Checkouts::default(),
            feed: broadcast::channel(FEED_BACKLOG).0,
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many idempotency records are held (expired or not).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    fn cell(&self, id: PlanId) -> Option<Arc<Mutex<PlanCell>>> {
        self.plans.read().get(&id).cloned()
    }

    /// Finishes the key of the purchase that reserved `subscription_id` with `outcome`, if
    /// the domain says the record awaits that completion
    /// ([`RecoveryPoint::awaits_completion_of`]); a record of a newer purchase under the
    /// same key is left alone.
    fn finish_key(
        &self,
        key_id: &dyn KeyRef,
        subscription_id: SubscriptionId,
        outcome: StoredOutcome,
        request_id: &str,
        now: Timestamp,
    ) {
        if let Some(mut rec) = self.keys.get_mut(key_id) {
            if rec
                .recovery
                .awaits_completion_of(rec.is_finished(), subscription_id)
            {
                rec.finish(outcome, request_id.to_owned(), now);
            }
        }
    }
}

impl MemoryStore {
    /// Files a reserved subscription in the subscription map, the incomplete set and its
    /// customer's index (after the key map, in the lock order).
    fn file(&self, reservation: &Reservation) {
        let Reservation::Reserved(sub) = reservation else {
            return;
        };
        self.incomplete.insert(sub.id(), ());
        self.file_subscription(sub);
    }

    /// Files a new subscription in the subscription map and its customer's index.
    fn file_subscription(&self, sub: &Subscription) {
        self.subscriptions.insert(sub.id(), Arc::new(sub.clone()));
        // Looked up first: `entry` takes its key by value, a copy of the customer id that
        // only a customer's first subscription needs.
        let mut ids = match self.by_customer.get_mut(sub.customer_id()) {
            Some(ids) => ids,
            None => self
                .by_customer
                .entry(sub.customer_id().clone())
                .or_default(),
        };
        if ids.last().is_none_or(|last| *last < sub.id()) {
            // The usual case: ids are time-ordered, so the newest goes last.
            ids.push(sub.id());
        } else {
            let at = ids.partition_point(|id| *id < sub.id());
            if ids.get(at) != Some(&sub.id()) {
                ids.insert(at, sub.id());
            }
        }
    }
}

#[async_trait]
impl Store for MemoryStore {
    /// Always answers: the store is this process's memory.
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
