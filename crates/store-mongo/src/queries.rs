//! Every filter, update and pipeline the store sends, built by pure functions so that the
//! exact documents are unit-tested without a server (`tests` below).
//!
//! The guards are the point: each write outside a batch names the state it expects
//! (`status: "active"`, `seats_left > 0`, the key's lock owner), so a write can never apply
//! to a document that moved on; a batch writes what its transaction read by `_id` (its
//! snapshot is the guard) and the plans as read. Inside a transaction a concurrent change to the same
//! document is a WriteConflict (retried by the driver) rather than a silent mismatch, and
//! a guard that matches nothing is either a business outcome (the seat decrement, releasing
//! a key) or a broken invariant that aborts the transaction.

use std::collections::BTreeSet;

use mongodb::bson::{doc, Bson, Document};
use seatkeeper_domain::{
    CustomerId, IdempotencyKey, LockToken, Plan, PlanId, PurchaseOutcome, Subscription,
    SubscriptionId, SubscriptionStatus, Timestamp,
};

use crate::documents::{date, to_document, uuid, Corrupt, CountsDoc, KeyId, OutcomeDoc};

/// The collections.
pub const PLANS: &str = "plans";
pub const SUBSCRIPTIONS: &str = "subscriptions";
pub const AUDIT_ENTRIES: &str = "audit_entries";
pub const IDEMPOTENCY_KEYS: &str = "idempotency_keys";
pub const API_KEYS: &str = "api_keys";
pub const CHECKOUT_SESSIONS: &str = "checkout_sessions";
pub const WEBHOOK_EVENTS: &str = "webhook_events";

/// Every collection, created at start-up (outside any transaction).
pub const COLLECTIONS: &[&str] = &[
    PLANS,
    SUBSCRIPTIONS,
    AUDIT_ENTRIES,
    IDEMPOTENCY_KEYS,
    API_KEYS,
    CHECKOUT_SESSIONS,
    WEBHOOK_EVENTS,
];

// ----- plans -----

/// One plan.
pub fn plan_by_id(id: PlanId) -> Document {
    doc! { "_id": uuid(id.as_uuid()) }
}

/// The guard of one purchase's seat decrement: the plan sells and has a seat left. The
/// store moves plans a batch at a time ([`move_plan`]); this and [`take_seat`] are the
/// minimal purchase transaction `seatkeeper-mongobench` measures as MongoDB's ceiling.
pub fn seat_guard(id: PlanId) -> Document {
    doc! { "_id": uuid(id.as_uuid()), "status": "active", "seats_left": { "$gt": 0_i64 } }
}

/// Takes one seat and numbers the `seat_reserved` entry that goes with it.
pub fn take_seat() -> Document {
    move_seats(-1)
}

/// A purchase batch's first write to the plans it will move: the batch's id in `batch`
/// (a field no reader uses). A real change, so that it takes the documents for the
/// transaction: a concurrent batch conflicts at once.
pub fn mark_batch(batch: uuid::Uuid) -> Document {
    doc! { "$set": { "batch": uuid(batch) } }
}

/// A purchase batch's moves of one plan: `seats_left` by `delta` (net: seats taken and
/// given back), `seq` by `entries`, the audit entries that record them, and the counts of
/// its subscriptions by status by `counts`.
pub fn move_plan(delta: i64, entries: u64, counts: &CountsDoc) -> Document {
    let mut inc = doc! { "seats_left": delta, "seq": seq_value(entries) };
    inc.extend(counts.increments());
    doc! { "$inc": inc }
}

/// [`move_seats`] and the counts of the plan's subscriptions by status by `counts` (a
/// cancellation's move; a refund's changes no count).
pub fn move_seats_counting(delta: i64, counts: &CountsDoc) -> Document {
    move_plan(delta, 1, counts)
}

/// Moves `seats_left` by `delta` (+1: a seat given back; 0: no move) and bumps `seq` for
/// the one audit entry that records it.
pub fn move_seats(delta: i64) -> Document {
    doc! { "$inc": { "seats_left": delta, "seq": 1_i64 } }
}

/// The plan as it was read in this transaction (its `seq` unchanged since).
pub fn plan_at_seq(id: PlanId, seq: u64) -> Document {
    doc! { "_id": uuid(id.as_uuid()), "seq": seq_value(seq) }
}

/// The plan with the seats and `seq` it had when this transaction read it.
pub fn plan_as_read(plan: &Plan) -> Document {
    doc! {
        "_id": uuid(plan.id().as_uuid()),
        "seats_left": i64::from(plan.seats_left()),
        "seq": seq_value(plan.seq()),
    }
}

/// Writes what [`Plan::apply`] changed: name, capacity, seats, status, and `seq` bumped
/// once per audit entry.
pub fn patch_plan(plan: &Plan) -> Document {
    doc! { "$set": {
        "name": plan.name().as_str(),
        "capacity": i64::from(plan.capacity().get()),
        "seats_left": i64::from(plan.seats_left()),
        "status": plan.status().as_str(),
        "seq": seq_value(plan.seq()),
    } }
}

/// One page of plans in id order: the filter (after the cursor) and the sort.
pub fn plans_page(after: Option<PlanId>) -> (Document, Document) {
    let filter = match after {
        Some(a) => doc! { "_id": { "$gt": uuid(a.as_uuid()) } },
        None => doc! {},
    };
    (filter, doc! { "_id": 1 })
}

// ----- subscriptions -----

/// One subscription.
pub fn subscription_by_id(id: SubscriptionId) -> Document {
    doc! { "_id": uuid(id.as_uuid()) }
}

/// The subscription, only while it still has `status`.
pub fn subscription_in(id: SubscriptionId, status: SubscriptionStatus) -> Document {
    doc! { "_id": uuid(id.as_uuid()), "status": status.as_str() }
}

/// Writes a status change made by [`Subscription::activate`], `expire` or `cancel`: every
/// field those may touch (the others never change after the reservation).
pub fn change_subscription(sub: &Subscription) -> Document {
    doc! { "$set": subscription_changes(sub) }
}

fn subscription_changes(sub: &Subscription) -> Document {
    doc! {
        "status": sub.status().as_str(),
        "payment_id": opt_str(sub.payment_id()),
        "current_period_start": opt_date(sub.current_period_start()),
        "current_period_end": opt_date(sub.current_period_end()),
        "updated_at": date(sub.updated_at()),
        "canceled_at": opt_date(sub.canceled_at()),
        "failure_reason": opt_str(sub.failure_reason()),
    }
}

/// A completion: the status change, and the recovery task replaced — any lease ends, and
/// `verify_after` (a decline by the reconciler) schedules the late-charge check.
pub fn complete_subscription(sub: &Subscription, verify_after: Option<Timestamp>) -> Document {
    let mut set = subscription_changes(sub);
    match verify_after {
        Some(at) => {
            set.insert(
                RECOVERY_TASK,
                doc! { "phase": "verify", "owner": Bson::Null, "until": Bson::Null, "verify_after": date(at) },
            );
            doc! { "$set": set }
        }
        None => doc! { "$set": set, "$unset": { RECOVERY_TASK: "" } },
    }
}

/// One page of a customer's subscriptions in id order: filter and sort (index
/// `(customer_id, _id)`).
pub fn customer_page(customer: &CustomerId, after: Option<SubscriptionId>) -> (Document, Document) {
    let mut filter = doc! { "customer_id": customer.as_str() };
    if let Some(a) = after {
        filter.insert("_id", doc! { "$gt": uuid(a.as_uuid()) });
    }
    (filter, doc! { "_id": 1 })
}

/// Every plan's subscriptions counted by status (one scan, for the start-up upgrade of
/// plans stored without their counts), giving documents
/// `{ _id: { plan_id, status }, n: <count> }`.
pub fn count_by_plan_and_status() -> Vec<Document> {
    vec![doc! { "$group": {
        "_id": { "plan_id": "$plan_id", "status": "$status" },
        "n": { "$sum": 1_i64 },
    } }]
}

// ----- recovery tasks -----
//
// A subscription's recovery task lives on its document, in `recovery_task`: `{ phase:
// "complete" | "verify", owner, until, verify_after }`, absent when there is none. The
// field is absent (never `null`) so that a lease can be set with dotted paths; it is not
// part of the domain's `Subscription` and is ignored when one is read. `refund_recorded`
// marks the subscription whose `payment_refunded` entry was written.

/// The subscription field holding its recovery task.
pub const RECOVERY_TASK: &str = "recovery_task";

/// A lease that is not live at `now`: none, released, or run out.
fn lease_free(now: Timestamp) -> Document {
    doc! { "$not": { "$gt": date(now) } }
}

/// `incomplete` subscriptions unchanged since `stale_before` whose task is not leased at
/// `now`, oldest first (index `updated_at`, partial on `status: "incomplete"`).
pub fn stale_incomplete(stale_before: Timestamp, now: Timestamp) -> (Document, Document) {
    (
        doc! {
            "status": "incomplete",
            "updated_at": { "$lte": date(stale_before) },
            "recovery_task.until": lease_free(now),
        },
        doc! { "updated_at": 1 },
    )
}

/// The same subscription, only while it still is such a candidate (the lease's guard).
pub fn stale_incomplete_one(
    id: SubscriptionId,
    stale_before: Timestamp,
    now: Timestamp,
) -> Document {
    let mut filter = stale_incomplete(stale_before, now).0;
    filter.insert("_id", uuid(id.as_uuid()));
    filter
}

/// Late-charge checks due at `now` and not leased, earliest first (index
/// `(recovery_task.phase, recovery_task.verify_after)`).
pub fn due_verifications(now: Timestamp) -> (Document, Document) {
    (
        doc! {
            "recovery_task.phase": "verify",
            "recovery_task.verify_after": { "$lte": date(now) },
            "recovery_task.until": lease_free(now),
        },
        doc! { "recovery_task.verify_after": 1 },
    )
}

/// The same subscription, only while its check is still due and free.
pub fn due_verification_one(id: SubscriptionId, now: Timestamp) -> Document {
    let mut filter = due_verifications(now).0;
    filter.insert("_id", uuid(id.as_uuid()));
    filter
}

/// Leases a `complete` task (replacing whatever free task was there).
pub fn lease_completion(owner: LockToken, until: Timestamp) -> Document {
    doc! { "$set": { RECOVERY_TASK: {
        "phase": "complete", "owner": uuid(owner.as_uuid()), "until": date(until), "verify_after": Bson::Null,
    } } }
}

/// Leases a due `verify` task, keeping its phase and time.
pub fn lease_verification(owner: LockToken, until: Timestamp) -> Document {
    doc! { "$set": { "recovery_task.owner": uuid(owner.as_uuid()), "recovery_task.until": date(until) } }
}

/// The subscription, only while `owner` holds its task's lease (in `phase`, if given).
pub fn task_held(id: SubscriptionId, owner: LockToken, phase: Option<&str>) -> Document {
    let mut filter =
        doc! { "_id": uuid(id.as_uuid()), "recovery_task.owner": uuid(owner.as_uuid()) };
    if let Some(phase) = phase {
        filter.insert("recovery_task.phase", phase);
    }
    filter
}

/// Ends a lease; the task stays, free for the next run.
pub fn free_task() -> Document {
    doc! { "$set": { "recovery_task.owner": Bson::Null, "recovery_task.until": Bson::Null } }
}

/// Removes the task.
pub fn end_task() -> Document {
    doc! { "$unset": { RECOVERY_TASK: "" } }
}

/// The subscription, only while its refund has not been recorded.
pub fn refund_not_recorded(id: SubscriptionId) -> Document {
    doc! { "_id": uuid(id.as_uuid()), "refund_recorded": { "$ne": true } }
}

/// Marks the refund as recorded (at most one `payment_refunded` entry).
pub fn record_refund() -> Document {
    doc! { "$set": { "refund_recorded": true } }
}

/// Every scheduled late-charge check, for the backlog.
pub fn pending_verifications() -> Document {
    doc! { "recovery_task.phase": "verify" }
}

/// `incomplete` subscriptions unchanged since `stale_before`, leased or not, for the
/// backlog.
pub fn stale_incomplete_all(stale_before: Timestamp) -> Document {
    doc! { "status": "incomplete", "updated_at": { "$lte": date(stale_before) } }
}

// ----- audit entries -----

/// One page of a plan's audit log in `seq` order: filter and sort (unique index
/// `(plan_id, seq)`).
pub fn audit_page(plan: PlanId, after_seq: Option<u64>) -> (Document, Document) {
    (
        doc! { "plan_id": uuid(plan.as_uuid()), "seq": { "$gt": seq_value(after_seq.unwrap_or(0)) } },
        doc! { "seq": 1 },
    )
}

// ----- idempotency keys -----

/// The record of `(scope, key)`: by `_id` alone, the server's fastest path. A batch writes
/// the records it read this way; the transaction's snapshot makes a change committed
/// since its read a write conflict, so no guard on the record's state is needed.
pub fn key(scope: &CustomerId, key: &IdempotencyKey) -> Document {
    doc! { "_id": KeyId::of(scope, key).bson() }
}

/// The records of the `(scope, key)` pairs of `pairs`: exact `_id` lookups, one point of
/// the `_id` index each.
pub fn keys_of<'a>(
    pairs: impl IntoIterator<Item = (&'a CustomerId, &'a IdempotencyKey)>,
) -> Document {
    let ids: BTreeSet<(&str, &str)> = pairs
        .into_iter()
        .map(|(scope, key)| (scope.as_str(), key.as_str()))
        .collect();
    let ids: Vec<Bson> = ids
        .into_iter()
        .map(|(scope, key)| doc! { "scope": scope, "key": key }.into())
        .collect();
    doc! { "_id": { "$in": ids } }
}

/// The record, only while it is open and `owner` holds its lock (a release, outside any
/// transaction).
pub fn key_held(scope: &CustomerId, k: &IdempotencyKey, owner: LockToken) -> Document {
    let mut filter = key(scope, k);
    filter.insert("state", "open");
    filter.insert("lock.owner", uuid(owner.as_uuid()));
    filter
}

/// Sets the recovery point to "a seat is reserved for `subscription`".
pub fn record_reservation(subscription: SubscriptionId) -> Document {
    doc! { "$set": { "recovery": {
        "phase": "reserved",
        "subscription_id": uuid(subscription.as_uuid()),
    } } }
}

/// Finishes the record with a definitive outcome (and drops its lock).
pub fn finish_key(
    outcome: &PurchaseOutcome,
    request_id: &str,
    now: Timestamp,
) -> Result<Document, Corrupt> {
    let outcome = to_document(&OutcomeDoc::from(outcome))?;
    Ok(doc! { "$set": {
        "state": "finished",
        "lock": Bson::Null,
        "outcome": outcome,
        "request_id": request_id,
        "finished_at": date(now),
    } })
}

/// Lets go of the lock; the record stays open with its recovery point.
pub fn release_lock() -> Document {
    doc! { "$set": { "lock": Bson::Null } }
}

/// Records whose retention ended at or before `now` (the TTL index's field).
pub fn expired_keys(now: Timestamp) -> Document {
    doc! { "expires_at": { "$lte": date(now) } }
}

// ----- helpers -----

fn seq_value(seq: u64) -> i64 {
    i64::try_from(seq).unwrap_or(i64::MAX)
}

fn opt_str(s: Option<&str>) -> Bson {
    s.map_or(Bson::Null, |s| Bson::String(s.to_owned()))
}

fn opt_date(t: Option<Timestamp>) -> Bson {
    t.map_or(Bson::Null, |t| Bson::DateTime(date(t)))
}

#[cfg(test)]
mod tests {
    //! The exact documents each operation sends: a wrong field name or a missing guard
    //! here is a lost seat or a double reservation on a live server.

    use mongodb::bson::{spec::BinarySubtype, Binary};
    use seatkeeper_domain::{
        Capacity, Currency, Interval, NewPlan, PaymentMethod, PlanName, PlanStatus, UnitAmount,
    };
    use seatkeeper_store_contract::support::altered;

    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn binary(u: uuid::Uuid) -> Bson {
        Bson::Binary(Binary {
            subtype: BinarySubtype::Uuid,
            bytes: u.as_bytes().to_vec(),
        })
    }

    fn plan() -> Plan {
        let p = Plan::create(
            NewPlan {
                name: PlanName::parse("Team").unwrap(),
                capacity: Capacity::new(10).unwrap(),
                unit_amount: UnitAmount::new(4900).unwrap(),
                currency: Currency::parse("eur").unwrap(),
                interval: Interval::Year,
            },
            ts("2026-03-01T10:00:00.123Z"),
        );
        altered(&p, |p| {
            p.seats_left = 7;
            p.seq = 12;
        })
    }

    fn subscription(plan: &Plan) -> Subscription {
        Subscription::reserve(
            SubscriptionId::generate(),
            plan,
            CustomerId::parse("cus_1").unwrap(),
            PaymentMethod::parse("pm_card_visa").unwrap(),
            Some(IdempotencyKey::parse("order-1").unwrap()),
            ts("2026-03-02T10:00:00.5Z"),
        )
    }

    #[test]
    fn one_purchases_seat_decrement_is_guarded_by_id_active_status_and_a_seat_left() {
        let id = PlanId::generate();
        assert_eq!(
            seat_guard(id),
            doc! { "_id": binary(id.as_uuid()), "status": "active", "seats_left": { "$gt": 0_i64 } }
        );
        assert_eq!(
            take_seat(),
            doc! { "$inc": { "seats_left": -1_i64, "seq": 1_i64 } }
        );
    }

    #[test]
    fn a_batchs_plan_update_is_guarded_by_the_seq_it_read_and_moves_seats_and_seq_together() {
        let id = PlanId::generate();
        assert_eq!(
            plan_at_seq(id, 12),
            doc! { "_id": binary(id.as_uuid()), "seq": 12_i64 }
        );
        assert_eq!(
            move_plan(-5, 7, &CountsDoc::default()),
            doc! { "$inc": { "seats_left": -5_i64, "seq": 7_i64 } }
        );
        let mut counts = CountsDoc::default();
        counts.add(SubscriptionStatus::Incomplete, 4);
        counts.moved(SubscriptionStatus::Incomplete, SubscriptionStatus::Active);
        assert_eq!(
            move_plan(-4, 5, &counts),
            doc! { "$inc": {
                "seats_left": -4_i64, "seq": 5_i64,
                "counts.incomplete": 3_i64, "counts.active": 1_i64,
            } }
        );
        let mut cancel = CountsDoc::default();
        cancel.moved(SubscriptionStatus::Active, SubscriptionStatus::Canceled);
        assert_eq!(
            move_seats_counting(1, &cancel),
            doc! { "$inc": {
                "seats_left": 1_i64, "seq": 1_i64,
                "counts.active": -1_i64, "counts.canceled": 1_i64,
            } }
        );
    }

    #[test]
    fn giving_a_seat_back_or_recording_an_activation_bumps_seq_once() {
        assert_eq!(
            move_seats(1),
            doc! { "$inc": { "seats_left": 1_i64, "seq": 1_i64 } }
        );
        assert_eq!(
            move_seats(0),
            doc! { "$inc": { "seats_left": 0_i64, "seq": 1_i64 } }
        );
    }

    #[test]
    fn a_plan_patch_writes_every_field_apply_may_change_guarded_by_the_seq_read() {
        let p = plan();
        assert_eq!(
            plan_at_seq(p.id(), 9),
            doc! { "_id": binary(p.id().as_uuid()), "seq": 9_i64 }
        );
        assert_eq!(
            patch_plan(&p),
            doc! { "$set": {
                "name": "Team", "capacity": 10_i64, "seats_left": 7_i64,
                "status": "active", "seq": 12_i64,
            } }
        );
        let archived = altered(&p, |p| p.status = PlanStatus::Archived);
        assert_eq!(
            patch_plan(&archived)
                .get_document("$set")
                .unwrap()
                .get_str("status"),
            Ok("archived")
        );
    }

    #[test]
    fn pages_of_plans_start_after_the_cursor_in_id_order() {
        assert_eq!(plans_page(None), (doc! {}, doc! { "_id": 1 }));
        let a = PlanId::generate();
        assert_eq!(
            plans_page(Some(a)),
            (
                doc! { "_id": { "$gt": binary(a.as_uuid()) } },
                doc! { "_id": 1 }
            )
        );
    }

    #[test]
    fn a_customers_page_filters_by_customer_then_id_matching_the_index() {
        let c = CustomerId::parse("cus_9").unwrap();
        assert_eq!(
            customer_page(&c, None),
            (doc! { "customer_id": "cus_9" }, doc! { "_id": 1 })
        );
        let after = SubscriptionId::generate();
        assert_eq!(
            customer_page(&c, Some(after)).0,
            doc! { "customer_id": "cus_9", "_id": { "$gt": binary(after.as_uuid()) } }
        );
    }

    #[test]
    fn the_audit_log_pages_by_plan_and_seq_from_the_start_when_there_is_no_cursor() {
        let p = PlanId::generate();
        assert_eq!(
            audit_page(p, None),
            (
                doc! { "plan_id": binary(p.as_uuid()), "seq": { "$gt": 0_i64 } },
                doc! { "seq": 1 }
            )
        );
        assert_eq!(
            audit_page(p, Some(40)).0.get_document("seq").unwrap(),
            &doc! { "$gt": 40_i64 }
        );
    }

    #[test]
    fn the_upgrade_counts_every_plans_subscriptions_by_status_in_one_group() {
        assert_eq!(
            count_by_plan_and_status(),
            vec![doc! { "$group": {
                "_id": { "plan_id": "$plan_id", "status": "$status" },
                "n": { "$sum": 1_i64 },
            } }]
        );
    }

    #[test]
    fn a_completion_is_guarded_by_the_status_and_sets_every_field_a_transition_touches() {
        let p = plan();
        let mut sub = subscription(&p);
        assert_eq!(
            subscription_in(sub.id(), SubscriptionStatus::Incomplete),
            doc! { "_id": binary(sub.id().as_uuid()), "status": "incomplete" }
        );
        sub.activate("pi_1".into(), ts("2026-03-02T10:00:01Z"));
        assert_eq!(
            change_subscription(&sub),
            doc! { "$set": {
                "status": "active",
                "payment_id": "pi_1",
                "current_period_start": date(ts("2026-03-02T10:00:01Z")),
                "current_period_end": date(ts("2027-03-02T10:00:01Z")),
                "updated_at": date(ts("2026-03-02T10:00:01Z")),
                "canceled_at": Bson::Null,
                "failure_reason": Bson::Null,
            } }
        );
        let mut declined = subscription(&p);
        declined.expire("card_declined".into(), ts("2026-03-02T10:00:02Z"));
        let set = change_subscription(&declined);
        let set = set.get_document("$set").unwrap();
        assert_eq!(set.get_str("status"), Ok("incomplete_expired"));
        assert_eq!(set.get_str("failure_reason"), Ok("card_declined"));
        assert_eq!(set.get("payment_id"), Some(&Bson::Null));
    }

    #[test]
    fn a_record_is_found_by_its_scope_and_key_as_its_id() {
        let a = CustomerId::parse("cus_a").unwrap();
        let b = CustomerId::parse("cus_b").unwrap();
        let k1 = IdempotencyKey::parse("k-1").unwrap();
        let k2 = IdempotencyKey::parse("k-2").unwrap();
        assert_eq!(
            key(&a, &k1),
            doc! { "_id": { "scope": "cus_a", "key": "k-1" } }
        );
        assert_eq!(
            keys_of([(&b, &k1), (&a, &k2), (&b, &k1)]),
            doc! { "_id": { "$in": [
                { "scope": "cus_a", "key": "k-2" },
                { "scope": "cus_b", "key": "k-1" },
            ] } }
        );
    }

    #[test]
    fn a_reservation_records_its_subscription_as_the_recovery_point() {
        let sub = SubscriptionId::generate();
        assert_eq!(
            record_reservation(sub),
            doc! { "$set": { "recovery": { "phase": "reserved", "subscription_id": binary(sub.as_uuid()) } } }
        );
    }

    #[test]
    fn releasing_a_key_matches_only_its_current_owner_and_keeps_the_record_open() {
        let c = CustomerId::parse("cus_1").unwrap();
        let k = IdempotencyKey::parse("k").unwrap();
        let owner = LockToken::generate();
        assert_eq!(
            key_held(&c, &k, owner),
            doc! {
                "_id": { "scope": "cus_1", "key": "k" },
                "state": "open",
                "lock.owner": binary(owner.as_uuid()),
            }
        );
        assert_eq!(release_lock(), doc! { "$set": { "lock": Bson::Null } });
    }

    #[test]
    fn finishing_a_key_stores_the_outcome_and_request_and_drops_the_lock() {
        let plan_id = PlanId::generate();
        let now = ts("2026-03-02T10:00:00.250Z");
        let update = finish_key(&PurchaseOutcome::SoldOut { plan_id }, "req-7", now).unwrap();
        assert_eq!(
            update,
            doc! { "$set": {
                "state": "finished",
                "lock": Bson::Null,
                "outcome": { "kind": "sold_out", "plan_id": binary(plan_id.as_uuid()), "subscription": Bson::Null, "reason": Bson::Null },
                "request_id": "req-7",
                "finished_at": date(now),
            } }
        );
    }

    #[test]
    fn the_sweep_deletes_records_expired_at_or_before_now_on_the_ttl_field() {
        let now = ts("2026-03-02T10:00:00Z");
        assert_eq!(
            expired_keys(now),
            doc! { "expires_at": { "$lte": Bson::DateTime(date(now)) } }
        );
    }

    #[test]
    fn dates_in_documents_are_bson_dates_to_the_millisecond() {
        let d = date(ts("2026-03-02T10:00:00.123456Z"));
        assert_eq!(d.timestamp_millis(), 1_772_445_600_123);
    }
    #[test]
    fn a_completion_ends_any_recovery_lease_or_schedules_the_late_charge_check() {
        let p = plan();
        let mut sub = subscription(&p);
        sub.activate("pi_1".into(), ts("2026-03-02T10:00:01Z"));
        let charged = complete_subscription(&sub, None);
        assert_eq!(
            charged.get_document("$unset").unwrap(),
            &doc! { "recovery_task": "" }
        );
        assert_eq!(
            charged.get_document("$set").unwrap(),
            change_subscription(&sub).get_document("$set").unwrap()
        );
        let mut declined = subscription(&p);
        declined.expire("never charged".into(), ts("2026-03-02T10:05:00Z"));
        let at = ts("2026-03-02T11:05:00Z");
        let update = complete_subscription(&declined, Some(at));
        assert!(update.get("$unset").is_none());
        assert_eq!(
            update
                .get_document("$set")
                .unwrap()
                .get_document("recovery_task")
                .unwrap(),
            &doc! { "phase": "verify", "owner": Bson::Null, "until": Bson::Null, "verify_after": date(at) }
        );
    }

    #[test]
    fn the_reconciler_leases_only_stale_incomplete_purchases_and_due_checks_without_a_live_lease() {
        let (stale, now) = (ts("2026-03-02T10:00:00Z"), ts("2026-03-02T10:10:00Z"));
        let free = doc! { "$not": { "$gt": date(now) } };
        assert_eq!(
            stale_incomplete(stale, now),
            (
                doc! { "status": "incomplete", "updated_at": { "$lte": date(stale) }, "recovery_task.until": free.clone() },
                doc! { "updated_at": 1 }
            )
        );
        let id = SubscriptionId::generate();
        assert_eq!(
            stale_incomplete_one(id, stale, now).get("_id"),
            Some(&binary(id.as_uuid()))
        );
        assert_eq!(
            due_verifications(now),
            (
                doc! {
                    "recovery_task.phase": "verify",
                    "recovery_task.verify_after": { "$lte": date(now) },
                    "recovery_task.until": free,
                },
                doc! { "recovery_task.verify_after": 1 }
            )
        );
        assert_eq!(
            due_verification_one(id, now).get("_id"),
            Some(&binary(id.as_uuid()))
        );
    }

    #[test]
    fn leases_name_their_owner_and_end_and_only_the_owner_lets_go() {
        let owner = LockToken::generate();
        let until = ts("2026-03-02T10:11:00Z");
        assert_eq!(
            lease_completion(owner, until),
            doc! { "$set": { "recovery_task": {
                "phase": "complete", "owner": binary(owner.as_uuid()), "until": date(until), "verify_after": Bson::Null,
            } } }
        );
        assert_eq!(
            lease_verification(owner, until),
            doc! { "$set": { "recovery_task.owner": binary(owner.as_uuid()), "recovery_task.until": date(until) } }
        );
        let id = SubscriptionId::generate();
        assert_eq!(
            task_held(id, owner, Some("verify")),
            doc! { "_id": binary(id.as_uuid()), "recovery_task.owner": binary(owner.as_uuid()), "recovery_task.phase": "verify" }
        );
        assert!(task_held(id, owner, None)
            .get("recovery_task.phase")
            .is_none());
        assert_eq!(
            free_task(),
            doc! { "$set": { "recovery_task.owner": Bson::Null, "recovery_task.until": Bson::Null } }
        );
        assert_eq!(end_task(), doc! { "$unset": { "recovery_task": "" } });
    }

    #[test]
    fn a_refund_is_recorded_at_most_once_per_subscription() {
        let id = SubscriptionId::generate();
        assert_eq!(
            refund_not_recorded(id),
            doc! { "_id": binary(id.as_uuid()), "refund_recorded": { "$ne": true } }
        );
        assert_eq!(
            record_refund(),
            doc! { "$set": { "refund_recorded": true } }
        );
    }

    #[test]
    fn the_backlog_counts_stale_purchases_leased_or_not_and_every_scheduled_check() {
        let stale = ts("2026-03-02T10:00:00Z");
        assert_eq!(
            stale_incomplete_all(stale),
            doc! { "status": "incomplete", "updated_at": { "$lte": date(stale) } }
        );
        assert_eq!(
            pending_verifications(),
            doc! { "recovery_task.phase": "verify" }
        );
    }
}
