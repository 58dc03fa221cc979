//! Classifying PostgreSQL failures: which ones mean "unavailable, retry later", which are
//! transient conflicts worth retrying the transaction, and which are bugs.

use seatkeeper_domain::ports::StoreError;

/// SQLSTATEs of a transaction that lost a serialization or deadlock race: retry it.
const RETRYABLE: &[&str] = &["40001", "40P01"];

/// SQLSTATE classes and codes that mean the server cannot serve us now.
fn unavailable_code(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources (too many connections, disk full)
        || code.starts_with("57P") // admin shutdown, crash shutdown, cannot connect now
        || code == "57014" // query cancelled (statement timeout)
}

/// Whether the transaction should be run again from the start.
pub fn is_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.code().is_some_and(|c| RETRYABLE.contains(&c.as_ref())),
        _ => false,
    }
}

/// The store error a driver error stands for.
pub fn classify(e: sqlx::Error) -> StoreError {
    let unavailable = match &e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|c| unavailable_code(&c)),
        _ => false,
    };
    if unavailable {
        StoreError::unavailable(e)
    } else {
        StoreError::internal(e)
    }
}

/// A failure inside a transaction: a business outcome of the operation, or the database.
pub enum Fail<E> {
    Rule(E),
    Db(sqlx::Error),
}

impl<E> From<sqlx::Error> for Fail<E> {
    fn from(e: sqlx::Error) -> Self {
        Fail::Db(e)
    }
}

/// Corrupt or unexpected data read back from the database.
pub fn corrupt(what: impl std::fmt::Display) -> sqlx::Error {
    sqlx::Error::Protocol(format!("unexpected data in the database: {what}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_and_resource_failures_are_unavailable_and_others_internal() {
        assert!(unavailable_code("08006"));
        assert!(unavailable_code("57P01"));
        assert!(unavailable_code("53300"));
        assert!(!unavailable_code("23505"));
        assert!(matches!(
            classify(sqlx::Error::PoolTimedOut),
            StoreError::Unavailable(_)
        ));
        assert!(matches!(
            classify(sqlx::Error::RowNotFound),
            StoreError::Internal(_)
        ));
    }
}
