//! A batch may read its keys and sessions by sets (MongoDB does: every customer of the
//! batch with every key, every plan with every customer), so it also reads a customer's
//! record under a key that only another customer of the batch uses. Such a record must
//! answer nobody and change nothing: every step is decided on its own customer's key
//! and plan.

use seatkeeper_domain::{
    ports::{NewKeyReservation, Opened, Reservation},
    CheckoutStatus, PlanId,
};

use super::{first_batch_started, queue, since, BatchProbe, Steps};
use crate::{
    checkout_support::{change, changed, expire_on_request, open, opening},
    support::{assert_invariants, create_plan, now, plan_now, Purchase},
};

/// Customers who use each other's key strings share a batch, first with reservations
/// under new keys, then with checkout openings (one of them holding a seat of another
/// plan that another opening of the batch names): each is answered from its own
/// records — a new key is reserved, a used one is `KeyExists`, an opening under a key
/// its customer used answers that session, and a seat held on another plan does not
/// count against this one.
pub async fn customers_who_use_each_others_keys_in_one_batch_are_answered_from_their_own_records(
    probe: &dyn BatchProbe,
) {
    let store = probe.store();
    let plan = create_plan(&*store, 50).await;
    let other = create_plan(&*store, 50).await;

    // Reservations: cus_a's key k1 and cus_b's key k2 have records.
    for (customer, key) in [("cus_a", "k1"), ("cus_b", "k2")] {
        Purchase::new(plan.id(), customer, key, now())
            .claim(&*store)
            .await;
    }
    let blocker = probe.hold_plan(plan.id()).await;
    let base = probe.counts(Steps::Reservations);
    let new_key = |customer: &str, key: &str| {
        let (store, cmd) = (
            store.clone(),
            Purchase::new(plan.id(), customer, key, now()).with_new_key(),
        );
        async move { store.reserve_with_new_key(&cmd).await }
    };
    let first = tokio::spawn(new_key("cus_first", "k0"));
    first_batch_started(probe, Steps::Reservations, base).await;
    let mut tasks = Vec::new();
    for (customer, key) in [("cus_a", "k2"), ("cus_b", "k1"), ("cus_a", "k1")] {
        tasks.push(queue(probe, Steps::Reservations, new_key(customer, key)).await);
    }
    blocker.release().await;
    let mut answers = Vec::new();
    for t in std::iter::once(first).chain(tasks) {
        answers.push(match t.await.unwrap() {
            Ok(NewKeyReservation::Claimed(Reservation::Reserved(_))) => "reserved",
            Ok(NewKeyReservation::KeyExists) => "key exists",
            other => panic!("unexpected {other:?}"),
        });
    }
    assert_eq!(answers, ["reserved", "reserved", "reserved", "key exists"]);
    assert_eq!(since(probe, Steps::Reservations, base), (2, 4));
    assert_eq!(plan_now(&*store, plan.id()).await.seats_left(), 47);

    // Openings: cus_c's session under k1 and cus_d's under k2 have expired; cus_e holds a
    // seat of the other plan.
    let mut expired = Vec::new();
    for (customer, key) in [("cus_c", "k1"), ("cus_d", "k2")] {
        let session = open(&*store, &opening(plan.id(), customer, key, now())).await;
        let cmd = change(session.id(), expire_on_request(), now());
        expired.push(changed(&*store, cmd).await.session);
    }
    open(&*store, &opening(other.id(), "cus_e", "k1", now())).await;
    let blocker = probe.hold_plan(plan.id()).await;
    let base = probe.counts(Steps::Checkouts);
    let open_of = |plan: PlanId, customer: &str, key: &str| {
        let (store, cmd) = (store.clone(), opening(plan, customer, key, now()));
        async move { store.open_checkout(&cmd).await }
    };
    let first = tokio::spawn(open_of(plan.id(), "cus_first", "k0"));
    first_batch_started(probe, Steps::Checkouts, base).await;
    let mut tasks = Vec::new();
    for (p, customer, key) in [
        (plan.id(), "cus_c", "k2"),
        (plan.id(), "cus_d", "k1"),
        (plan.id(), "cus_e", "k2"),
        (other.id(), "cus_f", "k1"),
        (plan.id(), "cus_c", "k1"),
    ] {
        tasks.push(queue(probe, Steps::Checkouts, open_of(p, customer, key)).await);
    }
    blocker.release().await;
    let mut opened = Vec::new();
    for t in std::iter::once(first).chain(tasks) {
        opened.push(t.await.unwrap().expect("an opening"));
    }
    for (i, o) in opened[..5].iter().enumerate() {
        match o {
            Opened::New(session) => assert_eq!(session.status(), CheckoutStatus::Open),
            other => panic!("opening {i} should hold a seat, got {other:?}"),
        }
    }
    match &opened[5] {
        Opened::Existing(session) => {
            assert_eq!(session.id(), expired[0].id());
            assert_eq!(session.status(), CheckoutStatus::Expired);
        }
        other => panic!("cus_c's k1 should answer its expired session, got {other:?}"),
    }
    assert_eq!(since(probe, Steps::Checkouts, base), (2, 6));
    assert_eq!(plan_now(&*store, plan.id()).await.seats_left(), 43);
    assert_eq!(plan_now(&*store, other.id()).await.seats_left(), 48);
    assert_invariants(&*store, plan.id()).await;
    assert_invariants(&*store, other.id()).await;
}
