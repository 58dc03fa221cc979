//! The two purchase phases as batch transactions, for the [`Coalescer`](crate::coalesce):
//! one transaction takes many reservations of one plan, or completes many purchases,
//! with one lock of each plan row, a handful of array statements and one commit.
//!
//! Each request in a batch keeps the semantics of the port method it comes from — it is
//! checked, decided and written exactly as it would be alone, in queue order, as if the
//! requests had run one after another — and the batch is all-or-nothing only in the
//! sense that a database failure rolls every request of it back (each then fails or is
//! run again alone, see `PostgresStore`). Locks are taken in the store's order: keys
//! (sorted), subscriptions (sorted), plans (sorted, last).

use std::collections::{BTreeMap, HashMap, HashSet};

use seatkeeper_domain::{
    ports::{
        ChargeResult, CompleteError, CompletePurchase, Completion, Reservation, ReserveError,
        ReserveSeat, StoreError,
    },
    AuditAction, AuditEntry, ClaimKey, KeyState, Plan, PlanId, PurchaseOutcome, RecoveryPoint,
    Subscription, SubscriptionStatus,
};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    errors::corrupt,
    rows::{self, KEY_COLUMNS, PLAN_COLUMNS, SUBSCRIPTION_COLUMNS},
};

/// Inserts audit entries with one statement.
pub(crate) async fn insert_audits(
    c: &mut PgConnection,
    entries: &[AuditEntry],
) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut cols = AuditColumns::default();
    for e in entries {
        cols.plan_id.push(e.plan_id.as_uuid());
        cols.seq.push(e.seq as i64);
        cols.id.push(e.id.as_uuid());
        cols.at.push(e.at);
        cols.action.push(e.action.as_str().to_owned());
        cols.subscription_id
            .push(e.subscription_id.map(|s| s.as_uuid()));
        cols.actor.push(e.actor.clone());
        cols.trace_id.push(e.trace_id.clone());
        cols.before.push(e.seats_left_before as i32);
        cols.after.push(e.seats_left_after as i32);
        cols.reason.push(e.reason.clone());
    }
    sqlx::query(
        "INSERT INTO audit_entries (plan_id, seq, id, at, action, subscription_id, actor, trace_id, \
         seats_left_before, seats_left_after, reason) \
         SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::uuid[], $4::timestamptz[], $5::text[], $6::uuid[], \
         $7::text[], $8::text[], $9::int[], $10::int[], $11::text[])",
    )
    .bind(cols.plan_id)
    .bind(cols.seq)
    .bind(cols.id)
    .bind(cols.at)
    .bind(cols.action)
    .bind(cols.subscription_id)
    .bind(cols.actor)
    .bind(cols.trace_id)
    .bind(cols.before)
    .bind(cols.after)
    .bind(cols.reason)
    .execute(c)
    .await?;
    Ok(())
}

#[derive(Default)]
struct AuditColumns {
    plan_id: Vec<Uuid>,
    seq: Vec<i64>,
    id: Vec<Uuid>,
    at: Vec<chrono::DateTime<chrono::Utc>>,
    action: Vec<String>,
    subscription_id: Vec<Option<Uuid>>,
    actor: Vec<String>,
    trace_id: Vec<String>,
    before: Vec<i32>,
    after: Vec<i32>,
    reason: Vec<Option<String>>,
}

/// Key outcomes to write: `(scope, key, outcome, request_id, finished_at, purchase)`;
/// `purchase` narrows a row to the key whose recovery point is that subscription.
#[derive(Default)]
struct FinishedKeys {
    scope: Vec<String>,
    key: Vec<String>,
    outcome: Vec<serde_json::Value>,
    request_id: Vec<String>,
    at: Vec<chrono::DateTime<chrono::Utc>>,
    purchase: Vec<Option<Uuid>>,
}

impl FinishedKeys {
    fn push(
        &mut self,
        scope: &str,
        key: &str,
        outcome: &PurchaseOutcome,
        request_id: &str,
        at: chrono::DateTime<chrono::Utc>,
        purchase: Option<Uuid>,
    ) -> Result<(), sqlx::Error> {
        self.outcome
            .push(serde_json::to_value(outcome).map_err(corrupt)?);
        self.scope.push(scope.to_owned());
        self.key.push(key.to_owned());
        self.request_id.push(request_id.to_owned());
        self.at.push(at);
        self.purchase.push(purchase);
        Ok(())
    }

    /// Finishes every listed key that is still open (and, where a purchase is named,
    /// still that purchase's).
    async fn write(self, c: &mut PgConnection) -> Result<(), sqlx::Error> {
        if self.scope.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "UPDATE idempotency_keys k SET state = 'finished', outcome = u.outcome, \
             outcome_request_id = u.request_id, finished_at = u.at, lock_owner = NULL, lock_until = NULL \
             FROM UNNEST($1::text[], $2::text[], $3::jsonb[], $4::text[], $5::timestamptz[], $6::uuid[]) \
             AS u(scope, key, outcome, request_id, at, purchase) \
             WHERE k.scope = u.scope AND k.key = u.key AND k.state = 'open' \
             AND (u.purchase IS NULL OR k.recovery_subscription_id = u.purchase)",
        )
        .bind(self.scope)
        .bind(self.key)
        .bind(self.outcome)
        .bind(self.request_id)
        .bind(self.at)
        .bind(self.purchase)
        .execute(c)
        .await?;
        Ok(())
    }
}

/// Locks the listed keys in (scope, key) order and returns the records found.
async fn lock_keys(
    c: &mut PgConnection,
    keys: &[(String, String)],
) -> Result<HashMap<(String, String), seatkeeper_domain::IdempotencyRecord>, sqlx::Error> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    let (scopes, names): (Vec<&str>, Vec<&str>) =
        keys.iter().map(|(s, k)| (s.as_str(), k.as_str())).unzip();
    let sql = format!(
        "SELECT {KEY_COLUMNS} FROM idempotency_keys \
         WHERE (scope, key) IN (SELECT * FROM UNNEST($1::text[], $2::text[])) \
         ORDER BY scope, key FOR UPDATE"
    );
    let rows = sqlx::query(&sql)
        .bind(scopes)
        .bind(names)
        .fetch_all(&mut *c)
        .await?;
    let mut found = HashMap::with_capacity(rows.len());
    for row in &rows {
        let record = rows::key_record(row)?;
        found.insert(
            (
                record.scope.as_str().to_owned(),
                record.key.as_str().to_owned(),
            ),
            record,
        );
    }
    Ok(found)
}

/// Locks the listed plans in id order and returns those that exist.
async fn lock_plans(
    c: &mut PgConnection,
    ids: impl IntoIterator<Item = PlanId>,
) -> Result<BTreeMap<PlanId, Plan>, sqlx::Error> {
    let ids: Vec<Uuid> = ids
        .into_iter()
        .map(|id| id.as_uuid())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let sql = format!("SELECT {PLAN_COLUMNS} FROM plans WHERE id = ANY($1) ORDER BY id FOR UPDATE");
    let mut plans = BTreeMap::new();
    for row in sqlx::query(&sql).bind(&ids).fetch_all(&mut *c).await? {
        let plan = rows::plan(&row)?;
        plans.insert(plan.id, plan);
    }
    Ok(plans)
}

/// Writes the seats and seq of every plan in `plans` that moved since `before`.
async fn update_plans(
    c: &mut PgConnection,
    plans: &BTreeMap<PlanId, Plan>,
    before: &BTreeMap<PlanId, Plan>,
) -> Result<(), sqlx::Error> {
    let (ids, (seats, seqs)): (Vec<Uuid>, (Vec<i32>, Vec<i64>)) = plans
        .values()
        .filter(|p| before.get(&p.id).is_none_or(|b| b.seq != p.seq))
        .map(|p| (p.id.as_uuid(), (p.seats_left as i32, p.seq as i64)))
        .unzip();
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE plans p SET seats_left = u.seats_left, seq = u.seq \
         FROM UNNEST($1::uuid[], $2::int[], $3::bigint[]) AS u(id, seats_left, seq) WHERE p.id = u.id",
    )
    .bind(ids)
    .bind(seats)
    .bind(seqs)
    .execute(c)
    .await?;
    Ok(())
}

/// [`PurchaseRepository::reserve_seat`](seatkeeper_domain::ports::PurchaseRepository::reserve_seat)
/// for every request of `cmds`, of any plans, in one transaction.
pub(crate) async fn reserve_tx(
    c: &mut PgConnection,
    cmds: Vec<ReserveSeat>,
) -> Result<Vec<Result<Reservation, ReserveError>>, sqlx::Error> {
    if cmds.is_empty() {
        return Ok(Vec::new());
    }
    let wanted: Vec<(String, String)> = cmds
        .iter()
        .map(|c| (c.customer_id.as_str().to_owned(), c.key.as_str().to_owned()))
        .collect();
    let keys = lock_keys(c, &wanted).await?;
    // Whose key is still theirs and has reserved nothing; a key appears at most once.
    let mut taken = HashSet::new();
    let holds: Vec<bool> = cmds
        .iter()
        .zip(&wanted)
        .map(|(cmd, id)| {
            keys.get(id)
                .is_some_and(|k| k.is_locked_by(cmd.owner) && k.recovery == RecoveryPoint::Started)
                && taken.insert(id.clone())
        })
        .collect();
    if !holds.contains(&true) {
        return Ok(cmds.iter().map(|_| Err(ReserveError::LockLost)).collect());
    }

    let held = cmds.iter().zip(&holds).filter(|(_, h)| **h);
    let mut plans = lock_plans(c, held.map(|(cmd, _)| cmd.plan_id)).await?;
    let before = plans.clone();
    let mut answers = Vec::with_capacity(cmds.len());
    let mut subs = Vec::new();
    let mut entries = Vec::new();
    let mut finished = FinishedKeys::default();
    for (cmd, holds) in cmds.iter().zip(holds) {
        if !holds {
            answers.push(Err(ReserveError::LockLost));
            continue;
        }
        let plan = plans.get_mut(&cmd.plan_id);
        if let Some(outcome) = cmd.rejection(plan.as_deref()) {
            finished.push(
                cmd.customer_id.as_str(),
                cmd.key.as_str(),
                &outcome,
                &cmd.request_id,
                cmd.now,
                None,
            )?;
            answers.push(Ok(Reservation::Rejected(outcome)));
            continue;
        }
        let p = plan.expect("a plan that gives a seat exists");
        p.seats_left -= 1;
        p.seq += 1;
        let sub = Subscription::reserve(
            cmd.subscription_id,
            p,
            cmd.customer_id.clone(),
            cmd.payment_method.clone(),
            Some(cmd.key.clone()),
            cmd.now,
        );
        entries.push(AuditEntry::record(
            p,
            AuditAction::SeatReserved,
            p.seats_left + 1,
            Some(sub.id),
            None,
            &cmd.ctx,
            cmd.now,
        ));
        subs.push(sub.clone());
        answers.push(Ok(Reservation::Reserved(sub)));
    }

    update_plans(c, &plans, &before).await?;
    if !subs.is_empty() {
        insert_incomplete(c, &subs).await?;
        insert_audits(c, &entries).await?;
        let (scopes, names, ids): (Vec<&str>, Vec<&str>, Vec<Uuid>) = subs
            .iter()
            .map(|s| {
                let key = s.idempotency_key.as_ref().expect("a purchase has its key");
                (s.customer_id.as_str(), key.as_str(), s.id.as_uuid())
            })
            .fold(Default::default(), |(mut a, mut b, mut c), (x, y, z)| {
                a.push(x);
                b.push(y);
                c.push(z);
                (a, b, c)
            });
        sqlx::query(
            "UPDATE idempotency_keys k SET recovery_subscription_id = u.sub \
             FROM UNNEST($1::text[], $2::text[], $3::uuid[]) AS u(scope, key, sub) \
             WHERE k.scope = u.scope AND k.key = u.key",
        )
        .bind(scopes)
        .bind(names)
        .bind(ids)
        .execute(&mut *c)
        .await?;
    }
    finished.write(c).await?;
    Ok(answers)
}

/// Inserts freshly reserved (`incomplete`) subscriptions with one statement.
async fn insert_incomplete(c: &mut PgConnection, subs: &[Subscription]) -> Result<(), sqlx::Error> {
    let mut id = Vec::with_capacity(subs.len());
    let mut plan_id = Vec::with_capacity(subs.len());
    let mut customer = Vec::with_capacity(subs.len());
    let mut method = Vec::with_capacity(subs.len());
    let mut amount = Vec::with_capacity(subs.len());
    let mut currency = Vec::with_capacity(subs.len());
    let mut interval = Vec::with_capacity(subs.len());
    let mut key = Vec::with_capacity(subs.len());
    let mut at = Vec::with_capacity(subs.len());
    for s in subs {
        id.push(s.id.as_uuid());
        plan_id.push(s.plan_id.as_uuid());
        customer.push(s.customer_id.as_str());
        method.push(s.payment_method.as_str());
        amount.push(s.unit_amount.get());
        currency.push(s.currency.as_str());
        interval.push(s.interval.as_str());
        key.push(s.idempotency_key.as_ref().map(|k| k.as_str()));
        at.push(s.created_at);
    }
    sqlx::query(
        "INSERT INTO subscriptions (id, plan_id, customer_id, status, payment_method, unit_amount, currency, \
         \"interval\", idempotency_key, created_at, updated_at) \
         SELECT u.id, u.plan_id, u.customer_id, 'incomplete', u.method, u.amount, u.currency, u.interval, u.key, u.at, u.at \
         FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[], \
         $9::timestamptz[]) AS u(id, plan_id, customer_id, method, amount, currency, interval, key, at)",
    )
    .bind(id)
    .bind(plan_id)
    .bind(customer)
    .bind(method)
    .bind(amount)
    .bind(currency)
    .bind(interval)
    .bind(key)
    .bind(at)
    .execute(c)
    .await?;
    Ok(())
}

/// [`PurchaseRepository::complete_purchase`](seatkeeper_domain::ports::PurchaseRepository::complete_purchase)
/// for every request of `cmds`, of any plans, in one transaction.
pub(crate) async fn complete_tx(
    c: &mut PgConnection,
    cmds: Vec<CompletePurchase>,
) -> Result<Vec<Result<Completion, CompleteError>>, sqlx::Error> {
    if cmds.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids: Vec<Uuid> = cmds.iter().map(|c| c.subscription_id.as_uuid()).collect();
    ids.sort_unstable();
    ids.dedup();
    // The keys are found through the subscriptions (whose customer and key never
    // change): read them unlocked, lock the keys, then lock and re-read the subscriptions.
    let key_rows = sqlx::query(
        "SELECT customer_id, idempotency_key FROM subscriptions \
         WHERE id = ANY($1) AND idempotency_key IS NOT NULL",
    )
    .bind(&ids)
    .fetch_all(&mut *c)
    .await?;
    let mut keys = Vec::with_capacity(key_rows.len());
    for row in &key_rows {
        use sqlx::Row;
        keys.push((row.try_get("customer_id")?, row.try_get("idempotency_key")?));
    }
    lock_keys(c, &keys).await?;
    let sql = format!(
        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = ANY($1) ORDER BY id FOR UPDATE"
    );
    let mut subs = HashMap::with_capacity(ids.len());
    for row in sqlx::query(&sql).bind(&ids).fetch_all(&mut *c).await? {
        let sub = rows::subscription(&row)?;
        subs.insert(sub.id, sub);
    }

    // Decide each in queue order, as if alone.
    let mut answers: Vec<Result<Completion, CompleteError>> = Vec::with_capacity(cmds.len());
    let mut done = Vec::new(); // (index of the answer, change) of each completed purchase
    for cmd in &cmds {
        let id = cmd.subscription_id;
        let Some(sub) = subs.get_mut(&id) else {
            answers.push(Err(CompleteError::NotFound(id)));
            continue;
        };
        if sub.status != SubscriptionStatus::Incomplete {
            answers.push(Err(CompleteError::NotIncomplete(Box::new(sub.clone()))));
            continue;
        }
        let change = cmd.apply(sub);
        done.push((
            answers.len(),
            change.seat_delta,
            change.action,
            change.reason,
        ));
        answers.push(Ok(Completion {
            subscription: sub.clone(),
            outcome: change.outcome,
        }));
    }
    if done.is_empty() {
        return Ok(answers);
    }

    let completed: Vec<(&CompletePurchase, &Completion)> = done
        .iter()
        .map(|(i, ..)| {
            let Ok(completion) = &answers[*i] else {
                unreachable!("a completed purchase has a completion")
            };
            (&cmds[*i], completion)
        })
        .collect();
    update_completed(c, &completed).await?;
    let done_ids: Vec<Uuid> = completed
        .iter()
        .map(|(_, done)| done.subscription.id.as_uuid())
        .collect();
    sqlx::query("DELETE FROM recovery_tasks WHERE subscription_id = ANY($1)")
        .bind(&done_ids)
        .execute(&mut *c)
        .await?;
    let (verify_ids, verify_at): (Vec<Uuid>, Vec<_>) = completed
        .iter()
        .filter_map(|(cmd, done)| match (cmd.verify_after, &cmd.result) {
            (Some(at), ChargeResult::Declined { .. }) => Some((done.subscription.id.as_uuid(), at)),
            _ => None,
        })
        .unzip();
    if !verify_ids.is_empty() {
        sqlx::query(
            "INSERT INTO recovery_tasks (subscription_id, phase, verify_after) \
             SELECT u.id, 'verify', u.at FROM UNNEST($1::uuid[], $2::timestamptz[]) AS u(id, at)",
        )
        .bind(verify_ids)
        .bind(verify_at)
        .execute(&mut *c)
        .await?;
    }
    let mut finished = FinishedKeys::default();
    for (cmd, done) in &completed {
        let sub = &done.subscription;
        if let Some(key) = &sub.idempotency_key {
            finished.push(
                sub.customer_id.as_str(),
                key.as_str(),
                &done.outcome,
                &cmd.request_id,
                cmd.now,
                Some(sub.id.as_uuid()),
            )?;
        }
    }
    finished.write(c).await?;

    // The plan rows last, in id order: locked for two statements and the commit.
    let mut plans = lock_plans(
        c,
        completed.iter().map(|(_, done)| done.subscription.plan_id),
    )
    .await?;
    let before = plans.clone();
    let mut entries = Vec::with_capacity(done.len());
    for ((cmd, completion), (_, delta, action, reason)) in completed.iter().zip(&done) {
        let plan_id: PlanId = completion.subscription.plan_id;
        let plan = plans
            .get_mut(&plan_id)
            .ok_or_else(|| corrupt(format!("plan {plan_id} vanished")))?;
        plan.seats_left += delta;
        plan.seq += 1;
        entries.push(AuditEntry::record(
            plan,
            *action,
            plan.seats_left - delta,
            Some(completion.subscription.id),
            reason.clone(),
            &cmd.ctx,
            cmd.now,
        ));
    }
    update_plans(c, &plans, &before).await?;
    insert_audits(c, &entries).await?;
    Ok(answers)
}

/// Writes the completed subscriptions' new state with one statement.
async fn update_completed(
    c: &mut PgConnection,
    completed: &[(&CompletePurchase, &Completion)],
) -> Result<(), sqlx::Error> {
    let n = completed.len();
    let (mut id, mut status, mut payment) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut start, mut end, mut updated, mut canceled, mut reason) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for (_, done) in completed {
        let s = &done.subscription;
        id.push(s.id.as_uuid());
        status.push(s.status.as_str());
        payment.push(s.payment_id.as_deref());
        start.push(s.current_period_start);
        end.push(s.current_period_end);
        updated.push(s.updated_at);
        canceled.push(s.canceled_at);
        reason.push(s.failure_reason.as_deref());
    }
    sqlx::query(
        "UPDATE subscriptions s SET status = u.status, payment_id = u.payment_id, \
         current_period_start = u.period_start, current_period_end = u.period_end, updated_at = u.updated_at, \
         canceled_at = u.canceled_at, failure_reason = u.failure_reason \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::timestamptz[], \
         $7::timestamptz[], $8::text[]) \
         AS u(id, status, payment_id, period_start, period_end, updated_at, canceled_at, failure_reason) \
         WHERE s.id = u.id",
    )
    .bind(id)
    .bind(status)
    .bind(payment)
    .bind(start)
    .bind(end)
    .bind(updated)
    .bind(canceled)
    .bind(reason)
    .execute(c)
    .await?;
    Ok(())
}

/// The fast path of [`IdempotencyRepository::claim_key`](seatkeeper_domain::ports::IdempotencyRepository::claim_key)
/// for many claims: inserts the fresh record of each claim whose key has none, with one
/// statement. `true` where it did (the claim is acquired); `false` where the key has a
/// record, or another claim of this batch took it first: that claim is decided alone.
pub(crate) async fn insert_fresh_keys(
    c: &mut PgConnection,
    claims: Vec<ClaimKey>,
) -> Result<Vec<Result<bool, StoreError>>, sqlx::Error> {
    let n = claims.len();
    let mut first = HashSet::with_capacity(n);
    let (mut scope, mut key, mut fingerprint, mut owner) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut until, mut created, mut expires) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    // In (scope, key) order, so that two batches inserting the same keys (two
    // instances) wait for each other in one direction and never deadlock.
    let mut sorted: Vec<&ClaimKey> = claims.iter().collect();
    sorted.sort_by(|a, b| {
        (a.scope.as_str(), a.key.as_str()).cmp(&(b.scope.as_str(), b.key.as_str()))
    });
    for claim in sorted {
        if !first.insert((claim.scope.as_str(), claim.key.as_str())) {
            continue;
        }
        let fresh = claim.fresh_record();
        let KeyState::Open { lock: Some(lock) } = &fresh.state else {
            unreachable!("a fresh record is open and locked")
        };
        scope.push(claim.scope.as_str());
        key.push(claim.key.as_str());
        fingerprint.push(claim.fingerprint.as_str());
        owner.push(lock.owner.as_uuid());
        until.push(lock.until);
        created.push(fresh.created_at);
        expires.push(fresh.expires_at);
    }
    let rows = sqlx::query(
        "INSERT INTO idempotency_keys (scope, key, fingerprint, state, lock_owner, lock_until, created_at, expires_at) \
         SELECT u.scope, u.key, u.fingerprint, 'open', u.owner, u.until, u.created, u.expires \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::uuid[], $5::timestamptz[], $6::timestamptz[], \
         $7::timestamptz[]) AS u(scope, key, fingerprint, owner, until, created, expires) \
         ON CONFLICT (scope, key) DO NOTHING RETURNING lock_owner",
    )
    .bind(scope)
    .bind(key)
    .bind(fingerprint)
    .bind(owner)
    .bind(until)
    .bind(created)
    .bind(expires)
    .fetch_all(&mut *c)
    .await?;
    let mut inserted = HashSet::with_capacity(rows.len());
    for row in &rows {
        use sqlx::Row;
        inserted.insert(row.try_get::<Uuid, _>("lock_owner")?);
    }
    Ok(claims
        .iter()
        .map(|claim| Ok(inserted.contains(&claim.owner.as_uuid())))
        .collect())
}
