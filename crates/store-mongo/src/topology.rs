//! The start-up checks: what the server's `hello` reply says about the deployment, and
//! how a connection string is named in messages (its hosts, never its credentials).
//!
//! Every store operation that touches more than one document is a multi-document
//! transaction, which MongoDB runs only on a replica set member or through `mongos`. A
//! standalone `mongod` accepts `startTransaction` and fails the first operation with code
//! 20, so the store refuses to start on one, saying how to make a replica set.

use mongodb::bson::Document;

/// The oldest wire version accepted: MongoDB 4.2 (transactions on replica sets and
/// sharded clusters, snapshot reads inside them).
pub const MIN_WIRE_VERSION: i32 = 8;

/// A deployment that can run the store's transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deployment {
    /// A replica set member (`setName` in the reply).
    ReplicaSet { set_name: String },
    /// A `mongos` router of a sharded cluster (`msg: "isdbgrid"`).
    Sharded,
}

/// Why a deployment cannot run the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopologyError {
    #[error(
        "{hosts} is a standalone MongoDB server, but Seatkeeper's store operations are multi-document \
         transactions, which need a replica set (or a sharded cluster through mongos). Make it a \
         single-node replica set: start it as `mongod --replSet rs0 --bind_ip_all`, run \
         `rs.initiate()` once in mongosh, and connect with `?replicaSet=rs0` (or \
         `?directConnection=true` from outside the replica set's own network); or run \
         `docker compose up`, whose docker-compose.yml starts one"
    )]
    Standalone { hosts: String },
    #[error(
        "{hosts} was started as a replica set member but the replica set is not initiated: run \
         `rs.initiate()` once in mongosh (docker-compose.yml's health check does it)"
    )]
    NotInitiated { hosts: String },
    #[error(
        "{hosts} runs a MongoDB too old for Seatkeeper (wire version {found}, need {MIN_WIRE_VERSION}: MongoDB 4.2 or newer)"
    )]
    TooOld { hosts: String, found: i32 },
}

/// Reads the deployment from a `hello` reply of the server at `hosts`.
pub fn deployment(hello: &Document, hosts: &str) -> Result<Deployment, TopologyError> {
    let hosts = hosts.to_owned();
    let wire = hello
        .get("maxWireVersion")
        .and_then(|v| v.as_i32().or_else(|| v.as_i64().map(|n| n as i32)))
        .unwrap_or(0);
    let deployment = if hello.get_str("msg") == Ok("isdbgrid") {
        Deployment::Sharded
    } else if let Ok(set_name) = hello.get_str("setName") {
        Deployment::ReplicaSet {
            set_name: set_name.to_owned(),
        }
    } else if hello.get_bool("isreplicaset") == Ok(true) {
        return Err(TopologyError::NotInitiated { hosts });
    } else {
        return Err(TopologyError::Standalone { hosts });
    };
    if wire < MIN_WIRE_VERSION {
        return Err(TopologyError::TooOld { hosts, found: wire });
    }
    Ok(deployment)
}

/// The hosts of a `mongodb://` or `mongodb+srv://` connection string, for messages:
/// `user:password@` and everything after the host list are left out.
pub fn hosts_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let hosts = authority
        .rsplit_once('@')
        .map_or(authority, |(_, hosts)| hosts);
    if hosts.is_empty() {
        "(no host)".to_owned()
    } else {
        hosts.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    #[test]
    fn a_replica_set_member_is_accepted_with_its_set_name() {
        let hello = doc! {
            "isWritablePrimary": true, "setName": "rs0", "hosts": ["mongo:27017"],
            "maxWireVersion": 21, "ok": 1.0,
        };
        assert_eq!(
            deployment(&hello, "mongo:27017"),
            Ok(Deployment::ReplicaSet {
                set_name: "rs0".into()
            })
        );
    }

    #[test]
    fn a_mongos_router_is_accepted_as_a_sharded_cluster() {
        let hello = doc! { "isWritablePrimary": true, "msg": "isdbgrid", "maxWireVersion": 21_i64, "ok": 1.0 };
        assert_eq!(deployment(&hello, "router:27017"), Ok(Deployment::Sharded));
    }

    #[test]
    fn a_standalone_server_is_refused_with_how_to_make_a_replica_set() {
        let hello = doc! { "isWritablePrimary": true, "maxWireVersion": 21, "ok": 1.0 };
        let err = deployment(&hello, "localhost:27017").unwrap_err();
        assert_eq!(
            err,
            TopologyError::Standalone {
                hosts: "localhost:27017".into()
            }
        );
        let text = err.to_string();
        for needed in [
            "localhost:27017",
            "standalone",
            "need a replica set",
            "mongod --replSet rs0",
            "rs.initiate()",
            "docker compose up",
        ] {
            assert!(text.contains(needed), "{needed:?} missing from: {text}");
        }
    }

    #[test]
    fn a_replica_set_member_that_was_never_initiated_is_told_to_run_rs_initiate() {
        let hello = doc! {
            "isWritablePrimary": false, "secondary": false, "isreplicaset": true,
            "info": "Does not have a valid replica set config", "maxWireVersion": 21, "ok": 1.0,
        };
        let err = deployment(&hello, "mongo:27017").unwrap_err();
        assert!(matches!(err, TopologyError::NotInitiated { .. }));
        assert!(err.to_string().contains("rs.initiate()"));
    }

    #[test]
    fn a_server_older_than_mongodb_4_2_is_refused() {
        let hello = doc! { "setName": "rs0", "maxWireVersion": 7, "ok": 1.0 };
        assert_eq!(
            deployment(&hello, "old:27017"),
            Err(TopologyError::TooOld {
                hosts: "old:27017".into(),
                found: 7
            })
        );
    }

    #[test]
    fn messages_name_the_hosts_of_a_url_without_its_credentials_or_options() {
        assert_eq!(
            hosts_of("mongodb://app:s3cret@mongo:27017/seatkeeper?replicaSet=rs0"),
            "mongo:27017"
        );
        assert_eq!(
            hosts_of("mongodb://a:27017,b:27018/?replicaSet=rs0"),
            "a:27017,b:27018"
        );
        assert_eq!(
            hosts_of("mongodb+srv://u:p%40ss@cluster0.example.net/db"),
            "cluster0.example.net"
        );
        assert_eq!(hosts_of("mongodb://localhost"), "localhost");
        assert_eq!(hosts_of("mongodb://user:pw@"), "(no host)");
        assert!(!hosts_of("mongodb://app:s3cret@h/x").contains("s3cret"));
    }
}
