//! A private single-node MongoDB replica set for one test, on a port and a data directory
//! of its own, that the test may kill (`SIGKILL`) and start again: what a test needs to
//! take the database away for real without touching the shared replica set other tests
//! use.
//!
//! The binary is `SEATKEEPER_TEST_MONGOD` (`.ci/run` sets it from `deploy/mongodb.sh
//! binary`), else the one `deploy/mongodb.sh` caches. Without either, [`Mongod::binary`]
//! says why, and the test is skipped by name; under `CI` it fails instead.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use mongodb::{bson::doc, options::ClientOptions, Client};

use super::free_port;

pub struct Mongod {
    binary: PathBuf,
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Mongod {
    /// The `mongod` to run, or why there is none (a panic under `CI`).
    pub fn binary() -> Result<PathBuf, String> {
        let given = std::env::var_os("SEATKEEPER_TEST_MONGOD").map(PathBuf::from);
        let cached = std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".cache/seatkeeper/mongodb-6.0.5/bin/mongod"));
        match given.or(cached).filter(|p| p.is_file()) {
            Some(path) => Ok(path),
            None => {
                let why = "no mongod binary: set SEATKEEPER_TEST_MONGOD or run \
                           `bash deploy/mongodb.sh binary`"
                    .to_owned();
                if std::env::var_os("CI").is_some() {
                    panic!("{why} (CI is set, so this fails instead of skipping)");
                }
                Err(why)
            }
        }
    }

    /// Starts a new replica set `rs0` of one member on a free port and waits until it is
    /// primary.
    pub async fn start(binary: PathBuf) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "seatkeeper-mongod-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let mut mongod = Self {
            binary,
            port: free_port(),
            dir,
            child: None,
        };
        mongod.spawn();
        let client = mongod.client().await;
        let initiated = client
            .database("admin")
            .run_command(doc! { "replSetInitiate": {
                "_id": "rs0",
                "members": [{ "_id": 0, "host": format!("127.0.0.1:{}", mongod.port) }],
            } })
            .await;
        if let Err(e) = initiated {
            assert!(
                e.to_string().contains("already initialized"),
                "replSetInitiate: {e}"
            );
        }
        mongod.wait_for_primary().await;
        mongod
    }

    /// The URL of database `db` on it.
    pub fn url(&self, db: &str) -> String {
        format!(
            "mongodb://127.0.0.1:{}/{db}?directConnection=true",
            self.port
        )
    }

    /// `kill -9`: no shutdown, no goodbye to its clients.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data, and waits until it is primary.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn();
        self.wait_for_primary().await;
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(self.dir.join("data")).unwrap();
        let log = self.dir.join("mongod.log");
        let child = Command::new(&self.binary)
            .args(["--replSet", "rs0", "--bind_ip", "127.0.0.1", "--port"])
            .arg(self.port.to_string())
            .arg("--dbpath")
            .arg(self.dir.join("data"))
            .args([
                "--wiredTigerCacheSizeGB",
                "0.25",
                "--setParameter",
                "transactionLifetimeLimitSeconds=5",
                "--setParameter",
                "minSnapshotHistoryWindowInSeconds=0",
                "--logpath",
            ])
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", self.binary.display()));
        self.child = Some(child);
    }

    async fn client(&self) -> Client {
        let mut options = ClientOptions::parse(self.url("admin")).await.unwrap();
        options.server_selection_timeout = Some(Duration::from_secs(30));
        Client::with_options(options).unwrap()
    }

    async fn wait_for_primary(&self) {
        let client = self.client().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let hello = client
                .database("admin")
                .run_command(doc! { "hello": 1 })
                .await;
            if hello.is_ok_and(|h| h.get_bool("isWritablePrimary").unwrap_or(false)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "mongod on port {} did not become primary within 60 s (log: {})",
                self.port,
                self.dir.join("mongod.log").display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Mongod {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
