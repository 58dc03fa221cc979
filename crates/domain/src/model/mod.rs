//! The entities and validated value types of Seatkeeper.

mod access;
mod audit;
mod checkout;
mod idempotency;
mod ids;
mod page;
mod plan;
mod subscription;
mod values;

pub use access::*;
pub use audit::*;
pub use checkout::*;
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

    /// "must be 'a', 'b' or 'c'": the refusal of a name outside `names`.
    pub(crate) fn one_of(names: &[&str]) -> Self {
        let quoted: Vec<String> = names.iter().map(|n| format!("'{n}'")).collect();
        let message = match quoted.split_last() {
            Some((last, rest)) if !rest.is_empty() => {
                format!("must be {} or {last}", rest.join(", "))
            }
            Some((only, _)) => format!("must be {only}"),
            None => "must not be given".to_owned(),
        };
        Self(message)
    }

    /// The enum value named `s` (as its strum `snake_case` name), or [`Self::one_of`] its names.
    pub(crate) fn parse_name<T>(s: &str) -> Result<T, Self>
    where
        T: std::str::FromStr + strum::VariantNames,
    {
        s.parse().map_err(|_| Self::one_of(T::VARIANTS))
    }
}

/// The timestamp type used throughout the domain.
pub type Timestamp = chrono::DateTime<chrono::Utc>;
