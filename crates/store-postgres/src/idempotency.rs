//! [`IdempotencyRepository`]: claiming a key that has a record (a new key is claimed with
//! its reservation, in `batch.rs`), releasing a key's lock, and purging expired keys.

use async_trait::async_trait;
use seatkeeper_domain::{
    ports::{IdempotencyRepository, StoreError},
    Claim, ClaimKey, CustomerId, IdempotencyKey, IdempotencyRecord, KeyState, LockToken, Timestamp,
};
use sqlx::PgConnection;

use crate::{
    errors::{classify, corrupt, Fail},
    rows::{self, KEY_COLUMNS},
    statements::upsert_key,
    PostgresStore,
};

#[async_trait]
impl IdempotencyRepository for PostgresStore {
    async fn claim_key(&self, claim: &ClaimKey) -> Result<Claim, StoreError> {
        // A purchase claims a new key with its reservation (`reserve_with_new_key`); a
        // claim comes here for a key that has a record, decided alone.
        self.tx(|c| Box::pin(claim_tx(c, claim.clone()))).await
    }

    async fn release_key(
        &self,
        scope: &CustomerId,
        key: &IdempotencyKey,
        owner: LockToken,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE idempotency_keys SET lock_owner = NULL, lock_until = NULL \
             WHERE scope = $1 AND key = $2 AND state = 'open' AND lock_owner = $3",
        )
        .bind(scope.as_str())
        .bind(key.as_str())
        .bind(owner.as_uuid())
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }

    async fn purge_expired_keys(&self, now: Timestamp) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(done.rows_affected())
    }
}

// ----- the operation, run inside `PostgresStore::tx` -----

/// Inserts the fresh record of `claim` unless the key has one; returns whether it did.
async fn insert_fresh_key<'c>(
    c: impl sqlx::PgExecutor<'c>,
    claim: &ClaimKey,
    fresh: &IdempotencyRecord,
) -> Result<bool, sqlx::Error> {
    let lock_until = match &fresh.state() {
        KeyState::Open { lock: Some(l) } => Some(l.until),
        _ => None,
    };
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, state, lock_owner, lock_until, created_at, expires_at) \
         VALUES ($1, $2, $3, 'open', $4, $5, $6, $7) ON CONFLICT (scope, key) DO NOTHING",
    )
    .bind(fresh.scope().as_str())
    .bind(fresh.key().as_str())
    .bind(fresh.fingerprint().as_str())
    .bind(claim.owner.as_uuid())
    .bind(lock_until)
    .bind(fresh.created_at())
    .bind(fresh.expires_at())
    .execute(c)
    .await?
    .rows_affected();
    Ok(inserted == 1)
}

async fn claim_tx(c: &mut PgConnection, claim: ClaimKey) -> Result<Claim, Fail<StoreError>> {
    let fresh = claim.fresh_record();
    let select = format!(
        "SELECT {KEY_COLUMNS} FROM idempotency_keys WHERE scope = $1 AND key = $2 FOR UPDATE"
    );
    // Insert, or lock what is there. Under READ COMMITTED each statement sees the latest
    // commit, so a record swept between the two statements is simply inserted next time.
    for _ in 0..3 {
        if insert_fresh_key(&mut *c, &claim, &fresh).await? {
            return Ok(Claim::Acquired(fresh));
        }
        let Some(row) = sqlx::query(&select)
            .bind(claim.scope.as_str())
            .bind(claim.key.as_str())
            .fetch_optional(&mut *c)
            .await?
        else {
            continue;
        };
        let existing = rows::key_record(&row)?;
        let decision = claim.decide(&existing);
        if let Claim::Acquired(record) = &decision {
            upsert_key(c, record).await?;
        }
        return Ok(decision);
    }
    Err(Fail::Db(corrupt(
        "an idempotency key kept vanishing while it was claimed",
    )))
}
