//! A store reads entities back through `Subscription::restore` and
//! `IdempotencyRecord::restore`: whatever the domain's transitions make comes back
//! unchanged, and a stored form no transition could make is refused as corrupt data,
//! naming what is wrong.

use std::time::Duration;

use seatkeeper_domain::{
    Capacity, ClaimKey, Currency, CustomerId, Fingerprint, IdempotencyKey, IdempotencyRecord,
    Interval, KeyState, LockToken, NewPlan, PaymentMethod, Plan, PlanName, PurchaseOutcome,
    RecoveryPoint, StoredIdempotencyRecord, StoredSubscription, Subscription, SubscriptionId,
    Timestamp, UnitAmount,
};

fn at(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn plan() -> Plan {
    Plan::create(
        NewPlan {
            name: PlanName::parse("Starter").unwrap(),
            capacity: Capacity::new(10).unwrap(),
            unit_amount: UnitAmount::new(1000).unwrap(),
            currency: Currency::parse("usd").unwrap(),
            interval: Interval::Month,
        },
        at("2026-01-01T00:00:00Z"),
    )
}

fn reserved(customer: &str) -> Subscription {
    Subscription::reserve(
        SubscriptionId::generate(),
        &plan(),
        CustomerId::parse(customer).unwrap(),
        PaymentMethod::parse("pm_card_visa").unwrap(),
        Some(IdempotencyKey::parse("k1").unwrap()),
        at("2026-01-02T00:00:00Z"),
    )
}

/// One subscription in each status, each reached through the domain's transitions.
fn in_every_status() -> Vec<Subscription> {
    let incomplete = reserved("cus_1");
    let mut active = reserved("cus_1");
    active.activate("pi_1".into(), at("2026-01-02T00:00:01Z"));
    let mut expired = reserved("cus_1");
    expired.expire("card_declined".into(), at("2026-01-02T00:00:01Z"));
    let mut canceled = active.clone();
    canceled.cancel(at("2026-01-03T00:00:00Z"));
    vec![incomplete, active, expired, canceled]
}

fn refusal(stored: StoredSubscription) -> String {
    Subscription::restore(stored)
        .expect_err("no transition makes this")
        .to_string()
}

#[test]
fn a_subscription_in_every_status_restores_to_itself() {
    for s in in_every_status() {
        let back = Subscription::restore(StoredSubscription::from(&s)).unwrap();
        assert_eq!(back, s, "{}", s.status().as_str());
    }
}

#[test]
fn a_stored_subscription_no_transition_could_make_is_refused_naming_what_is_wrong() {
    let [incomplete, active, expired, canceled] = <[Subscription; 4]>::try_from(in_every_status())
        .unwrap()
        .map(StoredSubscription::from);
    let cases: Vec<(StoredSubscription, &str)> = vec![
        (
            StoredSubscription {
                payment_id: Some("pi_9".into()),
                ..incomplete.clone()
            },
            "a subscription in status `incomplete` with a payment_id",
        ),
        (
            StoredSubscription {
                payment_id: None,
                ..active.clone()
            },
            "a subscription in status `active` without a payment_id",
        ),
        (
            StoredSubscription {
                failure_reason: Some("late".into()),
                ..active.clone()
            },
            "a subscription in status `active` with a failure_reason",
        ),
        (
            StoredSubscription {
                failure_reason: None,
                ..expired.clone()
            },
            "a subscription in status `incomplete_expired` without a failure_reason",
        ),
        (
            StoredSubscription {
                canceled_at: None,
                ..canceled.clone()
            },
            "a subscription in status `canceled` without canceled_at",
        ),
        (
            StoredSubscription {
                current_period_end: None,
                ..active.clone()
            },
            "a subscription's period has both ends",
        ),
        (
            StoredSubscription {
                current_period_start: active.current_period_end,
                current_period_end: active.current_period_start,
                ..active.clone()
            },
            "a subscription's period has both ends",
        ),
    ];
    for (stored, why) in cases {
        let refused = refusal(stored);
        assert!(refused.contains(why), "{refused:?} should say {why:?}");
    }
}

fn claim(customer: &str) -> ClaimKey {
    ClaimKey {
        scope: CustomerId::parse(customer).unwrap(),
        key: IdempotencyKey::parse("k1").unwrap(),
        fingerprint: Fingerprint::from_stored("f".repeat(64)),
        owner: LockToken::generate(),
        now: at("2026-01-02T00:00:00Z"),
        lease: Duration::from_secs(30),
        retention: Duration::from_secs(86_400),
    }
}

/// A key's record after its purchase reserved `sub` and finished with it.
fn finished_with(sub: &Subscription) -> IdempotencyRecord {
    let mut record = claim("cus_1").fresh_record();
    record.record_reservation(sub.id());
    record.finish(
        PurchaseOutcome::Created {
            subscription: sub.clone(),
        },
        "req-1".into(),
        at("2026-01-02T00:00:01Z"),
    );
    record
}

#[test]
fn a_key_record_at_every_step_restores_to_itself() {
    let fresh = claim("cus_1").fresh_record();
    let mut reserved_record = fresh.clone();
    reserved_record.record_reservation(SubscriptionId::generate());
    let finished = finished_with(&in_every_status()[1]);
    for r in [fresh, reserved_record, finished] {
        let back = IdempotencyRecord::restore(StoredIdempotencyRecord::from(r.clone())).unwrap();
        assert_eq!(back, r);
    }
}

#[test]
fn a_key_record_that_expires_before_it_was_made_is_refused() {
    let stored = StoredIdempotencyRecord {
        expires_at: at("2026-01-01T00:00:00Z"),
        ..StoredIdempotencyRecord::from(claim("cus_1").fresh_record())
    };
    let refused = IdempotencyRecord::restore(stored).unwrap_err().to_string();
    assert!(refused.contains("expires before it was made"), "{refused}");
}

#[test]
fn a_finished_key_whose_subscription_is_another_customers_is_refused() {
    let theirs = reserved("cus_2");
    let stored = StoredIdempotencyRecord {
        state: KeyState::Finished {
            outcome: Box::new(PurchaseOutcome::Created {
                subscription: theirs.clone(),
            }),
            request_id: "req-1".into(),
            finished_at: at("2026-01-02T00:00:01Z"),
        },
        recovery: RecoveryPoint::Reserved {
            subscription_id: theirs.id(),
        },
        ..StoredIdempotencyRecord::from(claim("cus_1").fresh_record())
    };
    let refused = IdempotencyRecord::restore(stored).unwrap_err().to_string();
    assert!(refused.contains("another customer's"), "{refused}");
}

#[test]
fn a_finished_key_whose_subscription_is_not_the_one_it_reserved_is_refused() {
    let ours = in_every_status().remove(1);
    for recovery in [
        RecoveryPoint::Started,
        RecoveryPoint::Reserved {
            subscription_id: SubscriptionId::generate(),
        },
    ] {
        let stored = StoredIdempotencyRecord {
            recovery,
            ..StoredIdempotencyRecord::from(finished_with(&ours))
        };
        let refused = IdempotencyRecord::restore(stored).unwrap_err().to_string();
        assert!(
            refused.contains("not the one the key reserved"),
            "{refused}"
        );
    }
}
