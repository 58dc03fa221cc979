//! The invariants of `purchase-flow.md` as checks that test suites run after every
//! concurrency test, on every store.

use crate::model::{AuditAction, AuditEntry, Plan, PlanStats};

/// Replays a plan's whole audit log (as [`crate::ports::AuditLog::plan_audit`] returns it,
/// ordered by `seq`) and returns the `seats_left` it arrives at. Fails on a gap in the
/// sequence, an entry whose `seats_left_before` is not the previous `seats_left_after`,
/// or a move that its action does not allow.
pub fn replay_audit(entries: &[AuditEntry]) -> Result<u32, String> {
    let mut seats_left: Option<u32> = None;
    for (i, e) in entries.iter().enumerate() {
        let expected_seq = i as u64 + 1;
        if e.seq != expected_seq {
            return Err(format!(
                "entry {i} has seq {} instead of {expected_seq}",
                e.seq
            ));
        }
        match (seats_left, e.action) {
            (None, AuditAction::PlanCreated) if e.seats_left_before == 0 => {}
            (None, _) => {
                return Err(format!(
                    "the log starts with {:?} (before {}) instead of plan_created from 0",
                    e.action, e.seats_left_before
                ))
            }
            (Some(_), AuditAction::PlanCreated) => {
                return Err(format!("seq {}: a second plan_created", e.seq))
            }
            (Some(prev), _) if prev != e.seats_left_before => {
                return Err(format!(
                    "seq {}: seats_left_before {} but the previous entry left {prev}",
                    e.seq, e.seats_left_before
                ))
            }
            _ => {}
        }
        if let Some(delta) = e.action.fixed_seat_delta() {
            let actual = i64::from(e.seats_left_after) - i64::from(e.seats_left_before);
            if actual != delta {
                return Err(format!(
                    "seq {}: {} moved seats_left by {actual} instead of {delta}",
                    e.seq,
                    e.action.as_str()
                ));
            }
        }
        seats_left = Some(e.seats_left_after);
    }
    seats_left.ok_or_else(|| "the audit log is empty".to_owned())
}

/// Checks one plan against its stats and its whole audit log; returns every violation.
pub fn check_plan(plan: &Plan, stats: &PlanStats, audit: &[AuditEntry]) -> Vec<String> {
    let mut violations = Vec::new();
    // `seats_left <= capacity` needs no check: a `Plan` cannot be made without it.
    let capacity = u64::from(plan.capacity().get());
    if stats.seats_left != plan.seats_left() || u64::from(stats.capacity) != capacity {
        violations.push(format!(
            "stats ({} of {}) disagree with the plan ({} of {capacity})",
            stats.seats_left,
            stats.capacity,
            plan.seats_left()
        ));
    }
    let taken = stats.held + stats.incomplete + stats.active;
    if capacity != u64::from(stats.seats_left) + taken {
        violations.push(format!(
            "capacity {capacity} != seats_left {} + held {} + incomplete {} + active {}",
            stats.seats_left, stats.held, stats.incomplete, stats.active
        ));
    }
    match replay_audit(audit) {
        Ok(replayed) if replayed != plan.seats_left() => violations.push(format!(
            "the audit log replays to {replayed} seats left, the plan has {}",
            plan.seats_left()
        )),
        Ok(_) => {}
        Err(e) => violations.push(format!("audit replay: {e}")),
    }
    if audit.last().map(|e| e.seq) != Some(plan.seq()) {
        violations.push(format!(
            "the plan's seq is {} but its last audit entry is {:?}",
            plan.seq(),
            audit.last().map(|e| e.seq)
        ));
    }
    violations
}

/// Reads a plan, its stats and its whole audit log from `store` and checks them with
/// [`check_plan`]. Meant for quiet moments (after a concurrency test), since the three
/// reads are separate.
pub async fn check_store_plan(
    store: &dyn crate::ports::Store,
    plan_id: crate::model::PlanId,
) -> Vec<String> {
    let plan = match store.get_plan(plan_id).await {
        Ok(Some(plan)) => plan,
        Ok(None) => return vec![format!("plan {plan_id} does not exist")],
        Err(e) => return vec![format!("reading plan {plan_id}: {e}")],
    };
    let stats = match store.plan_stats(plan_id).await {
        Ok(Some(stats)) => stats,
        Ok(None) => return vec![format!("plan {plan_id} has no stats")],
        Err(e) => return vec![format!("reading stats of {plan_id}: {e}")],
    };
    let mut audit = Vec::new();
    loop {
        let after = audit.last().map(|e: &AuditEntry| e.seq);
        match store.plan_audit(plan_id, after, 1000).await {
            Ok(Some(page)) if page.is_empty() => break,
            Ok(Some(page)) => audit.extend(page),
            Ok(None) => return vec![format!("plan {plan_id} has no audit log")],
            Err(e) => return vec![format!("reading the audit log of {plan_id}: {e}")],
        }
    }
    check_plan(&plan, &stats, &audit)
}
