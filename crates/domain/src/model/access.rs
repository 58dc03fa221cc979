//! Who may do what: API keys with their roles, the principal a request acts as, and the
//! rule of which principal may take which action.
//!
//! A key's secret is shown once, when it is made, and kept only as its SHA-256 hash: a
//! secret is 190 random bits, so a fast hash is as safe as a slow one and lets a store
//! find the key by an index lookup. The permission table (`Principal::check`) and the
//! actor an audit entry names (`Principal::audit_context`) are decided here, once, for
//! every inbound adapter.

use std::sync::Arc;

use rand::{distributions::Alphanumeric, rngs::OsRng, Rng};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ApiKeyId, AuditContext, CustomerId, InvalidValue, KeyName, Timestamp};

/// What an API key may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantNames,
    strum::VariantArray,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Buy, read and cancel any customer's subscriptions; mint customer sessions.
    Purchases,
}

impl Role {
    /// Every role.
    pub const ALL: &'static [Self] = <Self as strum::VariantArray>::VARIANTS;

    /// The role named `s` (as [`Role::as_str`] writes it).
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        InvalidValue::parse_name(s)
    }

    pub fn as_str(&self) -> &'static str {
        self.into()
    }
}

/// An API key's secret as its holder sends it: `sk_` and 32 alphanumeric characters.
/// Never logged: its `Debug` shows the prefix only.
#[derive(Clone, PartialEq, Eq)]
pub struct KeySecret(String);

impl KeySecret {
    pub const PREFIX: &'static str = "sk_";
    const RANDOM_CHARS: usize = 32;
    /// How many characters of a secret a key listing shows (`sk_` and 8 more).
    pub const SHOWN_CHARS: usize = 11;

    /// A new secret from the operating system's random source (32 × log2(62) ≈ 190 bits).
    pub fn generate() -> Self {
        let random: String = OsRng
            .sample_iter(&Alphanumeric)
            .take(Self::RANDOM_CHARS)
            .map(char::from)
            .collect();
        Self([Self::PREFIX, &random].concat())
    }

    /// A secret as a client sent it, if it has a key's shape. Whether a key has it is
    /// the store's to say (by its hash).
    pub fn parse(s: &str) -> Option<Self> {
        let random = s.strip_prefix(Self::PREFIX)?;
        (random.len() == Self::RANDOM_CHARS && random.bytes().all(|b| b.is_ascii_alphanumeric()))
            .then(|| Self(s.to_owned()))
    }

    /// The whole secret, to show its holder once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The start of the secret a key listing shows, so that people can tell keys apart.
    pub fn shown_prefix(&self) -> String {
        self.0[..Self::SHOWN_CHARS].to_owned()
    }

    /// What a store keeps instead of the secret.
    pub fn hash(&self) -> SecretHash {
        SecretHash(hex::encode(Sha256::digest(self.0.as_bytes())))
    }
}

impl std::fmt::Debug for KeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeySecret({}…)", &self.0[..Self::SHOWN_CHARS])
    }
}

/// The SHA-256 of a key's secret, as 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SecretHash(String);

impl SecretHash {
    /// A hash a store kept.
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(Self(s.to_owned()))
        } else {
            Err(InvalidValue::new("must be 64 lowercase hex digits"))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An API key as a store keeps it: everything but the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    id: ApiKeyId,
    name: KeyName,
    role: Role,
    shown_prefix: String,
    secret_hash: SecretHash,
    created_at: Timestamp,
    last_used_at: Option<Timestamp>,
    revoked_at: Option<Timestamp>,
}

/// An [`ApiKey`]'s fields as a store reads them, before [`ApiKey::restore`] checks them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredApiKey {
    pub id: ApiKeyId,
    pub name: KeyName,
    pub role: Role,
    pub shown_prefix: String,
    pub secret_hash: SecretHash,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

impl ApiKey {
    /// A new key and its secret, which is shown once and never kept.
    pub fn create(name: KeyName, role: Role, now: Timestamp) -> (Self, KeySecret) {
        let secret = KeySecret::generate();
        let key = Self {
            id: ApiKeyId::generate(),
            name,
            role,
            shown_prefix: secret.shown_prefix(),
            secret_hash: secret.hash(),
            created_at: now,
            last_used_at: None,
            revoked_at: None,
        };
        (key, secret)
    }

    /// The key a store kept, if the domain could have made it: a shown prefix of a
    /// secret's shape, and no use or revocation before its creation.
    pub fn restore(s: StoredApiKey) -> Result<Self, InvalidValue> {
        let prefix_ok = s.shown_prefix.len() == KeySecret::SHOWN_CHARS
            && s.shown_prefix.starts_with(KeySecret::PREFIX)
            && s.shown_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !prefix_ok {
            return Err(InvalidValue::new(
                "a key's shown prefix is not a secret's start",
            ));
        }
        let before_creation = |t: Option<Timestamp>| t.is_some_and(|t| t < s.created_at);
        if before_creation(s.last_used_at) || before_creation(s.revoked_at) {
            return Err(InvalidValue::new(
                "a key used or revoked before it was made",
            ));
        }
        Ok(Self {
            id: s.id,
            name: s.name,
            role: s.role,
            shown_prefix: s.shown_prefix,
            secret_hash: s.secret_hash,
            created_at: s.created_at,
            last_used_at: s.last_used_at,
            revoked_at: s.revoked_at,
        })
    }

    pub fn id(&self) -> ApiKeyId {
        self.id
    }

    pub fn name(&self) -> &KeyName {
        &self.name
    }

    pub fn role(&self) -> Role {
        self.role
    }

    /// The first characters of the secret (`sk_` and 8 more).
    pub fn shown_prefix(&self) -> &str {
        &self.shown_prefix
    }

    pub fn secret_hash(&self) -> &SecretHash {
        &self.secret_hash
    }

    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// When the key last authenticated a request, to within the store's recording
    /// interval; `None` if never.
    pub fn last_used_at(&self) -> Option<Timestamp> {
        self.last_used_at
    }

    pub fn revoked_at(&self) -> Option<Timestamp> {
        self.revoked_at
    }

    pub fn is_revoked(&self) -> bool {
        self.revoked_at.is_some()
    }

    /// Revokes the key; revoking it again keeps the first time.
    pub fn revoke(&mut self, now: Timestamp) {
        self.revoked_at.get_or_insert(now);
    }

    /// How often a key's use is written down: `last_used_at` is exact to within this.
    pub const USE_RECORDING_INTERVAL: chrono::Duration = chrono::Duration::seconds(60);

    /// Whether a use at `now` should be recorded: never used, or last recorded at least
    /// [`ApiKey::USE_RECORDING_INTERVAL`] before.
    pub fn use_due(&self, now: Timestamp) -> bool {
        self.last_used_at
            .is_none_or(|last| now - last >= Self::USE_RECORDING_INTERVAL)
    }

    /// Records a use; an earlier time than the one recorded changes nothing.
    pub fn record_use(&mut self, at: Timestamp) {
        if self.last_used_at.is_none_or(|last| last < at) {
            self.last_used_at = Some(at);
        }
    }
}

impl From<&ApiKey> for StoredApiKey {
    fn from(k: &ApiKey) -> Self {
        Self {
            id: k.id,
            name: k.name.clone(),
            role: k.role,
            shown_prefix: k.shown_prefix.clone(),
            secret_hash: k.secret_hash.clone(),
            created_at: k.created_at,
            last_used_at: k.last_used_at,
            revoked_at: k.revoked_at,
        }
    }
}

/// Whom a request acts as, once its credential has been checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credential.
    Anonymous,
    /// The configured bootstrap admin token.
    Bootstrap,
    /// An API key that is not revoked.
    Key { id: ApiKeyId, role: Role },
    /// A customer session: a browser acting for one customer until it expires.
    Customer(CustomerId),
}

/// What a request wants to do, as far as permissions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// List, read and count plans; health.
    Browse,
    /// Buy a seat for a customer.
    Purchase,
    /// Read or cancel subscriptions.
    ManageSubscriptions,
    /// Mint a customer session.
    MintSessions,
    /// Plan administration, audit, reconciliation, keys, metrics.
    Administer,
}

/// Why a principal may not take an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No credential, where one is needed (401).
    #[error("this needs a credential")]
    Unauthenticated,
    /// A credential without the right (403).
    #[error("this credential may not do that")]
    Forbidden,
}

/// Which customers' subscriptions a principal may act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach<'a> {
    AnyCustomer,
    Only(&'a CustomerId),
}

impl Reach<'_> {
    /// Whether this reach covers `customer`. A resource outside it must be answered as
    /// if it did not exist.
    pub fn covers(&self, customer: &CustomerId) -> bool {
        match self {
            Self::AnyCustomer => true,
            Self::Only(own) => *own == customer,
        }
    }
}

impl Principal {
    /// Whether this principal may take `action`, and over which customers.
    pub fn check(&self, action: Action) -> Result<Reach<'_>, Denied> {
        use Action::*;
        match (self, action) {
            (_, Browse) => Ok(Reach::AnyCustomer),
            (Self::Anonymous, _) => Err(Denied::Unauthenticated),
            (Self::Bootstrap, _)
            | (
                Self::Key {
                    role: Role::Admin, ..
                },
                _,
            ) => Ok(Reach::AnyCustomer),
            (
                Self::Key {
                    role: Role::Purchases,
                    ..
                },
                Purchase | ManageSubscriptions | MintSessions,
            ) => Ok(Reach::AnyCustomer),
            (Self::Customer(own), Purchase | ManageSubscriptions) => Ok(Reach::Only(own)),
            (Self::Key { .. } | Self::Customer(_), _) => Err(Denied::Forbidden),
        }
    }

    /// The actor its audit entries name: `admin`, `key:<id>` or `customer:<id>`.
    pub fn actor(&self) -> Arc<str> {
        match self {
            Self::Anonymous => "anonymous".into(),
            Self::Bootstrap => "admin".into(),
            Self::Key { id, .. } => format!("key:{id}").into(),
            Self::Customer(c) => ["customer:", c.as_str()].concat().into(),
        }
    }

    /// The audit context of a change this principal makes under request `trace_id`.
    pub fn audit_context(&self, trace_id: impl Into<Arc<str>>) -> AuditContext {
        AuditContext {
            actor: self.actor(),
            trace_id: trace_id.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn key(role: Role) -> (ApiKey, KeySecret) {
        ApiKey::create(
            KeyName::parse(" ops ").unwrap(),
            role,
            at("2026-01-01T00:00:00Z"),
        )
    }

    #[test]
    fn a_new_secret_has_the_key_shape_and_only_its_hash_and_prefix_are_kept() {
        let (k, secret) = key(Role::Admin);
        let s = secret.expose();
        assert_eq!(s.len(), 35);
        assert!(s.starts_with("sk_") && s[3..].bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(KeySecret::parse(s), Some(secret.clone()));
        assert_eq!(k.secret_hash(), &secret.hash());
        assert_eq!(k.shown_prefix(), &s[..11]);
        assert_eq!(k.name().as_str(), "ops");
        assert!(!format!("{k:?}").contains(&s[11..]));
        assert!(!format!("{secret:?}").contains(&s[11..]));
        let (_, other) = key(Role::Admin);
        assert_ne!(other, secret, "secrets are random");
    }

    #[test]
    fn the_hash_is_the_sha256_of_the_whole_secret_in_lowercase_hex() {
        let secret = KeySecret::parse("sk_abcdefghijklmnopqrstuvwxyz012345").unwrap();
        let expected = hex::encode(Sha256::digest(b"sk_abcdefghijklmnopqrstuvwxyz012345"));
        assert_eq!(secret.hash().as_str(), expected);
        assert_eq!(SecretHash::parse(&expected), Ok(secret.hash()));
        assert!(SecretHash::parse(&expected.to_uppercase()).is_err());
        assert!(SecretHash::parse(&expected[1..]).is_err());
    }

    #[test]
    fn only_strings_of_a_secrets_shape_parse_as_secrets() {
        for bad in [
            "",
            "sk_",
            "pk_abcdefghijklmnopqrstuvwxyz012345",
            "sk_abcdefghijklmnopqrstuvwxyz01234",
            "sk_abcdefghijklmnopqrstuvwxyz0123456",
            "sk_abcdefghijklmnopqrstuvwxyz01234-",
            "sk_abcdefghijklmnopqrstuvwxyz01234é",
        ] {
            assert_eq!(KeySecret::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn names_and_roles_parse_or_say_what_is_wrong() {
        assert!(KeyName::parse("  ").is_err());
        assert!(KeyName::parse(&"n".repeat(101)).is_err());
        assert!(KeyName::parse("a\tb").is_err());
        assert_eq!(Role::parse("purchases"), Ok(Role::Purchases));
        assert_eq!(
            Role::parse("root").unwrap_err().to_string(),
            "must be 'admin' or 'purchases'"
        );
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()), Ok(*role));
        }
    }

    #[test]
    fn revoking_keeps_the_first_time_and_uses_only_move_forward() {
        let (mut k, _) = key(Role::Purchases);
        k.revoke(at("2026-01-02T00:00:00Z"));
        k.revoke(at("2026-01-03T00:00:00Z"));
        assert_eq!(k.revoked_at(), Some(at("2026-01-02T00:00:00Z")));
        k.record_use(at("2026-01-05T00:00:00Z"));
        k.record_use(at("2026-01-04T00:00:00Z"));
        assert_eq!(k.last_used_at(), Some(at("2026-01-05T00:00:00Z")));
        assert_eq!(ApiKey::restore(StoredApiKey::from(&k)), Ok(k.clone()));
        assert!(!k.use_due(at("2026-01-05T00:00:59Z")));
        assert!(k.use_due(at("2026-01-05T00:01:00Z")));
        assert!(key(Role::Admin).0.use_due(at("2026-01-01T00:00:00Z")));
    }

    #[test]
    fn a_stored_key_the_domain_could_not_have_made_is_refused() {
        let (k, _) = key(Role::Admin);
        let stored = StoredApiKey::from(&k);
        let early = Some(at("2025-12-31T00:00:00Z"));
        for bad in [
            StoredApiKey {
                shown_prefix: "sk_abc".into(),
                ..stored.clone()
            },
            StoredApiKey {
                shown_prefix: "pk_abcdefgh".into(),
                ..stored.clone()
            },
            StoredApiKey {
                last_used_at: early,
                ..stored.clone()
            },
            StoredApiKey {
                revoked_at: early,
                ..stored.clone()
            },
        ] {
            assert!(ApiKey::restore(bad.clone()).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn each_principal_may_take_exactly_the_actions_of_the_permission_table() {
        use Action::*;
        let cus = CustomerId::parse("cus_1").unwrap();
        let purchases = Principal::Key {
            id: ApiKeyId::generate(),
            role: Role::Purchases,
        };
        let admin = Principal::Key {
            id: ApiKeyId::generate(),
            role: Role::Admin,
        };
        let any = Ok(Reach::AnyCustomer);
        let own = Ok(Reach::Only(&cus));
        let (anon, forbidden) = (Err(Denied::Unauthenticated), Err(Denied::Forbidden));
        let customer = Principal::Customer(cus.clone());
        let table = [
            (Browse, [any, any, any, any, any]),
            (Purchase, [anon, own, any, any, any]),
            (ManageSubscriptions, [anon, own, any, any, any]),
            (MintSessions, [anon, forbidden, any, any, any]),
            (Administer, [anon, forbidden, forbidden, any, any]),
        ];
        let principals = [
            &Principal::Anonymous,
            &customer,
            &purchases,
            &admin,
            &Principal::Bootstrap,
        ];
        for (action, expected) in table {
            for (p, want) in principals.iter().zip(expected) {
                assert_eq!(p.check(action), want, "{p:?} {action:?}");
            }
        }
    }

    #[test]
    fn a_customers_reach_covers_only_that_customer() {
        let cus = CustomerId::parse("cus_1").unwrap();
        let other = CustomerId::parse("cus_2").unwrap();
        assert!(Reach::Only(&cus).covers(&cus));
        assert!(!Reach::Only(&cus).covers(&other));
        assert!(Reach::AnyCustomer.covers(&other));
    }

    #[test]
    fn audit_entries_name_the_admin_the_key_or_the_customer() {
        let id: ApiKeyId = "0192f4a2-7c3e-7d7e-8f00-0123456789ab".parse().unwrap();
        let ctx = Principal::Key {
            id,
            role: Role::Purchases,
        }
        .audit_context("req-1");
        assert_eq!(&*ctx.actor, "key:0192f4a2-7c3e-7d7e-8f00-0123456789ab");
        assert_eq!(&*ctx.trace_id, "req-1");
        assert_eq!(&*Principal::Bootstrap.actor(), "admin");
        let cus = CustomerId::parse("cus_7").unwrap();
        assert_eq!(
            Principal::Customer(cus.clone()).audit_context("r").actor,
            AuditContext::customer(&cus, "r").actor
        );
    }
}
