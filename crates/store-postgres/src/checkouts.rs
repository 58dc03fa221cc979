//! [`CheckoutRepository`]: checkout sessions (a seat held while its customer pays) and
//! the ids of the webhook events already claimed.
//!
//! Each step reads what the domain needs, locked, lets the domain decide
//! ([`OpenCheckout::decide`] and [`OpenCheckout::hold`], [`CheckoutSession::apply`]) and
//! writes exactly what it returned: the session, the new subscription, the plan's
//! `seats_left` and `seq`, the audit entries. Nothing here decides anything. Openings and
//! the changes that may move a seat go to the store's coalescer of checkout steps, which
//! runs many in one transaction with one lock of each plan row and one commit
//! (`checkout_batch.rs`); the changes that write their session only go to a coalescer
//! of their own, which reads and writes them optimistically (`session_batch.rs`). When
//! a batch fails for any reason but unavailability, each of its steps is one transaction
//! of its own, below.
//!
//! Locks follow the crate's order — keys, subscriptions, sessions, plans. An opening
//! locks its plan row first (`FOR UPDATE`), which serialises it with every other opening,
//! purchase and seat-moving change of that plan; under that lock the customer's open
//! sessions on the plan and the plan's seats cannot change. A change locks its session
//! row, and then its plan row when [`CheckoutSession::needs_plan`], so concurrent changes
//! of one session each decide on the session as the previous one left it.
//!
//! One key may be opened on two *different* plans at once, which no plan lock
//! serialises. The session insert is `ON CONFLICT (customer_id, idempotency_key) DO
//! NOTHING`, made before anything else is written: when it inserts nothing, it waited for
//! the other opening's commit, whose session the next statement sees, so the step
//! decides again (`Existing` or `KeyReused`) in the same transaction, having written
//! nothing. (The alternative, a lock on the key taken before the plan's — an advisory
//! lock, or a row of its own — would cost every opening one more lock for a race that
//! only a client reusing one key on two plans can start.)
//!
//! [`CheckoutSession::needs_plan`]: seatkeeper_domain::CheckoutSession::needs_plan

use async_trait::async_trait;
use seatkeeper_domain::{
    ports::{
        ChangeCheckoutError, Changed, CheckoutRepository, OpenCheckoutError, Opened, Purged,
        StoreError, WebhookEvent,
    },
    ChangeCheckout, CheckoutSession, CheckoutSessionId, Effect, OpenCheckout, OpenDecision, Plan,
    PlanId, Timestamp,
};
use sqlx::{postgres::PgRow, PgConnection, PgPool};
use uuid::Uuid;

use crate::{
    checkout_batch::{checkout_tx, CheckoutDone, CheckoutStep},
    errors::{classify, corrupt, Fail},
    rows::{self, CHECKOUT_COLUMNS},
    statements::{insert_audit, insert_subscription, select_plan, write_plan_seats},
    transaction::run_tx,
    PostgresStore,
};

/// How many times an opening decides again after a concurrent opening of its key (on
/// another plan) committed first. Once is enough: the winner's session is then visible;
/// only a purge of it in between would need another round.
const KEY_RACES: usize = 3;

#[async_trait]
impl CheckoutRepository for PostgresStore {
    #[tracing::instrument(skip_all, fields(plan_id = %cmd.plan_id))]
    async fn open_checkout(&self, cmd: &OpenCheckout) -> Result<Opened, OpenCheckoutError> {
        match self.checkouts.submit(CheckoutStep::Open(cmd.clone())).await {
            CheckoutDone::Opened(outcome) => outcome,
            CheckoutDone::Failed(e) => Err(e.into()),
            other => {
                Err(StoreError::internal(format!("an opening was answered with {other:?}")).into())
            }
        }
    }

    async fn get_checkout(
        &self,
        id: CheckoutSessionId,
    ) -> Result<Option<CheckoutSession>, StoreError> {
        let mut c = self.pool.acquire().await.map_err(classify)?;
        select_session(&mut c, id, false).await.map_err(classify)
    }

    #[tracing::instrument(skip_all, fields(session_id = %cmd.session_id, change = cmd.change.kind()))]
    async fn change_checkout(&self, cmd: &ChangeCheckout) -> Result<Changed, ChangeCheckoutError> {
        // A change that can never move a seat locks no plan: it goes to batches of its own.
        let lane = match cmd.change.may_need_plan() {
            true => &self.checkouts,
            false => &self.session_changes,
        };
        match lane.submit(CheckoutStep::Change(cmd.clone())).await {
            CheckoutDone::Changed(outcome) => outcome,
            CheckoutDone::Failed(e) => Err(e.into()),
            other => Err(StoreError::internal(format!(
                "a checkout change was answered with {other:?}"
            ))
            .into()),
        }
    }

    async fn checkouts_due(
        &self,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<CheckoutSession>, StoreError> {
        let sql = format!(
            "SELECT {CHECKOUT_COLUMNS} FROM checkout_sessions WHERE check_at <= $1 \
             ORDER BY check_at, id LIMIT $2"
        );
        let rows = sqlx::query(&sql)
            .bind(now)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(classify)?;
        sessions(&rows).map_err(classify)
    }

    async fn claim_webhook_event(&self, event: &WebhookEvent) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO webhook_events (id, kind, received_at) VALUES ($1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&event.id)
        .bind(&event.kind)
        .bind(event.received_at)
        .execute(&self.pool)
        .await
        .map_err(classify)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_webhook_event(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM webhook_events WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(classify)?;
        Ok(())
    }

    async fn purge_checkouts(
        &self,
        ended_before: Timestamp,
        events_before: Timestamp,
    ) -> Result<Purged, StoreError> {
        self.tx(|c| Box::pin(purge_tx(c, ended_before, events_before)))
            .await
    }
}

// ----- the batches of checkout steps -----

/// Runs one batch of checkout steps in one transaction (`checkout_batch.rs`). When the
/// database is unavailable every step fails with that; when the batch fails for any
/// other reason (a key another instance opened on another plan meanwhile, a step the
/// database refuses), each step runs again alone, in the transaction of its own below,
/// so that it decides against what made the batch fail and fails alone if it must.
pub(crate) async fn run_batch(pool: PgPool, steps: Vec<CheckoutStep>) -> Vec<CheckoutDone> {
    let whole = run_tx::<_, StoreError, _>(&pool, |c| {
        let steps = steps.clone();
        Box::pin(async move { checkout_tx(c, steps).await.map_err(Fail::Db) })
    })
    .await;
    match whole {
        Ok(answers) => answers,
        Err(StoreError::Unavailable(cause)) => all_unavailable(steps.len(), &*cause),
        Err(e) => {
            tracing::warn!(
                steps = steps.len(),
                error = %seatkeeper_domain::error_chain(&e),
                "a batch of checkout steps failed; running them one by one"
            );
            let alone = steps.into_iter().map(|step| {
                let pool = pool.clone();
                async move {
                    match step {
                        CheckoutStep::Open(cmd) => CheckoutDone::Opened(
                            run_tx(&pool, |c| Box::pin(open_tx(c, cmd.clone()))).await,
                        ),
                        CheckoutStep::Change(cmd) => CheckoutDone::Changed(
                            run_tx(&pool, |c| Box::pin(change_tx(c, cmd.clone()))).await,
                        ),
                    }
                }
            });
            futures::future::join_all(alone).await
        }
    }
}

/// The answers of `n` steps whose batch found the database unavailable.
pub(crate) fn all_unavailable(n: usize, cause: &dyn std::error::Error) -> Vec<CheckoutDone> {
    let cause = seatkeeper_domain::error_chain(cause);
    (0..n)
        .map(|_| CheckoutDone::Failed(StoreError::unavailable(cause.clone())))
        .collect()
}

// ----- the single steps, each run inside a transaction of its own -----

async fn open_tx(
    c: &mut PgConnection,
    cmd: OpenCheckout,
) -> Result<Opened, Fail<OpenCheckoutError>> {
    // The plan's lock first: it serialises every opening and seat move of this plan.
    let plan = select_plan(c, cmd.plan_id, true).await?;
    for _ in 0..KEY_RACES {
        let by_key = select_by_key(c, &cmd).await?;
        let open = open_on_plan(c, &cmd).await?;
        let decision = cmd
            .decide(by_key.as_ref(), &open, plan.as_ref())
            .map_err(|r| Fail::Rule(OpenCheckoutError::Refused(r)))?;
        if let OpenDecision::Existing(session) = decision {
            return Ok(Opened::Existing(session));
        }
        let mut plan = plan
            .clone()
            .ok_or_else(|| corrupt("a hold was decided without its plan"))?;
        let (session, entry) = cmd.hold(&mut plan);
        // Nothing is written before the session: a lost key race leaves nothing to undo.
        if !insert_session(c, &session).await? {
            continue;
        }
        write_plan_seats(c, &plan).await?;
        insert_audit(c, &entry).await?;
        return Ok(Opened::New(session));
    }
    Err(Fail::Db(corrupt(
        "a checkout key kept being taken and vanishing while it was opened",
    )))
}

async fn change_tx(
    c: &mut PgConnection,
    cmd: ChangeCheckout,
) -> Result<Changed, Fail<ChangeCheckoutError>> {
    let mut session = select_session(c, cmd.session_id, true)
        .await?
        .ok_or(Fail::Rule(ChangeCheckoutError::NotFound))?;
    // Sessions before plans, as everywhere in the crate.
    let mut plan = match session.needs_plan(&cmd.change) {
        true => Some(locked_plan(c, session.plan_id()).await?),
        false => None,
    };
    let applied = session
        .apply(&cmd, plan.as_mut())
        .map_err(|r| Fail::Rule(ChangeCheckoutError::Refused(r)))?;
    if applied.effect == Effect::Unchanged {
        return Ok(Changed { session, applied });
    }
    update_session(c, &session).await?;
    if let Some(subscription) = &applied.subscription {
        insert_subscription(c, subscription).await?;
    }
    if !applied.entries.is_empty() {
        let plan = plan
            .as_ref()
            .ok_or_else(|| corrupt("audit entries were decided without their plan"))?;
        write_plan_seats(c, plan).await?;
        for entry in &applied.entries {
            insert_audit(c, entry).await?;
        }
    }
    Ok(Changed { session, applied })
}

async fn purge_tx(
    c: &mut PgConnection,
    ended_before: Timestamp,
    events_before: Timestamp,
) -> Result<Purged, Fail<StoreError>> {
    // A session a concurrent change is giving a new `check_at` is re-checked after that
    // change commits (READ COMMITTED) and kept.
    let sessions =
        sqlx::query("DELETE FROM checkout_sessions WHERE check_at IS NULL AND ended_at < $1")
            .bind(ended_before)
            .execute(&mut *c)
            .await?
            .rows_affected();
    let events = sqlx::query("DELETE FROM webhook_events WHERE received_at < $1")
        .bind(events_before)
        .execute(&mut *c)
        .await?
        .rows_affected();
    Ok(Purged { sessions, events })
}

// ----- statements -----

fn sessions(rows: &[PgRow]) -> Result<Vec<CheckoutSession>, sqlx::Error> {
    rows.iter().map(rows::checkout_session).collect()
}

async fn select_session(
    c: &mut PgConnection,
    id: CheckoutSessionId,
    for_update: bool,
) -> Result<Option<CheckoutSession>, sqlx::Error> {
    let sql = format!(
        "SELECT {CHECKOUT_COLUMNS} FROM checkout_sessions WHERE id = $1{}",
        if for_update { " FOR UPDATE" } else { "" }
    );
    sqlx::query(&sql)
        .bind(id.as_uuid())
        .fetch_optional(c)
        .await?
        .map(|r| rows::checkout_session(&r))
        .transpose()
}

/// The plan of a session, locked. Plans are never removed, so it exists.
async fn locked_plan(c: &mut PgConnection, id: PlanId) -> Result<Plan, sqlx::Error> {
    select_plan(c, id, true)
        .await?
        .ok_or_else(|| corrupt(format!("the plan {id} of a checkout session is missing")))
}

/// The session the customer's key opened, if any.
async fn select_by_key(
    c: &mut PgConnection,
    cmd: &OpenCheckout,
) -> Result<Option<CheckoutSession>, sqlx::Error> {
    let sql = format!(
        "SELECT {CHECKOUT_COLUMNS} FROM checkout_sessions WHERE customer_id = $1 AND idempotency_key = $2"
    );
    sqlx::query(&sql)
        .bind(cmd.customer_id.as_str())
        .bind(cmd.key.as_str())
        .fetch_optional(c)
        .await?
        .map(|r| rows::checkout_session(&r))
        .transpose()
}

/// The ids of the customer's open sessions on the plan (stable under the plan's lock).
async fn open_on_plan(
    c: &mut PgConnection,
    cmd: &OpenCheckout,
) -> Result<Vec<CheckoutSessionId>, sqlx::Error> {
    let ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM checkout_sessions WHERE plan_id = $1 AND customer_id = $2 AND status = 'open' \
         ORDER BY id",
    )
    .bind(cmd.plan_id.as_uuid())
    .bind(cmd.customer_id.as_str())
    .fetch_all(c)
    .await?;
    Ok(ids.into_iter().map(CheckoutSessionId::from_uuid).collect())
}

/// Inserts a new session; `false` when its key already has one (a concurrent opening's,
/// committed while this insert waited for it).
async fn insert_session(c: &mut PgConnection, s: &CheckoutSession) -> Result<bool, sqlx::Error> {
    let s = s.stored();
    let sql = format!(
        "INSERT INTO checkout_sessions ({CHECKOUT_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21) \
         ON CONFLICT (customer_id, idempotency_key) DO NOTHING"
    );
    let inserted = sqlx::query(&sql)
        .bind(s.id.as_uuid())
        .bind(s.plan_id.as_uuid())
        .bind(s.customer_id.as_str())
        .bind(s.subscription_id.as_uuid())
        .bind(s.idempotency_key.as_str())
        .bind(s.fingerprint.as_str())
        .bind(s.amount.get())
        .bind(s.currency.as_str())
        .bind(s.status.as_str())
        .bind(s.payment_intent.as_ref().map(|i| i.id.as_str()))
        .bind(s.payment_intent.as_ref().map(|i| i.client_secret.as_str()))
        .bind(s.payment_error.as_deref())
        .bind(s.intent_closed)
        .bind(s.late_payment.as_ref().map(|l| l.payment_id.as_str()))
        .bind(s.late_payment.as_ref().map(|l| l.refunded))
        .bind(s.created_at)
        .bind(s.expires_at)
        .bind(s.updated_at)
        .bind(s.ended_at)
        .bind(s.expiry.map(|e| e.as_str()))
        .bind(s.check_at)
        .execute(c)
        .await?
        .rows_affected();
    Ok(inserted == 1)
}

/// Writes every field a change may make over the locked row (the session's identity —
/// its id, customer, key, plan, subscription id, amount and times of creation and expiry
/// — never changes).
async fn update_session(c: &mut PgConnection, s: &CheckoutSession) -> Result<(), sqlx::Error> {
    let s = s.stored();
    let done = sqlx::query(
        "UPDATE checkout_sessions SET status = $2, payment_intent_id = $3, client_secret = $4, \
         payment_error = $5, intent_closed = $6, late_payment_id = $7, late_payment_refunded = $8, \
         updated_at = $9, ended_at = $10, expiry = $11, check_at = $12 WHERE id = $1",
    )
    .bind(s.id.as_uuid())
    .bind(s.status.as_str())
    .bind(s.payment_intent.as_ref().map(|i| i.id.as_str()))
    .bind(s.payment_intent.as_ref().map(|i| i.client_secret.as_str()))
    .bind(s.payment_error.as_deref())
    .bind(s.intent_closed)
    .bind(s.late_payment.as_ref().map(|l| l.payment_id.as_str()))
    .bind(s.late_payment.as_ref().map(|l| l.refunded))
    .bind(s.updated_at)
    .bind(s.ended_at)
    .bind(s.expiry.map(|e| e.as_str()))
    .bind(s.check_at)
    .execute(c)
    .await?;
    if done.rows_affected() != 1 {
        return Err(corrupt(format!("checkout session {} vanished", s.id)));
    }
    Ok(())
}
