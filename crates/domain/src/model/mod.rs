//! The entities and validated value types of Seatkeeper.

mod audit;
mod idempotency;
mod ids;
mod page;
mod plan;
mod subscription;
mod values;

pub use audit::*;
pub use idempotency::*;
pub use ids::*;
pub use page::*;
pub use plan::*;
pub use subscription::*;
pub use values::*;

/// A value that failed validation, with a message a client can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

impl InvalidValue {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// The timestamp type used throughout the domain.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
