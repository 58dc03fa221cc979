//! The clock: the domain asks it for the time so that tests can move it.

use crate::model::Timestamp;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The system's wall clock, to the millisecond: the precision every store keeps
/// (MongoDB's dates are milliseconds), so a value reads back exactly as it was written.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        use chrono::SubsecRound;
        chrono::Utc::now().trunc_subsecs(3)
    }
}
