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

/// Starts the server with its stdout piped, makes a few requests, stops it and returns
/// what it wrote.
async fn log_of_a_short_run(format: &str) -> String {
    let port = common::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_seatkeeper-server"))
        .env("SEATKEEPER_HTTP__ADDR", format!("127.0.0.1:{port}"))
        .env("SEATKEEPER_HTTP__WORKERS", "1")
        .env("SEATKEEPER_AUTH__ADMIN_TOKEN", TOKEN)
        .env("SEATKEEPER_LOG__FORMAT", format)
        .env("SEATKEEPER_LOG__LEVEL", "info")
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start seatkeeper-server");
    let base = format!("http://127.0.0.1:{port}");
    let client = common::app::client_with(TOKEN);
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
