//! The checkout service on the in-memory store, with the payment ports mocked where the
//! provider fails: an intent that cannot be made (the seat stays held; a retry resumes),
//! a lost confirmation answer, a provider down at expiry (the hold still ends on time;
//! the cancellation follows), a cancellation that finds the intent paid, a lost webhook
//! found by the worker, a late payment whose refund fails before it succeeds, and an
//! intent the provider made but the session never recorded, cancelled when it ends.

mod common;

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use common::{ManualClock, MockGateway};
use mockall::{mock, predicate::eq};
use seatkeeper_domain::{
    ports::{
        ChargeError, GatewayError, IntentGateway, IntentRequest, IntentStatus, PaymentIntent,
        Store, WebhookEvent,
    },
    service::{
        CheckoutError, CheckoutService, CheckoutSettings, Confirmation, EventOutcome, OpenCommand,
        OpenError, PaymentEvent, PaymentEventKind, PlanService,
    },
    AuditAction, AuditContext, Capacity, CheckoutSession, CheckoutStatus, Currency, CustomerId,
    IdempotencyKey, Interval, NewPlan, PaymentMethod, PlanId, PlanName, Reach, UnitAmount,
};
use seatkeeper_store_memory::MemoryStore;

mock! {
    pub Intents {}

    #[async_trait]
    impl IntentGateway for Intents {
        fn provider(&self) -> &'static str;
        async fn create_intent(&self, req: &IntentRequest) -> Result<PaymentIntent, GatewayError>;
        async fn confirm_intent(&self, intent_id: &str, payment_method: &PaymentMethod) -> Result<PaymentIntent, ChargeError>;
        async fn retrieve_intent(&self, intent_id: &str) -> Result<PaymentIntent, GatewayError>;
        async fn cancel_intent(&self, intent_id: &str) -> Result<PaymentIntent, GatewayError>;
    }
}

fn intent(status: IntentStatus) -> PaymentIntent {
    PaymentIntent {
        id: "pi_1".into(),
        client_secret: "pi_1_secret".into(),
        status,
    }
}

/// Intents made at once, waiting for a payment method, as the provider makes them.
fn making_intents() -> MockIntents {
    let mut intents = MockIntents::new();
    intents.expect_create_intent().returning(|_| {
        Ok(intent(IntentStatus::RequiresPaymentMethod {
            last_error: None,
        }))
    });
    intents
}

/// A provider whose first intent answer is lost (the opening cannot record it); asked again
/// under the session's provider key it answers `pi_1`, which it then cancels once.
fn intent_lost_at_opening_then_cancelled() -> MockIntents {
    let mut intents = MockIntents::new();
    let mut calls = 0;
    intents
        .expect_create_intent()
        .times(2)
        .returning(move |req: &IntentRequest| {
            calls += 1;
            assert!(req.provider_key.as_str().starts_with("seatkeeper-sub-"));
            if calls == 1 {
                Err(down())
            } else {
                Ok(intent(IntentStatus::RequiresPaymentMethod {
                    last_error: None,
                }))
            }
        });
    intents
        .expect_cancel_intent()
        .with(eq("pi_1"))
        .times(1)
        .returning(|_| Ok(intent(IntentStatus::Canceled)));
    intents
}

fn visa() -> PaymentMethod {
    PaymentMethod::parse("pm_card_visa").unwrap()
}

fn paid() -> IntentStatus {
    IntentStatus::Succeeded {
        payment_method: visa(),
    }
}

fn down() -> GatewayError {
    GatewayError::Unavailable("connection refused".into())
}

struct World {
    store: Arc<MemoryStore>,
    checkouts: CheckoutService,
    clock: Arc<ManualClock>,
    plan: PlanId,
}

async fn world(intents: MockIntents, payments: MockGateway, capacity: i64) -> World {
    world_with(Arc::new(intents), payments, capacity).await
}

async fn world_with(
    intents: Arc<dyn IntentGateway>,
    payments: MockGateway,
    capacity: i64,
) -> World {
    let store = Arc::new(MemoryStore::new());
    let dyn_store: Arc<dyn Store> = store.clone();
    let clock = Arc::new(ManualClock::default());
    let plans = PlanService::new(dyn_store.clone(), clock.clone());
    let plan = plans
        .create(
            NewPlan {
                name: PlanName::parse("Starter").unwrap(),
                capacity: Capacity::new(capacity).unwrap(),
                unit_amount: UnitAmount::new(1500).unwrap(),
                currency: Currency::parse("usd").unwrap(),
                interval: Interval::Month,
            },
            &AuditContext::admin("test"),
        )
        .await
        .unwrap()
        .id();
    let checkouts = CheckoutService::new(
        dyn_store,
        intents,
        Arc::new(payments),
        clock.clone(),
        CheckoutSettings::default(),
    );
    World {
        store,
        checkouts,
        clock,
        plan,
    }
}

impl World {
    fn open_cmd(&self, customer: &str, key: &str) -> OpenCommand {
        let customer_id = CustomerId::parse(customer).unwrap();
        OpenCommand {
            ctx: AuditContext::customer(&customer_id, "req"),
            customer_id,
            key: IdempotencyKey::parse(key).unwrap(),
            plan_id: self.plan,
            expires_in_secs: None,
        }
    }

    async fn assert_invariants(&self) {
        let v =
            seatkeeper_domain::invariants::check_store_plan(self.store.as_ref(), self.plan).await;
        assert!(v.is_empty(), "{v:#?}");
    }

    /// The one session in the store (through the worker's due list, which holds every
    /// open session).
    async fn only_session(&self) -> seatkeeper_domain::CheckoutSessionId {
        use seatkeeper_domain::ports::CheckoutRepository;
        let later = self.checkouts.now() + chrono::Duration::days(365);
        let due = self.store.checkouts_due(later, 10).await.unwrap();
        assert_eq!(due.len(), 1);
        due[0].id()
    }

    async fn audit_actions(&self) -> Vec<AuditAction> {
        use seatkeeper_domain::ports::AuditLog;
        self.store
            .plan_audit(self.plan, None, 100)
            .await
            .unwrap()
            .unwrap()
            .iter()
            .map(|e| e.action)
            .collect()
    }
}

fn ctx() -> AuditContext {
    AuditContext::admin("t")
}

#[tokio::test]
async fn a_provider_down_at_opening_keeps_the_hold_and_a_retry_with_the_key_makes_the_intent() {
    let mut intents = MockIntents::new();
    let mut calls = 0;
    intents.expect_create_intent().times(2).returning(move |_| {
        calls += 1;
        if calls == 1 {
            Err(down())
        } else {
            Ok(intent(IntentStatus::RequiresPaymentMethod {
                last_error: None,
            }))
        }
    });
    let w = world(intents, MockGateway::new(), 2).await;
    let cmd = w.open_cmd("cus_1", "k1");
    assert!(matches!(
        w.checkouts.open(&cmd).await,
        Err(OpenError::PaymentUnavailable(_))
    ));
    let receipt = w.checkouts.open(&cmd).await.unwrap();
    assert!(receipt.replayed);
    assert_eq!(receipt.session.payment_intent().unwrap().id, "pi_1");
    use seatkeeper_domain::ports::PlanRepository;
    assert_eq!(w.store.plan_stats(w.plan).await.unwrap().unwrap().held, 1);
    w.assert_invariants().await;
}

#[tokio::test]
async fn a_lost_confirmation_answer_leaves_the_session_open_for_the_worker_to_settle() {
    let mut intents = making_intents();
    intents
        .expect_confirm_intent()
        .times(1)
        .returning(|_, _| Err(ChargeError::Unknown("timed out".into())));
    // The worker's check, one recheck interval later, finds it paid.
    intents
        .expect_retrieve_intent()
        .with(eq("pi_1"))
        .times(1)
        .returning(|_| Ok(intent(paid())));
    let w = world(intents, MockGateway::new(), 2).await;
    let s = w
        .checkouts
        .open(&w.open_cmd("cus_1", "k1"))
        .await
        .unwrap()
        .session;
    assert!(matches!(
        w.checkouts
            .confirm(s.id(), Reach::AnyCustomer, &visa(), &ctx())
            .await,
        Err(CheckoutError::PaymentUnavailable(_))
    ));
    assert_eq!(
        w.checkouts.get(s.id()).await.unwrap().unwrap().status(),
        CheckoutStatus::Open
    );
    assert_eq!(
        w.checkouts.run_due().await.unwrap().found,
        0,
        "not due before the recheck"
    );
    w.clock.advance(Duration::from_secs(61));
    let run = w.checkouts.run_due().await.unwrap();
    assert_eq!((run.found, run.completed), (1, 1));
    assert_eq!(
        w.checkouts.get(s.id()).await.unwrap().unwrap().status(),
        CheckoutStatus::Complete
    );
    w.assert_invariants().await;
}

#[tokio::test]
async fn a_hold_ends_on_time_with_the_provider_down_and_its_intent_is_cancelled_later() {
    let mut intents = making_intents();
    let mut calls = 0;
    intents.expect_cancel_intent().times(3).returning(move |_| {
        calls += 1;
        match calls {
            1 | 2 => Err(down()),
            _ => Ok(intent(IntentStatus::Canceled)),
        }
    });
    let w = world(intents, MockGateway::new(), 1).await;
    let s = w
        .checkouts
        .open(&w.open_cmd("cus_1", "k1"))
        .await
        .unwrap()
        .session;
    w.clock.advance(Duration::from_secs(1801));
    let run = w.checkouts.run_due().await.unwrap();
    assert_eq!(run.expired, 1);
    let expired = w.checkouts.get(s.id()).await.unwrap().unwrap();
    assert_eq!(expired.status(), CheckoutStatus::Expired);
    assert!(
        !expired.intent_closed(),
        "the provider did not confirm the cancellation"
    );
    // Still due: the next runs try again until the provider answers.
    assert_eq!(w.checkouts.run_due().await.unwrap().deferred, 1);
    let run = w.checkouts.run_due().await.unwrap();
    assert_eq!(run.intents_canceled, 1);
    let done = w.checkouts.get(s.id()).await.unwrap().unwrap();
    assert!(done.intent_closed());
    assert_eq!(done.check_at(), None);
    assert_eq!(w.checkouts.run_due().await.unwrap().found, 0);
    w.assert_invariants().await;
}

/// The provider makes the intent at opening, but its answer is lost (the customer never
/// comes back): when the session ends, by its time or on request, the intent the
/// provider holds under the session's provider key is found and cancelled.
async fn an_unrecorded_intent_is_cancelled_when_its_session_ends(on_request: bool) {
    let w = world(
        intent_lost_at_opening_then_cancelled(),
        MockGateway::new(),
        1,
    )
    .await;
    let cmd = w.open_cmd("cus_1", "k1");
    assert!(matches!(
        w.checkouts.open(&cmd).await,
        Err(OpenError::PaymentUnavailable(_))
    ));
    let s = w.only_session().await;
    if on_request {
        w.checkouts.expire(s, &ctx()).await.unwrap();
    } else {
        w.clock.advance(Duration::from_secs(1801));
        assert_eq!(w.checkouts.run_due().await.unwrap().expired, 1);
    }
    let ended = w.checkouts.get(s).await.unwrap().unwrap();
    assert_eq!(ended.status(), CheckoutStatus::Expired);
    assert_eq!(ended.check_at(), None);
    assert_eq!(
        w.audit_actions().await,
        [
            AuditAction::PlanCreated,
            AuditAction::SeatHeld,
            AuditAction::HoldExpired
        ]
    );
    w.assert_invariants().await;
}

#[tokio::test]
async fn an_unrecorded_intent_is_cancelled_when_its_session_times_out() {
    an_unrecorded_intent_is_cancelled_when_its_session_ends(false).await;
}

#[tokio::test]
async fn an_unrecorded_intent_is_cancelled_when_its_session_is_expired_on_request() {
    an_unrecorded_intent_is_cancelled_when_its_session_ends(true).await;
}

#[tokio::test]
async fn a_cancellation_at_expiry_that_finds_the_intent_paid_completes_the_session() {
    let mut intents = making_intents();
    intents
        .expect_cancel_intent()
        .times(1)
        .returning(|_| Ok(intent(paid())));
    let w = world(intents, MockGateway::new(), 1).await;
    let s = w
        .checkouts
        .open(&w.open_cmd("cus_1", "k1"))
        .await
        .unwrap()
        .session;
    w.clock.advance(Duration::from_secs(1801));
    let run = w.checkouts.run_due().await.unwrap();
    assert_eq!((run.completed, run.expired), (1, 0));
    assert_eq!(
        w.checkouts.get(s.id()).await.unwrap().unwrap().status(),
        CheckoutStatus::Complete
    );
    assert_eq!(
        w.audit_actions().await,
        [
            AuditAction::PlanCreated,
            AuditAction::SeatHeld,
            AuditAction::CheckoutCompleted
        ]
    );
    w.assert_invariants().await;
}

#[tokio::test]
async fn a_late_payment_with_no_seat_is_refunded_once_even_when_the_first_refund_fails() {
    let mut intents = MockIntents::new();
    intents.expect_create_intent().returning(|req| {
        Ok(PaymentIntent {
            id: format!("pi_{}", req.checkout_session_id.as_uuid().simple()),
            client_secret: "s".into(),
            status: IntentStatus::RequiresPaymentMethod { last_error: None },
        })
    });
    intents.expect_cancel_intent().returning(|id| {
        Ok(PaymentIntent {
            id: id.into(),
            client_secret: "s".into(),
            status: IntentStatus::Canceled,
        })
    });
    let mut payments = MockGateway::new();
    let mut calls = 0;
    payments.expect_refund().times(2).returning(move |_| {
        calls += 1;
        if calls == 1 {
            Err(down())
        } else {
            Ok(())
        }
    });
    let w = world(intents, payments, 1).await;
    let a = w
        .checkouts
        .open(&w.open_cmd("cus_a", "k"))
        .await
        .unwrap()
        .session;
    w.checkouts.expire(a.id(), &ctx()).await.unwrap();
    w.checkouts.open(&w.open_cmd("cus_b", "k")).await.unwrap();
    let event = PaymentEvent {
        event: WebhookEvent {
            id: "evt_late".into(),
            kind: "payment_intent.succeeded".into(),
            received_at: w.clock_now(),
        },
        session_id: a.id(),
        intent_id: a.payment_intent().unwrap().id.clone(),
        kind: PaymentEventKind::Succeeded {
            payment_method: visa(),
        },
    };
    assert!(matches!(
        w.checkouts.on_event(&event).await.unwrap(),
        EventOutcome::Handled(seatkeeper_domain::Effect::RefundDue)
    ));
    assert_eq!(
        w.checkouts.on_event(&event).await.unwrap(),
        EventOutcome::Duplicate
    );
    assert_eq!(
        w.checkouts.run_due().await.unwrap().deferred,
        1,
        "the refund failed"
    );
    assert_eq!(w.checkouts.run_due().await.unwrap().refunded, 1);
    assert_eq!(w.checkouts.run_due().await.unwrap().found, 0);
    let refunds = w
        .audit_actions()
        .await
        .into_iter()
        .filter(|a| *a == AuditAction::PaymentRefunded)
        .count();
    assert_eq!(refunds, 1);
    let late = w.checkouts.get(a.id()).await.unwrap().unwrap();
    assert!(late.late_payment().unwrap().refunded);
    w.assert_invariants().await;
}

#[tokio::test]
async fn a_declined_confirmation_answers_the_reason_and_a_3ds_one_its_next_action() {
    let mut intents = making_intents();
    let mut calls = 0;
    intents
        .expect_confirm_intent()
        .times(2)
        .returning(move |_, _| {
            calls += 1;
            if calls == 1 {
                Err(ChargeError::Declined {
                    code: "card_declined".into(),
                    message: "Your card was declined.".into(),
                })
            } else {
                Ok(intent(IntentStatus::RequiresAction {
                    next_action: seatkeeper_domain::ports::NextAction {
                        kind: "redirect_to_url".into(),
                        redirect_url: Some("https://bank.example/3ds".into()),
                    },
                }))
            }
        });
    let w = world(intents, MockGateway::new(), 1).await;
    let s = w
        .checkouts
        .open(&w.open_cmd("cus_1", "k1"))
        .await
        .unwrap()
        .session;
    match w
        .checkouts
        .confirm(s.id(), Reach::AnyCustomer, &visa(), &ctx())
        .await
        .unwrap()
    {
        Confirmation::PaymentFailed { reason, session } => {
            assert_eq!(reason, "card_declined: Your card was declined.");
            assert_eq!(session.status(), CheckoutStatus::Open);
        }
        other => panic!("expected a failure, got {other:?}"),
    }
    match w
        .checkouts
        .confirm(s.id(), Reach::AnyCustomer, &visa(), &ctx())
        .await
        .unwrap()
    {
        Confirmation::RequiresAction { next_action, .. } => {
            assert_eq!(
                next_action.redirect_url.as_deref(),
                Some("https://bank.example/3ds")
            )
        }
        other => panic!("expected requires_action, got {other:?}"),
    }
    w.assert_invariants().await;
}

#[tokio::test]
async fn a_confirmation_outside_the_callers_reach_is_not_found_and_pays_nothing() {
    let mut intents = making_intents();
    intents
        .expect_confirm_intent()
        .times(1)
        .returning(|_, _| Ok(intent(paid())));
    let w = world(intents, MockGateway::new(), 1).await;
    let s = w
        .checkouts
        .open(&w.open_cmd("cus_1", "k1"))
        .await
        .unwrap()
        .session;
    let other = CustomerId::parse("cus_2").unwrap();
    assert!(matches!(
        w.checkouts
            .confirm(s.id(), Reach::Only(&other), &visa(), &ctx())
            .await,
        Err(CheckoutError::NotFound)
    ));
    assert_eq!(
        w.checkouts.get(s.id()).await.unwrap().unwrap().status(),
        CheckoutStatus::Open
    );
    // Its own customer pays it; the answer carries the subscription the payment made.
    let own = CustomerId::parse("cus_1").unwrap();
    match w
        .checkouts
        .confirm(s.id(), Reach::Only(&own), &visa(), &ctx())
        .await
        .unwrap()
    {
        Confirmation::Complete {
            session,
            subscription,
        } => {
            assert_eq!(session.status(), CheckoutStatus::Complete);
            assert_eq!(subscription.id(), s.subscription_id());
            assert_eq!(
                w.checkouts.subscription_of(&session).await.unwrap(),
                Some(subscription)
            );
        }
        other => panic!("expected complete, got {other:?}"),
    }
    w.assert_invariants().await;
}

/// Intents as [`making_intents`] makes them, whose cancellations each take 20 ms and
/// count how many overlap.
struct SlowCancels {
    inner: MockIntents,
    in_flight: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl IntentGateway for SlowCancels {
    fn provider(&self) -> &'static str {
        "simulated"
    }
    async fn create_intent(&self, req: &IntentRequest) -> Result<PaymentIntent, GatewayError> {
        self.inner.create_intent(req).await
    }
    async fn confirm_intent(
        &self,
        intent_id: &str,
        payment_method: &PaymentMethod,
    ) -> Result<PaymentIntent, ChargeError> {
        self.inner.confirm_intent(intent_id, payment_method).await
    }
    async fn retrieve_intent(&self, intent_id: &str) -> Result<PaymentIntent, GatewayError> {
        self.inner.retrieve_intent(intent_id).await
    }
    async fn cancel_intent(&self, _intent_id: &str) -> Result<PaymentIntent, GatewayError> {
        use std::sync::atomic::Ordering::SeqCst;
        let now = self.in_flight.fetch_add(1, SeqCst) + 1;
        self.most.fetch_max(now, SeqCst);
        tokio::time::sleep(Duration::from_millis(20)).await;
        self.in_flight.fetch_sub(1, SeqCst);
        Ok(intent(IntentStatus::Canceled))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_run_visits_its_due_sessions_several_at_once_and_counts_each_once() {
    let intents = Arc::new(SlowCancels {
        inner: making_intents(),
        in_flight: 0.into(),
        most: 0.into(),
    });
    let w = world_with(intents.clone(), MockGateway::new(), 40).await;
    for i in 0..40 {
        w.checkouts
            .open(&w.open_cmd(&format!("cus_{i}"), "k"))
            .await
            .unwrap();
    }
    w.clock.advance(Duration::from_secs(1801));
    let run = w.checkouts.run_due().await.unwrap();
    assert_eq!(
        (run.found, run.expired, run.intents_canceled, run.deferred),
        (40, 40, 40, 0)
    );
    let most = intents.most.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (2..=CheckoutSettings::default().concurrency).contains(&most),
        "{most} cancellations at once"
    );
    assert_eq!(w.checkouts.run_due().await.unwrap().found, 0);
    let expiries = w
        .audit_actions()
        .await
        .iter()
        .filter(|a| **a == AuditAction::HoldExpired)
        .count();
    assert_eq!(expiries, 40);
    w.assert_invariants().await;
}

impl World {
    fn clock_now(&self) -> seatkeeper_domain::Timestamp {
        use seatkeeper_domain::ports::Clock;
        self.clock.now()
    }
}

/// One session, opened and then paid by its confirmation: the world, the session as
/// opened and as complete.
async fn a_completed_session() -> (World, CheckoutSession, CheckoutSession) {
    let mut intents = making_intents();
    intents
        .expect_confirm_intent()
        .returning(|_, _| Ok(intent(paid())));
    let w = world(intents, MockGateway::new(), 1).await;
    let open = w
        .checkouts
        .open(&w.open_cmd("cus_1", "k1"))
        .await
        .unwrap()
        .session;
    w.checkouts
        .confirm(open.id(), Reach::AnyCustomer, &visa(), &ctx())
        .await
        .unwrap();
    let complete = w.checkouts.get(open.id()).await.unwrap().unwrap();
    assert_eq!(complete.status(), CheckoutStatus::Complete);
    (w, open, complete)
}

#[tokio::test]
async fn only_a_change_that_moves_seats_or_numbers_an_entry_needs_the_plan() {
    use seatkeeper_domain::{CheckoutChange, ExpiryCause};
    let (_w, open, complete) = a_completed_session().await;
    let payment = |id: &str| CheckoutChange::PaymentSucceeded {
        payment_id: id.into(),
        payment_method: visa(),
    };
    let expire = CheckoutChange::Expire(ExpiryCause::Request);
    assert!(open.needs_plan(&payment("pi_1")));
    assert!(open.needs_plan(&expire));
    assert!(!open.needs_plan(&payment("pi_other")), "refused: mismatch");
    assert!(!open.needs_plan(&CheckoutChange::Checked));
    assert!(!open.needs_plan(&CheckoutChange::RefundRecorded));
    // A redelivered payment and an expiry of a complete session change nothing.
    assert!(!complete.needs_plan(&payment("pi_1")));
    assert!(!complete.needs_plan(&expire));
}

#[tokio::test]
async fn a_complete_session_is_final_every_change_leaves_it_unchanged_or_is_refused() {
    use seatkeeper_domain::{
        ChangeCheckout, CheckoutChange, Effect, ExpiryCause, PaymentIntentRef,
    };
    let (w, open, complete) = a_completed_session().await;
    assert!(!open.is_final());
    assert!(complete.is_final());
    let own = complete.payment_intent().unwrap().clone();
    let changes = [
        CheckoutChange::AttachIntent(own.clone()),
        CheckoutChange::AttachIntent(PaymentIntentRef {
            id: "pi_other".into(),
            client_secret: "pi_other_secret".into(),
        }),
        CheckoutChange::PaymentFailed {
            reason: "card_declined".into(),
        },
        CheckoutChange::PaymentSucceeded {
            payment_id: own.id.clone(),
            payment_method: visa(),
        },
        CheckoutChange::PaymentSucceeded {
            payment_id: "pi_other".into(),
            payment_method: visa(),
        },
        CheckoutChange::Expire(ExpiryCause::Request),
        CheckoutChange::Expire(ExpiryCause::Timeout),
        CheckoutChange::IntentClosed,
        CheckoutChange::RefundRecorded,
        CheckoutChange::Checked,
    ];
    for change in changes {
        assert!(!complete.needs_plan(&change), "{change:?} needs no plan");
        let mut session = complete.clone();
        let cmd = ChangeCheckout {
            session_id: session.id(),
            change: change.clone(),
            ctx: ctx(),
            now: w.clock_now() + chrono::Duration::hours(1),
            recheck_after: chrono::Duration::seconds(60),
        };
        if let Ok(applied) = session.apply(&cmd, None) {
            assert_eq!(applied.effect, Effect::Unchanged, "{change:?}");
        }
        assert_eq!(session, complete, "{change:?} changed a complete session");
    }
}

#[tokio::test]
async fn an_unrecorded_intent_whose_cancellation_fails_is_cancelled_by_a_later_run() {
    let mut intents = MockIntents::new();
    let mut made = 0;
    intents.expect_create_intent().times(2).returning(move |_| {
        made += 1;
        if made == 1 {
            Err(down())
        } else {
            Ok(intent(IntentStatus::RequiresPaymentMethod {
                last_error: None,
            }))
        }
    });
    let mut cancels = 0;
    intents
        .expect_cancel_intent()
        .with(eq("pi_1"))
        .times(2)
        .returning(move |_| {
            cancels += 1;
            if cancels == 1 {
                Err(down())
            } else {
                Ok(intent(IntentStatus::Canceled))
            }
        });
    let w = world(intents, MockGateway::new(), 1).await;
    let cmd = w.open_cmd("cus_1", "k1");
    assert!(w.checkouts.open(&cmd).await.is_err());
    let s = w.only_session().await;
    w.clock.advance(Duration::from_secs(1801));
    assert_eq!(w.checkouts.run_due().await.unwrap().expired, 1);
    // The expired session now records the intent, not yet cancelled: it stays due.
    let ended = w.checkouts.get(s).await.unwrap().unwrap();
    assert_eq!(ended.payment_intent().unwrap().id, "pi_1");
    assert!(!ended.intent_closed());
    assert_eq!(w.checkouts.run_due().await.unwrap().intents_canceled, 1);
    let done = w.checkouts.get(s).await.unwrap().unwrap();
    assert!(done.intent_closed());
    assert_eq!(done.check_at(), None);
    w.assert_invariants().await;
}

/// The process dies after a session that records no intent expired and before the
/// provider was asked for the intent it may hold (made at opening, its recording lost):
/// the expired session stays due, and the worker's next run finds the intent under the
/// session's provider key, records it and cancels it.
#[tokio::test]
async fn an_expired_session_whose_intent_was_never_looked_for_has_it_cancelled_by_the_worker() {
    use seatkeeper_domain::{
        ports::CheckoutRepository, ChangeCheckout, CheckoutChange, ExpiryCause,
    };
    let w = world(
        intent_lost_at_opening_then_cancelled(),
        MockGateway::new(),
        1,
    )
    .await;
    assert!(w.checkouts.open(&w.open_cmd("cus_1", "k1")).await.is_err());
    let s = w.only_session().await;
    // The expiry commits; the process dies before the service looks for the intent.
    let expire = ChangeCheckout {
        session_id: s,
        change: CheckoutChange::Expire(ExpiryCause::Request),
        ctx: ctx(),
        now: w.checkouts.now(),
        recheck_after: CheckoutSettings::default().recheck_after,
    };
    let ended = w.store.change_checkout(&expire).await.unwrap().session;
    assert_eq!(ended.status(), CheckoutStatus::Expired);
    assert_eq!(ended.check_at(), Some(w.checkouts.now()));
    let run = w.checkouts.run_due().await.unwrap();
    assert_eq!((run.found, run.intents_canceled, run.deferred), (1, 1, 0));
    let done = w.checkouts.get(s).await.unwrap().unwrap();
    assert_eq!(done.payment_intent().unwrap().id, "pi_1");
    assert!(done.intent_closed());
    assert_eq!(done.check_at(), None);
    assert_eq!(w.checkouts.run_due().await.unwrap().found, 0);
    w.assert_invariants().await;
}
