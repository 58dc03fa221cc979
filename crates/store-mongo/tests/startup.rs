//! Start-up and readiness through the real driver, without a MongoDB server: a tiny fake
//! server on the loopback interface speaks just enough of the wire protocol (OP_MSG) to
//! answer `hello` as a standalone server or as a replica set member, acknowledge `create`,
//! `createIndexes` and `ping`, answer the upgrade's `dropIndexes` and `find` as an empty
//! database would, and record every command it receives. It checks that
//! `MongoStore::connect` refuses a standalone server before touching anything, names the
//! hosts (never the password) of a server it cannot reach within the server-selection
//! timeout, creates the collections and exactly the documented indexes on a replica set,
//! and that `ping` answers "unavailable" once the server is gone (readiness → 503).
//!
//! Nothing here tests transactions: the fake server knows no data. The contract suite
//! does that against a real replica set (`SEATKEEPER_TEST_MONGODB_URL`).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use mongodb::bson::{self, doc, Document};
use seatkeeper_domain::ports::{Store, StoreError};
use seatkeeper_store_mongo::{indexes::indexes, MongoSettings, MongoStore};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

const OP_MSG: i32 = 2013;

/// What the fake server says it is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Standalone,
    ReplicaSetPrimary,
}

/// A fake MongoDB server on 127.0.0.1. Dropping it (or `stop`) closes the listener and
/// every connection.
struct FakeServer {
    port: u16,
    commands: Arc<Mutex<Vec<Document>>>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl FakeServer {
    async fn start(role: Role) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let commands = Arc::new(Mutex::new(Vec::new()));
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let (seen, spawned) = (commands.clone(), tasks.clone());
        let acceptor = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                let task = tokio::spawn(serve(stream, role, port, seen));
                spawned.lock().unwrap().push(task);
            }
        });
        tasks.lock().unwrap().push(acceptor);
        Self {
            port,
            commands,
            tasks,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The names of the commands received, in order, without the handshakes and
    /// heartbeats.
    fn commands(&self) -> Vec<Document> {
        self.commands
            .lock()
            .unwrap()
            .iter()
            .filter(|c| {
                let name = c.keys().next().map(String::as_str).unwrap_or("");
                !matches!(name, "hello" | "isMaster" | "ismaster" | "endSessions")
            })
            .cloned()
            .collect()
    }

    fn stop(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(mut stream: TcpStream, role: Role, port: u16, seen: Arc<Mutex<Vec<Document>>>) {
    let mut reply_id: i32 = 1;
    loop {
        let mut len = [0u8; 4];
        if stream.read_exact(&mut len).await.is_err() {
            return;
        }
        let len = i32::from_le_bytes(len) as usize;
        let mut rest = vec![0u8; len - 4];
        if stream.read_exact(&mut rest).await.is_err() {
            return;
        }
        let request_id = i32::from_le_bytes(rest[0..4].try_into().unwrap());
        let op_code = i32::from_le_bytes(rest[8..12].try_into().unwrap());
        assert_eq!(op_code, OP_MSG, "the driver speaks OP_MSG only");
        // flagBits at 12..16, then the sections; the command is the kind-0 section.
        let mut at = 16;
        let mut command = None;
        while at < rest.len() {
            let kind = rest[at];
            let size = i32::from_le_bytes(rest[at + 1..at + 5].try_into().unwrap()) as usize;
            if kind == 0 {
                command = Some(Document::from_reader(&rest[at + 1..at + 1 + size]).unwrap());
            }
            at += 1 + size;
        }
        let command = command.expect("an OP_MSG with a command");
        let reply = answer(&command, role, port);
        seen.lock().unwrap().push(command);

        let body = bson::to_vec(&reply).unwrap();
        let total = 16 + 4 + 1 + body.len();
        let mut out = Vec::with_capacity(total);
        out.extend((total as i32).to_le_bytes());
        out.extend(reply_id.to_le_bytes());
        out.extend(request_id.to_le_bytes());
        out.extend(OP_MSG.to_le_bytes());
        out.extend(0u32.to_le_bytes());
        out.push(0);
        out.extend(body);
        reply_id += 1;
        if stream.write_all(&out).await.is_err() {
            return;
        }
    }
}

fn answer(command: &Document, role: Role, port: u16) -> Document {
    let name = command.keys().next().cloned().unwrap_or_default();
    match name.as_str() {
        "hello" | "isMaster" | "ismaster" => {
            let mut hello = doc! {
                "helloOk": true,
                "isWritablePrimary": true,
                "ismaster": true,
                "maxBsonObjectSize": 16_777_216,
                "maxMessageSizeBytes": 48_000_000,
                "maxWriteBatchSize": 100_000,
                "localTime": bson::DateTime::now(),
                "logicalSessionTimeoutMinutes": 30,
                "connectionId": 1,
                "minWireVersion": 0,
                "maxWireVersion": 21,
                "readOnly": false,
                "ok": 1.0,
            };
            if role == Role::ReplicaSetPrimary {
                let me = format!("127.0.0.1:{port}");
                hello.insert("setName", "rs0");
                hello.insert("setVersion", 1);
                hello.insert("hosts", vec![me.clone()]);
                hello.insert("primary", me.clone());
                hello.insert("me", me);
                hello.insert("secondary", false);
            }
            hello
        }
        "ping" | "create" | "createIndexes" | "endSessions" => doc! { "ok": 1.0 },
        // The upgrade of idempotency records (`upgrade.rs`): a fresh database has neither
        // the old index nor records of the old shape.
        "dropIndexes" => doc! {
            "ok": 0.0, "code": 27, "codeName": "IndexNotFound",
            "errmsg": "index not found with name [scope_key_unique]",
        },
        "find" => doc! {
            "cursor": {
                "id": 0_i64,
                "ns": format!("{}.{}", command.get_str("$db").unwrap_or(""), command.get_str("find").unwrap_or("")),
                "firstBatch": [],
            },
            "ok": 1.0,
        },
        other => doc! {
            "ok": 0.0, "code": 59, "codeName": "CommandNotFound",
            "errmsg": format!("the fake server does not know {other}"),
        },
    }
}

fn settings(url: String) -> MongoSettings {
    let mut s = MongoSettings::new(url);
    s.server_selection_timeout = Duration::from_millis(1500);
    s
}

fn chain(e: &StoreError) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[tokio::test]
async fn a_standalone_server_is_refused_at_start_up_before_anything_is_created() {
    let server = FakeServer::start(Role::Standalone).await;
    let err =
        match MongoStore::connect(&settings(format!("mongodb://{}/seatkeeper", server.host())))
            .await
        {
            Ok(_) => panic!("a standalone server was accepted"),
            Err(e) => e,
        };
    assert!(matches!(err, StoreError::Internal(_)), "{err:?}");
    let text = chain(&err);
    for needed in [
        server.host().as_str(),
        "standalone",
        "replica set",
        "--replSet rs0",
        "rs.initiate()",
    ] {
        assert!(text.contains(needed), "{needed:?} missing from: {text}");
    }
    assert_eq!(
        server.commands(),
        Vec::<Document>::new(),
        "nothing was created on a server that cannot run transactions"
    );
}

#[tokio::test]
async fn an_unreachable_server_fails_start_up_within_the_selection_timeout_naming_its_host_only() {
    // A port that was just free: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("mongodb://app:s3cret-pw@127.0.0.1:{port}/seatkeeper?replicaSet=rs0");
    let started = Instant::now();
    let err = match MongoStore::connect(&settings(url)).await {
        Ok(_) => panic!("connected to nothing"),
        Err(e) => e,
    };
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(10),
        "start-up took {took:?} with a 1.5 s server-selection timeout"
    );
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    let text = chain(&err);
    assert!(
        text.contains(&format!("could not reach MongoDB at 127.0.0.1:{port}")),
        "{text}"
    );
    assert!(!text.contains("s3cret-pw"), "the password leaked: {text}");
}

#[tokio::test]
async fn start_up_on_a_replica_set_creates_the_collections_and_exactly_the_documented_indexes() {
    let server = FakeServer::start(Role::ReplicaSetPrimary).await;
    let url = format!("mongodb://{}/shop?directConnection=true", server.host());
    let store = MongoStore::connect(&settings(url))
        .await
        .expect("start-up on a replica set member");
    assert_eq!(
        store.database().name(),
        "shop",
        "the URL's database is used"
    );

    // The collections are prepared side by side: each is created, then gets all of its
    // indexes in one `createIndexes`; the order between collections is not fixed.
    let commands = server.commands();
    let mut created: Vec<&str> = commands
        .iter()
        .filter_map(|c| c.get_str("create").ok())
        .collect();
    created.sort_unstable();
    assert_eq!(
        created,
        [
            "api_keys",
            "audit_entries",
            "checkout_sessions",
            "idempotency_keys",
            "plans",
            "subscriptions",
            "webhook_events"
        ]
    );
    let mut sent = Vec::new();
    for (at, c) in commands.iter().enumerate() {
        let Ok(collection) = c.get_str("createIndexes") else {
            continue;
        };
        assert_eq!(c.get_str("$db"), Ok("shop"));
        assert!(
            commands[..at]
                .iter()
                .any(|before| before.get_str("create") == Ok(collection)),
            "{collection}: indexes before the collection"
        );
        assert!(
            !sent
                .iter()
                .any(|(c, _): &(String, Document)| c == collection),
            "{collection}: one createIndexes per collection"
        );
        for index in c.get_array("indexes").unwrap() {
            sent.push((collection.to_owned(), index.as_document().unwrap().clone()));
        }
    }
    // Within a collection, the documented order; across collections, any.
    let by_collection = |all: &[(String, Document)]| {
        let mut all = all.to_vec();
        all.sort_by(|a, b| a.0.cmp(&b.0));
        all
    };
    let expected: Vec<(String, Document)> = indexes()
        .into_iter()
        .map(|(c, m)| (c.to_owned(), bson::to_document(&m).unwrap()))
        .collect();
    assert_eq!(by_collection(&sent), by_collection(&expected));
    for (_, index) in &sent {
        if index.get_str("name") == Ok("expires_at_ttl") {
            assert_eq!(
                index.get_document("key").unwrap(),
                &doc! { "expires_at": 1 }
            );
            assert!(index.contains_key("expireAfterSeconds"));
        }
    }
    // Everything is majority-acknowledged.
    assert!(commands
        .iter()
        .filter(|c| c.contains_key("createIndexes"))
        .all(|c| c
            .get_document("writeConcern")
            .is_ok_and(|wc| wc.get_str("w") == Ok("majority"))));
}

#[tokio::test]
async fn ping_answers_while_the_server_is_there_and_is_unavailable_once_it_is_gone() {
    let server = FakeServer::start(Role::ReplicaSetPrimary).await;
    let url = format!("mongodb://{}/?directConnection=true", server.host());
    let store = MongoStore::connect(&settings(url)).await.unwrap();
    store.ping().await.expect("ping a live server");
    assert!(server.commands().iter().any(|c| c.contains_key("ping")));

    server.stop();
    let started = Instant::now();
    let err = store.ping().await.expect_err("ping a server that is gone");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "ping gave up after {:?}",
        started.elapsed()
    );
}
