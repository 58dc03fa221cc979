//! What earlier versions stored in another shape, changed at start-up before the store
//! serves.
//!
//! **Idempotency records keyed by `{ scope, key }`.** Records were stored under an
//! ObjectId with a unique `(scope, key)` index; their `_id` is now `{ scope, key }`
//! ([`KeyDoc`](crate::documents::KeyDoc)). Start-up drops the old index (a record of the
//! new shape has no top-level `scope` and `key`, which that index would take for a second
//! null pair), then copies every record of the old shape under its new `_id` and deletes
//! the old copy, [`CHUNK`] records at a time. Each step can be repeated: a copy that finds
//! a record under its new `_id` keeps that one (another instance converted it, and may
//! have served it since), and the delete removes old copies only. A start-up killed half
//! way converts the rest at the next one. A record in flight keeps its lock, recovery
//! point and outcome, so a retry after the upgrade replays or resumes as before.
//!
//! **Plans with their subscription counts.** Stats read a plan's `counts`
//! ([`CountsDoc`](crate::documents::CountsDoc)), which every write that creates or changes
//! a subscription moves; subscriptions were counted through an index on `(plan_id,
//! status)`, and stale purchases found through one on `(status, updated_at)`, both of
//! which changed at every completion. Start-up counts the subscriptions of every plan
//! stored without `counts` (one `$group` over the collection, only when there is such a
//! plan) and sets them where they are still missing, then drops the two old indexes (the
//! reconciler's partial `updated_at` index is created with the others).
//!
//! Stop every instance of an older version first: it would keep writing the old shapes.
//! A new instance serves only after its own upgrade, by which time every plan has its
//! counts, so no count is moved from a missing one.

use futures::TryStreamExt;
use mongodb::{
    bson::{self, doc, Bson, Document},
    error::ErrorKind,
    Database,
};
use seatkeeper_domain::ports::StoreError;

use crate::{
    documents::{subscription_status, Corrupt, CountsDoc},
    errors::{classify, duplicate_key, Facts},
    queries::{self, IDEMPOTENCY_KEYS, PLANS, SUBSCRIPTIONS},
};

/// The unique index of the old shape.
pub const OLD_KEY_INDEX: &str = "scope_key_unique";

/// The subscriptions' indexes of the old shape: keyed by status, changed at every
/// completion.
pub const OLD_SUBSCRIPTION_INDEXES: [&str; 2] = ["plan_id_status", "status_updated_at"];

/// Records converted per round trip pair (a find, then an insert and a delete).
const CHUNK: i64 = 1_000;

const NAMESPACE_NOT_FOUND: i32 = 26;
const INDEX_NOT_FOUND: i32 = 27;

/// Every upgrade, in order.
pub(crate) async fn run(db: &Database) -> Result<(), StoreError> {
    key_ids(db).await?;
    plan_counts(db).await?;
    Ok(())
}

/// Drops `name` from `collection`, unless it is gone already.
async fn drop_index(db: &Database, collection: &str, name: &str) -> Result<(), StoreError> {
    let dropped = db.collection::<Document>(collection).drop_index(name).await;
    match dropped {
        Err(e)
            if !matches!(
                Facts::of(&e).code,
                Some(INDEX_NOT_FOUND | NAMESPACE_NOT_FOUND)
            ) =>
        {
            Err(classify(e))
        }
        _ => Ok(()),
    }
}

/// Sets the subscription counts of every plan stored without them; drops the old
/// subscription indexes. Returns how many plans it counted.
pub(crate) async fn plan_counts(db: &Database) -> Result<u64, StoreError> {
    let plans = db.collection::<Document>(PLANS);
    let uncounted = doc! { "counts": { "$exists": false } };
    let mut counted = 0;
    if plans
        .find_one(uncounted.clone())
        .await
        .map_err(classify)?
        .is_some()
    {
        let rows: Vec<Document> = db
            .collection::<Document>(SUBSCRIPTIONS)
            .aggregate(queries::count_by_plan_and_status())
            .await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)?;
        let mut counts: Vec<(Bson, CountsDoc)> = Vec::new();
        for row in rows {
            let (plan, status, n) = count_row(&row).map_err(StoreError::internal)?;
            match counts.iter_mut().find(|(p, _)| *p == plan) {
                Some((_, c)) => c.add(status, n),
                None => {
                    let mut c = CountsDoc::default();
                    c.add(status, n);
                    counts.push((plan, c));
                }
            }
        }
        let ids: Vec<Bson> = plans
            .find(uncounted.clone())
            .projection(doc! { "_id": 1 })
            .await
            .map_err(classify)?
            .try_collect::<Vec<Document>>()
            .await
            .map_err(classify)?
            .into_iter()
            .filter_map(|d| d.get("_id").cloned())
            .collect();
        for id in ids {
            let c = counts
                .iter()
                .find(|(p, _)| *p == id)
                .map(|(_, c)| *c)
                .unwrap_or_default();
            let set = bson::to_document(&c)
                .map_err(|e| StoreError::internal(Corrupt(format!("counts: {e}"))))?;
            let mut filter = uncounted.clone();
            filter.insert("_id", id);
            plans
                .update_one(filter, doc! { "$set": { "counts": set } })
                .await
                .map_err(classify)?;
            counted += 1;
        }
        tracing::info!(counted, "plans given their subscription counts");
    }
    for name in OLD_SUBSCRIPTION_INDEXES {
        drop_index(db, SUBSCRIPTIONS, name).await?;
    }
    Ok(counted)
}

/// A row of [`queries::count_by_plan_and_status`].
fn count_row(
    row: &Document,
) -> Result<(Bson, seatkeeper_domain::SubscriptionStatus, i64), Corrupt> {
    let id = row
        .get_document("_id")
        .map_err(|e| Corrupt(format!("a count's _id: {e}")))?;
    let plan = id
        .get("plan_id")
        .cloned()
        .ok_or_else(|| Corrupt("a count without its plan".into()))?;
    let status = subscription_status(
        id.get_str("status")
            .map_err(|e| Corrupt(format!("a count's status: {e}")))?,
    )?;
    let n = match row.get("n") {
        Some(Bson::Int64(n)) => *n,
        Some(Bson::Int32(n)) => i64::from(*n),
        other => return Err(Corrupt(format!("a count of {other:?}"))),
    };
    Ok((plan, status, n))
}

/// Moves idempotency records of the old shape to their `{ scope, key }` `_id`; returns
/// how many it moved.
pub(crate) async fn key_ids(db: &Database) -> Result<u64, StoreError> {
    let keys = db.collection::<Document>(IDEMPOTENCY_KEYS);
    drop_index(db, IDEMPOTENCY_KEYS, OLD_KEY_INDEX).await?;
    let mut moved = 0;
    loop {
        let old: Vec<Document> = keys
            .find(doc! { "_id": { "$type": "objectId" } })
            .limit(CHUNK)
            .await
            .map_err(classify)?
            .try_collect()
            .await
            .map_err(classify)?;
        if old.is_empty() {
            break;
        }
        let ids: Vec<Bson> = old.iter().filter_map(|d| d.get("_id").cloned()).collect();
        let n = ids.len() as u64;
        let new = old
            .into_iter()
            .map(reshaped)
            .collect::<Result<Vec<_>, _>>()
            .map_err(StoreError::internal)?;
        if let Err(e) = keys.insert_many(new).ordered(false).await {
            if !only_duplicates(&e) {
                return Err(classify(e));
            }
        }
        keys.delete_many(doc! { "_id": { "$in": ids } })
            .await
            .map_err(classify)?;
        moved += n;
    }
    if moved > 0 {
        tracing::info!(
            moved,
            "idempotency records moved to their {{ scope, key }} ids"
        );
    }
    Ok(moved)
}

/// A record of the old shape under its new `_id`, its other fields as they were.
pub fn reshaped(mut old: Document) -> Result<Document, Corrupt> {
    let field = |d: &mut Document, name: &str| match d.remove(name) {
        Some(Bson::String(s)) => Ok(s),
        other => Err(Corrupt(format!(
            "an idempotency record of the old shape has {name} = {other:?}"
        ))),
    };
    let scope = field(&mut old, "scope")?;
    let key = field(&mut old, "key")?;
    old.remove("_id");
    let mut new = doc! { "_id": { "scope": scope, "key": key } };
    new.extend(old);
    Ok(new)
}

/// Whether every write error of an unordered insert is a duplicate `_id`.
fn only_duplicates(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::InsertMany(m) => {
            m.write_concern_error.is_none()
                && m.write_errors
                    .as_ref()
                    .is_some_and(|es| es.iter().all(|w| w.code == 11_000))
        }
        _ => duplicate_key(&Facts::of(e)),
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::oid::ObjectId;

    use super::*;

    #[test]
    fn an_old_record_keeps_every_field_under_its_scope_and_key_as_id() {
        let old = doc! {
            "_id": ObjectId::new(), "scope": "cus_1", "key": "order-1",
            "fingerprint": "f", "state": "open", "lock": Bson::Null,
        };
        assert_eq!(
            reshaped(old).unwrap(),
            doc! {
                "_id": { "scope": "cus_1", "key": "order-1" },
                "fingerprint": "f", "state": "open", "lock": Bson::Null,
            }
        );
    }

    #[test]
    fn an_old_record_without_its_scope_is_corrupt() {
        let err = reshaped(doc! { "_id": ObjectId::new(), "key": "k" }).unwrap_err();
        assert!(err.to_string().contains("scope"), "{err}");
    }
}
