//! What the contract suite cannot see, checked on a live replica set: the indexes start-up
//! creates are exactly the documented ones, start-up is idempotent on a prepared
//! database, and stored documents carry UUIDs as binary subtype 4 and dates as BSON dates
//! (what the TTL index and id-ordered pages rely on).
//!
//! These run only when `SEATKEEPER_TEST_MONGODB_URL` names a replica set; otherwise each
//! says it was skipped (see `seatkeeper_store_mongo::testing`).

use futures::TryStreamExt;
use mongodb::bson::{doc, spec::BinarySubtype, Bson, Document};
use seatkeeper_domain::{
    ports::{PlanRepository, Store},
    AuditContext, Capacity, Currency, Interval, NewPlan, Plan, PlanName, UnitAmount,
};
use seatkeeper_store_mongo::{indexes::indexes, testing::TestDatabases, MongoSettings, MongoStore};

async fn databases(test: &str) -> Option<TestDatabases> {
    match TestDatabases::connect().await {
        Ok(dbs) => Some(dbs),
        Err(reason) => {
            println!("skipped {test}: {reason}");
            None
        }
    }
}

fn plan() -> Plan {
    Plan::create(
        NewPlan {
            name: PlanName::parse("Starter").unwrap(),
            capacity: Capacity::new(3).unwrap(),
            unit_amount: UnitAmount::new(900).unwrap(),
            currency: Currency::parse("usd").unwrap(),
            interval: Interval::Month,
        },
        seatkeeper_domain::ports::Clock::now(&seatkeeper_domain::ports::SystemClock),
    )
}

#[tokio::test]
async fn start_up_creates_exactly_the_documented_indexes() {
    let Some(dbs) = databases("start_up_creates_exactly_the_documented_indexes").await else {
        return;
    };
    let store = dbs.fresh_store().await;
    for (collection, model) in indexes() {
        let name = model.options.as_ref().and_then(|o| o.name.clone()).unwrap();
        let found: Vec<Document> = store
            .database()
            .collection::<Document>(collection)
            .list_indexes()
            .await
            .unwrap()
            .try_collect::<Vec<_>>()
            .await
            .unwrap()
            .into_iter()
            .map(|m| mongodb::bson::to_document(&m).unwrap())
            .collect();
        let index = found
            .iter()
            .find(|i| i.get_str("name") == Ok(name.as_str()))
            .unwrap_or_else(|| panic!("{collection} has no index {name}: {found:?}"));
        assert_eq!(index.get_document("key").unwrap(), &model.keys, "{name}");
        let options = model.options.unwrap();
        assert_eq!(
            index.get_bool("unique").unwrap_or(false),
            options.unique.unwrap_or(false),
            "{name}"
        );
        assert_eq!(
            index
                .get("expireAfterSeconds")
                .and_then(|b| b.as_i64().or(b.as_i32().map(i64::from))),
            options.expire_after.map(|d| d.as_secs() as i64),
            "{name}"
        );
    }
}

#[tokio::test]
async fn starting_again_on_a_prepared_database_changes_nothing() {
    let Some(dbs) = databases("starting_again_on_a_prepared_database_changes_nothing").await else {
        return;
    };
    let store = dbs.fresh_store().await;
    let p = plan();
    store
        .create_plan(&p, &AuditContext::admin("t"))
        .await
        .unwrap();
    let mut settings = MongoSettings::new(dbs.url());
    settings.database = Some(store.database().name().to_owned());
    let again = MongoStore::connect(&settings)
        .await
        .expect("a second start-up on the same database");
    again.ping().await.unwrap();
    assert_eq!(again.get_plan(p.id()).await.unwrap(), Some(p));
}

#[tokio::test]
async fn stored_ids_are_binary_uuids_and_dates_are_bson_dates() {
    let Some(dbs) = databases("stored_ids_are_binary_uuids_and_dates_are_bson_dates").await else {
        return;
    };
    let store = dbs.fresh_store().await;
    let p = plan();
    store
        .create_plan(&p, &AuditContext::admin("t"))
        .await
        .unwrap();
    let raw = store
        .database()
        .collection::<Document>("plans")
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        raw.get("_id"),
        Some(Bson::Binary(b)) if b.subtype == BinarySubtype::Uuid && b.bytes == p.id().as_uuid().as_bytes()
    ));
    assert!(matches!(raw.get("created_at"), Some(Bson::DateTime(_))));
    assert!(matches!(raw.get("unit_amount"), Some(Bson::Int64(900))));
    let entry = store
        .database()
        .collection::<Document>("audit_entries")
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(entry.get("at"), Some(Bson::DateTime(_))));
    assert!(matches!(entry.get("seq"), Some(Bson::Int64(1))));
}
