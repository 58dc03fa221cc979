use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::InvalidValue;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A new, time-ordered (UUIDv7) id.
            pub fn generate() -> Self {
                Self(Uuid::now_v7())
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = InvalidValue;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                // Only the hyphenated form the API writes: no braces, URNs or bare hex.
                Some(s)
                    .filter(|s| s.len() == 36)
                    .and_then(|s| Uuid::parse_str(s).ok())
                    .map(Self)
                    .ok_or_else(|| InvalidValue::new(concat!("must be a ", $what, " id (a UUID)")))
            }
        }
    };
}

uuid_id!(
    /// Identifies an API key (not its secret).
    ApiKeyId,
    "key"
);
uuid_id!(
    /// Identifies a plan.
    PlanId,
    "plan"
);
uuid_id!(
    /// Identifies a subscription.
    SubscriptionId,
    "subscription"
);
uuid_id!(
    /// Identifies a checkout session.
    CheckoutSessionId,
    "checkout session"
);
uuid_id!(
    /// Identifies an audit entry.
    AuditEntryId,
    "audit entry"
);

/// Identifies a customer; it is also the scope of the customer's idempotency keys.
///
/// 1 to 64 characters among ASCII letters, digits, `_`, `-`, `.` and `:`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CustomerId(String);

impl CustomerId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        if s.is_empty() {
            return Err(InvalidValue::new("must not be empty"));
        }
        if s.len() > Self::MAX_LEN {
            return Err(InvalidValue::new(format!(
                "must be at most {} characters",
                Self::MAX_LEN
            )));
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
        {
            return Err(InvalidValue::new(
                "may contain only ASCII letters, digits, '_', '-', '.' and ':'",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for CustomerId {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<CustomerId> for String {
    fn from(id: CustomerId) -> Self {
        id.0
    }
}
