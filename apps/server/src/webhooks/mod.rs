//! Stripe webhooks: the signature check ([`signature`]) and the reading of an event into
//! the domain's [`PaymentEvent`](seatkeeper_domain::service::PaymentEvent)
//! ([`event`]). The route (`routes::webhooks`) checks, reads, and hands the event to the
//! checkout service, which deduplicates it by id.

pub mod event;
pub mod signature;
