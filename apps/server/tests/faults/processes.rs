//! The `seatkeeper-server` processes of one scenario ([`Fleet`]): spawned from the binary
//! Cargo built for this test, each logging to its own file, waited for until ready,
//! killed with `kill -9` and restarted (on another port if theirs cannot be bound), and
//! the one-shot reconciler (`seatkeeper-server reconcile`) run with the same settings.
//! Every process still running is killed when the fleet is dropped.

use std::{
    fs::File,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use rand::Rng;

use crate::common::free_port;

struct Slot {
    child: Option<Child>,
    port: u16,
}

/// `seatkeeper-server` processes on one database; killed when dropped. Each process
/// writes its log to its own file under `logs`.
pub struct Fleet {
    env: Vec<(String, String)>,
    slots: Mutex<Vec<Slot>>,
    pub logs: PathBuf,
    spawned: AtomicUsize,
    kills: AtomicUsize,
    http: reqwest::Client,
}

impl Fleet {
    pub async fn start(
        n: usize,
        env: Vec<(String, String)>,
        logs: PathBuf,
        http: reqwest::Client,
    ) -> Arc<Self> {
        let fleet = Arc::new(Self {
            env,
            slots: Mutex::new(
                (0..n)
                    .map(|_| Slot {
                        child: None,
                        port: free_port(),
                    })
                    .collect(),
            ),
            logs,
            spawned: AtomicUsize::new(0),
            kills: AtomicUsize::new(0),
            http,
        });
        for i in 0..n {
            fleet.boot(i).await;
        }
        fleet
    }

    pub fn len(&self) -> usize {
        self.slots.lock().len()
    }

    pub fn kills(&self) -> usize {
        self.kills.load(Ordering::SeqCst)
    }

    pub fn url(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.slots.lock()[i].port)
    }

    /// Any instance, up or not: clients cope.
    pub fn random_url(&self) -> String {
        let i = rand::thread_rng().gen_range(0..self.len());
        self.url(i)
    }

    fn spawn(&self, port: u16) -> Child {
        let n = self.spawned.fetch_add(1, Ordering::SeqCst);
        let path = self.logs.join(format!("server-{n:02}-port-{port}.log"));
        let log = File::create(&path).expect("a server log file");
        Command::new(env!("CARGO_BIN_EXE_seatkeeper-server"))
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("SEATKEEPER_HTTP__ADDR", format!("127.0.0.1:{port}"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("a server log file"))
            .stderr(log)
            .spawn()
            .expect("start seatkeeper-server")
    }

    /// Starts instance `i` (on its port; on a new one if that cannot be bound) and waits
    /// until it is ready.
    pub async fn boot(&self, i: usize) {
        for attempt in 0..3 {
            let port = {
                let mut slots = self.slots.lock();
                if attempt > 0 {
                    slots[i].port = free_port();
                }
                slots[i].port
            };
            let child = self.spawn(port);
            self.slots.lock()[i].child = Some(child);
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let ready = self
                    .http
                    .get(format!("http://127.0.0.1:{port}/health/ready"))
                    .timeout(Duration::from_secs(2))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200);
                if ready {
                    return;
                }
                let exited = {
                    let mut slots = self.slots.lock();
                    slots[i]
                        .child
                        .as_mut()
                        .and_then(|c| c.try_wait().ok().flatten())
                };
                if let Some(status) = exited {
                    eprintln!("instance {i} on port {port} exited at start-up ({status}); trying another port");
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "instance {i} on port {port} was not ready after 30 s; logs in {}",
                    self.logs.display()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        panic!(
            "instance {i} could not start; logs in {}",
            self.logs.display()
        );
    }

    /// `kill -9` (SIGKILL) instance `i`.
    pub fn kill(&self, i: usize) {
        let mut slots = self.slots.lock();
        if let Some(mut child) = slots[i].child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.kills.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Fleet {
    /// Kills every instance (not counted as a fault).
    pub fn stop_all(&self) {
        for slot in self.slots.lock().iter_mut() {
            if let Some(mut child) = slot.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// `seatkeeper-server reconcile`, the one-shot reconciler, with the fleet's settings.
    pub async fn reconcile_once(&self) -> std::process::Output {
        let env = self.env.clone();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_seatkeeper-server"))
                .arg("reconcile")
                .envs(env)
                .env_remove("RUST_LOG")
                .stdin(Stdio::null())
                .output()
                .expect("run seatkeeper-server reconcile")
        })
        .await
        .unwrap()
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        for slot in self.slots.get_mut() {
            if let Some(mut child) = slot.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
