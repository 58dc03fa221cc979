//! The batches of the store's fourth coalescer: checkout changes that write their session
//! only ([`CheckoutChange::may_need_plan`] is false: an intent attached, a failed
//! payment, a check, a closed intent), with no transaction.
//!
//! Under load a batch's time is its round trips, not its rows (`checkout_batch.rs`). A
//! locked batch of these changes made four — `BEGIN`, the sessions' lock, the write,
//! `COMMIT` — where two do the same step optimistically:
//! - one statement reads the sessions;
//! - the domain's [`CheckoutBatch`] decides the changes in queue order on them;
//! - one statement writes every changed session, each guarded by every field a change may
//!   make, as read (`IS NOT DISTINCT FROM`), and answers the sessions it wrote. It commits
//!   on its own.
//!
//! A session that another step changed between the read and the write (an expiry, a
//! payment, another instance's change) does not match its guard — in `READ COMMITTED`
//! the write waits for that step's commit and then checks the guard against the session
//! it left — and is not written: every change of this batch to that session runs again in
//! a locked batch (`checkouts::run_batch`), deciding on the session as that step left it.
//! A change that wrote nothing (unchanged, or refused) is answered as decided on the
//! session as read: the session was so at that moment, and nothing is written.
//!
//! [`CheckoutChange::may_need_plan`]: seatkeeper_domain::CheckoutChange::may_need_plan

use std::collections::{BTreeMap, HashSet};

use seatkeeper_domain::{
    error_chain,
    ports::{CheckoutBatch, StoreError},
    CheckoutSessionId,
};
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    batch::{Part, Q},
    checkout_batch::{
        sessions_where, CheckoutDone, CheckoutStep, SessionRows, SessionUpdates, SESSION_SET,
        SESSION_UPDATE_NAMES,
    },
    checkouts,
    errors::classify,
    rows,
};

/// Runs one batch of session-only changes; a failure that is not unavailability runs
/// them again in a locked batch (which runs each alone should that fail too).
pub(crate) async fn run_batch(pool: PgPool, steps: Vec<CheckoutStep>) -> Vec<CheckoutDone> {
    match optimistic(&pool, &steps).await {
        Ok((mut answers, lost)) => {
            if lost.is_empty() {
                return answers.into_iter().map(answered).collect();
            }
            let again: Vec<usize> = (0..steps.len())
                .filter(|&i| lost.contains(&session_of(&steps[i])))
                .collect();
            let redone =
                checkouts::run_batch(pool, again.iter().map(|&i| steps[i].clone()).collect()).await;
            for (i, done) in again.into_iter().zip(redone) {
                answers[i] = Some(done);
            }
            answers.into_iter().map(answered).collect()
        }
        Err(StoreError::Unavailable(cause)) => checkouts::all_unavailable(steps.len(), &*cause),
        Err(e) => {
            tracing::warn!(
                steps = steps.len(),
                error = %error_chain(&e),
                "a batch of session changes failed; running it locked"
            );
            checkouts::run_batch(pool, steps).await
        }
    }
}

/// The answers decided on the sessions as read (`None` for the steps to run again), and
/// the sessions whose write lost to another step.
async fn optimistic(
    pool: &PgPool,
    steps: &[CheckoutStep],
) -> Result<(Vec<Option<CheckoutDone>>, HashSet<CheckoutSessionId>), StoreError> {
    let mut ids: Vec<Uuid> = steps.iter().map(|s| session_of(s).as_uuid()).collect();
    ids.sort_unstable();
    ids.dedup();
    let sql = sessions_where("id = ANY($1)");
    let read = sqlx::query(&sql)
        .bind(ids)
        .fetch_all(pool)
        .await
        .map_err(classify)?
        .iter()
        .map(rows::checkout_session)
        .collect::<Result<Vec<_>, _>>()
        .map_err(classify)?;
    let mut batch = CheckoutBatch::new(read);
    let mut no_plans = BTreeMap::new();
    let mut answers: Vec<Option<CheckoutDone>> = Vec::with_capacity(steps.len());
    for step in steps {
        let CheckoutStep::Change(cmd) = step else {
            return Err(StoreError::internal(
                "an opening was queued with the session-only changes",
            ));
        };
        answers.push(Some(CheckoutDone::Changed(
            batch.change(cmd, &mut no_plans),
        )));
    }
    let writes = batch.writes();
    if !writes.new.is_empty() || !no_plans.is_empty() {
        return Err(StoreError::internal(
            "a session-only change made a session or read a plan",
        ));
    }
    if writes.changed.is_empty() {
        return Ok((answers, HashSet::new()));
    }
    let mut guards = SessionRows::default();
    let mut updates = SessionRows::default();
    for (read, now) in &writes.changed {
        guards.push(read);
        updates.push(now);
    }
    let sql = guarded_write();
    let q = Guards(guards).bind(SessionUpdates(updates).bind(sqlx::query(&sql)));
    let written: HashSet<Uuid> = q
        .fetch_all(pool)
        .await
        .map_err(classify)?
        .iter()
        .map(|row| sqlx::Row::try_get::<Uuid, _>(row, "id"))
        .collect::<Result<_, _>>()
        .map_err(classify)?;
    let lost: HashSet<CheckoutSessionId> = writes
        .changed
        .iter()
        .map(|(read, _)| read.id())
        .filter(|id| !written.contains(&id.as_uuid()))
        .collect();
    for (i, step) in steps.iter().enumerate() {
        if lost.contains(&session_of(step)) {
            answers[i] = None;
        }
    }
    Ok((answers, lost))
}

/// `UPDATE … FROM UNNEST(the new fields, the fields as read) … WHERE` the fields are as
/// read, `RETURNING` the ids written.
fn guarded_write() -> String {
    let types: Vec<&str> = SessionUpdates::TYPES
        .iter()
        .chain(Guards::TYPES)
        .copied()
        .collect();
    let arrays: Vec<String> = types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::{t}[]", i + 1))
        .collect();
    format!(
        "UPDATE checkout_sessions s SET {SESSION_SET} \
         FROM UNNEST({}) AS u({SESSION_UPDATE_NAMES}, {GUARD_NAMES}) \
         WHERE s.id = u.id AND ({GUARDED}) IS NOT DISTINCT FROM ({GUARD_NAMES}) RETURNING s.id",
        arrays.join(", ")
    )
}

/// The fields a change may make, as the session holds them.
const GUARDED: &str = "s.status, s.payment_intent_id, s.client_secret, s.payment_error, \
    s.intent_closed, s.late_payment_id, s.late_payment_refunded, s.updated_at, s.ended_at, \
    s.expiry, s.check_at";

/// The same fields as read, in the same order.
const GUARD_NAMES: &str = "o_status, o_intent_id, o_secret, o_error, o_closed, o_late_id, \
    o_refunded, o_updated_at, o_ended_at, o_expiry, o_check_at";

/// The changed sessions' fields as read: [`SessionUpdates`]'s, but the id.
struct Guards(SessionRows);

impl Guards {
    const TYPES: &'static [&'static str] = SessionUpdates::TYPES.split_at(1).1;

    fn bind(self, q: Q<'_>) -> Q<'_> {
        self.0.bind_state(q)
    }
}

fn session_of(step: &CheckoutStep) -> CheckoutSessionId {
    match step {
        CheckoutStep::Change(cmd) => cmd.session_id,
        // Never queued here; a made-up id matches no session.
        CheckoutStep::Open(cmd) => cmd.session_id,
    }
}

/// An answer, or the one for a step whose answer went missing (a bug).
fn answered(answer: Option<CheckoutDone>) -> CheckoutDone {
    answer.unwrap_or_else(|| {
        CheckoutDone::Failed(StoreError::internal("a session change was not answered"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guards_are_the_updated_fields_but_the_id() {
        assert_eq!(&SessionUpdates::TYPES[1..], Guards::TYPES);
        assert_eq!(
            SESSION_UPDATE_NAMES.split(',').count(),
            SessionUpdates::TYPES.len()
        );
        assert_eq!(GUARDED.split(',').count(), Guards::TYPES.len());
        assert_eq!(GUARD_NAMES.split(',').count(), Guards::TYPES.len());
    }

    #[test]
    fn the_guarded_write_numbers_every_array_once() {
        let sql = guarded_write();
        let n = SessionUpdates::TYPES.len() + Guards::TYPES.len();
        assert!(sql.contains(&format!("${n}::timestamptz[]")));
        assert!(!sql.contains(&format!("${}::", n + 1)));
    }
}
