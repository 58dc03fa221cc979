//! The server's log as an operator's collector reads it: written to a pipe (not a
//! terminal), its lines carry no ANSI colour codes, in either format, and a JSON line is
//! one object per line.

use std::{
    io::Read,
    process::{Command, Stdio},
    time::Duration,
};

mod common;

const TOKEN: &str = "logs-test-admin-token-0123";
const SESSION_SECRET: &str = "logs-test-session-secret-0123456789abcdef";

/// Starts the server with its output piped, at `level`, and waits until it is ready.
async fn start(format: &str, level: &str) -> (std::process::Child, String) {
    let port = common::free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_seatkeeper-server"))
        .env("SEATKEEPER_HTTP__ADDR", format!("127.0.0.1:{port}"))
        .env("SEATKEEPER_HTTP__WORKERS", "1")
        .env("SEATKEEPER_AUTH__ADMIN_TOKEN", TOKEN)
        .env("SEATKEEPER_AUTH__SESSION_SECRET", SESSION_SECRET)
        .env("SEATKEEPER_LOG__FORMAT", format)
        .env("SEATKEEPER_LOG__LEVEL", level)
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start seatkeeper-server");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(res) = client.get(format!("{base}/health/ready")).send().await {
            if res.status() == 200 {
                break;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "never became ready");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (child, base)
}

/// Stops the server and returns everything it wrote.
fn stop(mut child: std::process::Child) -> String {
    child.kill().expect("stop the server");
    child.wait().unwrap();
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    out + &err
}

/// Starts the server, buys a seat, stops it and returns what it wrote.
async fn log_of_a_short_run(format: &str) -> String {
    let (child, base) = start(format, "info").await;
    let client = common::app::client_with(TOKEN);
    let plans: serde_json::Value = client
        .get(format!("{base}/api/plans"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let plan = plans["data"][0]["id"]
        .as_str()
        .expect("a demo plan")
        .to_owned();
    let res = client
        .post(format!("{base}/api/subscriptions/purchase"))
        .header("Idempotency-Key", "log-1")
        .json(&serde_json::json!({
            "customer_id": "cus_log",
            "plan_id": plan,
            "payment_method": "pm_card_visa",
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    stop(child)
}

#[tokio::test]
async fn text_log_lines_written_to_a_pipe_carry_no_colour_codes() {
    let log = log_of_a_short_run("text").await;
    assert!(log.contains("purchase"), "the purchase is logged:\n{log}");
    assert!(!log.contains('\u{1b}'), "an ANSI escape in:\n{log}");
}

#[tokio::test]
async fn json_log_lines_are_one_object_each_without_colour_codes() {
    let log = log_of_a_short_run("json").await;
    assert!(!log.contains('\u{1b}'), "an ANSI escape in:\n{log}");
    let events: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert!(
        events
            .iter()
            .any(|e| e["message"] == "purchase" && e["outcome"] == "created"),
        "the purchase is logged:\n{log}"
    );
}

#[tokio::test]
async fn credentials_never_reach_the_log_even_at_debug_level() {
    let (child, base) = start("json", "debug").await;
    let http = reqwest::Client::new();
    let key = common::app::make_key(&http, &base, TOKEN, "purchases").await;
    let shop = common::app::client_with(&key);
    let session: serde_json::Value = shop
        .post(format!("{base}/api/customer_sessions"))
        .json(&serde_json::json!({"customer_id": "cus_log"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = session["token"].as_str().unwrap().to_owned();
    let browser = common::app::client_with(&token);
    for client in [&shop, &browser] {
        let res = client
            .get(format!("{base}/api/customers/cus_log/subscriptions"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
    }
    let wrong_key = format!("{}{}", &key[..20], "x".repeat(15));
    let forged = format!("{}x", &token[..token.len() - 1]);
    for wrong in [&wrong_key, &forged] {
        let res = common::app::client_with(wrong)
            .get(format!("{base}/api/customers/cus_log/subscriptions"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 401);
    }
    let log = stop(child);
    assert!(
        log.contains("API key created"),
        "the key's creation is logged:\n{log}"
    );
    let signature = token.rsplit('.').next().unwrap();
    for (what, secret) in [
        ("the admin token", TOKEN),
        ("the session secret", SESSION_SECRET),
        ("the key's secret", &key[11..]),
        ("a wrong key", &wrong_key[11..]),
        ("the session's signature", signature),
        (
            "a forged session's signature",
            forged.rsplit('.').next().unwrap(),
        ),
    ] {
        assert!(!log.contains(secret), "{what} is in the log:\n{log}");
    }
}
