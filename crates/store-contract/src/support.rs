//! Fixtures the contract cases share: timestamps, plans, purchases (claim, reserve,
//! complete), probes that read an idempotency key's state through `claim_key` without
//! changing it, snapshots for "changes nothing" assertions, and `race`, which starts many
//! tasks at the same instant on the multi-threaded runtime.
//!
//! Everything here panics with a message saying what failed: it is test support.

use std::{future::Future, pin::Pin, sync::Arc, time::Duration};

use chrono::SubsecRound;
use seatkeeper_domain::{
    invariants::check_store_plan,
    ports::{
        ChargeResult, CompletePurchase, Completion, NewKeyReservation, Reservation, ReserveSeat,
        ReserveWithNewKey, Store,
    },
    AuditContext, AuditEntry, Capacity, Claim, ClaimKey, Currency, CustomerId, Fingerprint,
    IdempotencyKey, IdempotencyRecord, Interval, InvalidValue, LockToken, NewPlan, PaymentMethod,
    Plan, PlanId, PlanName, PlanStats, PurchaseOutcome, StoredIdempotencyRecord, StoredPlan,
    StoredSubscription, Subscription, SubscriptionId, SubscriptionStatus, Timestamp, UnitAmount,
};
use tokio::sync::Barrier;

/// The lease of every claim the cases make, unless they say otherwise.
pub const LEASE: Duration = Duration::from_secs(30);
/// The retention of every claim the cases make, unless they say otherwise.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// Now, truncated to milliseconds so that every supported database stores it exactly.
pub fn now() -> Timestamp {
    chrono::Utc::now().trunc_subsecs(3)
}

/// `n` seconds, as a chrono duration to add to timestamps.
pub fn secs(n: i64) -> chrono::Duration {
    chrono::Duration::seconds(n)
}

/// `d` as a chrono duration.
pub fn span(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).expect("a duration that fits chrono")
}

pub fn admin(trace_id: &str) -> AuditContext {
    AuditContext::admin(trace_id)
}

pub fn customer(id: &str) -> CustomerId {
    CustomerId::parse(id).expect("a valid customer id")
}

pub fn idem_key(key: &str) -> IdempotencyKey {
    IdempotencyKey::parse(key).expect("a valid idempotency key")
}

pub fn visa() -> PaymentMethod {
    PaymentMethod::parse("pm_card_visa").expect("a valid payment method")
}

/// A new monthly USD plan (not stored yet).
pub fn new_plan(name: &str, capacity: u32) -> Plan {
    Plan::create(
        NewPlan {
            name: PlanName::parse(name).expect("a valid plan name"),
            capacity: Capacity::new(i64::from(capacity)).expect("a valid capacity"),
            unit_amount: UnitAmount::new(1500).expect("a valid amount"),
            currency: Currency::parse("usd").expect("a valid currency"),
            interval: Interval::Month,
        },
        now(),
    )
}

/// An entity a store reads back as its `Stored…` form through its `restore`, which
/// checks it: what [`altered`] changes.
pub trait Restore: Sized {
    type Stored;
    fn stored(&self) -> Self::Stored;
    fn restore(stored: Self::Stored) -> Result<Self, InvalidValue>;
}

impl Restore for Plan {
    type Stored = StoredPlan;
    fn stored(&self) -> StoredPlan {
        self.into()
    }
    fn restore(stored: StoredPlan) -> Result<Self, InvalidValue> {
        Plan::restore(stored)
    }
}

impl Restore for Subscription {
    type Stored = StoredSubscription;
    fn stored(&self) -> StoredSubscription {
        self.into()
    }
    fn restore(stored: StoredSubscription) -> Result<Self, InvalidValue> {
        Subscription::restore(stored)
    }
}

impl Restore for IdempotencyRecord {
    type Stored = StoredIdempotencyRecord;
    fn stored(&self) -> StoredIdempotencyRecord {
        self.clone().into()
    }
    fn restore(stored: StoredIdempotencyRecord) -> Result<Self, InvalidValue> {
        IdempotencyRecord::restore(stored)
    }
}

/// `value` with `change` made to its stored fields: what a case expects a store to hold
/// after a step (a seat moved, one more audit entry, a lock taken over). The result must
/// still be one the entity's `restore` accepts.
pub fn altered<T: Restore>(value: &T, change: impl FnOnce(&mut T::Stored)) -> T {
    let mut stored = value.stored();
    change(&mut stored);
    T::restore(stored).unwrap_or_else(|e| panic!("an altered value must stay valid: {e}"))
}

/// Stores a new plan of `capacity` seats and returns it.
pub async fn create_plan(store: &dyn Store, capacity: u32) -> Plan {
    let plan = new_plan("Starter", capacity);
    store
        .create_plan(&plan, &admin("create-plan"))
        .await
        .expect("create_plan failed");
    plan
}

/// The plan as the store has it now.
pub async fn plan_now(store: &dyn Store, id: PlanId) -> Plan {
    store
        .get_plan(id)
        .await
        .expect("get_plan failed")
        .unwrap_or_else(|| panic!("plan {id} is gone"))
}

pub async fn stats_now(store: &dyn Store, id: PlanId) -> PlanStats {
    store
        .plan_stats(id)
        .await
        .expect("plan_stats failed")
        .unwrap_or_else(|| panic!("plan {id} has no stats"))
}

/// The subscription as the store has it now.
pub async fn subscription_now(store: &dyn Store, id: SubscriptionId) -> Subscription {
    store
        .get_subscription(id)
        .await
        .expect("get_subscription failed")
        .unwrap_or_else(|| panic!("subscription {id} is gone"))
}

/// The plan's whole audit log, read in pages of 100.
pub async fn whole_audit(store: &dyn Store, id: PlanId) -> Vec<AuditEntry> {
    let mut audit: Vec<AuditEntry> = Vec::new();
    loop {
        let after = audit.last().map(|e| e.seq);
        let page = store
            .plan_audit(id, after, 100)
            .await
            .expect("plan_audit failed")
            .unwrap_or_else(|| panic!("plan {id} has no audit log"));
        if page.is_empty() {
            return audit;
        }
        audit.extend(page);
    }
}

/// Everything a store keeps about one plan, to compare before and after an operation
/// that must change nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSnapshot {
    pub plan: Plan,
    pub stats: PlanStats,
    pub audit: Vec<AuditEntry>,
}

pub async fn snapshot(store: &dyn Store, id: PlanId) -> PlanSnapshot {
    PlanSnapshot {
        plan: plan_now(store, id).await,
        stats: stats_now(store, id).await,
        audit: whole_audit(store, id).await,
    }
}

/// Fails unless the plan keeps every invariant of `purchase-flow.md`, audit replay included.
pub async fn assert_invariants(store: &dyn Store, id: PlanId) {
    let violations = check_store_plan(store, id).await;
    assert!(
        violations.is_empty(),
        "plan {id} breaks the store invariants: {violations:#?}"
    );
}

/// Fails unless `actual` is `expected` apart from its id (ids are the store's to make).
pub fn assert_same_entry(actual: &AuditEntry, expected: &AuditEntry) {
    let mut expected = expected.clone();
    expected.id = actual.id;
    assert_eq!(actual, &expected, "unexpected audit entry");
}

/// The stats a plan should have.
pub fn stats_of(plan: &Plan, counts: [u64; 4]) -> PlanStats {
    let [incomplete, active, canceled, incomplete_expired] = counts;
    PlanStats {
        plan_id: plan.id(),
        capacity: plan.capacity().get(),
        seats_left: plan.seats_left(),
        held: 0,
        incomplete,
        active,
        canceled,
        incomplete_expired,
        sold_out: plan.seats_left() == 0,
    }
}

/// One purchase attempt: the claim of `(customer, key)` by a fresh owner and the seat
/// reservation it would make, both at `at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Purchase {
    pub claim: ClaimKey,
    pub reserve: ReserveSeat,
}

impl Purchase {
    pub fn new(plan_id: PlanId, customer_id: &str, key: &str, at: Timestamp) -> Self {
        let customer_id = customer(customer_id);
        let key = idem_key(key);
        let payment_method = visa();
        let claim = ClaimKey {
            scope: customer_id.clone(),
            key: key.clone(),
            fingerprint: Fingerprint::of_purchase(plan_id, &customer_id, &payment_method),
            owner: LockToken::generate(),
            now: at,
            lease: LEASE,
            retention: RETENTION,
        };
        let request_id = format!("req-{customer_id}-{key}");
        let reserve = ReserveSeat {
            ctx: AuditContext::customer(&customer_id, request_id.clone()),
            customer_id,
            key,
            owner: claim.owner,
            plan_id,
            subscription_id: SubscriptionId::generate(),
            payment_method,
            request_id,
            now: at,
        };
        Self { claim, reserve }
    }

    /// The same purchase with `subscription_id` as the id its reservation gives.
    pub fn with_subscription_id(mut self, id: SubscriptionId) -> Self {
        self.reserve.subscription_id = id;
        self
    }

    pub fn customer(&self) -> &CustomerId {
        &self.claim.scope
    }

    pub fn subscription_id(&self) -> SubscriptionId {
        self.reserve.subscription_id
    }

    /// Claims the key; fails unless the claim is `Acquired`.
    pub async fn claim(&self, store: &dyn Store) -> IdempotencyRecord {
        match store
            .claim_key(&self.claim)
            .await
            .expect("claim_key failed")
        {
            Claim::Acquired(record) => record,
            other => panic!(
                "claiming new key {} of {} should acquire it, got {other:?}",
                self.claim.key, self.claim.scope
            ),
        }
    }

    /// Reserves a seat with the claimed key; fails on an error.
    pub async fn reserve(&self, store: &dyn Store) -> Reservation {
        store
            .reserve_seat(&self.reserve)
            .await
            .expect("reserve_seat failed")
    }

    /// This purchase's claim and reservation as one step for a new key.
    pub fn with_new_key(&self) -> ReserveWithNewKey {
        ReserveWithNewKey::new(self.claim.clone(), self.reserve.clone())
    }

    /// Claims the new key and reserves a seat in one step; fails on an error or when the
    /// key has a record.
    pub async fn reserve_with_new_key(&self, store: &dyn Store) -> Reservation {
        match store
            .reserve_with_new_key(&self.with_new_key())
            .await
            .expect("reserve_with_new_key failed")
        {
            NewKeyReservation::Claimed(reservation) => reservation,
            NewKeyReservation::KeyExists => panic!(
                "key {} of {} should be new, but it has a record",
                self.claim.key, self.claim.scope
            ),
        }
    }

    /// Claims the key and reserves a seat; fails unless a seat was reserved.
    pub async fn reserved(&self, store: &dyn Store) -> Subscription {
        self.claim(store).await;
        match self.reserve(store).await {
            Reservation::Reserved(subscription) => subscription,
            other => panic!("reserving a seat should succeed, got {other:?}"),
        }
    }

    /// The completion of this purchase's subscription with `result` at `at`.
    pub fn completion(
        &self,
        result: ChargeResult,
        request_id: &str,
        at: Timestamp,
    ) -> CompletePurchase {
        CompletePurchase {
            subscription_id: self.subscription_id(),
            result,
            request_id: request_id.to_owned(),
            ctx: self.reserve.ctx.clone(),
            now: at,
            verify_after: None,
        }
    }

    /// Completes this purchase as charged under `payment_id`; fails on an error.
    pub async fn charged(&self, store: &dyn Store, payment_id: &str, at: Timestamp) -> Completion {
        let cmd = self.completion(
            ChargeResult::Charged {
                payment_id: payment_id.to_owned(),
            },
            &self.reserve.request_id,
            at,
        );
        store
            .complete_purchase(&cmd)
            .await
            .expect("completing a reserved purchase as charged failed")
    }

    /// Completes this purchase as declined for `reason`; fails on an error.
    pub async fn declined(&self, store: &dyn Store, reason: &str, at: Timestamp) -> Completion {
        let cmd = self.completion(
            ChargeResult::Declined {
                reason: reason.to_owned(),
            },
            &self.reserve.request_id,
            at,
        );
        store
            .complete_purchase(&cmd)
            .await
            .expect("completing a reserved purchase as declined failed")
    }

    /// Claims, reserves and completes as charged: an `active` subscription.
    pub async fn active(&self, store: &dyn Store) -> Subscription {
        self.reserved(store).await;
        let done = self
            .charged(
                store,
                &format!("pi_{}", self.subscription_id()),
                self.claim.now,
            )
            .await;
        assert_eq!(done.subscription().status(), SubscriptionStatus::Active);
        done.subscription().clone()
    }

    /// The same purchase carried on by the owner of `claim` (a claim of the same key that
    /// took it over): its reservation uses that owner and that time.
    pub fn taken_over_by(&self, claim: &ClaimKey) -> Self {
        let mut next = self.clone();
        next.claim = claim.clone();
        next.reserve.owner = claim.owner;
        next.reserve.now = claim.now;
        next
    }

    /// A claim of the same key and request by a new owner at `at`.
    pub fn reclaim(&self, at: Timestamp) -> ClaimKey {
        ClaimKey {
            owner: LockToken::generate(),
            now: at,
            ..self.claim.clone()
        }
    }

    /// A claim of the same key with a different request (another fingerprint) at `at`.
    pub fn misuse(&self, at: Timestamp) -> ClaimKey {
        ClaimKey {
            fingerprint: Fingerprint::of_purchase(
                PlanId::generate(),
                &self.claim.scope,
                &self.reserve.payment_method,
            ),
            ..self.reclaim(at)
        }
    }
}

/// Fails unless a claim of the purchase's key by another owner at `at` is `InUse` (which
/// changes nothing).
pub async fn assert_key_in_use(store: &dyn Store, purchase: &Purchase, at: Timestamp) {
    let got = store
        .claim_key(&purchase.reclaim(at))
        .await
        .expect("claim_key failed");
    assert_eq!(
        got,
        Claim::InUse,
        "key {} of {} should be held by a live lock",
        purchase.claim.key,
        purchase.claim.scope
    );
}

/// The outcome and request id a finished key replays (a claim of a finished key changes
/// nothing); fails unless the key is finished.
pub async fn finished_outcome(
    store: &dyn Store,
    purchase: &Purchase,
    at: Timestamp,
) -> (PurchaseOutcome, String) {
    match store
        .claim_key(&purchase.reclaim(at))
        .await
        .expect("claim_key failed")
    {
        Claim::Finished {
            outcome,
            request_id,
        } => (outcome, request_id),
        other => panic!(
            "key {} of {} should be finished, got {other:?}",
            purchase.claim.key, purchase.claim.scope
        ),
    }
}

/// A boxed task for [`race`].
pub type Task<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

pub fn task<T>(fut: impl Future<Output = T> + Send + 'static) -> Task<T> {
    Box::pin(fut)
}

/// Spawns every task on the runtime, holds them all behind one barrier so that they start
/// together, and returns their results in order.
pub async fn race<T: Send + 'static>(tasks: Vec<Task<T>>) -> Vec<T> {
    let barrier = Arc::new(Barrier::new(tasks.len()));
    let handles: Vec<_> = tasks
        .into_iter()
        .map(|t| {
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                t.await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(handles.len());
    for h in handles {
        results.push(h.await.expect("a task of the race panicked"));
    }
    results
}

/// Runs every task concurrently (no barrier) and returns their results in order: for
/// setting up or checking many things quickly.
pub async fn all<T: Send + 'static>(tasks: Vec<Task<T>>) -> Vec<T> {
    let handles: Vec<_> = tasks.into_iter().map(tokio::spawn).collect();
    let mut results = Vec::with_capacity(handles.len());
    for h in handles {
        results.push(h.await.expect("a concurrent task panicked"));
    }
    results
}

/// Runs `work` to its end on a thread of its own with a runtime of its own, and waits for
/// it: for cleanup that must await in a `Drop` (a test database to remove), which cannot
/// await and may run on a runtime that is shutting down. A failure to start the runtime
/// skips the work: cleanup is best-effort.
pub fn block_on_detached<F, Fut>(work: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = ()>,
{
    let _ = std::thread::spawn(move || {
        if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            rt.block_on(work());
        }
    })
    .join();
}

/// Runs an async cleanup (through [`block_on_detached`]) when dropped: the guard a store
/// on a test database keeps, so that the database goes with the store.
pub struct CleanUpOnDrop(Option<Box<dyn FnOnce() + Send + Sync>>);

impl CleanUpOnDrop {
    pub fn new<F, Fut>(work: F) -> Self
    where
        F: FnOnce() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()>,
    {
        Self(Some(Box::new(move || block_on_detached(work))))
    }
}

impl Drop for CleanUpOnDrop {
    fn drop(&mut self) {
        if let Some(work) = self.0.take() {
            work();
        }
    }
}

/// The prefix of every test database's name, so that a sweep finds them all.
pub const TEST_DATABASE_PREFIX: &str = "seatkeeper_test_";

/// A new test database name: the prefix, the Unix time in seconds (for
/// [`is_stale_test_database`]) and 16 random hex digits.
pub fn test_database_name() -> String {
    format!(
        "{TEST_DATABASE_PREFIX}{}_{}",
        unix_secs(),
        &uuid::Uuid::new_v4().simple().to_string()[..16]
    )
}

/// Whether `name` is a test database made over an hour ago: a leftover of a killed run.
pub fn is_stale_test_database(name: &str) -> bool {
    name.strip_prefix(TEST_DATABASE_PREFIX)
        .and_then(|rest| rest.split('_').next())
        .and_then(|s| s.parse::<u64>().ok())
        .is_some_and(|made| made + 3600 < unix_secs())
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod test_database_names {
    use super::*;

    #[test]
    fn a_fresh_name_is_not_stale_and_one_from_two_hours_ago_is() {
        let fresh = test_database_name();
        assert!(fresh.starts_with(TEST_DATABASE_PREFIX) && fresh.len() < 60);
        assert!(!is_stale_test_database(&fresh));
        let old = format!("{TEST_DATABASE_PREFIX}{}_abc", unix_secs() - 7200);
        assert!(is_stale_test_database(&old));
        assert!(!is_stale_test_database("seatkeeper_live"));
    }
}
