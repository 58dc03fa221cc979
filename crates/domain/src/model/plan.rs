use serde::{Deserialize, Serialize};

use super::{
    AuditAction, Capacity, Currency, Interval, PlanId, PlanName, PlanStatus, Timestamp, UnitAmount,
};

/// A plan with a limited number of seats.
///
/// `seats_left` counts the seats nobody holds: `capacity - seats_left` subscriptions are
/// `incomplete` or `active`. `seq` is bumped with every audit entry of the plan, so the
/// plan's audit log is totally ordered on every store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
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

    /// Seats held by `incomplete` or `active` subscriptions.
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

    fn unchanged_seats(&self, action: AuditAction, reason: Option<String>) -> PlanChange {
        PlanChange {
            action,
            seats_left_before: self.seats_left,
            seats_left_after: self.seats_left,
            reason,
        }
    }
}

/// Counts of a plan's subscriptions by status, read in one consistent snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanStats {
    pub plan_id: PlanId,
    pub capacity: u32,
    pub seats_left: u32,
    pub incomplete: u64,
    pub active: u64,
    pub canceled: u64,
    pub incomplete_expired: u64,
    pub sold_out: bool,
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
}
