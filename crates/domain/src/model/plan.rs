use serde::{Deserialize, Serialize};

use super::{
    AuditAction, AuditContext, AuditEntry, Capacity, Currency, Interval, InvalidValue, PlanId,
    PlanName, PlanStatus, SubscriptionId, Timestamp, UnitAmount,
};

/// A plan with a limited number of seats.
///
/// `seats_left` counts the seats nobody holds: `capacity - seats_left` seats are held by
/// open checkout sessions or by `incomplete` or `active` subscriptions. `seq` is bumped with every audit entry of the plan, so the
/// plan's audit log is totally ordered on every store.
///
/// The fields are private so that a `Plan` that exists keeps `seats_left <= capacity` and
/// `seq >= 1`: it is made by [`Plan::create`], read back from a store by
/// [`Plan::restore`] (which checks both), and changed only by [`Plan::apply`] and
/// [`Plan::move_seats`], which also write the audit entry of each change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    id: PlanId,
    name: PlanName,
    capacity: Capacity,
    seats_left: u32,
    unit_amount: UnitAmount,
    currency: Currency,
    interval: Interval,
    status: PlanStatus,
    created_at: Timestamp,
    seq: u64,
}

/// A plan as a store kept it, each field already parsed into its domain type; the store
/// hands it to [`Plan::restore`], which checks what holds between the fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPlan {
    pub id: PlanId,
    pub name: PlanName,
    pub capacity: Capacity,
    pub seats_left: u32,
    pub unit_amount: UnitAmount,
    pub currency: Currency,
    pub interval: Interval,
    pub status: PlanStatus,
    pub created_at: Timestamp,
    pub seq: u64,
}

impl From<&Plan> for StoredPlan {
    fn from(p: &Plan) -> Self {
        Self {
            id: p.id,
            name: p.name.clone(),
            capacity: p.capacity,
            seats_left: p.seats_left,
            unit_amount: p.unit_amount,
            currency: p.currency,
            interval: p.interval,
            status: p.status,
            created_at: p.created_at,
            seq: p.seq,
        }
    }
}

/// What an administrator gives to create a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPlan {
    pub name: PlanName,
    pub capacity: Capacity,
    pub unit_amount: UnitAmount,
    pub currency: Currency,
    pub interval: Interval,
}

/// A change to a plan; absent fields stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlanPatch {
    pub name: Option<PlanName>,
    pub capacity: Option<Capacity>,
    pub status: Option<PlanStatus>,
}

impl PlanPatch {
    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.capacity.is_none() && self.status.is_none()
    }
}

/// Why a patch cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchRejection {
    /// The new capacity is smaller than the seats subscriptions hold.
    CapacityBelowHeld { held: u32, requested: u32 },
}

/// One audited change that applying a patch made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanChange {
    pub action: AuditAction,
    pub seats_left_before: u32,
    pub seats_left_after: u32,
    pub reason: Option<String>,
}

impl Plan {
    /// A new plan with every seat free; its creation is audit entry 1.
    pub fn create(new: NewPlan, now: Timestamp) -> Self {
        Self {
            id: PlanId::generate(),
            name: new.name,
            capacity: new.capacity,
            seats_left: new.capacity.get(),
            unit_amount: new.unit_amount,
            currency: new.currency,
            interval: new.interval,
            status: PlanStatus::Active,
            created_at: now,
            seq: 1,
        }
    }

    /// The plan a store kept, if it is one a `Plan` can be: at most `capacity` seats
    /// left, and a `seq` of at least 1 (its creation is entry 1). Anything else is
    /// corrupt data, which the store reports rather than patches.
    pub fn restore(stored: StoredPlan) -> Result<Self, InvalidValue> {
        if stored.seats_left > stored.capacity.get() {
            return Err(InvalidValue::new(format!(
                "seats_left {} exceeds the capacity {}",
                stored.seats_left,
                stored.capacity.get()
            )));
        }
        if stored.seq == 0 {
            return Err(InvalidValue::new(
                "seq 0: a plan's creation is its audit entry 1",
            ));
        }
        let StoredPlan {
            id,
            name,
            capacity,
            seats_left,
            unit_amount,
            currency,
            interval,
            status,
            created_at,
            seq,
        } = stored;
        Ok(Self {
            id,
            name,
            capacity,
            seats_left,
            unit_amount,
            currency,
            interval,
            status,
            created_at,
            seq,
        })
    }

    pub fn id(&self) -> PlanId {
        self.id
    }

    pub fn name(&self) -> &PlanName {
        &self.name
    }

    pub fn capacity(&self) -> Capacity {
        self.capacity
    }

    /// Seats nobody holds.
    pub fn seats_left(&self) -> u32 {
        self.seats_left
    }

    pub fn unit_amount(&self) -> UnitAmount {
        self.unit_amount
    }

    pub fn currency(&self) -> Currency {
        self.currency
    }

    pub fn interval(&self) -> Interval {
        self.interval
    }

    pub fn status(&self) -> PlanStatus {
        self.status
    }

    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// The `seq` of the plan's latest audit entry.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Seats taken: by open checkout sessions, and by `incomplete` or `active` subscriptions.
    pub fn held(&self) -> u32 {
        self.capacity.get() - self.seats_left
    }

    pub fn is_sold_out(&self) -> bool {
        self.seats_left == 0
    }

    /// Applies `patch` in place and returns the audited changes it made, in order
    /// (their `seq` is `self.seq` after each bump). Nothing changes on rejection.
    pub fn apply(&mut self, patch: &PlanPatch) -> Result<Vec<PlanChange>, PatchRejection> {
        if let Some(capacity) = patch.capacity {
            if capacity.get() < self.held() {
                return Err(PatchRejection::CapacityBelowHeld {
                    held: self.held(),
                    requested: capacity.get(),
                });
            }
        }
        let mut changes = Vec::new();
        if let Some(name) = &patch.name {
            if *name != self.name {
                let reason = format!(
                    "renamed from '{}' to '{}'",
                    self.name.as_str(),
                    name.as_str()
                );
                self.name = name.clone();
                changes.push(self.unchanged_seats(AuditAction::PlanUpdated, Some(reason)));
            }
        }
        if let Some(capacity) = patch.capacity {
            if capacity != self.capacity {
                let before = self.seats_left;
                let held = self.held();
                let reason = format!(
                    "capacity changed from {} to {}",
                    self.capacity.get(),
                    capacity.get()
                );
                self.capacity = capacity;
                self.seats_left = capacity.get() - held;
                changes.push(PlanChange {
                    action: AuditAction::CapacityChanged,
                    seats_left_before: before,
                    seats_left_after: self.seats_left,
                    reason: Some(reason),
                });
            }
        }
        if let Some(status) = patch.status {
            if status != self.status {
                self.status = status;
                let action = match status {
                    PlanStatus::Active => AuditAction::PlanActivated,
                    PlanStatus::Archived => AuditAction::PlanArchived,
                };
                changes.push(self.unchanged_seats(action, None));
            }
        }
        self.seq += changes.len() as u64;
        Ok(changes)
    }

    /// Carries out `mv`, a seat move the domain decided (a reservation, a release, or an
    /// entry that moves no seat): moves `seats_left`, numbers the move with the plan's next
    /// `seq`, and returns its audit entry. Every store moves a plan's seats only through
    /// this, so the arithmetic and the entry are the same on all of them.
    ///
    /// # Panics
    /// If the move would leave `seats_left` outside `0..=capacity`: the caller decides
    /// first (`ReserveSeat::rejection`, the subscription's status), so that is a bug.
    pub fn move_seats(&mut self, mv: SeatMove, ctx: &AuditContext, now: Timestamp) -> AuditEntry {
        let before = self.seats_left;
        self.seats_left = u32::try_from(i64::from(before) + i64::from(mv.delta))
            .ok()
            .filter(|after| *after <= self.capacity.get())
            .unwrap_or_else(|| {
                panic!(
                    "plan {}: moving {} seats from {before} leaves 0..={}",
                    self.id,
                    mv.delta,
                    self.capacity.get()
                )
            });
        self.seq += 1;
        AuditEntry::record(
            self,
            mv.action,
            before,
            mv.subscription_id,
            mv.reason,
            ctx,
            now,
        )
    }

    fn unchanged_seats(&self, action: AuditAction, reason: Option<String>) -> PlanChange {
        PlanChange {
            action,
            seats_left_before: self.seats_left,
            seats_left_after: self.seats_left,
            reason,
        }
    }
}

/// A move of a plan's seats, for [`Plan::move_seats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeatMove {
    /// −1 takes a seat, +1 gives one back, 0 records an event that moves none.
    pub delta: i8,
    pub action: AuditAction,
    pub subscription_id: Option<SubscriptionId>,
    pub reason: Option<String>,
}

impl SeatMove {
    /// A reservation takes a seat for `subscription`.
    pub fn reserve(subscription: SubscriptionId) -> Self {
        Self {
            delta: -1,
            action: AuditAction::SeatReserved,
            subscription_id: Some(subscription),
            reason: None,
        }
    }

    /// A cancellation gives `subscription`'s seat back.
    pub fn cancel(subscription: SubscriptionId) -> Self {
        Self {
            delta: 1,
            action: AuditAction::SubscriptionCanceled,
            subscription_id: Some(subscription),
            reason: None,
        }
    }

    /// The refund of `payment_id`, a charge that landed after `subscription`'s purchase was
    /// given up: recorded, no seat moves.
    pub fn refund(subscription: SubscriptionId, payment_id: &str) -> Self {
        Self {
            delta: 0,
            action: AuditAction::PaymentRefunded,
            subscription_id: Some(subscription),
            reason: Some(format!(
                "refunded {payment_id}: the charge landed after the purchase was given up"
            )),
        }
    }

    /// The audit entry of this move when the database carried it out (an atomic increment
    /// of `seats_left` by `delta` and of `seq` by one) and returned `plan` as it left it.
    pub fn entry_after(self, plan: &Plan, ctx: &AuditContext, now: Timestamp) -> AuditEntry {
        let before = u32::try_from(i64::from(plan.seats_left) - i64::from(self.delta))
            .expect("a plan's seats before a move of at most one seat fit in u32");
        AuditEntry::record(
            plan,
            self.action,
            before,
            self.subscription_id,
            self.reason,
            ctx,
            now,
        )
    }
}

/// A plan and the seats its open checkout sessions hold, read in one snapshot: what a
/// storefront shows of it. Unlike [`PlanStats`] it counts no subscriptions, so reading
/// it costs the same however many the plan has sold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanAvailability {
    pub plan: Plan,
    /// Seats held by open checkout sessions.
    pub held: u64,
}

/// Counts of a plan's subscriptions by status, read in one consistent snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStats {
    pub plan_id: PlanId,
    pub capacity: u32,
    pub seats_left: u32,
    /// Seats held by open checkout sessions.
    pub held: u64,
    pub incomplete: u64,
    pub active: u64,
    pub canceled: u64,
    pub incomplete_expired: u64,
    pub sold_out: bool,
}

impl PlanStats {
    /// The stats of `plan` with `held` open checkout sessions and subscriptions that, by
    /// status, number `counts` (a status not named counts none; one named twice counts
    /// its last number).
    pub fn from_counts(
        plan: &Plan,
        held: u64,
        counts: impl IntoIterator<Item = (super::SubscriptionStatus, u64)>,
    ) -> Self {
        let mut stats = Self {
            plan_id: plan.id,
            capacity: plan.capacity.get(),
            seats_left: plan.seats_left,
            held,
            incomplete: 0,
            active: 0,
            canceled: 0,
            incomplete_expired: 0,
            sold_out: plan.is_sold_out(),
        };
        for (status, n) in counts {
            use super::SubscriptionStatus::*;
            let slot = match status {
                Incomplete => &mut stats.incomplete,
                Active => &mut stats.active,
                Canceled => &mut stats.canceled,
                IncompleteExpired => &mut stats.incomplete_expired,
            };
            *slot = n;
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(capacity: i64) -> Plan {
        Plan::create(
            NewPlan {
                name: PlanName::parse("Starter").unwrap(),
                capacity: Capacity::new(capacity).unwrap(),
                unit_amount: UnitAmount::new(1000).unwrap(),
                currency: Currency::parse("usd").unwrap(),
                interval: Interval::Month,
            },
            chrono::Utc::now(),
        )
    }

    #[test]
    fn lowering_capacity_below_the_held_seats_is_refused_and_changes_nothing() {
        let mut p = plan(10);
        p.seats_left = 4; // 6 held
        let before = p.clone();
        let patch = PlanPatch {
            capacity: Some(Capacity::new(5).unwrap()),
            ..Default::default()
        };
        assert_eq!(
            p.apply(&patch),
            Err(PatchRejection::CapacityBelowHeld {
                held: 6,
                requested: 5
            })
        );
        assert_eq!(p, before);
    }

    #[test]
    fn a_capacity_change_keeps_the_held_seats_and_moves_seats_left() {
        let mut p = plan(10);
        p.seats_left = 4;
        let changes = p
            .apply(&PlanPatch {
                capacity: Some(Capacity::new(6).unwrap()),
                status: Some(PlanStatus::Archived),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(p.seats_left, 0);
        assert_eq!(p.seq, 3);
        assert_eq!(changes.len(), 2);
        assert_eq!(changes[0].action, AuditAction::CapacityChanged);
        assert_eq!(
            (changes[0].seats_left_before, changes[0].seats_left_after),
            (4, 0)
        );
        assert_eq!(changes[1].action, AuditAction::PlanArchived);
    }

    #[test]
    fn a_patch_that_changes_nothing_records_nothing() {
        let mut p = plan(10);
        let changes = p
            .apply(&PlanPatch {
                capacity: Some(Capacity::new(10).unwrap()),
                status: Some(PlanStatus::Active),
                name: Some(PlanName::parse("Starter").unwrap()),
            })
            .unwrap();
        assert!(changes.is_empty());
        assert_eq!(p.seq, 1);
    }

    #[test]
    fn a_reservation_takes_a_seat_numbers_its_entry_and_records_both_counts() {
        let mut p = plan(2);
        let sub = SubscriptionId::generate();
        let entry = p.move_seats(
            SeatMove::reserve(sub),
            &AuditContext::admin("t"),
            p.created_at,
        );
        assert_eq!((p.seats_left, p.seq), (1, 2));
        assert_eq!(entry.action, AuditAction::SeatReserved);
        assert_eq!((entry.seq, entry.subscription_id), (2, Some(sub)));
        assert_eq!((entry.seats_left_before, entry.seats_left_after), (2, 1));
    }

    #[test]
    fn a_refund_is_numbered_and_moves_no_seat() {
        let mut p = plan(2);
        let sub = SubscriptionId::generate();
        let entry = p.move_seats(
            SeatMove::refund(sub, "pay_1"),
            &AuditContext::admin("t"),
            p.created_at,
        );
        assert_eq!((p.seats_left, p.seq), (2, 2));
        assert_eq!((entry.seats_left_before, entry.seats_left_after), (2, 2));
        assert!(entry.reason.unwrap().contains("pay_1"));
    }

    #[test]
    #[should_panic(expected = "leaves 0..=1")]
    fn taking_a_seat_of_a_sold_out_plan_is_a_bug_that_stops_the_step() {
        let mut p = plan(1);
        let ctx = AuditContext::admin("t");
        p.move_seats(
            SeatMove::reserve(SubscriptionId::generate()),
            &ctx,
            p.created_at,
        );
        p.move_seats(
            SeatMove::reserve(SubscriptionId::generate()),
            &ctx,
            p.created_at,
        );
    }

    #[test]
    #[should_panic(expected = "leaves 0..=1")]
    fn giving_back_a_seat_of_a_plan_with_every_seat_free_is_a_bug_that_stops_the_step() {
        let mut p = plan(1);
        let ctx = AuditContext::admin("t");
        p.move_seats(
            SeatMove::cancel(SubscriptionId::generate()),
            &ctx,
            p.created_at,
        );
    }

    #[test]
    fn a_move_the_database_carried_out_gets_the_entry_move_seats_would_have_made() {
        let ctx = AuditContext::admin("t");
        let sub = SubscriptionId::generate();
        let mut in_memory = plan(3);
        in_memory.move_seats(SeatMove::reserve(sub), &ctx, in_memory.created_at);
        let mut in_database = in_memory.clone();
        let expected = in_memory.move_seats(SeatMove::cancel(sub), &ctx, in_memory.created_at);
        // What an atomic `seats_left + 1, seq + 1` returns.
        in_database.seats_left += 1;
        in_database.seq += 1;
        let entry = SeatMove::cancel(sub).entry_after(&in_database, &ctx, in_database.created_at);
        assert_eq!(
            (
                entry.seq,
                entry.seats_left_before,
                entry.seats_left_after,
                entry.action
            ),
            (
                expected.seq,
                expected.seats_left_before,
                expected.seats_left_after,
                expected.action
            )
        );
    }
}
