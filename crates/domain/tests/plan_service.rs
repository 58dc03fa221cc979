//! `PlanService::check_audit` on the in-memory store: the audit log, read through the
//! audit port page by page and replayed by the domain's rule, arrives at the plan's
//! seats after purchases, a declined charge and a capacity change; an unknown plan is
//! not found.

mod common;

use std::sync::Arc;

use common::{cmd, world};
use seatkeeper_domain::{service::PlanQueryError, AuditContext, Capacity, PlanId, PlanPatch};
use seatkeeper_payments::SimulatedGateway;

#[tokio::test]
async fn the_audit_check_replays_the_log_to_the_plans_seats_left() {
    let w = world(Arc::new(SimulatedGateway::new()));
    let plan = w.plan(5).await;
    let fresh = w.plans.check_audit(plan.id()).await.unwrap();
    assert_eq!(
        (fresh.entries, fresh.replayed_seats_left, fresh.seats_left),
        (1, Some(5), 5)
    );
    assert!(fresh.consistent(), "{fresh:?}");

    for (i, pm) in ["pm_card_visa", "pm_card_visa", "pm_card_chargeDeclined"]
        .into_iter()
        .enumerate()
    {
        let _ = w
            .purchases
            .purchase(&cmd(plan.id(), &format!("cus_{i}"), &format!("k{i}"), pm))
            .await;
    }
    w.plans
        .update(
            plan.id(),
            &PlanPatch {
                capacity: Some(Capacity::new(8).unwrap()),
                ..Default::default()
            },
            &AuditContext::admin("test"),
        )
        .await
        .unwrap();

    let check = w.plans.check_audit(plan.id()).await.unwrap();
    let seats_left = w.seats_left(plan.id()).await;
    assert_eq!(seats_left, 6, "8 seats, 2 sold");
    assert_eq!(check.seats_left, seats_left);
    assert_eq!(check.replayed_seats_left, Some(seats_left));
    assert_eq!(check.error, None);
    assert!(check.consistent());
    let plan_now = w.plans.get(plan.id()).await.unwrap();
    assert_eq!(check.seq, plan_now.seq());
    assert_eq!(
        check.entries,
        plan_now.seq(),
        "every entry up to the plan's seq"
    );
    assert!(check.entries > 5, "created, 3 purchases, a capacity change");
}

#[tokio::test]
async fn the_audit_check_of_an_unknown_plan_is_not_found() {
    let w = world(Arc::new(SimulatedGateway::new()));
    let id = PlanId::generate();
    match w.plans.check_audit(id).await {
        Err(PlanQueryError::NotFound(missing)) => assert_eq!(missing, id),
        other => panic!("expected not found, got {other:?}"),
    }
}
