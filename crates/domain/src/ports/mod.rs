//! The ports: traits the domain calls and adapters implement.
//!
//! Store traits are split by aggregate ([`PlanRepository`], [`SubscriptionRepository`],
//! [`IdempotencyRepository`], [`PurchaseRepository`], [`RecoveryRepository`],
//! [`AuditLog`], [`ApiKeyRepository`], [`CheckoutRepository`], [`PlanFeed`]) and gathered in
//! [`Store`], which is what a storage adapter provides. **Every method is one atomic
//! business step**: a reader never sees half of it, and the adapter owns the
//! transaction or lock that makes it so. Each method documents what it guarantees and
//! the errors it must return; the storage contract suite checks both.
//!
//! [`PaymentGateway`] charges, looks up and refunds; [`Clock`] tells the time.

mod audit;
mod checkout;
mod checkout_batch;
mod clock;
mod idempotency;
mod keys;
mod live;
mod payment;
mod plans;
mod purchases;
mod recovery;
mod store;
mod subscriptions;

pub use audit::*;
pub use checkout::*;
pub use checkout_batch::*;
pub use clock::*;
pub use idempotency::*;
pub use keys::*;
pub use live::*;
pub use payment::*;
pub use plans::*;
pub use purchases::*;
pub use recovery::*;
pub use store::*;
pub use subscriptions::*;
