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

mod keys;
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
    PatchRejection, Plan, PlanId, PlanPatch, PlanStats, RecoveryPoint, SeatMove, Subscription,
    SubscriptionId, SubscriptionStatus, Timestamp,
};
use trail::AuditTrail;

type DashMap<K, V> = dashmap::DashMap<K, V, ahash::RandomState>;

/// Everything about one plan that must change together.
struct PlanCell {
    plan: Plan,
    /// Entry `i` has `seq == i + 1`.
    audit: AuditTrail,
    counts: Counts,
}

#[derive(Default)]
struct Counts {
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
        self.audit.push(entry);
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
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            plans: RwLock::default(),
            keys: map(),
            subscriptions: map(),
            by_customer: map(),
            incomplete: map(),
            recovery: map(),
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
    /// it is still open. A record under the same key that does not point at this
    /// subscription belongs to a newer purchase (the old record passed its retention and
    /// the key started afresh) and is left alone.
    fn finish_key(
        &self,
        key_id: &dyn KeyRef,
        subscription_id: SubscriptionId,
        outcome: StoredOutcome,
        request_id: &str,
        now: Timestamp,
    ) {
        if let Some(mut rec) = self.keys.get_mut(key_id) {
            let ours = rec.recovery == RecoveryPoint::Reserved { subscription_id };
            if ours && !rec.is_finished() {
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
        self.subscriptions.insert(sub.id, Arc::new(sub.clone()));
        self.incomplete.insert(sub.id, ());
        // Looked up first: `entry` takes its key by value, a copy of the customer id that
        // only a customer's first subscription needs.
        let mut ids = match self.by_customer.get_mut(&sub.customer_id) {
            Some(ids) => ids,
            None => self.by_customer.entry(sub.customer_id.clone()).or_default(),
        };
        if ids.last().is_none_or(|last| *last < sub.id) {
            // The usual case: ids are time-ordered, so the newest goes last.
            ids.push(sub.id);
        } else {
            let at = ids.partition_point(|id| *id < sub.id);
            if ids.get(at) != Some(&sub.id) {
                ids.insert(at, sub.id);
            }
        }
    }
}

/// The reservation of `cmd` under its plan's lock (`cell`, `None` when the plan does not
/// exist) by the key record `rec`, which the caller holds at `Started`: a rejection
/// finishes the key; a seat moves the key to `Reserved`.
fn reserve_under(
    cmd: &ReserveSeat,
    cell: Option<&mut PlanCell>,
    rec: &mut KeyEntry,
) -> Result<Reservation, StoreError> {
    if let Some(outcome) = cmd.rejection(cell.as_ref().map(|c| &c.plan)) {
        rec.finish(
            StoredOutcome::of(outcome.clone()),
            cmd.request_id.clone(),
            cmd.now,
        );
        return Ok(Reservation::Rejected(outcome));
    }
    let Some(cell) = cell else {
        return Err(StoreError::internal("a missing plan was not rejected"));
    };
    let (sub, entry) = cmd.take_seat(&mut cell.plan);
    cell.audit.push(entry);
    cell.counts.incomplete += 1;
    rec.recovery = RecoveryPoint::Reserved {
        subscription_id: sub.id,
    };
    Ok(Reservation::Reserved(sub))
}

#[async_trait]
impl PlanRepository for MemoryStore {
    async fn create_plan(&self, plan: &Plan, ctx: &AuditContext) -> Result<(), StoreError> {
        let mut cell = PlanCell {
            plan: plan.clone(),
            audit: AuditTrail::default(),
            counts: Counts::default(),
        };
        cell.audit.push(AuditEntry::plan_created(plan, ctx));
        let mut plans = self.plans.write();
        if plans.contains_key(&plan.id) {
            return Err(StoreError::internal(format!(
                "plan {} already exists",
                plan.id
            )));
        }
        plans.insert(plan.id, Arc::new(Mutex::new(cell)));
        Ok(())
    }

    async fn get_plan(&self, id: PlanId) -> Result<Option<Plan>, StoreError> {
        Ok(self.cell(id).map(|c| c.lock().plan.clone()))
    }

    async fn list_plans(&self, after: Option<PlanId>, limit: u32) -> Result<Vec<Plan>, StoreError> {
        let plans = self.plans.read();
        let range = match after {
            Some(a) => plans.range((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded)),
            None => plans.range(..),
        };
        Ok(range
            .take(limit as usize)
            .map(|(_, c)| c.lock().plan.clone())
            .collect())
    }

    async fn update_plan(
        &self,
        id: PlanId,
        patch: &PlanPatch,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<Plan, UpdatePlanError> {
        let cell = self.cell(id).ok_or(UpdatePlanError::NotFound(id))?;
        let mut cell = cell.lock();
        let changes = cell.plan.apply(patch).map_err(|r| match r {
            PatchRejection::CapacityBelowHeld { held, requested } => {
                UpdatePlanError::CapacityBelowHeld { held, requested }
            }
        })?;
        let entries = AuditEntry::plan_changes(&cell.plan, &changes, ctx, now);
        cell.audit.extend(entries);
        Ok(cell.plan.clone())
    }

    async fn plan_stats(&self, id: PlanId) -> Result<Option<PlanStats>, StoreError> {
        Ok(self.cell(id).map(|c| {
            let c = c.lock();
            PlanStats {
                plan_id: id,
                capacity: c.plan.capacity.get(),
                seats_left: c.plan.seats_left,
                incomplete: c.counts.incomplete,
                active: c.counts.active,
                canceled: c.counts.canceled,
                incomplete_expired: c.counts.incomplete_expired,
                sold_out: c.plan.is_sold_out(),
            }
        }))
    }
}

#[async_trait]
impl AuditLog for MemoryStore {
    async fn plan_audit(
        &self,
        plan_id: PlanId,
        after_seq: Option<u64>,
        limit: u32,
    ) -> Result<Option<Vec<AuditEntry>>, StoreError> {
        Ok(self.cell(plan_id).map(|c| {
            let c = c.lock();
            c.audit
                .iter_from(after_seq.unwrap_or(0) as usize)
                .take(limit as usize)
                .cloned()
                .collect()
        }))
    }
}

#[async_trait]
impl SubscriptionRepository for MemoryStore {
    async fn get_subscription(
        &self,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError> {
        Ok(self.subscriptions.get(&id).map(|s| Subscription::clone(&s)))
    }

    async fn customer_subscriptions(
        &self,
        customer: &CustomerId,
        after: Option<SubscriptionId>,
        limit: u32,
    ) -> Result<Vec<Subscription>, StoreError> {
        let ids: Vec<SubscriptionId> = match self.by_customer.get(customer) {
            None => return Ok(Vec::new()),
            Some(ids) => {
                let start = after.map_or(0, |a| ids.partition_point(|id| *id <= a));
                ids[start..].iter().take(limit as usize).copied().collect()
            }
        };
        Ok(ids
            .into_iter()
            .filter_map(|id| self.subscriptions.get(&id).map(|s| Subscription::clone(&s)))
            .collect())
    }

    async fn cancel_subscription(
        &self,
        id: SubscriptionId,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<Cancellation, CancelError> {
        let plan_id = self
            .subscriptions
            .get(&id)
            .map(|s| s.plan_id)
            .ok_or(CancelError::NotFound(id))?;
        let cell = self
            .cell(plan_id)
            .ok_or_else(|| StoreError::internal(format!("subscription {id} has no plan")))?;
        let mut cell = cell.lock();
        let mut sub = self
            .subscriptions
            .get_mut(&id)
            .ok_or(CancelError::NotFound(id))?;
        let (canceled, seat_move) = match CancelDecision::of(Subscription::clone(&sub), now)? {
            CancelDecision::AlreadyCanceled(answer) => return Ok(answer),
            CancelDecision::Cancel {
                subscription,
                seat_move,
            } => (subscription, seat_move),
        };
        // A new `Arc`: a finished key that still shares the old one replays the
        // purchase's answer, which did not say `canceled`.
        *sub = Arc::new(canceled);
        cell.counts
            .moved(SubscriptionStatus::Active, SubscriptionStatus::Canceled);
        cell.record(seat_move, ctx, now);
        Ok(CancelDecision::answer(Subscription::clone(&sub)))
    }
}

#[async_trait]
impl IdempotencyRepository for MemoryStore {
    async fn claim_key(&self, claim: &ClaimKey) -> Result<Claim, StoreError> {
        match self.keys.entry(KeyId::new(&claim.scope, &claim.key)) {
            Entry::Vacant(v) => {
                let record = claim.fresh_record();
                v.insert(KeyEntry::of_open(&record));
                Ok(Claim::Acquired(record))
            }
            Entry::Occupied(mut o) => {
                let decision = claim.decide(&o.get().to_record(&claim.scope, &claim.key));
                if let Claim::Acquired(record) = &decision {
                    o.insert(KeyEntry::of_record(record.clone()));
                }
                Ok(decision)
            }
        }
    }

    async fn release_key(
        &self,
        scope: &CustomerId,
        key: &IdempotencyKey,
        owner: LockToken,
    ) -> Result<bool, StoreError> {
        let Some(mut rec) = self.keys.get_mut(&(scope, key) as &dyn KeyRef) else {
            return Ok(false);
        };
        if !rec.is_locked_by(owner) {
            return Ok(false);
        }
        rec.state = EntryState::Open { lock: None };
        Ok(true)
    }

    async fn purge_expired_keys(&self, now: Timestamp) -> Result<u64, StoreError> {
        // Counted as removed, not as a difference of lengths: claims may insert keys while
        // the sweep runs.
        let mut purged = 0u64;
        self.keys.retain(|_, r| {
            let keep = r.expires_at > now;
            if !keep {
                purged += 1;
            }
            keep
        });
        Ok(purged)
    }
}

#[async_trait]
impl PurchaseRepository for MemoryStore {
    async fn reserve_seat(&self, cmd: &ReserveSeat) -> Result<Reservation, ReserveError> {
        let cell = self.cell(cmd.plan_id);
        let mut guard = cell.as_ref().map(|c| c.lock());
        let key_id = (&cmd.customer_id, &cmd.key);
        let mut rec = match self.keys.get_mut(&key_id as &dyn KeyRef) {
            Some(rec) if rec.is_locked_by(cmd.owner) && rec.recovery == RecoveryPoint::Started => {
                rec
            }
            _ => return Err(ReserveError::LockLost),
        };
        let reservation = reserve_under(cmd, guard.as_deref_mut(), &mut rec)?;
        drop(rec);
        self.file(&reservation);
        Ok(reservation)
    }

    async fn reserve_with_new_key(
        &self,
        cmd: &ReserveWithNewKey,
    ) -> Result<NewKeyReservation, StoreError> {
        let (claim, seat) = (cmd.claim(), cmd.seat());
        // Built before the plan's lock, which a hot plan's purchases queue for: a key
        // that turns out to exist (rare) wastes them.
        let (id, fresh) = (
            KeyId::new(&claim.scope, &claim.key),
            KeyEntry::of_open(&claim.fresh_record()),
        );
        let cell = self.cell(seat.plan_id);
        let mut guard = cell.as_ref().map(|c| c.lock());
        // The key map's shard stays locked from the check to the reservation: no claim
        // of the same key can come between.
        let Entry::Vacant(vacant) = self.keys.entry(id) else {
            return Ok(NewKeyReservation::KeyExists);
        };
        let mut rec = vacant.insert(fresh);
        let reservation = reserve_under(seat, guard.as_deref_mut(), &mut rec)?;
        drop(rec);
        self.file(&reservation);
        Ok(NewKeyReservation::Claimed(reservation))
    }

    async fn complete_purchase(&self, cmd: &CompletePurchase) -> Result<Completion, CompleteError> {
        let id = cmd.subscription_id;
        let plan_id = self
            .subscriptions
            .get(&id)
            .map(|s| s.plan_id)
            .ok_or(CompleteError::NotFound(id))?;
        let cell = self
            .cell(plan_id)
            .ok_or_else(|| StoreError::internal(format!("subscription {id} has no plan")))?;
        let mut cell = cell.lock();
        let mut entry = self
            .subscriptions
            .get_mut(&id)
            .ok_or(CompleteError::NotFound(id))?;
        if entry.status != SubscriptionStatus::Incomplete {
            return Err(CompleteError::NotIncomplete(Box::new(Subscription::clone(
                &entry,
            ))));
        }
        let change = cmd.apply(Arc::make_mut(&mut entry));
        let sub = Arc::clone(&entry);
        drop(entry);
        cell.counts
            .moved(SubscriptionStatus::Incomplete, sub.status);
        cell.record(change.seat_move(id), &cmd.ctx, cmd.now);
        let outcome = change.outcome;
        if let Some(key) = &sub.idempotency_key {
            self.finish_key(
                &(&sub.customer_id, key),
                id,
                StoredOutcome::of_ref(&outcome, &sub),
                &cmd.request_id,
                cmd.now,
            );
        }
        self.incomplete.remove(&id);
        self.recovery.remove(&id);
        if let (Some(at), ChargeResult::Declined { .. }) = (cmd.verify_after, &cmd.result) {
            self.recovery.insert(
                id,
                RecoveryRow {
                    phase: RecoveryPhase::Verify,
                    lease: None,
                    verify_after: Some(at),
                },
            );
        }
        Ok(Completion { outcome })
    }
}

impl MemoryStore {
    /// Appends the `payment_refunded` entry of a subscription, once.
    fn audit_refund(
        &self,
        id: SubscriptionId,
        payment_id: &str,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let plan_id = self
            .subscriptions
            .get(&id)
            .map(|s| s.plan_id)
            .ok_or_else(|| StoreError::internal(format!("no subscription {id} to refund")))?;
        let cell = self
            .cell(plan_id)
            .ok_or_else(|| StoreError::internal(format!("subscription {id} has no plan")))?;
        let mut cell = cell.lock();
        let already = cell
            .audit
            .iter()
            .any(|e| e.action == AuditAction::PaymentRefunded && e.subscription_id == Some(id));
        if already {
            return Ok(false);
        }
        cell.record(SeatMove::refund(id, payment_id), ctx, now);
        Ok(true)
    }
}

#[async_trait]
impl RecoveryRepository for MemoryStore {
    async fn claim_recovery(&self, claim: &ClaimRecovery) -> Result<Vec<RecoveryTask>, StoreError> {
        let mut tasks = Vec::new();
        let lease = Some((claim.owner, claim.lease_until));
        let stale: Vec<SubscriptionId> = self.incomplete.iter().map(|e| *e.key()).collect();
        for id in stale {
            if tasks.len() >= claim.limit as usize {
                return Ok(tasks);
            }
            let Some(sub) = self.subscriptions.get(&id).map(|s| Subscription::clone(&s)) else {
                continue;
            };
            if sub.status != SubscriptionStatus::Incomplete || sub.updated_at > claim.stale_before {
                continue;
            }
            let taken = match self.recovery.entry(id) {
                Entry::Vacant(v) => {
                    v.insert(RecoveryRow {
                        phase: RecoveryPhase::Complete,
                        lease,
                        verify_after: None,
                    });
                    true
                }
                Entry::Occupied(mut o) if o.get().free_at(claim.now) => {
                    o.get_mut().lease = lease;
                    true
                }
                Entry::Occupied(_) => false,
            };
            if taken {
                tasks.push(RecoveryTask {
                    subscription: sub,
                    phase: RecoveryPhase::Complete,
                });
            }
        }
        let due: Vec<SubscriptionId> = self
            .recovery
            .iter()
            .filter(|r| {
                r.phase == RecoveryPhase::Verify
                    && r.verify_after.is_some_and(|t| t <= claim.now)
                    && r.free_at(claim.now)
            })
            .map(|r| *r.key())
            .collect();
        for id in due {
            if tasks.len() >= claim.limit as usize {
                break;
            }
            let taken = match self.recovery.get_mut(&id) {
                Some(mut row) if row.phase == RecoveryPhase::Verify && row.free_at(claim.now) => {
                    row.lease = lease;
                    true
                }
                _ => false,
            };
            if let (true, Some(sub)) = (
                taken,
                self.subscriptions.get(&id).map(|s| Subscription::clone(&s)),
            ) {
                tasks.push(RecoveryTask {
                    subscription: sub,
                    phase: RecoveryPhase::Verify,
                });
            }
        }
        Ok(tasks)
    }

    async fn release_recovery(
        &self,
        id: SubscriptionId,
        owner: LockToken,
    ) -> Result<bool, StoreError> {
        let held = |row: &RecoveryRow| row.lease.is_some_and(|(o, _)| o == owner);
        let removed = self.recovery.remove_if(&id, |_, row| {
            row.phase == RecoveryPhase::Complete && held(row)
        });
        if removed.is_some() {
            return Ok(true);
        }
        Ok(match self.recovery.get_mut(&id) {
            Some(mut row) if held(&row) => {
                row.lease = None;
                true
            }
            _ => false,
        })
    }

    async fn finish_verification(
        &self,
        id: SubscriptionId,
        owner: LockToken,
        refunded: Option<&str>,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let removed = self.recovery.remove_if(&id, |_, row| {
            row.phase == RecoveryPhase::Verify && row.lease.is_some_and(|(o, _)| o == owner)
        });
        if removed.is_none() {
            return Ok(false);
        }
        if let Some(payment_id) = refunded {
            self.audit_refund(id, payment_id, ctx, now)?;
        }
        Ok(true)
    }

    async fn record_refund(
        &self,
        id: SubscriptionId,
        payment_id: &str,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        self.audit_refund(id, payment_id, ctx, now)
    }

    async fn recovery_backlog(
        &self,
        stale_before: Timestamp,
    ) -> Result<RecoveryBacklog, StoreError> {
        let stale_incomplete = self
            .incomplete
            .iter()
            .filter(|e| {
                self.subscriptions
                    .get(e.key())
                    .is_some_and(|s| s.updated_at <= stale_before)
            })
            .count() as u64;
        let pending_verifications = self
            .recovery
            .iter()
            .filter(|r| r.phase == RecoveryPhase::Verify)
            .count() as u64;
        Ok(RecoveryBacklog {
            stale_incomplete,
            pending_verifications,
        })
    }
}

#[async_trait]
impl Store for MemoryStore {
    /// Always answers: the store is this process's memory.
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
