//! What the contract suite cannot see, checked on a live replica set: the indexes start-up
//! creates are exactly the documented ones, start-up is idempotent on a prepared
//! database, stored documents carry UUIDs as binary subtype 4 and dates as BSON dates
//! (what the TTL index and id-ordered pages rely on), and the checkout worker's and
//! purges' and the reconciler's queries are served by their (partial) indexes.
//!
//! These run only when `SEATKEEPER_TEST_MONGODB_URL` names a replica set; otherwise each
//! says it was skipped (see `seatkeeper_store_mongo::testing`).

use futures::TryStreamExt;
use mongodb::bson::{doc, spec::BinarySubtype, Bson, Document};
use seatkeeper_domain::{
    ports::{PlanRepository, Store},
    AuditContext, Capacity, Currency, Interval, NewPlan, Plan, PlanName, UnitAmount,
};
use seatkeeper_store_contract::{checkout_support, support::now};
use seatkeeper_store_mongo::{
    checkout_queries, indexes::indexes, queries, testing::TestDatabases, MongoSettings, MongoStore,
};

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
    let Some(dbs) =
        TestDatabases::for_test("start_up_creates_exactly_the_documented_indexes").await
    else {
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
    let Some(dbs) =
        TestDatabases::for_test("starting_again_on_a_prepared_database_changes_nothing").await
    else {
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
    let Some(dbs) =
        TestDatabases::for_test("stored_ids_are_binary_uuids_and_dates_are_bson_dates").await
    else {
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

/// The name of the index the server's query planner picks for `find` (none: a scan).
async fn index_used(store: &MongoStore, collection: &str, find: Document) -> String {
    fn index_name(stage: &Document) -> Option<String> {
        if let Ok(name) = stage.get_str("indexName") {
            return Some(name.to_owned());
        }
        let inner = stage.get_document("inputStage").ok()?;
        index_name(inner)
    }
    let mut command = doc! { "find": collection };
    command.extend(find);
    let explained = store
        .database()
        .run_command(doc! { "explain": command, "verbosity": "queryPlanner" })
        .await
        .unwrap();
    let winning = explained
        .get_document("queryPlanner")
        .and_then(|p| p.get_document("winningPlan"))
        .unwrap();
    index_name(winning).unwrap_or_else(|| format!("none: {winning}"))
}

#[tokio::test]
async fn checkout_sessions_are_stored_natively_and_found_through_their_partial_indexes() {
    let Some(dbs) = TestDatabases::for_test(
        "checkout_sessions_are_stored_natively_and_found_through_their_partial_indexes",
    )
    .await
    else {
        return;
    };
    let store = dbs.fresh_store().await;
    let p = plan();
    store
        .create_plan(&p, &AuditContext::admin("t"))
        .await
        .unwrap();
    let session = checkout_support::open(
        &store,
        &checkout_support::opening(p.id(), "alice", "k", now()),
    )
    .await;
    let raw = store
        .database()
        .collection::<Document>("checkout_sessions")
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert!(matches!(
        raw.get("_id"),
        Some(Bson::Binary(b)) if b.subtype == BinarySubtype::Uuid && b.bytes == session.id().as_uuid().as_bytes()
    ));
    assert!(matches!(raw.get("check_at"), Some(Bson::DateTime(_))));
    assert!(matches!(raw.get("amount"), Some(Bson::Int64(900))));

    let (filter, sort) = checkout_queries::due_checkouts(now());
    let due = doc! { "filter": filter, "sort": sort, "limit": 10_i64 };
    assert_eq!(
        index_used(&store, "checkout_sessions", due).await,
        "check_at_due"
    );
    let purge = doc! { "filter": checkout_queries::purgeable_checkouts(now()) };
    assert_eq!(
        index_used(&store, "checkout_sessions", purge).await,
        "ended_at_purgeable"
    );
    let events = doc! { "filter": checkout_queries::old_webhook_events(now()) };
    assert_eq!(
        index_used(&store, "webhook_events", events).await,
        "received_at"
    );
}

#[tokio::test]
async fn the_reconciler_finds_stale_purchases_through_the_partial_index_of_incomplete_ones() {
    let Some(dbs) = TestDatabases::for_test(
        "the_reconciler_finds_stale_purchases_through_the_partial_index_of_incomplete_ones",
    )
    .await
    else {
        return;
    };
    let store = dbs.fresh_store().await;
    let (filter, sort) = queries::stale_incomplete(now(), now());
    let stale = doc! { "filter": filter, "sort": sort, "limit": 10_i64 };
    assert_eq!(
        index_used(&store, "subscriptions", stale).await,
        "incomplete_updated_at"
    );
    let backlog = doc! { "filter": queries::stale_incomplete_all(now()) };
    assert_eq!(
        index_used(&store, "subscriptions", backlog).await,
        "incomplete_updated_at"
    );
}
