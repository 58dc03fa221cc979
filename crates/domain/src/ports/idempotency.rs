//! The idempotency repository: claiming a customer's key, letting go of it, forgetting
//! old ones.

use async_trait::async_trait;

use super::StoreError;
use crate::model::{Claim, ClaimKey, CustomerId, IdempotencyKey, LockToken, Timestamp};

#[async_trait]
pub trait IdempotencyRepository: Send + Sync {
    /// Claims `(scope, key)` in one atomic step guarded by uniqueness, never
    /// read-then-write across steps: inserts [`ClaimKey::fresh_record`] when there is no
    /// record, and otherwise stores and returns what [`ClaimKey::decide`] says. Of many
    /// concurrent claims of a new key exactly one gets `Acquired`.
    async fn claim_key(&self, claim: &ClaimKey) -> Result<Claim, StoreError>;

    /// Lets go of the lock if `owner` still holds it (the record stays open, with its
    /// recovery point, for a retry). Returns whether it did. A stale owner never
    /// touches a newer owner's lock.
    async fn release_key(
        &self,
        scope: &CustomerId,
        key: &IdempotencyKey,
        owner: LockToken,
    ) -> Result<bool, StoreError>;

    /// Deletes records whose `expires_at` is at or before `now`; returns how many.
    async fn purge_expired_keys(&self, now: Timestamp) -> Result<u64, StoreError>;
}
