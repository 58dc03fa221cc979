//! The indexes the store creates at start-up, outside any transaction (`createIndexes` is
//! idempotent: an index that already exists with the same definition is left alone).
//!
//! | collection | keys | options | serves |
//! | --- | --- | --- | --- |
//! | `idempotency_keys` | `scope, key` | unique | one record per customer and key: claims race on it |
//! | `idempotency_keys` | `expires_at` | TTL, `expireAfterSeconds: 0` | the server forgets records once their retention ends; the sweep's `expires_at <= now` |
//! | `subscriptions` | `customer_id, _id` | | a customer's subscriptions in id order |
//! | `subscriptions` | `plan_id, status` | | a plan's counts by status (stats) |
//! | `subscriptions` | `status, updated_at` | | stale `incomplete` purchases for the reconciler, oldest first |
//! | `subscriptions` | `recovery_task.phase, recovery_task.verify_after` | sparse | late-charge checks that are due |
//! | `audit_entries` | `plan_id, seq` | unique | a plan's log in order; two entries can never share a place in it |
//! | `api_keys` | `secret_hash` | unique | a request's key found by its secret's hash |
//!
//! Plans and subscriptions are read by `_id`, which MongoDB always indexes.
//!
//! `prepare` creates them at start-up, after the collections themselves.

use std::time::Duration;

use mongodb::{
    bson::{doc, Document},
    options::IndexOptions,
    Database, IndexModel,
};
use seatkeeper_domain::ports::StoreError;

use crate::{
    errors::{classify, Facts},
    queries::{self, API_KEYS, AUDIT_ENTRIES, IDEMPOTENCY_KEYS, SUBSCRIPTIONS},
};

/// Every index the store needs, with its collection.
pub fn indexes() -> Vec<(&'static str, IndexModel)> {
    let named = |name: &str| IndexOptions::builder().name(name.to_owned());
    vec![
        (
            IDEMPOTENCY_KEYS,
            IndexModel::builder()
                .keys(doc! { "scope": 1, "key": 1 })
                .options(named("scope_key_unique").unique(true).build())
                .build(),
        ),
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
                .keys(doc! { "plan_id": 1, "status": 1 })
                .options(named("plan_id_status").build())
                .build(),
        ),
        (
            SUBSCRIPTIONS,
            IndexModel::builder()
                .keys(doc! { "status": 1, "updated_at": 1 })
                .options(named("status_updated_at").build())
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
    ]
}

/// Creates the collections (so that no transaction ever creates one implicitly) and the
/// indexes.
pub(crate) async fn prepare(db: &Database) -> Result<(), StoreError> {
    const NAMESPACE_EXISTS: i32 = 48;
    for name in queries::COLLECTIONS {
        if let Err(e) = db.create_collection(*name).await {
            if Facts::of(&e).code != Some(NAMESPACE_EXISTS) {
                return Err(classify(e));
            }
        }
    }
    for (collection, model) in indexes() {
        db.collection::<Document>(collection)
            .create_index(model)
            .await
            .map_err(classify)?;
    }
    Ok(())
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
    fn idempotency_keys_are_unique_per_scope_and_key() {
        let all = indexes();
        let (coll, spec) = find(&all, "scope_key_unique");
        assert_eq!(coll, "idempotency_keys");
        assert_eq!(
            spec.get_document("key").unwrap(),
            &doc! { "scope": 1, "key": 1 }
        );
        assert_eq!(spec.get_bool("unique"), Ok(true));
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
    fn subscriptions_are_indexed_by_customer_then_id_and_by_plan_then_status() {
        let all = indexes();
        let (coll, by_customer) = find(&all, "customer_id_id");
        assert_eq!(coll, "subscriptions");
        assert_eq!(
            by_customer.get_document("key").unwrap(),
            &doc! { "customer_id": 1, "_id": 1 }
        );
        let (coll, by_plan) = find(&all, "plan_id_status");
        assert_eq!(coll, "subscriptions");
        assert_eq!(
            by_plan.get_document("key").unwrap(),
            &doc! { "plan_id": 1, "status": 1 }
        );
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
        let (coll, stale) = find(&all, "status_updated_at");
        assert_eq!(coll, "subscriptions");
        assert_eq!(
            stale.get_document("key").unwrap(),
            &doc! { "status": 1, "updated_at": 1 }
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
    fn there_are_exactly_the_eight_documented_indexes_with_distinct_names() {
        let all = indexes();
        let mut names: Vec<_> = all
            .iter()
            .map(|(_, m)| m.options.as_ref().and_then(|o| o.name.clone()).unwrap())
            .collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), 8);
        assert_eq!(all.len(), 8);
    }
}
