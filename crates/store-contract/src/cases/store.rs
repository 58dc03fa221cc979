//! Contract cases of [`Store`](seatkeeper_domain::ports::Store) itself: the readiness ping.

use crate::StoreFactory;

pub async fn the_store_answers_a_ping(factory: &dyn StoreFactory) {
    let store = factory.fresh().await;
    store
        .ping()
        .await
        .expect("a fresh store should answer a ping");
}
