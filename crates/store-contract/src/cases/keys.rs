//! Contract cases of [`ApiKeyRepository`]: a key reads back exactly by its secret's hash,
//! lists in id order, is revoked once, and its last use only moves forward, also when
//! many requests record it at once.
//!
//! [`ApiKeyRepository`]: seatkeeper_domain::ports::ApiKeyRepository

use std::sync::Arc;

use seatkeeper_domain::{ports::StoreError, ApiKey, ApiKeyId, KeyName, KeySecret, Role, Timestamp};
use tokio::sync::Barrier;

use crate::{
    support::{now, secs},
    StoreFactory,
};

fn new_key(name: &str, role: Role, at: Timestamp) -> (ApiKey, KeySecret) {
    ApiKey::create(KeyName::parse(name).unwrap(), role, at)
}

async fn by_secret(store: &dyn seatkeeper_domain::ports::Store, secret: &KeySecret) -> ApiKey {
    store
        .key_by_hash(&secret.hash())
        .await
        .expect("key_by_hash failed")
        .expect("the key is not found by its secret's hash")
}

pub async fn a_created_key_reads_back_exactly_by_its_secrets_hash_and_no_other(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let (admin, admin_secret) = new_key("ops", Role::Admin, now());
    let (buyer, buyer_secret) = new_key("shop", Role::Purchases, now());
    store.create_key(&admin).await.expect("create_key failed");
    store.create_key(&buyer).await.expect("create_key failed");
    assert_eq!(by_secret(&*store, &admin_secret).await, admin);
    assert_eq!(by_secret(&*store, &buyer_secret).await, buyer);
    let stranger = KeySecret::generate();
    assert_eq!(
        store
            .key_by_hash(&stranger.hash())
            .await
            .expect("key_by_hash failed"),
        None
    );
}

pub async fn storing_a_key_whose_id_or_hash_is_stored_fails_and_changes_nothing(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let (key, secret) = new_key("ops", Role::Admin, now());
    store.create_key(&key).await.expect("create_key failed");
    let mut changed = key.clone();
    changed.revoke(now() + secs(1));
    match store.create_key(&changed).await {
        Err(StoreError::Internal(_)) => {}
        other => panic!("storing a key twice must fail as Internal, got {other:?}"),
    }
    assert_eq!(by_secret(&*store, &secret).await, key);
    assert_eq!(
        store.list_keys(None, 10).await.expect("list_keys failed"),
        vec![key]
    );
}

pub async fn keys_are_listed_in_id_order_one_page_at_a_time_revoked_ones_included(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let at = now();
    let mut keys = Vec::new();
    for i in 0..5 {
        let (key, _) = new_key(&format!("key {i}"), Role::Purchases, at + secs(i));
        store.create_key(&key).await.expect("create_key failed");
        keys.push(key);
    }
    keys.sort_by_key(ApiKey::id);
    let revoked = store
        .revoke_key(keys[1].id(), at + secs(10))
        .await
        .expect("revoke_key failed")
        .expect("a stored key is revoked");
    keys[1] = revoked;
    let first = store.list_keys(None, 2).await.expect("list_keys failed");
    assert_eq!(first, keys[..2]);
    let rest = store
        .list_keys(Some(keys[1].id()), 10)
        .await
        .expect("list_keys failed");
    assert_eq!(rest, keys[2..]);
    let none = store
        .list_keys(Some(keys[4].id()), 10)
        .await
        .expect("list_keys failed");
    assert!(
        none.is_empty(),
        "nothing comes after the last key: {none:?}"
    );
}

pub async fn revoking_a_key_keeps_the_first_time_and_an_unknown_key_is_none(
    factory: &dyn StoreFactory,
) {
    let store = factory.fresh().await;
    let at = now();
    let (key, secret) = new_key("ops", Role::Admin, at);
    store.create_key(&key).await.expect("create_key failed");
    let first = store
        .revoke_key(key.id(), at + secs(1))
        .await
        .expect("revoke_key failed")
        .expect("a stored key is revoked");
    assert_eq!(first.revoked_at(), Some(at + secs(1)));
    let again = store
        .revoke_key(key.id(), at + secs(2))
        .await
        .expect("revoke_key failed")
        .expect("a revoked key is still there");
    assert_eq!(again, first, "a second revocation changes nothing");
    assert_eq!(by_secret(&*store, &secret).await, first);
    assert_eq!(
        store
            .revoke_key(ApiKeyId::generate(), at)
            .await
            .expect("revoke_key failed"),
        None
    );
}

pub async fn recording_a_use_only_moves_the_last_use_forward(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    let at = now();
    let (key, secret) = new_key("ops", Role::Purchases, at);
    store.create_key(&key).await.expect("create_key failed");
    store
        .record_key_use(key.id(), at + secs(5))
        .await
        .expect("record_key_use failed");
    store
        .record_key_use(key.id(), at + secs(3))
        .await
        .expect("record_key_use failed");
    assert_eq!(
        by_secret(&*store, &secret).await.last_used_at(),
        Some(at + secs(5))
    );
    store
        .record_key_use(ApiKeyId::generate(), at)
        .await
        .expect("recording a use of an unknown key changes nothing and succeeds");
    assert_eq!(
        store
            .list_keys(None, 10)
            .await
            .expect("list_keys failed")
            .len(),
        1
    );
}

pub async fn many_simultaneous_uses_and_revocations_of_one_key_keep_the_latest_use_and_one_revocation(
    factory: &dyn StoreFactory,
) {
    const TASKS: i64 = 64;
    let store = factory.fresh().await;
    let at = now();
    let (key, secret) = new_key("ops", Role::Purchases, at);
    store.create_key(&key).await.expect("create_key failed");
    let barrier = Arc::new(Barrier::new(TASKS as usize));
    let tasks: Vec<_> = (0..TASKS)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            let id = key.id();
            tokio::spawn(async move {
                barrier.wait().await;
                if i % 4 == 0 {
                    let revoked = store
                        .revoke_key(id, at + secs(1000 + i))
                        .await
                        .expect("revoke_key failed")
                        .expect("the key is there");
                    revoked.revoked_at().expect("a revoked key has a time")
                } else {
                    store
                        .record_key_use(id, at + secs(i))
                        .await
                        .expect("record_key_use failed");
                    at
                }
            })
        })
        .collect();
    let mut revocations = Vec::new();
    for t in tasks {
        let seen = t.await.expect("a task panicked");
        if seen != at {
            revocations.push(seen);
        }
    }
    let last = by_secret(&*store, &secret).await;
    assert_eq!(
        last.last_used_at(),
        Some(at + secs(TASKS - 1)),
        "the latest use wins whatever the order"
    );
    let revoked_at = last.revoked_at().expect("the key is revoked");
    assert!(
        revocations.iter().all(|r| *r == revoked_at),
        "every revocation answers the one that landed first ({revoked_at}): {revocations:?}"
    );
}
