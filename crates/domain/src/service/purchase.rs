//! The purchase state machine of `purchase-flow.md`: claim the key, reserve a seat (one
//! store step for both when the key is new), charge outside any transaction, complete;
//! resume from the recovery point on retry.

use std::{sync::Arc, time::Duration};

use crate::{
    model::{
        AuditContext, Claim, ClaimKey, CustomerId, Fingerprint, IdempotencyKey, LockToken,
        PaymentMethod, PlanId, PurchaseOutcome, RecoveryPoint, Subscription, SubscriptionId,
        SubscriptionStatus,
    },
    ports::{
        ChargeError, ChargeRequest, ChargeResult, Clock, CompleteError, CompletePurchase,
        NewKeyReservation, PaymentGateway, Reservation, ReserveError, ReserveSeat,
        ReserveWithNewKey, Store, StoreError,
    },
};

/// How idempotency keys behave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdempotencySettings {
    /// How long a request may hold a key before another may take it over. Must exceed
    /// the longest charge call.
    pub lock_lease: Duration,
    /// How long a key is remembered (24 h by default).
    pub retention: Duration,
}

impl Default for IdempotencySettings {
    fn default() -> Self {
        Self {
            lock_lease: Duration::from_secs(30),
            retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// A validated purchase request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseCommand {
    pub customer_id: CustomerId,
    pub key: IdempotencyKey,
    pub plan_id: PlanId,
    pub payment_method: PaymentMethod,
    /// The id of the HTTP request (or job) this runs under.
    pub request_id: String,
    /// Who buys, as the audit log names them ([`crate::Principal::actor`]).
    pub actor: std::sync::Arc<str>,
}

/// The definitive result of a purchase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurchaseReceipt {
    pub outcome: PurchaseOutcome,
    /// `true` when the outcome was stored by an earlier request with the same key.
    pub replayed: bool,
    /// The request that produced the outcome (the first one, for a replay).
    pub request_id: String,
}

/// Errors of [`PurchaseService::purchase`]: every result that is not definitive.
/// Nothing about them is stored as a response; a retry with the same key is safe.
#[derive(Debug, thiserror::Error)]
pub enum PurchaseError {
    /// Another request holds the key's lock now.
    #[error("a request with this idempotency key is already in progress")]
    KeyInUse,
    /// The key was used before with a different request.
    #[error("this idempotency key was already used with a different request")]
    KeyReused,
    /// The charge's outcome is unknown; the key was released so a retry can resume.
    #[error("the payment outcome is unknown")]
    PaymentUnavailable(#[source] ChargeError),
    /// The store failed; whatever step failed changed nothing.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Where a purchase stands once its key is claimed, before any charge.
enum Start {
    /// The key was finished by an earlier request: replay its outcome.
    Replay {
        outcome: PurchaseOutcome,
        request_id: String,
    },
    /// The purchase ended without a charge (sold out, say) or was already completed.
    Done(PurchaseOutcome),
    /// A seat is reserved: charge for it.
    Charge(Subscription),
}

/// Runs purchases.
#[derive(Clone)]
pub struct PurchaseService {
    store: Arc<dyn Store>,
    gateway: Arc<dyn PaymentGateway>,
    clock: Arc<dyn Clock>,
    settings: IdempotencySettings,
}

impl PurchaseService {
    pub fn new(
        store: Arc<dyn Store>,
        gateway: Arc<dyn PaymentGateway>,
        clock: Arc<dyn Clock>,
        settings: IdempotencySettings,
    ) -> Self {
        Self {
            store,
            gateway,
            clock,
            settings,
        }
    }

    /// Buys a seat, exactly once per `(customer_id, key)`.
    #[tracing::instrument(skip_all, fields(plan_id = %cmd.plan_id, customer_id = %cmd.customer_id))]
    pub async fn purchase(&self, cmd: &PurchaseCommand) -> Result<PurchaseReceipt, PurchaseError> {
        let owner = LockToken::generate();
        // One context for both of the purchase's audit entries: they share its strings.
        let ctx = AuditContext {
            actor: cmd.actor.clone(),
            trace_id: cmd.request_id.as_str().into(),
        };
        let result = match self.start(cmd, owner, &ctx).await {
            Ok(Start::Replay {
                outcome,
                request_id,
            }) => {
                return Ok(PurchaseReceipt {
                    outcome,
                    replayed: true,
                    request_id,
                })
            }
            Ok(Start::Done(outcome)) => Ok(outcome),
            Ok(Start::Charge(subscription)) => self.finish(cmd, subscription, ctx).await,
            Err(e) => Err(e),
        };
        if let Err(err) = &result {
            // `KeyInUse` and `KeyReused`: the key is somebody else's. Anything else may
            // have left it held by this request (a commit whose answer was lost, say), so
            // it is let go for a retry to resume at once.
            if !matches!(err, PurchaseError::KeyInUse | PurchaseError::KeyReused) {
                self.let_go(cmd, owner).await;
            }
        }
        result.map(|outcome| PurchaseReceipt {
            outcome,
            replayed: false,
            request_id: cmd.request_id.clone(),
        })
    }

    /// The key's claim and the reservation, as far as they go before the charge. A new
    /// key — nearly every purchase — takes one store step for both; a key with a record
    /// is claimed first and goes on from its recovery point.
    async fn start(
        &self,
        cmd: &PurchaseCommand,
        owner: LockToken,
        ctx: &AuditContext,
    ) -> Result<Start, PurchaseError> {
        // A block, so that the step's copies of the key are freed before the purchase
        // waits on its payment, not held by every parked request.
        let first = {
            let step =
                ReserveWithNewKey::new(self.claim(cmd, owner), self.reservation(cmd, owner, ctx));
            self.store.reserve_with_new_key(&step).await?
        };
        match first {
            NewKeyReservation::Claimed(Reservation::Reserved(subscription)) => {
                return Ok(Start::Charge(subscription))
            }
            NewKeyReservation::Claimed(Reservation::Rejected(outcome)) => {
                return Ok(Start::Done(outcome))
            }
            NewKeyReservation::KeyExists => {}
        }
        // Only the recovery point goes on: the rest of the record is freed before the wait.
        let recovery = match self.store.claim_key(&self.claim(cmd, owner)).await? {
            Claim::Acquired(record) => record.recovery().clone(),
            Claim::Finished {
                outcome,
                request_id,
            } => {
                return Ok(Start::Replay {
                    outcome,
                    request_id,
                })
            }
            Claim::InUse => return Err(PurchaseError::KeyInUse),
            Claim::FingerprintMismatch => return Err(PurchaseError::KeyReused),
        };
        match recovery {
            RecoveryPoint::Started => {
                match self
                    .store
                    .reserve_seat(&self.reservation(cmd, owner, ctx))
                    .await
                {
                    Ok(Reservation::Reserved(subscription)) => Ok(Start::Charge(subscription)),
                    Ok(Reservation::Rejected(outcome)) => Ok(Start::Done(outcome)),
                    Err(ReserveError::LockLost) => Err(PurchaseError::KeyInUse),
                    Err(ReserveError::Store(e)) => Err(e.into()),
                }
            }
            RecoveryPoint::Reserved { subscription_id } => {
                let subscription = self
                    .store
                    .get_subscription(subscription_id)
                    .await?
                    .ok_or_else(|| {
                        StoreError::internal(format!(
                            "idempotency key {} points at subscription {subscription_id}, which does not exist",
                            cmd.key
                        ))
                    })?;
                if let Some(outcome) = PurchaseOutcome::of_finished(subscription.clone()) {
                    return Ok(Start::Done(outcome));
                }
                tracing::info!(subscription_id = %subscription.id(), "resuming a reserved purchase at the charge");
                Ok(Start::Charge(subscription))
            }
        }
    }

    /// The claim of the purchase's key by `owner`.
    fn claim(&self, cmd: &PurchaseCommand, owner: LockToken) -> ClaimKey {
        ClaimKey {
            scope: cmd.customer_id.clone(),
            key: cmd.key.clone(),
            fingerprint: Fingerprint::of_purchase(
                cmd.plan_id,
                &cmd.customer_id,
                &cmd.payment_method,
            ),
            owner,
            now: self.clock.now(),
            lease: self.settings.lock_lease,
            retention: self.settings.retention,
        }
    }

    /// The reservation of a seat under the purchase's key, held by `owner`.
    fn reservation(
        &self,
        cmd: &PurchaseCommand,
        owner: LockToken,
        ctx: &AuditContext,
    ) -> ReserveSeat {
        ReserveSeat {
            customer_id: cmd.customer_id.clone(),
            key: cmd.key.clone(),
            owner,
            plan_id: cmd.plan_id,
            subscription_id: SubscriptionId::generate(),
            payment_method: cmd.payment_method.clone(),
            request_id: cmd.request_id.clone(),
            ctx: ctx.clone(),
            now: self.clock.now(),
        }
    }

    /// Charges the reserved subscription and completes the purchase with the result.
    async fn finish(
        &self,
        cmd: &PurchaseCommand,
        subscription: Subscription,
        ctx: AuditContext,
    ) -> Result<PurchaseOutcome, PurchaseError> {
        let result = self.charge(&subscription).await?;
        let complete = CompletePurchase {
            subscription_id: subscription.id(),
            result,
            request_id: cmd.request_id.clone(),
            ctx,
            now: self.clock.now(),
            verify_after: None,
        };
        match self.store.complete_purchase(&complete).await {
            Ok(done) => Ok(done.outcome),
            Err(CompleteError::NotIncomplete(finished)) => {
                if let (
                    ChargeResult::Charged { payment_id },
                    SubscriptionStatus::IncompleteExpired,
                ) = (&complete.result, finished.status())
                {
                    // The reconciler gave this purchase up (its seat is back on sale)
                    // while this retry charged: the money goes back.
                    self.refund_late_charge(finished.id(), payment_id, &complete.ctx)
                        .await;
                }
                PurchaseOutcome::of_finished(*finished).ok_or_else(|| {
                    StoreError::internal("a completed subscription is still incomplete").into()
                })
            }
            Err(CompleteError::NotFound(id)) => Err(StoreError::internal(format!(
                "subscription {id} vanished between reservation and completion"
            ))
            .into()),
            Err(CompleteError::Store(e)) => Err(e.into()),
        }
    }

    /// Charges outside any transaction, with the provider key of the subscription.
    async fn charge(&self, subscription: &Subscription) -> Result<ChargeResult, PurchaseError> {
        let req = ChargeRequest {
            provider_key: subscription.provider_key(),
            subscription_id: subscription.id(),
            customer_id: subscription.customer_id().clone(),
            amount: subscription.unit_amount(),
            currency: subscription.currency(),
            payment_method: subscription.payment_method().clone(),
        };
        match self.gateway.charge(&req).await {
            Ok(charge) => Ok(ChargeResult::Charged {
                payment_id: charge.payment_id,
            }),
            Err(ChargeError::Declined { code, message }) => Ok(ChargeResult::Declined {
                reason: format!("{code}: {message}"),
            }),
            Err(unknown @ ChargeError::Unknown(_)) => {
                tracing::warn!(subscription_id = %subscription.id(), error = %unknown, "payment outcome unknown; the key is released for a retry");
                Err(PurchaseError::PaymentUnavailable(unknown))
            }
        }
    }

    /// Refunds a charge that landed after its purchase was given up, and audits it. If
    /// either step fails, the reconciler's late-charge check does it later.
    async fn refund_late_charge(&self, id: SubscriptionId, payment_id: &str, ctx: &AuditContext) {
        if let Err(e) = self.gateway.refund(payment_id).await {
            tracing::warn!(subscription_id = %id, error = %e, "could not refund a late charge; the reconciler will");
            return;
        }
        match self
            .store
            .record_refund(id, payment_id, ctx, self.clock.now())
            .await
        {
            Ok(_) => {
                tracing::warn!(subscription_id = %id, payment_id, "a charge landed after its purchase was given up; refunded")
            }
            Err(e) => {
                tracing::warn!(subscription_id = %id, error = %e, "refunded a late charge but could not audit it")
            }
        }
    }

    /// Releases the key after a non-definitive failure, so a retry can resume at once.
    async fn let_go(&self, cmd: &PurchaseCommand, owner: LockToken) {
        if let Err(e) = self
            .store
            .release_key(&cmd.customer_id, &cmd.key, owner)
            .await
        {
            tracing::warn!(error = %e, "could not release the idempotency key; its lease will expire");
        }
    }
}
