//! [`IdempotencyRepository`]: claiming, releasing and purging idempotency keys in the
//! sharded key map.

use super::*;

#[async_trait]
impl IdempotencyRepository for MemoryStore {
    async fn claim_key(&self, claim: &ClaimKey) -> Result<Claim, StoreError> {
        match self.keys.entry(KeyId::new(&claim.scope, &claim.key)) {
            Entry::Vacant(v) => {
                let record = claim.fresh_record();
                v.insert(KeyEntry::of_open(&record));
                Ok(Claim::Acquired(record))
            }
            Entry::Occupied(mut o) => {
                let decision = claim.decide(&o.get().to_record(&claim.scope, &claim.key));
                if let Claim::Acquired(record) = &decision {
                    o.insert(KeyEntry::of_record(record.clone()));
                }
                Ok(decision)
            }
        }
    }

    async fn release_key(
        &self,
        scope: &CustomerId,
        key: &IdempotencyKey,
        owner: LockToken,
    ) -> Result<bool, StoreError> {
        let Some(mut rec) = self.keys.get_mut(&(scope, key) as &dyn KeyRef) else {
            return Ok(false);
        };
        if !rec.is_locked_by(owner) {
            return Ok(false);
        }
        rec.state = EntryState::Open { lock: None };
        Ok(true)
    }

    async fn purge_expired_keys(&self, now: Timestamp) -> Result<u64, StoreError> {
        // Counted as removed, not as a difference of lengths: claims may insert keys while
        // the sweep runs.
        let mut purged = 0u64;
        self.keys.retain(|_, r| {
            let keep = r.expires_at > now;
            if !keep {
                purged += 1;
            }
            keep
        });
        Ok(purged)
    }
}
