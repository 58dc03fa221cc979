//! A real browser for the page tests: Debian's headless Chromium, driven over WebDriver
//! (`fantoccini`) through its own ChromeDriver process, one per test and killed when the
//! test ends. Without a `chromedriver` the tests say they were skipped and pass; under `CI`
//! they fail instead (`.ci/run` installs `chromium` and `chromium-driver`).
//!
//! Browser tests run one at a time ([`Browser::start`] holds a lock while they run): two
//! shared cores and several Chromiums make timing flaky for nothing.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use fantoccini::{elements::Element, Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{json, Value};
use tokio::sync::{Mutex, MutexGuard};

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// How long a page has to show what a test waits for.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// The WebDriver server, or why there is none.
fn chromedriver() -> Result<PathBuf, String> {
    let path = std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"));
    if path.exists() {
        Ok(path)
    } else {
        Err(format!(
            "no ChromeDriver at {} (apt-get install chromium chromium-driver, or set CHROMEDRIVER)",
            path.display()
        ))
    }
}

/// A ChromeDriver process, killed on drop.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One test's browsers, and the lock that keeps other browser tests waiting.
pub struct Browsers {
    driver: Driver,
    port: u16,
    windows: Vec<Client>,
    profiles: Vec<PathBuf>,
    _turn: MutexGuard<'static, ()>,
}

impl Browsers {
    /// A ChromeDriver for this test, or `None` (the test is skipped) when there is none
    /// and `CI` is unset.
    pub async fn start(test: &str) -> Option<Self> {
        let driver = match chromedriver() {
            Ok(path) => path,
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!("{test} needs a browser under CI: {why}")
            }
            Err(why) => {
                eprintln!("skipped {test}: {why}");
                return None;
            }
        };
        let turn = ONE_AT_A_TIME.lock().await;
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ChromeDriver starts");
        let browsers = Self {
            driver: Driver(child),
            port,
            windows: Vec::new(),
            profiles: Vec::new(),
            _turn: turn,
        };
        let status = format!("http://127.0.0.1:{port}/status");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(res) = reqwest::get(&status).await {
                if res.status().is_success() {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "ChromeDriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Some(browsers)
    }

    /// A new browser window with its own profile (its own `sessionStorage`), at a
    /// desktop's size or, with `phone`, a phone's.
    pub async fn open(&mut self, phone: bool) -> Client {
        let profile = tempdir();
        let size = if phone { "390,844" } else { "1280,900" };
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-extensions",
                    "--disable-default-apps", "--hide-scrollbars", "--force-device-scale-factor=1",
                    format!("--window-size={size}"),
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        // Plain HTTP to the local ChromeDriver: no TLS stack needed.
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("a Chromium session");
        self.windows.push(client.clone());
        self.profiles.push(profile);
        client
    }

    /// Closes every window (ChromeDriver then ends their Chromiums).
    pub async fn close(self) {
        for w in &self.windows {
            let _ = w.clone().close().await;
        }
        drop(self.driver);
        for p in &self.profiles {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// A fresh directory for one Chromium profile.
fn tempdir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("seatkeeper-chromium-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("a profile directory");
    dir
}

/// Runs `expr` (a JavaScript expression) in the page until it is truthy; fails the test
/// with `what` and the page's last value after [`PATIENCE`].
pub async fn until(c: &Client, what: &str, expr: &str) -> Value {
    let deadline = Instant::now() + PATIENCE;
    let script = format!("return ({expr});");
    loop {
        let value = c.execute(&script, vec![]).await.unwrap_or(Value::Null);
        let truthy = match &value {
            Value::Null => false,
            Value::Bool(b) => *b,
            Value::String(s) => !s.is_empty(),
            Value::Number(n) => n.as_f64() != Some(0.0),
            _ => true,
        };
        if truthy {
            return value;
        }
        if Instant::now() > deadline {
            let page = c
                .execute("return document.body.innerText", vec![])
                .await
                .unwrap_or(Value::Null);
            panic!("waited {PATIENCE:?} for {what} ({expr}); the page shows:\n{page}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The text of the element `css`.
pub async fn text(c: &Client, css: &str) -> String {
    find(c, css).await.text().await.expect("an element's text")
}

/// The element `css`, once it is there.
pub async fn find(c: &Client, css: &str) -> Element {
    c.wait()
        .at_most(PATIENCE)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no element {css}: {e}"))
}

/// Clicks the element `css`.
pub async fn click(c: &Client, css: &str) {
    find(c, css)
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

/// Types `text` into the input `css`, after clearing it.
pub async fn fill(c: &Client, css: &str, text: &str) {
    let e = find(c, css).await;
    e.clear().await.expect("clearing an input");
    e.send_keys(text).await.expect("typing");
}

/// Every address the page fetched (documents, scripts, styles, API calls, streams).
pub async fn fetched(c: &Client) -> Vec<String> {
    let v = c
        .execute(
            "return [location.href, ...performance.getEntriesByType('resource').map(e => e.name)]",
            vec![],
        )
        .await
        .expect("the page's resources");
    v.as_array()
        .expect("a list")
        .iter()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// Saves a screenshot of the window as `target/screenshots/<name>.png`, and as
/// `docs/screenshots/<name>.png` when `UPDATE_SCREENSHOTS` is set (how the README's
/// pictures are made).
pub async fn screenshot(c: &Client, name: &str) {
    let png = c.screenshot().await.expect("a screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut dirs = vec![root.join("target/screenshots")];
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        dirs.push(root.join("docs/screenshots"));
    }
    for dir in dirs {
        std::fs::create_dir_all(&dir).expect("a screenshot directory");
        std::fs::write(dir.join(format!("{name}.png")), &png).expect("writing a screenshot");
    }
}
