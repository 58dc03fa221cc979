//! The start-up upgrade (`upgrade.rs`) on a live replica set: idempotency records an
//! earlier version stored (an ObjectId `_id` and a unique `(scope, key)` index) are moved
//! to their `{ scope, key }` `_id`, more of them than one chunk, and still answer claims
//! as before: a finished purchase replays, a held key is in use, a record already under
//! its new `_id` is kept over its old copy. Plans stored without their subscription counts
//! are counted, and the old status-keyed subscription indexes dropped.
//!
//! Runs only when `SEATKEEPER_TEST_MONGODB_URL` names a replica set; otherwise it says it
//! was skipped (see `seatkeeper_store_mongo::testing`).

use std::time::Duration;

use futures::TryStreamExt;
use mongodb::{
    bson::{self, doc, oid::ObjectId, Bson, Document},
    options::IndexOptions,
    IndexModel,
};
use seatkeeper_domain::{
    ports::{IdempotencyRepository, PlanRepository},
    Claim, ClaimKey, CustomerId, Fingerprint, IdempotencyKey, IdempotencyRecord, LockToken, Plan,
    PlanId, PlanStats, PurchaseOutcome,
};
use seatkeeper_store_contract::support::{admin, new_plan, now};
use seatkeeper_store_mongo::{
    documents::{uuid, KeyDoc},
    testing::TestDatabases,
    upgrade::{OLD_KEY_INDEX, OLD_SUBSCRIPTION_INDEXES},
    MongoSettings, MongoStore,
};

/// More than one chunk of the upgrade (1,000).
const FILLER: usize = 1_500;

fn claim(key: &str, fingerprint: &str) -> ClaimKey {
    ClaimKey {
        scope: CustomerId::parse("cus_old").unwrap(),
        key: IdempotencyKey::parse(key).unwrap(),
        fingerprint: Fingerprint::from_stored(fingerprint.to_owned()),
        owner: LockToken::generate(),
        now: now(),
        lease: Duration::from_secs(30),
        retention: Duration::from_secs(86_400),
    }
}

fn finished(key: &str, fingerprint: &str, request_id: &str, plan_id: PlanId) -> IdempotencyRecord {
    let mut record = claim(key, fingerprint).fresh_record();
    record.finish(
        PurchaseOutcome::SoldOut { plan_id },
        request_id.to_owned(),
        now(),
    );
    record
}

/// `record` as the earlier version stored it.
fn old_shape(record: &IdempotencyRecord) -> Document {
    let mut d = bson::to_document(&KeyDoc::from(record)).unwrap();
    let id = d.remove("_id").unwrap();
    let id = id.as_document().unwrap();
    let mut old = doc! {
        "_id": ObjectId::new(),
        "scope": id.get_str("scope").unwrap(),
        "key": id.get_str("key").unwrap(),
    };
    old.extend(d);
    old
}

#[tokio::test]
async fn records_of_the_old_shape_move_to_their_scope_and_key_and_still_answer_claims() {
    let test = "records_of_the_old_shape_move_to_their_scope_and_key_and_still_answer_claims";
    let Some(dbs) = TestDatabases::for_test(test).await else {
        return;
    };
    let store = dbs.fresh_store().await;
    let db = store.database().clone();
    let keys = db.collection::<Document>("idempotency_keys");
    // The database as the earlier version left it.
    keys.create_index(
        IndexModel::builder()
            .keys(doc! { "scope": 1, "key": 1 })
            .options(
                IndexOptions::builder()
                    .name(OLD_KEY_INDEX.to_owned())
                    .unique(true)
                    .build(),
            )
            .build(),
    )
    .await
    .unwrap();
    let plan_id = PlanId::generate();
    let mut old = vec![
        old_shape(&finished("done", "fp", "req-old", plan_id)),
        old_shape(&claim("held", "fp").fresh_record()),
        // Also stored under its new `_id` (below), by an instance that converted it and
        // served it since: that one stays.
        old_shape(&finished("both", "stale", "req-stale", plan_id)),
    ];
    old.extend((0..FILLER).map(|i| old_shape(&finished(&format!("k{i}"), "fp", "r", plan_id))));
    keys.insert_many(old).await.unwrap();
    keys.insert_one(
        bson::to_document(&KeyDoc::from(&finished("both", "fp", "req-new", plan_id))).unwrap(),
    )
    .await
    .unwrap();

    let mut settings = MongoSettings::new(dbs.url());
    settings.database = Some(db.name().to_owned());
    let upgraded = MongoStore::connect(&settings)
        .await
        .expect("start-up upgrades");

    let left = keys
        .count_documents(doc! { "_id": { "$type": "objectId" } })
        .await
        .unwrap();
    assert_eq!(left, 0, "every record of the old shape moved");
    assert_eq!(
        keys.count_documents(doc! {}).await.unwrap(),
        (3 + FILLER) as u64,
        "one record per scope and key"
    );
    let indexes: Vec<String> = keys.list_index_names().await.unwrap();
    assert!(!indexes.contains(&OLD_KEY_INDEX.to_owned()), "{indexes:?}");
    let sample = keys
        .find(doc! { "_id": { "scope": "cus_old", "key": "k7" } })
        .await
        .unwrap()
        .try_collect::<Vec<_>>()
        .await
        .unwrap();
    assert_eq!(sample.len(), 1);
    assert!(!sample[0].contains_key("scope") && !sample[0].contains_key("key"));
    assert!(matches!(
        sample[0].get("expires_at"),
        Some(Bson::DateTime(_))
    ));

    assert_eq!(
        upgraded.claim_key(&claim("done", "fp")).await.unwrap(),
        Claim::Finished {
            outcome: PurchaseOutcome::SoldOut { plan_id },
            request_id: "req-old".into(),
        },
        "a finished purchase replays"
    );
    assert_eq!(
        upgraded.claim_key(&claim("held", "fp")).await.unwrap(),
        Claim::InUse,
        "a held key keeps its lock"
    );
    assert_eq!(
        upgraded.claim_key(&claim("both", "fp")).await.unwrap(),
        Claim::Finished {
            outcome: PurchaseOutcome::SoldOut { plan_id },
            request_id: "req-new".into(),
        },
        "the record under the new `_id` was kept"
    );
    assert!(matches!(
        upgraded.claim_key(&claim("new", "fp")).await.unwrap(),
        Claim::Acquired(_)
    ));
    assert_eq!(
        upgraded.claim_key(&claim("new", "fp")).await.unwrap(),
        Claim::InUse
    );

    // Starting again finds nothing to move and changes nothing.
    let again = MongoStore::connect(&settings)
        .await
        .expect("a second start-up");
    assert_eq!(
        keys.count_documents(doc! {}).await.unwrap(),
        (4 + FILLER) as u64
    );
    assert_eq!(
        again.claim_key(&claim("held", "fp")).await.unwrap(),
        Claim::InUse
    );
}

/// A subscription document with only what the upgrade counts.
fn counted(plan: &Plan, status: &str) -> Document {
    doc! {
        "_id": uuid(uuid::Uuid::now_v7()),
        "plan_id": uuid(plan.id().as_uuid()),
        "status": status,
    }
}

#[tokio::test]
async fn plans_stored_without_counts_are_counted_at_start_up_and_the_old_indexes_dropped() {
    let test = "plans_stored_without_counts_are_counted_at_start_up_and_the_old_indexes_dropped";
    let Some(dbs) = TestDatabases::for_test(test).await else {
        return;
    };
    let store = dbs.fresh_store().await;
    let db = store.database().clone();
    let (busy, idle, kept) = (
        new_plan("Busy", 10),
        new_plan("Idle", 5),
        new_plan("Kept", 5),
    );
    for p in [&busy, &idle, &kept] {
        store.create_plan(p, &admin("t")).await.unwrap();
    }
    let subscriptions = db.collection::<Document>("subscriptions");
    let mut docs = Vec::new();
    for (status, n) in [
        ("incomplete", 2),
        ("active", 3),
        ("canceled", 1),
        ("incomplete_expired", 4),
    ] {
        docs.extend((0..n).map(|_| counted(&busy, status)));
    }
    docs.push(counted(&kept, "active"));
    subscriptions.insert_many(docs).await.unwrap();
    // As the earlier version left them: no counts on two plans, the old indexes.
    let plans = db.collection::<Document>("plans");
    for p in [&busy, &idle] {
        plans
            .update_one(
                doc! { "_id": uuid(p.id().as_uuid()) },
                doc! { "$unset": { "counts": "" } },
            )
            .await
            .unwrap();
    }
    for (keys, name) in [
        (
            doc! { "plan_id": 1, "status": 1 },
            OLD_SUBSCRIPTION_INDEXES[0],
        ),
        (
            doc! { "status": 1, "updated_at": 1 },
            OLD_SUBSCRIPTION_INDEXES[1],
        ),
    ] {
        subscriptions
            .create_index(
                IndexModel::builder()
                    .keys(keys)
                    .options(IndexOptions::builder().name(name.to_owned()).build())
                    .build(),
            )
            .await
            .unwrap();
    }
    assert!(
        store.plan_stats(busy.id()).await.is_err(),
        "no counts to read"
    );

    let mut settings = MongoSettings::new(dbs.url());
    settings.database = Some(db.name().to_owned());
    let upgraded = MongoStore::connect(&settings)
        .await
        .expect("start-up upgrades");
    let counts = |s: PlanStats| (s.incomplete, s.active, s.canceled, s.incomplete_expired);
    let busy_stats = upgraded.plan_stats(busy.id()).await.unwrap().unwrap();
    assert_eq!(counts(busy_stats), (2, 3, 1, 4));
    let idle_stats = upgraded.plan_stats(idle.id()).await.unwrap().unwrap();
    assert_eq!(counts(idle_stats), (0, 0, 0, 0));
    let kept_stats = upgraded.plan_stats(kept.id()).await.unwrap().unwrap();
    assert_eq!(
        counts(kept_stats),
        (0, 0, 0, 0),
        "a plan with its counts is left as it is (its subscription was inserted behind its back)"
    );
    let indexes = subscriptions.list_index_names().await.unwrap();
    for old in OLD_SUBSCRIPTION_INDEXES {
        assert!(!indexes.contains(&old.to_owned()), "{indexes:?}");
    }
    assert!(
        indexes.contains(&"incomplete_updated_at".to_owned()),
        "{indexes:?}"
    );
}
