//! The indexes the store creates at start-up, outside any transaction (`createIndexes` is
//! idempotent: an index that already exists with the same definition is left alone).
//!
//! | collection | keys | options | serves |
//! | --- | --- | --- | --- |
//! | `idempotency_keys` | `expires_at` | TTL, `expireAfterSeconds: 0` | the server forgets records once their retention ends; the sweep's `expires_at <= now` |
//! | `subscriptions` | `customer_id, _id` | | a customer's subscriptions in id order |
//! | `subscriptions` | `updated_at` | partial: `status: "incomplete"` | stale `incomplete` purchases for the reconciler, oldest first |
//! | `subscriptions` | `recovery_task.phase, recovery_task.verify_after` | sparse | late-charge checks that are due |
//! | `audit_entries` | `plan_id, seq` | unique | a plan's log in order; two entries can never share a place in it |
//! | `api_keys` | `secret_hash` | unique | a request's key found by its secret's hash |
//! | `checkout_sessions` | `customer_id, idempotency_key` | unique | the session a customer's key opened; two openings with one key cannot both insert |
//! | `checkout_sessions` | `plan_id, status, customer_id` | | a customer's open sessions on a plan (opening), a plan's open sessions counted as held (stats) |
//! | `checkout_sessions` | `check_at, _id` | partial: `check_at` exists | the sessions the worker must look at, earliest first |
//! | `checkout_sessions` | `ended_at` | partial: `check_at` absent | the purge of sessions that ended |
//! | `webhook_events` | `received_at` | | the purge of old events |
//!
//! Plans, subscriptions, checkout sessions, idempotency records (whose `_id` is their
//! `{ scope, key }`: one record per customer and key, and claims race on it) and webhook
//! events (whose `_id` is the provider's event id: claims race on it) are read by `_id`,
//! which MongoDB always indexes.
//!
//! `prepare` creates them at start-up, each collection's after the collection itself, the
//! collections side by side.

use std::time::Duration;

use mongodb::{
    bson::{doc, Bson, Document},
    options::IndexOptions,
    Database, IndexModel,
};
use seatkeeper_domain::ports::StoreError;

use crate::{
    errors::{classify, Facts},
    queries::{
        self, API_KEYS, AUDIT_ENTRIES, CHECKOUT_SESSIONS, IDEMPOTENCY_KEYS, SUBSCRIPTIONS,
        WEBHOOK_EVENTS,
    },
};

/// Every index the store needs, with its collection.
pub fn indexes() -> Vec<(&'static str, IndexModel)> {
    let named = |name: &str| IndexOptions::builder().name(name.to_owned());
    vec![
        (
            IDEMPOTENCY_KEYS,
            IndexModel::builder()
                .keys(doc! { "expires_at": 1 })
                .options(
                    named("expires_at_ttl")
                        .expire_after(Duration::from_secs(0))
                        .build(),
                )
                .build(),
        ),
        (
            SUBSCRIPTIONS,
            IndexModel::builder()
                .keys(doc! { "customer_id": 1, "_id": 1 })
                .options(named("customer_id_id").build())
                .build(),
        ),
        (
            SUBSCRIPTIONS,
            IndexModel::builder()
                .keys(doc! { "updated_at": 1 })
                .options(
                    named("incomplete_updated_at")
                        .partial_filter_expression(doc! { "status": "incomplete" })
                        .build(),
                )
                .build(),
        ),
        (
            SUBSCRIPTIONS,
            IndexModel::builder()
                .keys(doc! { "recovery_task.phase": 1, "recovery_task.verify_after": 1 })
                .options(named("recovery_task_due").sparse(true).build())
                .build(),
        ),
        (
            AUDIT_ENTRIES,
            IndexModel::builder()
                .keys(doc! { "plan_id": 1, "seq": 1 })
                .options(named("plan_id_seq_unique").unique(true).build())
                .build(),
        ),
        (
            API_KEYS,
            IndexModel::builder()
                .keys(doc! { "secret_hash": 1 })
                .options(named("secret_hash_unique").unique(true).build())
                .build(),
        ),
        (
            CHECKOUT_SESSIONS,
            IndexModel::builder()
                .keys(doc! { "customer_id": 1, "idempotency_key": 1 })
                .options(
                    named("customer_id_idempotency_key_unique")
                        .unique(true)
                        .build(),
                )
                .build(),
        ),
        (
            CHECKOUT_SESSIONS,
            IndexModel::builder()
                .keys(doc! { "plan_id": 1, "status": 1, "customer_id": 1 })
                .options(named("plan_id_status_customer_id").build())
                .build(),
        ),
        (
            CHECKOUT_SESSIONS,
            IndexModel::builder()
                .keys(doc! { "check_at": 1, "_id": 1 })
                .options(
                    named("check_at_due")
                        .partial_filter_expression(doc! { "check_at": { "$exists": true } })
                        .build(),
                )
                .build(),
        ),
        (
            CHECKOUT_SESSIONS,
            IndexModel::builder()
                .keys(doc! { "ended_at": 1 })
                .options(
                    named("ended_at_purgeable")
                        .partial_filter_expression(doc! { "check_at": Bson::Null })
                        .build(),
                )
                .build(),
        ),
        (
            WEBHOOK_EVENTS,
            IndexModel::builder()
                .keys(doc! { "received_at": 1 })
                .options(named("received_at").build())
                .build(),
        ),
    ]
}

/// Creates the collections (so that no transaction ever creates one implicitly) and
/// their indexes: for each collection, `create` then one `createIndexes` with all of its
/// indexes, the collections side by side. Each is a catalog change the server makes
/// durable before it answers, and one after another the 7 creates and 13 indexes of then took
/// 0.5–1 s per fresh database on the loaded 2-core machine, side by side ~0.4 s: the
/// contract case that makes eight databases went from 2.5–12.6 s to 2.2–5.0 s.
pub(crate) async fn prepare(db: &Database) -> Result<(), StoreError> {
    let groups = by_collection(indexes());
    let chains = queries::COLLECTIONS.iter().map(|name| {
        let models = groups
            .iter()
            .find(|(c, _)| c == name)
            .map(|(_, models)| models.clone())
            .unwrap_or_default();
        prepare_collection(db, name, models)
    });
    futures::future::try_join_all(chains).await?;
    Ok(())
}

/// Creates one collection, unless it exists, and its indexes.
async fn prepare_collection(
    db: &Database,
    name: &str,
    models: Vec<IndexModel>,
) -> Result<(), StoreError> {
    const NAMESPACE_EXISTS: i32 = 48;
    if let Err(e) = db.create_collection(name).await {
        if Facts::of(&e).code != Some(NAMESPACE_EXISTS) {
            return Err(classify(e));
        }
    }
    if !models.is_empty() {
        db.collection::<Document>(name)
            .create_indexes(models)
            .await
            .map_err(classify)?;
    }
    Ok(())
}

/// The indexes grouped by collection, each group where its collection first appears, in
/// their order within it.
fn by_collection(all: Vec<(&'static str, IndexModel)>) -> Vec<(&'static str, Vec<IndexModel>)> {
    let mut groups: Vec<(&'static str, Vec<IndexModel>)> = Vec::new();
    for (collection, model) in all {
        match groups.iter_mut().find(|(c, _)| *c == collection) {
            Some((_, models)) => models.push(model),
            None => groups.push((collection, vec![model])),
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use mongodb::bson::{self, Document};

    use super::*;

    /// The `createIndexes` entry the driver sends for an index model.
    fn spec(model: &IndexModel) -> Document {
        bson::to_document(model).unwrap()
    }

    fn find<'a>(all: &'a [(&str, IndexModel)], name: &str) -> (&'a str, Document) {
        let (coll, model) = all
            .iter()
            .find(|(_, m)| m.options.as_ref().and_then(|o| o.name.as_deref()) == Some(name))
            .unwrap_or_else(|| panic!("no index named {name}"));
        (coll, spec(model))
    }

    #[test]
    fn idempotency_keys_need_no_index_of_their_own_for_their_scope_and_key() {
        let all = indexes();
        assert!(
            all.iter()
                .filter(|(c, _)| *c == "idempotency_keys")
                .all(|(_, m)| !m.keys.contains_key("scope") && !m.keys.contains_key("key")),
            "`{{ scope, key }}` is the `_id`"
        );
    }

    #[test]
    fn idempotency_keys_expire_through_a_ttl_index_on_their_expiry_date() {
        let all = indexes();
        let (coll, spec) = find(&all, "expires_at_ttl");
        assert_eq!(coll, "idempotency_keys");
        assert_eq!(spec.get_document("key").unwrap(), &doc! { "expires_at": 1 });
        // Seconds after `expires_at`: 0 means "at the expiry date itself".
        assert_eq!(
            spec.get("expireAfterSeconds")
                .and_then(|b| b.as_i64().or(b.as_i32().map(i64::from))),
            Some(0)
        );
        assert!(spec.get("unique").is_none());
    }

    #[test]
    fn subscriptions_are_indexed_by_customer_then_id_and_by_nothing_a_completion_changes() {
        let all = indexes();
        let (coll, by_customer) = find(&all, "customer_id_id");
        assert_eq!(coll, "subscriptions");
        assert_eq!(
            by_customer.get_document("key").unwrap(),
            &doc! { "customer_id": 1, "_id": 1 }
        );
        // Stats read the plan's `counts`; only the reconciler's partial index loses the
        // completed purchase.
        for (_, model) in all.iter().filter(|(c, _)| *c == "subscriptions") {
            assert!(!model.keys.contains_key("status"), "{:?}", model.keys);
        }
    }

    #[test]
    fn api_keys_are_found_by_a_unique_secret_hash() {
        let all = indexes();
        let (coll, spec) = find(&all, "secret_hash_unique");
        assert_eq!(coll, "api_keys");
        assert_eq!(
            spec.get_document("key").unwrap(),
            &doc! { "secret_hash": 1 }
        );
        assert_eq!(spec.get_bool("unique"), Ok(true));
    }

    #[test]
    fn audit_entries_are_unique_per_plan_and_seq() {
        let all = indexes();
        let (coll, spec) = find(&all, "plan_id_seq_unique");
        assert_eq!(coll, "audit_entries");
        assert_eq!(
            spec.get_document("key").unwrap(),
            &doc! { "plan_id": 1, "seq": 1 }
        );
        assert_eq!(spec.get_bool("unique"), Ok(true));
    }

    #[test]
    fn the_reconciler_finds_stale_purchases_and_due_checks_through_indexes() {
        let all = indexes();
        let (coll, stale) = find(&all, "incomplete_updated_at");
        assert_eq!(coll, "subscriptions");
        assert_eq!(
            stale.get_document("key").unwrap(),
            &doc! { "updated_at": 1 }
        );
        assert_eq!(
            stale.get_document("partialFilterExpression").unwrap(),
            &doc! { "status": "incomplete" }
        );
        let (coll, due) = find(&all, "recovery_task_due");
        assert_eq!(coll, "subscriptions");
        assert_eq!(
            due.get_document("key").unwrap(),
            &doc! { "recovery_task.phase": 1, "recovery_task.verify_after": 1 }
        );
        assert_eq!(
            due.get_bool("sparse"),
            Ok(true),
            "only subscriptions with a task are indexed"
        );
    }

    #[test]
    fn a_customers_key_opens_one_checkout_session_and_open_sessions_are_found_by_plan() {
        let all = indexes();
        let (coll, by_key) = find(&all, "customer_id_idempotency_key_unique");
        assert_eq!(coll, "checkout_sessions");
        assert_eq!(
            by_key.get_document("key").unwrap(),
            &doc! { "customer_id": 1, "idempotency_key": 1 }
        );
        assert_eq!(by_key.get_bool("unique"), Ok(true));
        let (coll, open) = find(&all, "plan_id_status_customer_id");
        assert_eq!(coll, "checkout_sessions");
        assert_eq!(
            open.get_document("key").unwrap(),
            &doc! { "plan_id": 1, "status": 1, "customer_id": 1 }
        );
    }

    #[test]
    fn due_sessions_and_purgeable_ones_have_partial_indexes_and_events_age_by_receipt() {
        let all = indexes();
        let (coll, due) = find(&all, "check_at_due");
        assert_eq!(coll, "checkout_sessions");
        assert_eq!(
            due.get_document("key").unwrap(),
            &doc! { "check_at": 1, "_id": 1 }
        );
        assert_eq!(
            due.get_document("partialFilterExpression").unwrap(),
            &doc! { "check_at": { "$exists": true } },
            "only sessions with something left to check"
        );
        let (coll, purge) = find(&all, "ended_at_purgeable");
        assert_eq!(coll, "checkout_sessions");
        assert_eq!(purge.get_document("key").unwrap(), &doc! { "ended_at": 1 });
        assert_eq!(
            purge.get_document("partialFilterExpression").unwrap(),
            &doc! { "check_at": Bson::Null }
        );
        let (coll, events) = find(&all, "received_at");
        assert_eq!(coll, "webhook_events");
        assert_eq!(
            events.get_document("key").unwrap(),
            &doc! { "received_at": 1 }
        );
        assert!(events.get("unique").is_none());
    }

    #[test]
    fn every_collection_is_created_and_every_index_is_on_one_of_them() {
        assert_eq!(
            queries::COLLECTIONS,
            [
                "plans",
                "subscriptions",
                "audit_entries",
                "idempotency_keys",
                "api_keys",
                "checkout_sessions",
                "webhook_events"
            ]
        );
        for (collection, _) in indexes() {
            assert!(queries::COLLECTIONS.contains(&collection), "{collection}");
        }
    }

    #[test]
    fn start_up_sends_one_create_indexes_per_collection_keeping_the_documented_order() {
        let groups = by_collection(indexes());
        let collections: Vec<&str> = groups.iter().map(|(c, _)| *c).collect();
        assert_eq!(
            collections,
            [
                "idempotency_keys",
                "subscriptions",
                "audit_entries",
                "api_keys",
                "checkout_sessions",
                "webhook_events"
            ]
        );
        let flattened: Vec<Document> = groups
            .iter()
            .flat_map(|(_, models)| models.iter().map(spec))
            .collect();
        let listed: Vec<Document> = indexes().iter().map(|(_, m)| spec(m)).collect();
        assert_eq!(
            flattened, listed,
            "every collection's indexes are listed together"
        );
    }

    #[test]
    fn there_are_exactly_the_eleven_documented_indexes_with_distinct_names() {
        let all = indexes();
        let mut names: Vec<_> = all
            .iter()
            .map(|(_, m)| m.options.as_ref().and_then(|o| o.name.clone()).unwrap())
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 11);
        assert_eq!(all.len(), 11);
    }
}
