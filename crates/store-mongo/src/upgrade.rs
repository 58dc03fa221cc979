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
//! point and outcome, so a retry after the upgrade replays or resumes as before. Stop
//! every instance of an older version first: it would keep writing the old shape.

use futures::TryStreamExt;
use mongodb::{
    bson::{doc, Bson, Document},
    error::ErrorKind,
    Database,
};
use seatkeeper_domain::ports::StoreError;

use crate::{
    documents::Corrupt,
    errors::{classify, duplicate_key, Facts},
    queries::IDEMPOTENCY_KEYS,
};

/// The unique index of the old shape.
pub const OLD_KEY_INDEX: &str = "scope_key_unique";

/// Records converted per round trip pair (a find, then an insert and a delete).
const CHUNK: i64 = 1_000;

const NAMESPACE_NOT_FOUND: i32 = 26;
const INDEX_NOT_FOUND: i32 = 27;

/// Moves idempotency records of the old shape to their `{ scope, key }` `_id`; returns
/// how many it moved.
pub(crate) async fn key_ids(db: &Database) -> Result<u64, StoreError> {
    let keys = db.collection::<Document>(IDEMPOTENCY_KEYS);
    if let Err(e) = keys.drop_index(OLD_KEY_INDEX).await {
        if !matches!(
            Facts::of(&e).code,
            Some(INDEX_NOT_FOUND | NAMESPACE_NOT_FOUND)
        ) {
            return Err(classify(e));
        }
    }
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
