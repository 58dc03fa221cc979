//! Group commit, the same on every store that batches purchase steps (PostgreSQL and
//! MongoDB): steps that arrive while a batch runs are taken together by the next one, and
//! each keeps the result it would have had alone.
//!
//! To make requests really queue, whatever the machine's speed, the store's test holds
//! the plan in a transaction of its own ([`BatchProbe::hold_plan`]): the first batch waits
//! for it (PostgreSQL's row lock) or retries into it (MongoDB's write conflict), and every
//! later step queues behind. The scenarios here are the store-independent part; a store's
//! `tests/batching.rs` gives the probe and keeps only what is its own.

use std::sync::Arc;

mod crossed_keys;
mod final_sessions;
mod session_changes;
pub use crossed_keys::customers_who_use_each_others_keys_in_one_batch_are_answered_from_their_own_records;
pub use final_sessions::reports_about_a_complete_session_take_no_checkout_step;
pub use session_changes::changes_that_write_only_their_session_do_not_wait_for_a_held_plan;

use async_trait::async_trait;
use seatkeeper_domain::{
    ports::{
        ChangeCheckoutError, Changed, ChargeResult, CompleteError, Completion, NewKeyReservation,
        OpenCheckoutError, Opened, Reservation, ReserveError, Store, StoreError,
    },
    CheckoutStatus, PlanId, PurchaseOutcome,
};

use crate::{
    checkout_support::{change, expire_on_request, open, opening, paid, with_intent},
    support::{assert_invariants, create_plan, now, plan_now, Purchase},
};

/// Which batched steps a count is of. A store that batches reservations, completions and
/// checkout steps in one queue answers the same for each of them; session changes have a
/// queue of their own on every batching store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Steps {
    Reservations,
    Completions,
    /// Checkout openings and the checkout changes that may move a seat.
    Checkouts,
    /// Checkout changes that write their session only, batched apart.
    SessionChanges,
}

/// Counts of a coalescer since the store started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub batches: u64,
    pub requests: u64,
}

/// Another transaction's hold on a plan; steps of the plan wait until it is let go.
#[async_trait]
pub trait PlanHold: Send {
    async fn release(self: Box<Self>);
}

/// What the scenarios need of a batching store beyond [`Store`].
#[async_trait]
pub trait BatchProbe: Send + Sync {
    fn store(&self) -> Arc<dyn Store>;
    /// Holds `plan` in another transaction, so that the next batch cannot finish.
    async fn hold_plan(&self, plan: PlanId) -> Box<dyn PlanHold>;
    fn counts(&self, steps: Steps) -> Counts;
    /// Steps waiting for the batch after the running one.
    fn queued(&self, steps: Steps) -> usize;
    /// Whether reservations and completions wait in one queue and share batches.
    fn one_queue(&self) -> bool;
}

/// Completes `p` in a task of its own: declined, or charged with payment `pi_{i}`.
pub fn spawn_completion<S: Store + ?Sized + 'static>(
    store: &Arc<S>,
    p: &Purchase,
    i: usize,
    declined: bool,
) -> tokio::task::JoinHandle<Result<Completion, CompleteError>> {
    let result = if declined {
        ChargeResult::Declined {
            reason: "card_declined".into(),
        }
    } else {
        ChargeResult::Charged {
            payment_id: format!("pi_{i}"),
        }
    };
    let (store, cmd) = (store.clone(), p.completion(result, "req", now()));
    tokio::spawn(async move { store.complete_purchase(&cmd).await })
}

/// Waits up to 30 s for `done`, polling every 2 ms.
pub async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// Waits until the first batch of `steps` since `base` has started: the one that waits for
/// the held plan, behind which the next steps queue.
pub async fn first_batch_started(probe: &dyn BatchProbe, steps: Steps, base: Counts) {
    until("the first batch", || {
        probe.counts(steps).batches == base.batches + 1
    })
    .await;
}

fn since(probe: &dyn BatchProbe, steps: Steps, base: Counts) -> (u64, u64) {
    let now = probe.counts(steps);
    (now.batches - base.batches, now.requests - base.requests)
}

/// 120 reservations of 50 seats behind a held plan take two batches (the first, and all
/// that queued behind it), as do the 50 completions after; every answer is its own.
pub async fn purchases_that_queue_behind_a_held_plan_reserve_and_complete_in_two_batches_each(
    probe: &dyn BatchProbe,
) {
    let store = probe.store();
    let plan = create_plan(&*store, 50).await;
    let purchases: Vec<Purchase> = (0..120)
        .map(|i| Purchase::new(plan.id(), &format!("cus_{i}"), "k", now()))
        .collect();
    for p in &purchases {
        p.claim(&*store).await;
    }

    let blocker = probe.hold_plan(plan.id()).await;
    let base = probe.counts(Steps::Reservations);
    let tasks: Vec<_> = purchases
        .iter()
        .map(|p| {
            let (store, cmd) = (store.clone(), p.reserve.clone());
            tokio::spawn(async move { store.reserve_seat(&cmd).await })
        })
        .collect();
    first_batch_started(probe, Steps::Reservations, base).await;
    let first = (probe.counts(Steps::Reservations).requests - base.requests) as usize;
    until("the others to queue", || {
        probe.queued(Steps::Reservations) == 120 - first
    })
    .await;
    blocker.release().await;
    let mut reserved = Vec::new();
    let mut sold_out = 0;
    for (p, t) in purchases.iter().zip(tasks) {
        match t.await.unwrap().unwrap() {
            Reservation::Reserved(sub) => {
                assert_eq!(sub.id(), p.subscription_id());
                reserved.push(p.clone());
            }
            Reservation::Rejected(PurchaseOutcome::SoldOut { .. }) => sold_out += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!((reserved.len(), sold_out), (50, 70));
    assert_eq!(since(probe, Steps::Reservations, base), (2, 120));
    assert_invariants(&*store, plan.id()).await;

    // Completions: 40 charged and 10 declined, again behind the held plan.
    let blocker = probe.hold_plan(plan.id()).await;
    let base = probe.counts(Steps::Completions);
    let tasks: Vec<_> = reserved
        .iter()
        .enumerate()
        .map(|(i, p)| spawn_completion(&store, p, i, i % 5 == 4))
        .collect();
    first_batch_started(probe, Steps::Completions, base).await;
    let first = (probe.counts(Steps::Completions).requests - base.requests) as usize;
    until("the other completions to queue", || {
        probe.queued(Steps::Completions) == 50 - first
    })
    .await;
    blocker.release().await;
    let mut outcomes = (0, 0);
    for t in tasks {
        match t.await.unwrap().unwrap().outcome {
            PurchaseOutcome::Created { .. } => outcomes.0 += 1,
            PurchaseOutcome::Declined { .. } => outcomes.1 += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(outcomes, (40, 10));
    assert_eq!(since(probe, Steps::Completions, base), (2, 50));
    assert_eq!(plan_now(&*store, plan.id()).await.seats_left(), 10);
    assert_invariants(&*store, plan.id()).await;

    // A second completion of any of them changes nothing, batched or not.
    let again = reserved[0].completion(
        ChargeResult::Charged {
            payment_id: "pi_other".into(),
        },
        "req",
        now(),
    );
    assert!(matches!(
        store.complete_purchase(&again).await,
        Err(CompleteError::NotIncomplete(_))
    ));
}

/// A reservation whose insert the database refuses (a subscription id that exists) fails
/// alone with an internal error; the four that shared its batch are reserved.
pub async fn a_step_the_database_refuses_fails_alone_and_its_batch_neighbours_still_succeed(
    probe: &dyn BatchProbe,
) {
    let store = probe.store();
    let plan = create_plan(&*store, 10).await;
    let taken = Purchase::new(plan.id(), "cus_first", "k", now());
    let existing = taken.reserved(&*store).await;
    // The same subscription id again: its insert violates the unique id.
    let purchases: Vec<Purchase> = (0..6)
        .map(|i| {
            let p = Purchase::new(plan.id(), &format!("cus_{i}"), "k", now());
            if i == 3 {
                p.with_subscription_id(existing.id())
            } else {
                p
            }
        })
        .collect();
    for p in &purchases {
        p.claim(&*store).await;
    }
    let blocker = probe.hold_plan(plan.id()).await;
    let base = probe.counts(Steps::Reservations);
    let reserve = |p: &Purchase| {
        let (store, cmd) = (store.clone(), p.reserve.clone());
        tokio::spawn(async move { store.reserve_seat(&cmd).await })
    };
    // The first alone in a batch that waits for the plan; the other five, the refused
    // one among them, queue behind it and make the next batch.
    let mut tasks = vec![reserve(&purchases[0])];
    first_batch_started(probe, Steps::Reservations, base).await;
    tasks.extend(purchases[1..].iter().map(reserve));
    until("the others to queue", || {
        probe.queued(Steps::Reservations) == 5
    })
    .await;
    blocker.release().await;
    for (i, t) in tasks.into_iter().enumerate() {
        let answer = t.await.unwrap();
        if i == 3 {
            assert!(
                matches!(answer, Err(ReserveError::Store(StoreError::Internal(_)))),
                "{answer:?}"
            );
        } else {
            assert!(matches!(answer, Ok(Reservation::Reserved(_))), "{answer:?}");
        }
    }
    assert_eq!(
        since(probe, Steps::Reservations, base).0,
        2,
        "the five shared a batch"
    );
    assert_eq!(plan_now(&*store, plan.id()).await.seats_left(), 10 - 1 - 5);
    assert_invariants(&*store, plan.id()).await;
}

/// Reservations with new keys share a batch with one of a held key (and, where both steps
/// share one queue, with a completion): each new key is claimed once — the same key
/// twice in one batch is reserved once and answered `KeyExists` once — and a key that
/// has a record is `KeyExists`.
pub async fn new_keys_and_held_keys_share_a_batch_and_a_new_key_is_claimed_once(
    probe: &dyn BatchProbe,
) {
    let store = probe.store();
    let plan = create_plan(&*store, 50).await;
    let used = Purchase::new(plan.id(), "cus_used", "k", now());
    used.claim(&*store).await; // has a record: a new-key reservation of it is KeyExists
    let held = Purchase::new(plan.id(), "cus_held", "k", now());
    held.claim(&*store).await; // reserves with reserve_seat, in the same batch
    let paying = Purchase::new(plan.id(), "cus_paying", "k", now());
    if probe.one_queue() {
        paying.reserved(&*store).await; // completes, declined, in the same batch
    }

    // The first batch claims its key and then waits for the plan; everything else
    // queues behind it.
    let blocker = probe.hold_plan(plan.id()).await;
    let base = probe.counts(Steps::Reservations);
    let new_key = |p: &Purchase| {
        let (store, cmd) = (store.clone(), p.with_new_key());
        tokio::spawn(async move { store.reserve_with_new_key(&cmd).await.map(Some) })
    };
    let first = Purchase::new(plan.id(), "cus_first", "k", now());
    let mut tasks = vec![new_key(&first)];
    first_batch_started(probe, Steps::Reservations, base).await;
    let mut queued: Vec<Purchase> = (0..20)
        .map(|i| Purchase::new(plan.id(), &format!("cus_{i}"), "k", now()))
        .collect();
    queued.push(Purchase::new(plan.id(), "cus_0", "k", now())); // cus_0's key, again
    queued.push(Purchase::new(plan.id(), "cus_used", "k", now()));
    tasks.extend(queued.iter().map(new_key));
    tasks.push({
        let (store, cmd) = (store.clone(), held.reserve.clone());
        tokio::spawn(async move {
            match store.reserve_seat(&cmd).await {
                Ok(r) => Ok(Some(NewKeyReservation::Claimed(r))),
                Err(ReserveError::Store(e)) => Err(e),
                Err(ReserveError::LockLost) => Ok(None),
            }
        })
    });
    let declined = probe
        .one_queue()
        .then(|| spawn_completion(&store, &paying, 0, true));
    let also = usize::from(declined.is_some());
    until("the others to queue", || {
        probe.queued(Steps::Reservations) == 23 + also
    })
    .await;
    blocker.release().await;

    let mut answers = std::collections::BTreeMap::new();
    let customers = std::iter::once(&first)
        .chain(&queued)
        .chain(std::iter::once(&held))
        .map(|p| p.customer().as_str().to_owned());
    for (customer, t) in customers.zip(tasks) {
        let answer = match t.await.unwrap().unwrap() {
            Some(NewKeyReservation::Claimed(Reservation::Reserved(_))) => "reserved",
            Some(NewKeyReservation::KeyExists) => "key exists",
            other => panic!("unexpected {other:?}"),
        };
        answers
            .entry(customer)
            .or_insert_with(Vec::new)
            .push(answer);
    }
    if let Some(declined) = declined {
        assert!(matches!(
            declined.await.unwrap().unwrap().outcome,
            PurchaseOutcome::Declined { .. }
        ));
    }
    assert_eq!(answers["cus_first"], ["reserved"]);
    let mut twice = answers["cus_0"].clone();
    twice.sort();
    assert_eq!(twice, ["key exists", "reserved"]);
    assert_eq!(answers["cus_used"], ["key exists"]);
    assert_eq!(answers["cus_held"], ["reserved"]);
    for i in 1..20 {
        assert_eq!(answers[&format!("cus_{i}")], ["reserved"]);
    }
    assert_eq!(
        since(probe, Steps::Reservations, base),
        (2, 24 + also as u64)
    );
    // 21 new-key reservations and the held one (a declined purchase gave its seat back).
    assert_eq!(plan_now(&*store, plan.id()).await.seats_left(), 50 - 22);
    assert_invariants(&*store, plan.id()).await;
}

/// Spawns `step` and waits until it is queued, so that steps queue in the order spawned.
async fn queue<T: Send + 'static>(
    probe: &dyn BatchProbe,
    steps: Steps,
    step: impl std::future::Future<Output = T> + Send + 'static,
) -> tokio::task::JoinHandle<T> {
    let before = probe.queued(steps);
    let task = tokio::spawn(step);
    until("the step to queue", || probe.queued(steps) == before + 1).await;
    task
}

/// Checkout steps that move seats, queued behind a held plan, share the next batch and
/// are decided in queue order: payments, then expiries, then openings — among them the
/// expired sessions' customers, allowed another session only because their expiry is
/// ahead in the queue, and one key opened twice, which answers its first session.
pub async fn checkout_steps_that_queue_behind_a_held_plan_share_one_batch_in_queue_order(
    probe: &dyn BatchProbe,
) {
    let store = probe.store();
    let plan = create_plan(&*store, 50).await;
    let mut to_pay = Vec::new();
    for i in 0..5 {
        let session = open(
            &*store,
            &opening(plan.id(), &format!("cus_pay_{i}"), "k", now()),
        )
        .await;
        to_pay.push(with_intent(&*store, &session).await);
    }
    let mut to_expire = Vec::new();
    for i in 0..5 {
        let cmd = opening(plan.id(), &format!("cus_again_{i}"), "k", now());
        to_expire.push(open(&*store, &cmd).await);
    }

    let blocker = probe.hold_plan(plan.id()).await;
    let base = probe.counts(Steps::Checkouts);
    let open_of = |customer: &str, key: &str| {
        let (store, cmd) = (store.clone(), opening(plan.id(), customer, key, now()));
        async move { store.open_checkout(&cmd).await }
    };
    let first = tokio::spawn(open_of("cus_first", "k"));
    first_batch_started(probe, Steps::Checkouts, base).await;
    let change_of = |id, c| {
        let (store, cmd) = (store.clone(), change(id, c, now()));
        async move { store.change_checkout(&cmd).await }
    };
    let mut changes = Vec::new();
    for session in &to_pay {
        let step = change_of(session.id(), paid(session));
        changes.push(queue(probe, Steps::Checkouts, step).await);
    }
    for session in &to_expire {
        let step = change_of(session.id(), expire_on_request());
        changes.push(queue(probe, Steps::Checkouts, step).await);
    }
    let mut openings = Vec::new();
    for i in 0..5 {
        let step = open_of(&format!("cus_again_{i}"), "k2");
        openings.push(queue(probe, Steps::Checkouts, step).await);
    }
    for i in 0..10 {
        let step = open_of(&format!("cus_new_{i}"), "k");
        openings.push(queue(probe, Steps::Checkouts, step).await);
    }
    let again = queue(probe, Steps::Checkouts, open_of("cus_new_0", "k")).await;
    blocker.release().await;

    assert!(matches!(first.await.unwrap(), Ok(Opened::New(_))));
    let changed: Vec<Result<Changed, ChangeCheckoutError>> = futures::future::join_all(changes)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    for (i, c) in changed.iter().enumerate() {
        let c = c.as_ref().expect("a payment or an expiry");
        let (status, made) = match i < 5 {
            true => (CheckoutStatus::Complete, true),
            false => (CheckoutStatus::Expired, false),
        };
        assert_eq!(c.session.status(), status);
        assert_eq!(c.applied.subscription.is_some(), made);
    }
    let mut new_sessions = Vec::new();
    for t in openings {
        match t.await.unwrap() {
            Ok(Opened::New(session)) => new_sessions.push(session),
            other => panic!("an opening should hold a seat, got {other:?}"),
        }
    }
    let answer: Result<Opened, OpenCheckoutError> = again.await.unwrap();
    match answer {
        Ok(Opened::Existing(session)) => assert_eq!(session.id(), new_sessions[5].id()),
        other => panic!("the key's second opening should answer its session, got {other:?}"),
    }
    assert_eq!(
        since(probe, Steps::Checkouts, base),
        (2, 27),
        "the first batch, then every queued step in one"
    );
    // 50 − 10 held before − 1 (first) + 5 expired − 15 opened; the payments' seats stay
    // taken, by active subscriptions.
    assert_eq!(plan_now(&*store, plan.id()).await.seats_left(), 29);
    assert_invariants(&*store, plan.id()).await;
}
