//! [`PurchaseRepository`]: the purchase steps, each under its plan's lock: reserving a
//! seat (under a held key or a key claimed in the same step) and completing a purchase.

use super::*;

/// The reservation of `cmd` under its plan's lock (`cell`, `None` when the plan does not
/// exist) by the key record `rec`, which the caller holds at `Started`: a rejection
/// finishes the key; a seat moves the key to `Reserved`.
fn reserve_under(
    cmd: &ReserveSeat,
    cell: Option<&mut PlanCell>,
    rec: &mut KeyEntry,
) -> Result<Reservation, StoreError> {
    if let Some(outcome) = cmd.rejection(cell.as_ref().map(|c| &c.plan)) {
        rec.finish(
            StoredOutcome::of(outcome.clone()),
            cmd.request_id.clone(),
            cmd.now,
        );
        return Ok(Reservation::Rejected(outcome));
    }
    let Some(cell) = cell else {
        return Err(StoreError::internal("a missing plan was not rejected"));
    };
    let (sub, entry) = cmd.take_seat(&mut cell.plan);
    cell.append([entry]);
    cell.counts.incomplete += 1;
    rec.recovery = RecoveryPoint::Reserved {
        subscription_id: sub.id(),
    };
    Ok(Reservation::Reserved(sub))
}

#[async_trait]
impl PurchaseRepository for MemoryStore {
    async fn reserve_seat(&self, cmd: &ReserveSeat) -> Result<Reservation, ReserveError> {
        let cell = self.cell(cmd.plan_id);
        let mut guard = cell.as_ref().map(|c| c.lock());
        let key_id = (&cmd.customer_id, &cmd.key);
        let mut rec = match self.keys.get_mut(&key_id as &dyn KeyRef) {
            Some(rec) if rec.is_locked_by(cmd.owner) && rec.recovery == RecoveryPoint::Started => {
                rec
            }
            _ => return Err(ReserveError::LockLost),
        };
        let reservation = reserve_under(cmd, guard.as_deref_mut(), &mut rec)?;
        drop(rec);
        self.file(&reservation);
        Ok(reservation)
    }

    async fn reserve_with_new_key(
        &self,
        cmd: &ReserveWithNewKey,
    ) -> Result<NewKeyReservation, StoreError> {
        let (claim, seat) = (cmd.claim(), cmd.seat());
        // Built before the plan's lock, which a hot plan's purchases queue for: a key
        // that turns out to exist (rare) wastes them.
        let (id, fresh) = (
            KeyId::new(&claim.scope, &claim.key),
            KeyEntry::of_open(&claim.fresh_record()),
        );
        let cell = self.cell(seat.plan_id);
        let mut guard = cell.as_ref().map(|c| c.lock());
        // The key map's shard stays locked from the check to the reservation: no claim
        // of the same key can come between.
        let Entry::Vacant(vacant) = self.keys.entry(id) else {
            return Ok(NewKeyReservation::KeyExists);
        };
        let mut rec = vacant.insert(fresh);
        let reservation = reserve_under(seat, guard.as_deref_mut(), &mut rec)?;
        drop(rec);
        self.file(&reservation);
        Ok(NewKeyReservation::Claimed(reservation))
    }

    async fn complete_purchase(&self, cmd: &CompletePurchase) -> Result<Completion, CompleteError> {
        let id = cmd.subscription_id;
        let plan_id = self
            .subscriptions
            .get(&id)
            .map(|s| s.plan_id())
            .ok_or(CompleteError::NotFound(id))?;
        let cell = self
            .cell(plan_id)
            .ok_or_else(|| StoreError::internal(format!("subscription {id} has no plan")))?;
        let mut cell = cell.lock();
        let mut entry = self
            .subscriptions
            .get_mut(&id)
            .ok_or(CompleteError::NotFound(id))?;
        if entry.status() != SubscriptionStatus::Incomplete {
            return Err(CompleteError::NotIncomplete(Box::new(Subscription::clone(
                &entry,
            ))));
        }
        let change = cmd.apply(Arc::make_mut(&mut entry));
        let sub = Arc::clone(&entry);
        drop(entry);
        cell.counts
            .moved(SubscriptionStatus::Incomplete, sub.status());
        cell.record(change.seat_move(id), &cmd.ctx, cmd.now);
        let outcome = change.outcome;
        if let Some(key) = sub.idempotency_key() {
            self.finish_key(
                &(sub.customer_id(), key),
                id,
                StoredOutcome::of_ref(&outcome, &sub),
                &cmd.request_id,
                cmd.now,
            );
        }
        self.incomplete.remove(&id);
        self.recovery.remove(&id);
        if let (Some(at), ChargeResult::Declined { .. }) = (cmd.verify_after, &cmd.result) {
            self.recovery.insert(
                id,
                RecoveryRow {
                    phase: RecoveryPhase::Verify,
                    lease: None,
                    verify_after: Some(at),
                },
            );
        }
        Ok(Completion { outcome })
    }
}
