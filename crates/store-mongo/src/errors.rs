//! Classifying MongoDB failures: which ones the store retries, which mean "unavailable,
//! retry later" (503 `store_unavailable`) and which are bugs or corrupt data (500).
//!
//! Retrying happens in two places, neither of which sees business outcomes (those are
//! values, never driver errors):
//!
//! - the store's transaction runner (`transaction.rs`) runs the whole transaction again
//!   when the server reports a conflict with another transaction ([`retry_transaction`]:
//!   a WriteConflict on the hot plan document, a transaction the server aborted), with
//!   jittered backoff, within a time limit; a network error or an unreachable server is
//!   not retried, so that it answers 503 at once;
//! - a claim whose insert of a new key lost to another claim's (duplicate key on its
//!   `_id`, `{ scope, key }`) is run again: it then finds the winner's record and
//!   decides against it ([`Retry::Claim`]); so is a checkout opening whose session insert
//!   lost the unique `(customer_id, idempotency_key)` to another opening's.
//!
//! A webhook event's claim is a single insert keyed by the event id: there a duplicate
//! key is the answer ("seen before", [`duplicate_key`]), not a failure.
//!
//! Whatever reaches [`classify`] after those retries is final. Errors that still carry a
//! transaction label, network and server-selection failures, and the server's "not
//! primary / shutting down / interrupted" codes mean the deployment cannot serve us now:
//! [`StoreError::Unavailable`]. Everything else — duplicate keys outside a claim or an
//! opening, an invalid document, a transaction on a standalone server (code 20),
//! authentication — is [`StoreError::Internal`].
//!
//! The decisions are made on [`Facts`] (kind, code, labels) so that they can be tested on
//! every combination without a server; [`Facts::of`] reads them from a driver error.

use mongodb::error::{
    Error, ErrorKind, WriteFailure, RETRYABLE_WRITE_ERROR, TRANSIENT_TRANSACTION_ERROR,
    UNKNOWN_TRANSACTION_COMMIT_RESULT,
};
use seatkeeper_domain::ports::StoreError;

use crate::documents::Corrupt;

/// Server error codes meaning the server cannot serve now (shutting down, not primary any
/// more, interrupted by a replica-set state change, out of time), from the server's
/// `error_codes.yml`.
pub const UNAVAILABLE_CODES: &[i32] = &[
    6,     // HostUnreachable
    7,     // HostNotFound
    50,    // MaxTimeMSExpired
    64,    // WriteConcernFailed (the majority did not acknowledge in time)
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    112,   // WriteConflict (only reaches us when the transaction's time limit ran out)
    133,   // FailedToSatisfyReadPreference
    189,   // PrimarySteppedDown
    202,   // NetworkInterfaceExceededTimeLimit
    251,   // NoSuchTransaction (aborted by the server, e.g. after a failover)
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
];

/// Server error codes of conflicts between transactions, worth running the transaction
/// again for: another transaction wrote the document first, the server aborted this one
/// (its lifetime limit, a killed session), a lock or snapshot was not available in time.
pub const CONFLICT_CODES: &[i32] = &[
    24,  // LockTimeout
    112, // WriteConflict
    239, // SnapshotTooOld
    246, // SnapshotUnavailable (a collection newer than the snapshot)
    251, // NoSuchTransaction
];

/// Duplicate key on a unique index.
pub const DUPLICATE_KEY: i32 = 11000;

/// The broad kind of a driver error, as far as classification cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// I/O on a connection (refused, reset, timed out).
    Network,
    /// No suitable server within the server-selection timeout.
    ServerSelection,
    /// The connection pool was cleared under the operation (the server went away).
    PoolCleared,
    /// DNS resolution of the hosts (including `mongodb+srv://` lookups) failed.
    Dns,
    /// The server answered with an error code (commands, writes).
    Server,
    Authentication,
    /// A value that did not encode or decode.
    Encoding,
    /// The driver's transaction state machine, or the convenient API's time limit.
    Transaction,
    /// Corrupt data found by the store itself ([`Corrupt`], passed as `Error::custom`).
    Corrupt,
    Other,
}

/// What classification looks at in an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub kind: Kind,
    /// The server's error code, when the server answered.
    pub code: Option<i32>,
    /// `TransientTransactionError`, here or on a cause.
    pub transient_transaction: bool,
    /// `UnknownTransactionCommitResult`, here or on a cause.
    pub unknown_commit: bool,
    /// `RetryableWriteError`: the driver already retried a write once.
    pub retryable_write: bool,
}

impl Facts {
    /// A fact sheet with no code and no labels.
    pub fn of_kind(kind: Kind) -> Self {
        Self {
            kind,
            code: None,
            transient_transaction: false,
            unknown_commit: false,
            retryable_write: false,
        }
    }

    /// Reads the facts from a driver error.
    pub fn of(e: &Error) -> Self {
        let (kind, code) = match e.kind.as_ref() {
            ErrorKind::Io(_) => (Kind::Network, None),
            ErrorKind::ServerSelection { .. } => (Kind::ServerSelection, None),
            ErrorKind::ConnectionPoolCleared { .. } => (Kind::PoolCleared, None),
            ErrorKind::DnsResolve { .. } => (Kind::Dns, None),
            ErrorKind::Command(c) => (Kind::Server, Some(c.code)),
            ErrorKind::Write(WriteFailure::WriteError(w)) => (Kind::Server, Some(w.code)),
            ErrorKind::Write(WriteFailure::WriteConcernError(w)) => (Kind::Server, Some(w.code)),
            ErrorKind::InsertMany(m) => (
                Kind::Server,
                m.write_errors
                    .as_ref()
                    .and_then(|es| es.first())
                    .map(|w| w.code)
                    .or(m.write_concern_error.as_ref().map(|w| w.code)),
            ),
            ErrorKind::Authentication { .. } => (Kind::Authentication, None),
            ErrorKind::BsonDeserialization(_) | ErrorKind::BsonSerialization(_) => {
                (Kind::Encoding, None)
            }
            ErrorKind::Transaction { .. } => (Kind::Transaction, None),
            ErrorKind::Custom(_) if e.get_custom::<Corrupt>().is_some() => (Kind::Corrupt, None),
            _ => (Kind::Other, None),
        };
        Self {
            kind,
            code,
            transient_transaction: e.contains_label(TRANSIENT_TRANSACTION_ERROR),
            unknown_commit: e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT),
            retryable_write: e.contains_label(RETRYABLE_WRITE_ERROR),
        }
    }
}

impl Facts {
    /// The server could not be reached at all (a network error, no server to select).
    pub fn unreachable(&self) -> bool {
        matches!(
            self.kind,
            Kind::Network | Kind::ServerSelection | Kind::PoolCleared | Kind::Dns
        )
    }
}

/// What a failure means for the caller of a store method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The deployment cannot serve now; a later retry may work (503).
    Unavailable,
    /// A bug, corrupt data or a misconfiguration (500).
    Internal,
}

/// The verdict on a failure that survived every retry.
pub fn verdict(f: &Facts) -> Verdict {
    let unavailable = f.transient_transaction
        || f.unknown_commit
        || f.retryable_write
        || f.unreachable()
        || f.code.is_some_and(|c| UNAVAILABLE_CODES.contains(&c));
    if unavailable {
        Verdict::Unavailable
    } else {
        Verdict::Internal
    }
}

/// Whether a transaction that failed so should run again from the start: a conflict with
/// another transaction the server reported (labelled `TransientTransactionError`), never a
/// network error or an unreachable server, which answer 503 at once.
pub fn retry_transaction(f: &Facts) -> bool {
    f.transient_transaction
        && f.kind == Kind::Server
        && f.code.is_some_and(|c| CONFLICT_CODES.contains(&c))
}

/// Whether the store itself runs an operation again after this failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// A claim's insert lost the race for a new key: claim again, against the winner's
    /// record.
    Claim,
    /// Final: classify it.
    No,
}

/// Whether a failed claim of a key (or opening of a checkout session under a key) should
/// be run again.
pub fn retry_claim(f: &Facts) -> Retry {
    if duplicate_key(f) {
        Retry::Claim
    } else {
        Retry::No
    }
}

/// Whether the server refused a write because a unique index already holds its key.
pub fn duplicate_key(f: &Facts) -> bool {
    f.kind == Kind::Server && f.code == Some(DUPLICATE_KEY)
}

/// The store error a driver error stands for.
pub fn classify(e: Error) -> StoreError {
    match verdict(&Facts::of(&e)) {
        Verdict::Unavailable => StoreError::unavailable(e),
        Verdict::Internal => match e.get_custom::<Corrupt>() {
            Some(corrupt) => StoreError::internal(corrupt.clone()),
            None => StoreError::internal(e),
        },
    }
}

/// Corrupt data as a driver error, so that it aborts the transaction it was found in.
pub fn corrupt(c: Corrupt) -> Error {
    Error::custom(c)
}

#[cfg(test)]
mod tests {
    //! Driver errors are built where the driver's API allows it (I/O errors, server
    //! replies deserialised into its error types, custom payloads); labels that only the
    //! driver can attach are tested through [`Facts`].

    use mongodb::{
        bson::{self, doc},
        error::{CommandError, WriteConcernError, WriteError},
    };

    use super::*;

    fn command_error(code: i32, name: &str) -> Error {
        let c: CommandError =
            bson::from_document(doc! { "code": code, "codeName": name, "errmsg": "from a test" })
                .unwrap();
        Error::from(ErrorKind::Command(c))
    }

    fn facts(kind: Kind, code: Option<i32>) -> Facts {
        Facts {
            code,
            ..Facts::of_kind(kind)
        }
    }

    #[test]
    fn connection_failures_are_unavailable() {
        for e in [
            Error::from(std::io::ErrorKind::ConnectionRefused),
            Error::from(std::io::ErrorKind::TimedOut),
            Error::from(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset by peer",
            )),
        ] {
            assert_eq!(Facts::of(&e).kind, Kind::Network);
            assert!(matches!(classify(e), StoreError::Unavailable(_)));
        }
        for kind in [Kind::ServerSelection, Kind::PoolCleared, Kind::Dns] {
            assert_eq!(
                verdict(&Facts::of_kind(kind)),
                Verdict::Unavailable,
                "{kind:?}"
            );
        }
    }

    #[test]
    fn a_primary_that_steps_down_or_shuts_down_is_unavailable() {
        for (code, name) in [
            (10107, "NotWritablePrimary"),
            (189, "PrimarySteppedDown"),
            (91, "ShutdownInProgress"),
            (11602, "InterruptedDueToReplStateChange"),
            (13436, "NotPrimaryOrSecondary"),
        ] {
            let e = command_error(code, name);
            assert_eq!(Facts::of(&e).code, Some(code));
            assert!(
                matches!(classify(e), StoreError::Unavailable(_)),
                "{name} should be unavailable"
            );
        }
    }

    #[test]
    fn a_write_concern_timeout_is_unavailable_and_carries_its_labels_into_the_facts() {
        let wce: WriteConcernError = bson::from_document(doc! {
            "code": 64, "codeName": "WriteConcernFailed", "errmsg": "waiting for replication timed out",
            "errorLabels": [TRANSIENT_TRANSACTION_ERROR],
        })
        .unwrap();
        let e = Error::from(ErrorKind::Write(WriteFailure::WriteConcernError(wce)));
        let f = Facts::of(&e);
        assert_eq!((f.kind, f.code), (Kind::Server, Some(64)));
        assert!(f.transient_transaction);
        assert!(matches!(classify(e), StoreError::Unavailable(_)));
    }

    #[test]
    fn transaction_labels_left_after_the_retries_ran_out_mean_unavailable() {
        let transient = Facts {
            transient_transaction: true,
            ..facts(Kind::Server, Some(112))
        };
        assert_eq!(verdict(&transient), Verdict::Unavailable);
        let unknown_commit = Facts {
            unknown_commit: true,
            ..Facts::of_kind(Kind::Transaction)
        };
        assert_eq!(verdict(&unknown_commit), Verdict::Unavailable);
        let retried_write = Facts {
            retryable_write: true,
            ..facts(Kind::Server, Some(9999))
        };
        assert_eq!(verdict(&retried_write), Verdict::Unavailable);
    }

    #[test]
    fn only_conflicts_between_transactions_run_a_transaction_again() {
        for code in CONFLICT_CODES {
            let conflict = Facts {
                transient_transaction: true,
                ..facts(Kind::Server, Some(*code))
            };
            assert!(retry_transaction(&conflict), "code {code}");
            assert!(!retry_transaction(&facts(Kind::Server, Some(*code))));
        }
        // A network error or an unreachable server carries the label inside a transaction
        // too, but waiting cannot help now: it answers 503 at once.
        for kind in [
            Kind::Network,
            Kind::ServerSelection,
            Kind::PoolCleared,
            Kind::Dns,
        ] {
            let gone = Facts {
                transient_transaction: true,
                ..Facts::of_kind(kind)
            };
            assert!(!retry_transaction(&gone), "{kind:?}");
            assert_eq!(verdict(&gone), Verdict::Unavailable);
        }
        let stepped_down = Facts {
            transient_transaction: true,
            ..facts(Kind::Server, Some(10107))
        };
        assert!(!retry_transaction(&stepped_down));
    }

    #[test]
    fn a_transaction_refused_by_a_standalone_server_is_internal_not_unavailable() {
        // Code 20: "Transaction numbers are only allowed on a replica set member or
        // mongos". Retrying cannot help; start-up refuses such a server anyway.
        let e = command_error(20, "IllegalOperation");
        assert!(matches!(classify(e), StoreError::Internal(_)));
        assert_eq!(
            verdict(&Facts::of_kind(Kind::Transaction)),
            Verdict::Internal
        );
    }

    #[test]
    fn a_duplicate_key_is_retried_only_by_a_claim_and_is_internal_everywhere_else() {
        let w: WriteError = bson::from_document(doc! {
            "code": DUPLICATE_KEY, "codeName": "DuplicateKey", "errmsg": "E11000 duplicate key error",
        })
        .unwrap();
        let on_insert = Error::from(ErrorKind::Write(WriteFailure::WriteError(w)));
        let on_find_and_modify = command_error(DUPLICATE_KEY, "DuplicateKey");
        for e in [on_insert, on_find_and_modify] {
            assert_eq!(retry_claim(&Facts::of(&e)), Retry::Claim);
            assert!(duplicate_key(&Facts::of(&e)));
            assert!(matches!(classify(e), StoreError::Internal(_)));
        }
        assert_eq!(
            retry_claim(&facts(Kind::Server, Some(112))),
            Retry::No,
            "write conflicts are the driver's to retry"
        );
        assert_eq!(retry_claim(&Facts::of_kind(Kind::Network)), Retry::No);
        assert!(!duplicate_key(&facts(Kind::Server, Some(112))));
        assert!(!duplicate_key(&Facts::of_kind(Kind::Network)));
    }

    #[test]
    fn corrupt_data_is_internal_and_keeps_its_message() {
        let e = corrupt(Corrupt("seats_left: -1 is out of range".into()));
        assert_eq!(Facts::of(&e).kind, Kind::Corrupt);
        match classify(e) {
            StoreError::Internal(source) => {
                assert!(source.to_string().contains("seats_left: -1"), "{source}")
            }
            other => panic!("expected internal, got {other:?}"),
        }
    }

    #[test]
    fn a_document_that_does_not_decode_is_internal() {
        let de = bson::from_document::<crate::documents::PlanDoc>(doc! { "_id": 1 }).unwrap_err();
        let e = Error::from(ErrorKind::BsonDeserialization(de));
        assert_eq!(Facts::of(&e).kind, Kind::Encoding);
        assert!(matches!(classify(e), StoreError::Internal(_)));
    }

    #[test]
    fn authentication_failures_and_other_server_codes_are_internal() {
        assert_eq!(
            verdict(&Facts::of_kind(Kind::Authentication)),
            Verdict::Internal
        );
        // 2: BadValue, 121: DocumentValidationFailure.
        for code in [2, 121] {
            assert!(matches!(
                classify(command_error(code, "Whatever")),
                StoreError::Internal(_)
            ));
        }
        assert!(matches!(
            classify(Error::from(ErrorKind::SessionsNotSupported)),
            StoreError::Internal(_)
        ));
    }
}
