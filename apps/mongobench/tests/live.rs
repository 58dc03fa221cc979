//! The binary, run briefly against the live replica set (`SEATKEEPER_TEST_MONGODB_URL`, or
//! the one `bash deploy/mongodb.sh start` serves): it commits purchases, its JSON has the
//! fields `bench/run.sh` reads, the database holds exactly what it counted, and nothing is
//! left behind. When nothing listens at the default address each test says, under its own
//! name, that it was skipped; under `CI` it fails instead (the store's `TestDatabases` rule).

use std::process::Command;

use mongodb::Client;
use seatkeeper_store_mongo::testing::TestDatabases;

/// The deployment's URL, or `None` after saying why this test is skipped.
async fn deployment(test: &str) -> Option<String> {
    match TestDatabases::connect().await {
        Ok(dbs) => Some(dbs.url().to_owned()),
        Err(why) => {
            eprintln!("skipped {test}: {why}");
            None
        }
    }
}

async fn database_names(url: &str) -> Vec<String> {
    let client = Client::with_uri_str(url).await.unwrap();
    let names = client.list_database_names().await.unwrap();
    client.shutdown().await;
    names
}

#[tokio::test]
async fn a_short_run_on_sixteen_plans_commits_counts_exactly_and_drops_its_database() {
    let Some(url) =
        deployment("a_short_run_on_sixteen_plans_commits_counts_exactly_and_drops_its_database")
            .await
    else {
        return;
    };
    let json = std::env::temp_dir().join(format!("mongobench-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_seatkeeper-mongobench"))
        .args([
            "--url",
            &url,
            "--clients",
            "4",
            "--seconds",
            "1",
            "--plans",
            "16",
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.starts_with("mongobench plans=16 clients=4 duration=1 tps="),
        "{text}"
    );

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    std::fs::remove_file(&json).ok();
    let commits = report["commits"].as_u64().unwrap();
    assert!(commits > 0, "{report:#}");
    assert_eq!(report["errors"], 0, "{report:#}");
    assert_eq!(report["sold_out"], 0);
    assert!(report["throughput_tps"].as_f64().unwrap() > 0.0);
    for p in ["p50_ms", "p90_ms", "p99_ms", "max_ms"] {
        assert!(report["latency"][p].as_f64().unwrap() > 0.0, "{p}");
    }
    assert_eq!(report["check"]["passed"], true, "{report:#}");
    assert_eq!(
        report["check"]["expected"],
        commits + 4,
        "four warm-up commits"
    );

    let database = report["database"].as_str().unwrap();
    assert!(database.starts_with("seatkeeper_mongobench_"));
    assert!(
        !database_names(&url).await.iter().any(|n| n == database),
        "{database} was not dropped"
    );
}

#[tokio::test]
async fn the_hot_plan_takes_every_purchase_on_one_document_without_losing_one() {
    let Some(url) =
        deployment("the_hot_plan_takes_every_purchase_on_one_document_without_losing_one").await
    else {
        return;
    };
    let report = seatkeeper_mongobench::run(&seatkeeper_mongobench::Options {
        url,
        clients: 4,
        duration: std::time::Duration::from_millis(500),
        plans: 1,
    })
    .await
    .unwrap();
    assert!(report.commits > 0);
    assert_eq!(report.errors, 0, "{}", report.render());
    assert!(report.check.passed, "{}", report.render());
    assert_eq!(report.check.seats_taken, report.commits + 4);
}

#[tokio::test]
async fn the_drop_option_drops_a_seatkeeper_database_and_refuses_any_other() {
    let Some(url) =
        deployment("the_drop_option_drops_a_seatkeeper_database_and_refuses_any_other").await
    else {
        return;
    };
    let name = format!("seatkeeper_bench_droptest_{}", std::process::id());
    let client = Client::with_uri_str(&url).await.unwrap();
    client
        .database(&name)
        .collection::<mongodb::bson::Document>("x")
        .insert_one(mongodb::bson::doc! { "a": 1 })
        .await
        .unwrap();
    client.shutdown().await;

    let drop = |db: &str| {
        Command::new(env!("CARGO_BIN_EXE_seatkeeper-mongobench"))
            .args(["--url", &url, "--drop-database", db])
            .output()
            .unwrap()
    };
    let refused = drop("admin");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("refusing to drop 'admin'"));

    assert!(drop(&name).status.success());
    assert!(!database_names(&url).await.contains(&name));
}
