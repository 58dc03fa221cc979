//! The subscription repository: reading subscriptions and cancelling them.

use async_trait::async_trait;

use super::StoreError;
use crate::model::{
    AuditContext, CustomerId, SeatMove, Subscription, SubscriptionId, SubscriptionStatus, Timestamp,
};

/// Errors of [`SubscriptionRepository::cancel_subscription`].
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    #[error("no subscription with id {0}")]
    NotFound(SubscriptionId),
    #[error("the subscription is {} and cannot be cancelled", .0.as_str())]
    NotActive(SubscriptionStatus),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a cancellation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cancellation {
    pub subscription: Subscription,
    /// `true` when the subscription was already cancelled: nothing changed.
    pub already_canceled: bool,
}

/// What cancelling a subscription comes to, decided by the domain from the subscription
/// as the store read it inside the atomic step of
/// [`SubscriptionRepository::cancel_subscription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelDecision {
    /// Cancelled already: nothing changes, and this is the answer.
    AlreadyCanceled(Cancellation),
    /// Active: write `subscription` (now cancelled) and carry out `seat_move` (its seat
    /// given back, audited) in the same step; the answer is [`CancelDecision::answer`].
    Cancel {
        subscription: Subscription,
        seat_move: SeatMove,
    },
}

impl CancelDecision {
    /// Decides the cancellation of `sub` at `now`: only an active subscription is
    /// cancelled, a cancelled one is answered as it is, any other is refused.
    pub fn of(mut sub: Subscription, now: Timestamp) -> Result<Self, CancelError> {
        match sub.status() {
            SubscriptionStatus::Canceled => Ok(Self::AlreadyCanceled(Cancellation {
                subscription: sub,
                already_canceled: true,
            })),
            SubscriptionStatus::Active => {
                sub.cancel(now);
                let seat_move = SeatMove::cancel(sub.id());
                Ok(Self::Cancel {
                    subscription: sub,
                    seat_move,
                })
            }
            other => Err(CancelError::NotActive(other)),
        }
    }

    /// The answer of a cancellation carried out: the subscription as cancelled.
    pub fn answer(subscription: Subscription) -> Cancellation {
        Cancellation {
            subscription,
            already_canceled: false,
        }
    }
}

#[async_trait]
pub trait SubscriptionRepository: Send + Sync {
    /// The subscription with this id, or `None`.
    async fn get_subscription(
        &self,
        id: SubscriptionId,
    ) -> Result<Option<Subscription>, StoreError>;

    /// At most `limit` subscriptions of the customer ordered by id, after `after`.
    async fn customer_subscriptions(
        &self,
        customer: &CustomerId,
        after: Option<SubscriptionId>,
        limit: u32,
    ) -> Result<Vec<Subscription>, StoreError>;

    /// Cancels an `active` subscription: status `canceled`, its plan's `seats_left + 1`,
    /// a `subscription_canceled` audit entry, atomically. Cancelling a `canceled`
    /// subscription changes nothing and returns it with `already_canceled`. MUST return
    /// `NotFound` for an unknown id and `NotActive` for `incomplete` or
    /// `incomplete_expired` ones.
    async fn cancel_subscription(
        &self,
        id: SubscriptionId,
        ctx: &AuditContext,
        now: Timestamp,
    ) -> Result<Cancellation, CancelError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        AuditAction, Capacity, Currency, Interval, NewPlan, PaymentMethod, Plan, PlanName,
        UnitAmount,
    };

    fn subscription(status: SubscriptionStatus) -> Subscription {
        let plan = Plan::create(
            NewPlan {
                name: PlanName::parse("Starter").unwrap(),
                capacity: Capacity::new(2).unwrap(),
                unit_amount: UnitAmount::new(1000).unwrap(),
                currency: Currency::parse("usd").unwrap(),
                interval: Interval::Month,
            },
            chrono::Utc::now(),
        );
        let mut sub = Subscription::reserve(
            SubscriptionId::generate(),
            &plan,
            CustomerId::parse("cus_1").unwrap(),
            PaymentMethod::parse("pm_card_visa").unwrap(),
            None,
            plan.created_at(),
        );
        let now = plan.created_at();
        match status {
            SubscriptionStatus::Incomplete => {}
            SubscriptionStatus::Active => sub.activate("pi_1".into(), now),
            SubscriptionStatus::IncompleteExpired => sub.expire("card_declined".into(), now),
            SubscriptionStatus::Canceled => {
                sub.activate("pi_1".into(), now);
                sub.cancel(now);
            }
        }
        assert_eq!(sub.status(), status);
        sub
    }

    #[test]
    fn an_active_subscription_is_cancelled_and_gives_its_seat_back() {
        let sub = subscription(SubscriptionStatus::Active);
        let at = sub.created_at() + chrono::Duration::days(3);
        let CancelDecision::Cancel {
            subscription,
            seat_move,
        } = CancelDecision::of(sub.clone(), at).unwrap()
        else {
            panic!("an active subscription is cancelled");
        };
        assert_eq!(subscription.status(), SubscriptionStatus::Canceled);
        assert_eq!(subscription.canceled_at(), Some(at));
        assert_eq!(seat_move.delta, 1);
        assert_eq!(seat_move.action, AuditAction::SubscriptionCanceled);
        assert_eq!(seat_move.subscription_id, Some(sub.id()));
    }

    #[test]
    fn a_cancelled_subscription_is_answered_as_it_is() {
        let sub = subscription(SubscriptionStatus::Canceled);
        let decision = CancelDecision::of(sub.clone(), sub.created_at()).unwrap();
        assert_eq!(
            decision,
            CancelDecision::AlreadyCanceled(Cancellation {
                subscription: sub,
                already_canceled: true
            })
        );
    }

    #[test]
    fn an_unfinished_or_expired_purchase_cannot_be_cancelled() {
        for status in [
            SubscriptionStatus::Incomplete,
            SubscriptionStatus::IncompleteExpired,
        ] {
            let sub = subscription(status);
            assert!(matches!(
                CancelDecision::of(sub.clone(), sub.created_at()),
                Err(CancelError::NotActive(s)) if s == status
            ));
        }
    }
}
