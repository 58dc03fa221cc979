//! `seatkeeper-server keys create|list|revoke`, run as a process on a real database, with
//! a server on the same database taking and then refusing the key it made.

use std::{process::Command, time::Duration};

use serde_json::Value;

mod common;

use common::stores::{DatabaseKind, FreshDatabase};

const TOKEN: &str = "keys-cli-test-admin-token";

/// Runs `seatkeeper-server keys <args>` on `url`: (success, stdout, stderr).
fn keys(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_seatkeeper-server"))
        .arg("keys")
        .args(args)
        .env("SEATKEEPER_STORE__URL", url)
        .env("SEATKEEPER_LOG__LEVEL", "warn")
        .output()
        .expect("run seatkeeper-server keys");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn a_key_made_on_the_command_line_works_until_it_is_revoked_there(kind: DatabaseKind) {
    let test = "a_key_made_on_the_command_line_works_until_it_is_revoked_there";
    let Some(db) = FreshDatabase::or_skip(kind, test).await else {
        return;
    };
    let url = db.url.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || {
        keys(
            &url,
            &["create", "--role", "purchases", "--name", "ops laptop"],
        )
    })
    .await
    .unwrap();
    assert!(ok, "keys create failed: {err}");
    let made: Value = serde_json::from_str(&out).unwrap();
    let secret = made["secret"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    assert_eq!(made["role"], "purchases");

    let url = db.url.clone();
    let (ok, listed, err) = tokio::task::spawn_blocking(move || keys(&url, &["list"]))
        .await
        .unwrap();
    assert!(ok, "keys list failed: {err}");
    let line = listed
        .lines()
        .find(|l| l.starts_with(&id))
        .expect("the key is listed");
    assert!(
        line.contains(&secret[..11]) && line.ends_with("ops laptop"),
        "{line}"
    );
    assert!(
        !listed.contains(&secret[11..]),
        "a listing never shows a secret"
    );

    let base = common::app::serve(db.store.clone(), TOKEN, |_| {}).await;
    let shop = common::app::client_with(&secret);
    let path = format!("{base}/api/customers/cus_1/subscriptions");
    assert_eq!(shop.get(&path).send().await.unwrap().status(), 200);

    let url = db.url.clone();
    let revoke_id = id.clone();
    let (ok, out, err) = tokio::task::spawn_blocking(move || keys(&url, &["revoke", &revoke_id]))
        .await
        .unwrap();
    assert!(ok, "keys revoke failed: {err}");
    let revoked: Value = serde_json::from_str(&out).unwrap();
    assert!(revoked["revoked_at"].is_string(), "{revoked}");
    assert!(revoked.get("secret").is_none());
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(shop.get(&path).send().await.unwrap().status(), 401);

    let url = db.url.clone();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        keys(&url, &["revoke", "0193a1b2-0c3d-7e4f-8a5b-000000000000"])
    })
    .await
    .unwrap();
    assert!(!ok && err.contains("there is no API key with id"), "{err}");
    let url = db.url.clone();
    let (ok, _, err) = tokio::task::spawn_blocking(move || {
        keys(&url, &["create", "--role", "root", "--name", "x"])
    })
    .await
    .unwrap();
    assert!(
        !ok && err.contains("--role must be 'admin' or 'purchases'"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_on_the_command_line_works_until_it_is_revoked_there_on_postgres() {
    a_key_made_on_the_command_line_works_until_it_is_revoked_there(DatabaseKind::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_made_on_the_command_line_works_until_it_is_revoked_there_on_mongodb() {
    a_key_made_on_the_command_line_works_until_it_is_revoked_there(DatabaseKind::Mongo).await;
}

#[test]
fn keys_on_the_in_memory_store_are_refused_with_the_reason() {
    let (ok, _, err) = keys("memory://", &["list"]);
    assert!(!ok);
    assert!(
        err.contains("the in-memory store lives in the server's process"),
        "{err}"
    );
}
