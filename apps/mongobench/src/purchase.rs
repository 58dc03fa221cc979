//! The least a purchase's reservation does on MongoDB, as one transaction per purchase,
//! retried the way a correct client must retry it: MongoDB's raw ceiling for a hot plan,
//! as pgbench's is PostgreSQL's.
//!
//! The transaction writes the store's own documents with the store's own queries: the
//! `incomplete` subscription ([`SubscriptionDoc`]), then the guarded decrement of the plan
//! document (`findOneAndUpdate` with [`queries::seat_guard`] and [`queries::take_seat`],
//! returning the document after), then the `seat_reserved` audit entry ([`AuditDoc`])
//! numbered by the plan's new `seq`. It leaves out what the store does besides (the
//! idempotency key, the completion), as `bench/pgbench/reserve.sql` leaves it out for
//! PostgreSQL, and it does not coalesce: one purchase, one transaction. Read concern
//! `snapshot`, write concern `majority`, as every store transaction.
//!
//! The retries are the driver's `and_run2` rules, written out so that they can be
//! counted: the whole transaction again on the `TransientTransactionError` label (a
//! WriteConflict on the hot plan document, mostly) after a jittered back-off of
//! `jitter × 5 ms × 1.5^attempt`, at most `jitter × 500 ms` ([`backoff`]); the commit alone
//! again on `UnknownTransactionCommitResult`; everything within [`TIME_LIMIT`], the store's
//! default `transaction_time_limit`. (The store's own runner retries the same conflicts
//! with the same back-off; it only gives up sooner when the server cannot be reached.)

use std::time::{Duration, Instant};

use mongodb::{
    bson::{DateTime, Uuid as BsonUuid},
    error::{
        Error, ErrorKind, WriteFailure, TRANSIENT_TRANSACTION_ERROR,
        UNKNOWN_TRANSACTION_COMMIT_RESULT,
    },
    options::{ReadConcern, ReturnDocument, TransactionOptions, WriteConcern},
    ClientSession, Collection,
};
use seatkeeper_domain::PlanId;
use seatkeeper_store_mongo::{
    documents::{uuid, AuditDoc, PlanDoc, SubscriptionDoc},
    queries,
};

/// How long one purchase may take, retries included (the store's default
/// `transaction_time_limit`).
pub const TIME_LIMIT: Duration = Duration::from_secs(30);

/// The server's code for an operation that ran out of its `maxTimeMS`: a commit that fails
/// so is not retried, as the driver does not retry it.
const MAX_TIME_MS_EXPIRED: i32 = 50;

/// The collections one purchase writes, and the plans it may buy from.
#[derive(Clone)]
pub struct Workload {
    pub plans: Collection<PlanDoc>,
    pub subscriptions: Collection<SubscriptionDoc>,
    pub audit: Collection<AuditDoc>,
    pub plan_ids: Vec<PlanId>,
}

/// How one purchase ended.
#[derive(Debug)]
pub enum Outcome {
    /// Committed.
    Sold,
    /// The guard matched nothing: the plan has no seat left (the run's plans are far
    /// larger than a run can sell, so this is reported as a fault of the setup).
    SoldOut,
    /// A failure that is not retried, or retries that ran out of [`TIME_LIMIT`].
    Failed(Error),
}

/// One purchase and the retries it took.
#[derive(Debug)]
pub struct Attempt {
    pub outcome: Outcome,
    /// Whole transactions run again (`TransientTransactionError`).
    pub transaction_retries: u32,
    /// Commits sent again (`UnknownTransactionCommitResult`).
    pub commit_retries: u32,
}

/// The options of every transaction: the store's.
pub fn transaction_options() -> TransactionOptions {
    TransactionOptions::builder()
        .read_concern(ReadConcern::snapshot())
        .write_concern(WriteConcern::majority())
        .build()
}

/// The pause before running a transaction again for the `attempt`-th time (1, 2, …), with
/// `jitter` drawn uniformly from `[0, 1)`: the driver's formula.
pub fn backoff(attempt: u32, jitter: f64) -> Duration {
    const INITIAL_MS: f64 = 5.0;
    const MAX_MS: f64 = 500.0;
    let ms = (jitter * INITIAL_MS * 1.5_f64.powf(f64::from(attempt))).min(jitter * MAX_MS);
    Duration::from_millis(ms.round().max(0.0) as u64)
}

/// Buys one seat of `plan` for `customer` in session `s`, retrying as the driver would.
pub async fn purchase(
    s: &mut ClientSession,
    w: &Workload,
    plan: PlanId,
    customer: &str,
) -> Attempt {
    let started = Instant::now();
    let mut attempt = Attempt {
        outcome: Outcome::Sold,
        transaction_retries: 0,
        commit_retries: 0,
    };
    let subscription = subscription_doc(plan, customer, DateTime::now());
    let mut tries = 0_u32;
    'transaction: loop {
        if tries > 0 {
            let pause = backoff(tries, rand::random::<f64>());
            if started.elapsed() + pause >= TIME_LIMIT {
                return attempt;
            }
            tokio::time::sleep(pause).await;
            attempt.transaction_retries += 1;
        }
        tries += 1;
        if let Err(e) = s
            .start_transaction()
            .with_options(transaction_options())
            .await
        {
            attempt.outcome = Outcome::Failed(e);
            return attempt;
        }
        match reserve(s, w, plan, &subscription, customer).await {
            Ok(true) => {}
            Ok(false) => {
                let _ = s.abort_transaction().await;
                attempt.outcome = Outcome::SoldOut;
                return attempt;
            }
            Err(e) => {
                // The transaction may already be over on the server; ending it here is
                // only tidiness, and its failure changes nothing.
                let _ = s.abort_transaction().await;
                let transient = e.contains_label(TRANSIENT_TRANSACTION_ERROR);
                attempt.outcome = Outcome::Failed(e);
                if transient {
                    continue 'transaction;
                }
                return attempt;
            }
        }
        loop {
            match s.commit_transaction().await {
                Ok(()) => {
                    attempt.outcome = Outcome::Sold;
                    return attempt;
                }
                Err(e) => {
                    let unknown = e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT)
                        && code(&e) != Some(MAX_TIME_MS_EXPIRED);
                    let transient = e.contains_label(TRANSIENT_TRANSACTION_ERROR);
                    attempt.outcome = Outcome::Failed(e);
                    if unknown && started.elapsed() < TIME_LIMIT {
                        attempt.commit_retries += 1;
                        continue;
                    }
                    if transient {
                        continue 'transaction;
                    }
                    return attempt;
                }
            }
        }
    }
}

/// The transaction's body: `false` when the guard found no seat.
async fn reserve(
    s: &mut ClientSession,
    w: &Workload,
    plan: PlanId,
    subscription: &SubscriptionDoc,
    customer: &str,
) -> mongodb::error::Result<bool> {
    w.subscriptions
        .insert_one(subscription)
        .session(&mut *s)
        .await?;
    // The hot plan document last but one, as in the store: held for as short a time as
    // possible.
    let Some(after) = w
        .plans
        .find_one_and_update(queries::seat_guard(plan), queries::take_seat())
        .return_document(ReturnDocument::After)
        .session(&mut *s)
        .await?
    else {
        return Ok(false);
    };
    w.audit
        .insert_one(audit_doc(&after, subscription, customer))
        .session(&mut *s)
        .await?;
    Ok(true)
}

/// The `incomplete` subscription a reservation inserts, as `Subscription::reserve` makes
/// it: a new time-ordered id, the plan's price, a key of the loadgen's length.
pub fn subscription_doc(plan: PlanId, customer: &str, now: DateTime) -> SubscriptionDoc {
    SubscriptionDoc {
        id: BsonUuid::from_bytes(uuid::Uuid::now_v7().into_bytes()),
        plan_id: uuid(plan.as_uuid()),
        customer_id: customer.to_owned(),
        status: "incomplete".to_owned(),
        payment_method: "pm_card_visa".to_owned(),
        payment_id: None,
        unit_amount: 1500,
        currency: "usd".to_owned(),
        interval: "month".to_owned(),
        idempotency_key: Some(uuid::Uuid::new_v4().to_string()),
        current_period_start: None,
        current_period_end: None,
        created_at: now,
        updated_at: now,
        canceled_at: None,
        failure_reason: None,
    }
}

/// The `seat_reserved` entry that goes with the decrement that left the plan at `after`.
pub fn audit_doc(after: &PlanDoc, subscription: &SubscriptionDoc, customer: &str) -> AuditDoc {
    AuditDoc {
        id: BsonUuid::from_bytes(uuid::Uuid::now_v7().into_bytes()),
        plan_id: after.id,
        seq: after.seq,
        at: subscription.created_at,
        action: "seat_reserved".to_owned(),
        subscription_id: Some(subscription.id),
        actor: format!("customer:{customer}"),
        trace_id: uuid::Uuid::new_v4().to_string(),
        seats_left_before: after.seats_left + 1,
        seats_left_after: after.seats_left,
        reason: None,
    }
}

/// The server's error code, when the error carries one.
pub fn code(e: &Error) -> Option<i32> {
    match &*e.kind {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        _ => None,
    }
}

/// A short name for the kind of a failure, to count failures by: the server's code name
/// when it gave one, else the driver's kind.
pub fn kind(e: &Error) -> String {
    match &*e.kind {
        ErrorKind::Command(c) if !c.code_name.is_empty() => c.code_name.clone(),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) if !w.code_name.is_empty() => {
            w.code_name.clone()
        }
        _ => match code(e) {
            Some(code) => format!("code {code}"),
            None => {
                let debug = format!("{:?}", e.kind);
                debug
                    .split(|c: char| !c.is_alphanumeric())
                    .next()
                    .unwrap_or("unknown")
                    .to_owned()
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_back_off_grows_by_half_each_attempt_and_never_passes_half_a_second() {
        assert_eq!(backoff(1, 1.0), Duration::from_millis(8));
        assert_eq!(backoff(2, 1.0), Duration::from_millis(11));
        assert_eq!(backoff(20, 1.0), Duration::from_millis(500));
        assert_eq!(backoff(20, 0.5), Duration::from_millis(250));
        assert_eq!(backoff(5, 0.0), Duration::ZERO);
    }

    #[test]
    fn the_documents_are_the_stores_reservation_with_the_audit_entry_numbered_by_the_plan() {
        let plan = PlanId::from_uuid(uuid::Uuid::from_u128(7));
        let sub = subscription_doc(plan, "cus_mongobench_3", DateTime::from_millis(1_000));
        assert_eq!(sub.plan_id, uuid(plan.as_uuid()));
        assert_eq!(sub.status, "incomplete");
        assert_eq!(sub.created_at, sub.updated_at);
        let after = PlanDoc {
            id: uuid(plan.as_uuid()),
            name: "mongobench 7".into(),
            capacity: 1_000_000,
            seats_left: 999_990,
            unit_amount: 1500,
            currency: "usd".into(),
            interval: "month".into(),
            status: "active".into(),
            created_at: DateTime::from_millis(0),
            seq: 11,
            counts: None,
        };
        let entry = audit_doc(&after, &sub, "cus_mongobench_3");
        assert_eq!((entry.seq, entry.plan_id), (11, after.id));
        assert_eq!(
            (entry.seats_left_before, entry.seats_left_after),
            (999_991, 999_990)
        );
        assert_eq!(entry.subscription_id, Some(sub.id));
        assert_eq!(entry.actor, "customer:cus_mongobench_3");
    }

    #[test]
    fn the_transactions_read_a_snapshot_and_commit_with_a_majority() {
        let o = transaction_options();
        assert_eq!(o.read_concern, Some(ReadConcern::snapshot()));
        assert_eq!(o.write_concern, Some(WriteConcern::majority()));
    }
}
