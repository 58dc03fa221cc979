//! The filters and updates of the checkout steps (`checkouts.rs`), as pure functions so
//! that the exact documents are unit-tested without a server, like [`crate::queries`].
//!
//! A batch writes each session it changed by `_id` alone, the server's fastest path: the
//! batch's transaction read the session, and a change another one commits after that
//! read makes this write conflict (a WriteConflict: the batch runs again and decides
//! again), so a guard repeating the status read would add nothing but query planning —
//! a third of the `update` command's time in a probe of 30 statements. Every statement
//! must still match: a session gone since the read is corruption.
//!
//! It writes the fields that changed (`$set`, `$unset`: [`session_patch`]), not the whole
//! document: MongoDB applies a patch that changes no indexed field in place, where a
//! replacement rewrites the document and checks every index's keys, and the oplog
//! entry (which the replica set and every change stream read) carries the patch only.

use std::collections::BTreeSet;

use mongodb::bson::{doc, Bson, Document};
use seatkeeper_domain::{
    CheckoutSessionId, CheckoutStatus, CustomerId, IdempotencyKey, PlanId, Timestamp,
};

use crate::documents::{date, uuid};

/// One session.
pub fn checkout_by_id(id: CheckoutSessionId) -> Document {
    doc! { "_id": uuid(id.as_uuid()) }
}

/// The update that turns the stored session `before` into `after` (both whole documents,
/// as [`CheckoutDoc`](crate::checkout_documents::CheckoutDoc) writes them): `$set` of
/// every field of `after` whose value differs or that `before` lacks, and `updated_at`
/// always (so that the statement writes, and conflicts with a concurrent writer, even in
/// a change no field shows); `$unset` of every field only `before` has.
pub fn session_patch(before: &Document, after: &Document) -> Document {
    let mut set = Document::new();
    for (field, value) in after {
        if field == "updated_at" || before.get(field) != Some(value) {
            set.insert(field.clone(), value.clone());
        }
    }
    let unset: Document = before
        .keys()
        .filter(|field| !after.contains_key(field.as_str()))
        .map(|field| (field.clone(), Bson::String(String::new())))
        .collect();
    let mut patch = doc! { "$set": set };
    if !unset.is_empty() {
        patch.insert("$unset", unset);
    }
    patch
}

/// The sessions of `ids` (each once), by `_id`: a batch of reads (`session_reads.rs`).
pub fn checkouts_by_ids(ids: impl IntoIterator<Item = CheckoutSessionId>) -> Document {
    let ids: BTreeSet<CheckoutSessionId> = ids.into_iter().collect();
    let ids: Vec<Bson> = ids
        .into_iter()
        .map(|id| uuid(id.as_uuid()).into())
        .collect();
    doc! { "_id": { "$in": ids } }
}

/// Every session a batch's checkout steps can depend on, in one filter of three
/// branches whatever the batch's size: the sessions of the openings' `(customer, key)`
/// pairs, the openings' customers' open sessions on the openings' plans, and the changed
/// sessions (`ids`). The first two branches each scan one index at the cross product of
/// their sets (customers × keys, plans × customers), so they also match sessions of one
/// customer of the batch under another's key or on another's plan; the batch decides on
/// the exact pairs (`CheckoutBatch`) and leaves the rest as read. An `$or` of two branches
/// per opening made the server plan each branch, racing both indexes for the open
/// sessions' ones: 10–20 ms per `find` with 30 openings on a busy server, inside the
/// plan's batch.
pub fn sessions_of_batch<'a>(
    openings: impl IntoIterator<Item = (&'a CustomerId, &'a IdempotencyKey, PlanId)>,
    ids: impl IntoIterator<Item = CheckoutSessionId>,
) -> Option<Document> {
    let mut customers = BTreeSet::new();
    let mut keys = BTreeSet::new();
    let mut plans = BTreeSet::new();
    for (customer, key, plan) in openings {
        customers.insert(customer.as_str());
        keys.insert(key.as_str());
        plans.insert(plan);
    }
    let mut branches = Vec::new();
    if !customers.is_empty() {
        let customers: Vec<&str> = customers.into_iter().collect();
        let keys: Vec<&str> = keys.into_iter().collect();
        let plans: Vec<Bson> = plans
            .into_iter()
            .map(|p| uuid(p.as_uuid()).into())
            .collect();
        branches.push(doc! {
            "customer_id": { "$in": customers.clone() },
            "idempotency_key": { "$in": keys },
        });
        branches.push(doc! {
            "plan_id": { "$in": plans },
            "status": CheckoutStatus::Open.as_str(),
            "customer_id": { "$in": customers },
        });
    }
    let ids: Vec<Bson> = ids
        .into_iter()
        .map(|id| uuid(id.as_uuid()).into())
        .collect();
    if !ids.is_empty() {
        branches.push(doc! { "_id": { "$in": ids } });
    }
    (!branches.is_empty()).then(|| doc! { "$or": branches })
}

/// The plan's open sessions (index `(plan_id, status, customer_id)`): counted as the
/// plan's held seats.
pub fn open_checkouts(plan: PlanId) -> Document {
    doc! { "plan_id": uuid(plan.as_uuid()), "status": CheckoutStatus::Open.as_str() }
}

/// Sessions due at `now`, earliest first, ties by id: filter and sort (partial index
/// `check_at_due` on `(check_at, _id)`, which `$lte` on a date lets the planner use).
pub fn due_checkouts(now: Timestamp) -> (Document, Document) {
    (
        doc! { "check_at": { "$lte": date(now) } },
        doc! { "check_at": 1, "_id": 1 },
    )
}

/// Sessions that ended before `before` and have nothing left to check (partial index
/// `ended_at_purgeable`, on the sessions without `check_at`).
pub fn purgeable_checkouts(before: Timestamp) -> Document {
    doc! { "check_at": Bson::Null, "ended_at": { "$lt": date(before) } }
}

/// One webhook event, by the provider's id.
pub fn webhook_event(id: &str) -> Document {
    doc! { "_id": id }
}

/// Webhook events received before `before` (index `received_at`).
pub fn old_webhook_events(before: Timestamp) -> Document {
    doc! { "received_at": { "$lt": date(before) } }
}

#[cfg(test)]
mod tests {
    //! The exact documents each checkout step sends.

    use mongodb::bson::{spec::BinarySubtype, Binary};

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

    #[test]
    fn a_session_is_found_by_id() {
        let id = CheckoutSessionId::generate();
        assert_eq!(checkout_by_id(id), doc! { "_id": binary(id.as_uuid()) });
    }

    #[test]
    fn a_patch_sets_what_changed_and_updated_at_and_unsets_what_went() {
        let before = doc! {
            "_id": 1, "status": "open", "payment_error": Bson::Null, "updated_at": 5,
            "check_at": 9, "created_at": 1,
        };
        let after = doc! {
            "_id": 1, "status": "complete", "payment_error": Bson::Null, "updated_at": 5,
            "created_at": 1, "ended_at": 7,
        };
        assert_eq!(
            session_patch(&before, &after),
            doc! {
                "$set": { "status": "complete", "updated_at": 5, "ended_at": 7 },
                "$unset": { "check_at": "" },
            }
        );
        assert_eq!(
            session_patch(&after, &after),
            doc! { "$set": { "updated_at": 5 } }
        );
    }

    #[test]
    fn reads_of_sessions_ask_for_each_id_once() {
        let (a, b) = (CheckoutSessionId::generate(), CheckoutSessionId::generate());
        let mut sorted = [a, b];
        sorted.sort();
        let expected: Vec<Bson> = sorted.iter().map(|id| binary(id.as_uuid())).collect();
        assert_eq!(
            checkouts_by_ids([b, a, b]),
            doc! { "_id": { "$in": expected } }
        );
    }

    #[test]
    fn a_batch_reads_its_sessions_with_three_branches_whatever_its_size() {
        let (p1, p2) = (PlanId::generate(), PlanId::generate());
        let customers: Vec<CustomerId> = ["cus_b", "cus_a", "cus_b"]
            .iter()
            .map(|c| CustomerId::parse(c).unwrap())
            .collect();
        let keys: Vec<IdempotencyKey> = ["k-2", "k-1", "k-3"]
            .iter()
            .map(|k| IdempotencyKey::parse(k).unwrap())
            .collect();
        let plans = [p1, p2, p1];
        let id = CheckoutSessionId::generate();
        let openings = (0..3).map(|i| (&customers[i], &keys[i], plans[i]));
        let mut plan_ids = [p1, p2];
        plan_ids.sort();
        let plan_ids: Vec<Bson> = plan_ids.iter().map(|p| binary(p.as_uuid())).collect();
        assert_eq!(
            sessions_of_batch(openings, [id]),
            Some(doc! { "$or": [
                { "customer_id": { "$in": ["cus_a", "cus_b"] },
                  "idempotency_key": { "$in": ["k-1", "k-2", "k-3"] } },
                { "plan_id": { "$in": plan_ids },
                  "status": "open",
                  "customer_id": { "$in": ["cus_a", "cus_b"] } },
                { "_id": { "$in": [binary(id.as_uuid())] } },
            ] })
        );
        assert_eq!(
            sessions_of_batch([], [id]),
            Some(doc! { "$or": [{ "_id": { "$in": [binary(id.as_uuid())] } }] })
        );
        assert_eq!(sessions_of_batch([], []), None);
    }

    #[test]
    fn open_sessions_are_filtered_in_the_order_of_their_index() {
        let p = PlanId::generate();
        assert_eq!(
            open_checkouts(p),
            doc! { "plan_id": binary(p.as_uuid()), "status": "open" }
        );
    }

    #[test]
    fn due_sessions_come_earliest_first_then_by_id_and_purges_take_only_what_ended() {
        let now = ts("2026-03-01T10:00:00Z");
        assert_eq!(
            due_checkouts(now),
            (
                doc! { "check_at": { "$lte": date(now) } },
                doc! { "check_at": 1, "_id": 1 }
            )
        );
        assert_eq!(
            purgeable_checkouts(now),
            doc! { "check_at": Bson::Null, "ended_at": { "$lt": date(now) } }
        );
        assert_eq!(
            old_webhook_events(now),
            doc! { "received_at": { "$lt": date(now) } }
        );
        assert_eq!(webhook_event("evt_1"), doc! { "_id": "evt_1" });
    }
}
