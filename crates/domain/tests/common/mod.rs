//! What the domain's test binaries share: the services wired to an in-memory store, a
//! mockall mock of the payment gateway, and a clock the test moves by hand.
#![allow(dead_code)] // each test binary uses its own part

use std::{
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use async_trait::async_trait;
use chrono::SubsecRound;
use mockall::mock;
use seatkeeper_domain::{
    invariants::check_store_plan,
    ports::{
        Charge, ChargeError, ChargeRequest, ChargeStatus, Clock, GatewayError, PaymentGateway,
        Store, SystemClock,
    },
    service::{
        IdempotencySettings, PlanService, PurchaseCommand, PurchaseService, Reconciler,
        RecoverySettings, SubscriptionService,
    },
    AuditContext, Capacity, Currency, CustomerId, IdempotencyKey, Interval, NewPlan, PaymentMethod,
    Plan, PlanId, PlanName, Timestamp, UnitAmount,
};
use seatkeeper_store_memory::MemoryStore;

mock! {
    pub Gateway {}

    #[async_trait]
    impl PaymentGateway for Gateway {
        async fn charge(&self, req: &ChargeRequest) -> Result<Charge, ChargeError>;
        async fn lookup(&self, provider_key: &str) -> Result<ChargeStatus, GatewayError>;
        async fn refund(&self, payment_id: &str) -> Result<(), GatewayError>;
    }
}

/// The wall clock, moved forward by hand.
#[derive(Default)]
pub struct ManualClock {
    offset_ms: AtomicI64,
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        (chrono::Utc::now() + chrono::Duration::milliseconds(self.offset_ms.load(Ordering::SeqCst)))
            .trunc_subsecs(3)
    }
}

pub struct World {
    pub store: Arc<MemoryStore>,
    pub purchases: PurchaseService,
    pub plans: PlanService,
    pub subscriptions: SubscriptionService,
    pub reconciler: Reconciler,
}

pub fn world_with(gateway: Arc<dyn PaymentGateway>, clock: Arc<dyn Clock>) -> World {
    let store = Arc::new(MemoryStore::new());
    let dyn_store: Arc<dyn Store> = store.clone();
    World {
        reconciler: Reconciler::new(
            dyn_store.clone(),
            gateway.clone(),
            clock.clone(),
            RecoverySettings::default(),
        ),
        purchases: PurchaseService::new(
            dyn_store.clone(),
            gateway,
            clock.clone(),
            IdempotencySettings::default(),
        ),
        plans: PlanService::new(dyn_store.clone(), clock.clone()),
        subscriptions: SubscriptionService::new(dyn_store, clock),
        store,
    }
}

pub fn world(gateway: Arc<dyn PaymentGateway>) -> World {
    world_with(gateway, Arc::new(SystemClock))
}

impl World {
    pub async fn plan(&self, capacity: i64) -> Plan {
        self.plans
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
    }

    pub async fn assert_invariants(&self, plan_id: PlanId) {
        let violations = check_store_plan(self.store.as_ref(), plan_id).await;
        assert!(violations.is_empty(), "invariants broken: {violations:#?}");
    }

    pub async fn seats_left(&self, plan_id: PlanId) -> u32 {
        self.plans.get(plan_id).await.unwrap().seats_left()
    }
}

pub fn cmd(plan: PlanId, customer: &str, key: &str, pm: &str) -> PurchaseCommand {
    PurchaseCommand {
        customer_id: CustomerId::parse(customer).unwrap(),
        key: IdempotencyKey::parse(key).unwrap(),
        plan_id: plan,
        payment_method: PaymentMethod::parse(pm).unwrap(),
        request_id: format!("req-{customer}-{key}"),
        actor: format!("customer:{customer}").into(),
    }
}
