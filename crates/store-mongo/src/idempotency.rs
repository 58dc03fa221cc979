//! [`IdempotencyRepository`] for [`MongoStore`]: claiming a key (inserting it, or taking
//! over a record whose lock expired, as the domain decides), releasing it, and purging
//! expired records. Two claims that insert the same new key race on its `_id`
//! (`{ scope, key }`); the loser claims again, up to [`CLAIM_ATTEMPTS`] times.

use async_trait::async_trait;
use seatkeeper_domain::{
    ports::{IdempotencyRepository, StoreError},
    Claim, ClaimKey, CustomerId, IdempotencyKey, IdempotencyRecord, LockToken, Timestamp,
};

use crate::{
    documents::KeyDoc,
    errors::{classify, corrupt, retry_claim, Facts, Retry},
    queries,
    transaction::{self, unmatched},
    MongoStore,
};

/// How many times a claim runs when its insert of a new key loses to another claim's.
const CLAIM_ATTEMPTS: u32 = 3;

#[async_trait]
impl IdempotencyRepository for MongoStore {
    async fn claim_key(&self, claim: &ClaimKey) -> Result<Claim, StoreError> {
        let mut attempt = 1;
        loop {
            let claim = claim.clone();
            let keys = self.keys.clone();
            let mut session = self.session().await?;
            let run = transaction::run(&mut session, async move |s| {
                let filter = queries::key(&claim.scope, &claim.key);
                let Some(found) = keys.find_one(filter.clone()).session(&mut *s).await? else {
                    // The `_id` (scope, key) settles a race between two inserts.
                    let fresh = claim.fresh_record();
                    keys.insert_one(KeyDoc::from(&fresh))
                        .session(&mut *s)
                        .await?;
                    return Ok(Claim::Acquired(fresh));
                };
                let existing = IdempotencyRecord::try_from(found).map_err(corrupt)?;
                let decision = claim.decide(&existing);
                if let Claim::Acquired(record) = &decision {
                    let written = keys
                        .replace_one(filter, KeyDoc::from(record))
                        .session(&mut *s)
                        .await?;
                    if written.matched_count != 1 {
                        return Err(unmatched("the key takeover"));
                    }
                }
                Ok(decision)
            });
            match self.limited(run).await? {
                Ok(claim) => return Ok(claim),
                Err(e)
                    if attempt < CLAIM_ATTEMPTS && retry_claim(&Facts::of(&e)) == Retry::Claim =>
                {
                    tracing::debug!(
                        attempt,
                        "a concurrent claim inserted the key first; claiming again"
                    );
                    attempt += 1;
                }
                Err(e) => return Err(classify(e)),
            }
        }
    }

    async fn release_key(
        &self,
        scope: &CustomerId,
        key: &IdempotencyKey,
        owner: LockToken,
    ) -> Result<bool, StoreError> {
        let written = self
            .keys
            .update_one(
                queries::key_held(scope, key, owner),
                queries::release_lock(),
            )
            .await
            .map_err(classify)?;
        Ok(written.matched_count == 1)
    }

    async fn purge_expired_keys(&self, now: Timestamp) -> Result<u64, StoreError> {
        let deleted = self
            .keys
            .delete_many(queries::expired_keys(now))
            .await
            .map_err(classify)?;
        Ok(deleted.deleted_count)
    }
}
