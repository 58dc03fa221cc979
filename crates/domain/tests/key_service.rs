//! `KeyService` on the in-memory store: a secret finds its key until the key is revoked,
//! and a use is written down at most once per recording interval.

mod common;

use std::{sync::Arc, time::Duration};

use common::ManualClock;
use seatkeeper_domain::{
    ports::{ApiKeyRepository, Store},
    service::{KeyService, RevokeKeyError},
    ApiKey, ApiKeyId, KeyName, KeySecret, Role,
};
use seatkeeper_store_memory::MemoryStore;

fn service() -> (KeyService, Arc<MemoryStore>, Arc<ManualClock>) {
    let store = Arc::new(MemoryStore::new());
    let clock = Arc::new(ManualClock::default());
    let dyn_store: Arc<dyn Store> = store.clone();
    (KeyService::new(dyn_store, clock.clone()), store, clock)
}

async fn stored(store: &MemoryStore, secret: &KeySecret) -> ApiKey {
    store.key_by_hash(&secret.hash()).await.unwrap().unwrap()
}

#[tokio::test]
async fn a_secret_authenticates_its_key_until_the_key_is_revoked() {
    let (keys, _, _) = service();
    let (key, secret) = keys
        .create(KeyName::parse("ops").unwrap(), Role::Admin, "test")
        .await
        .unwrap();
    let found = keys.authenticate(&secret).await.unwrap().unwrap();
    assert_eq!((found.id(), found.role()), (key.id(), Role::Admin));
    assert_eq!(
        keys.authenticate(&KeySecret::generate()).await.unwrap(),
        None
    );
    let revoked = keys.revoke(key.id(), "test").await.unwrap();
    assert!(revoked.is_revoked());
    assert_eq!(keys.authenticate(&secret).await.unwrap(), None);
    assert!(keys.find(&secret).await.unwrap().unwrap().is_revoked());
    match keys.revoke(ApiKeyId::generate(), "test").await {
        Err(RevokeKeyError::NotFound(_)) => {}
        other => panic!("an unknown key is not found: {other:?}"),
    }
}

#[tokio::test]
async fn a_use_is_recorded_at_most_once_per_interval() {
    let (keys, store, clock) = service();
    let (_, secret) = keys
        .create(KeyName::parse("shop").unwrap(), Role::Purchases, "test")
        .await
        .unwrap();
    keys.authenticate(&secret).await.unwrap().unwrap();
    let first = stored(&store, &secret).await.last_used_at().unwrap();
    clock.advance(Duration::from_secs(59));
    keys.authenticate(&secret).await.unwrap().unwrap();
    assert_eq!(stored(&store, &secret).await.last_used_at(), Some(first));
    clock.advance(Duration::from_secs(1));
    keys.authenticate(&secret).await.unwrap().unwrap();
    let later = stored(&store, &secret).await.last_used_at().unwrap();
    let gap = later - first;
    assert!(
        gap >= ApiKey::USE_RECORDING_INTERVAL
            && gap < ApiKey::USE_RECORDING_INTERVAL + chrono::Duration::seconds(1),
        "{gap}"
    );
}
