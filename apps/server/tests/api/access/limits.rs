//! Rate limits (per credential, per address, failed authentications) with their IETF
//! headers, the trusted proxy's `X-Forwarded-For`, and CORS's allowlist.

use std::time::Duration;

use reqwest::{Method, Response};

use super::send;
use crate::helpers::{assert_problem, spawn_app_with, StoreKind, TestApp, ADMIN_TOKEN};

async fn app(configure: impl FnOnce(&mut seatkeeper_server::configuration::Settings)) -> TestApp {
    spawn_app_with(StoreKind::Memory, Duration::ZERO, |s| {
        s.rate_limit.enabled = true;
        configure(s);
    })
    .await
    .unwrap()
}

fn header(res: &Response, name: &str) -> String {
    res.headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_credential_over_its_limit_gets_429_with_retry_after_and_ratelimit_headers() {
    let app = app(|s| {
        s.rate_limit.credential_per_sec = 1;
        s.rate_limit.credential_burst = 3;
    })
    .await;
    let key = app.purchases_key.clone();
    for remaining in [2, 1, 0] {
        let res = send(&app, Method::GET, "/api/plans", Some(&key), None).await;
        assert_eq!(res.status(), 200);
        assert_eq!(header(&res, "ratelimit-policy"), "\"credential\";q=3;w=3");
        let state = header(&res, "ratelimit");
        assert!(
            state.starts_with(&format!("\"credential\";r={remaining};t=")),
            "{state}"
        );
    }
    let res = send(&app, Method::GET, "/api/plans", Some(&key), None).await;
    let retry_after: u64 = header(&res, "retry-after").parse().unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    assert_eq!(header(&res, "ratelimit-policy"), "\"credential\";q=3;w=3");
    assert_eq!(
        header(&res, "ratelimit"),
        format!("\"credential\";r=0;t={retry_after}")
    );
    let problem = assert_problem(res, 429, "rate_limited").await;
    assert!(
        !problem["detail"].as_str().unwrap().contains(&key[3..]),
        "{problem}"
    );
    // Another credential, and no credential, have buckets of their own.
    let other = send(&app, Method::GET, "/api/plans", Some(ADMIN_TOKEN), None).await;
    assert_eq!(other.status(), 200);
    let anonymous = send(&app, Method::GET, "/api/plans", None, None).await;
    assert_eq!(
        header(&anonymous, "ratelimit-policy"),
        "\"address\";q=40;w=2"
    );
    // The bucket refills at the quota's pace.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let again = send(&app, Method::GET, "/api/plans", Some(&key), None).await;
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn requests_without_a_credential_are_limited_per_address() {
    let app = app(|s| {
        s.rate_limit.address_per_sec = 1;
        s.rate_limit.address_burst = 2;
    })
    .await;
    for _ in 0..2 {
        assert_eq!(
            send(&app, Method::GET, "/health", None, None)
                .await
                .status(),
            200
        );
    }
    let refused = send(&app, Method::GET, "/api/plans", None, None).await;
    assert_problem(refused, 429, "rate_limited").await;
    let keyed = send(
        &app,
        Method::GET,
        "/api/plans",
        Some(&app.purchases_key),
        None,
    )
    .await;
    assert_eq!(keyed.status(), 200);
}

/// Three wrong keys from `forwarded_for` (through the `X-Forwarded-For` header).
async fn guess(app: &TestApp, forwarded_for: &str) -> Vec<u16> {
    let mut statuses = Vec::new();
    for i in 0..4 {
        let res = app
            .anonymous
            .get(app.url("/api/keys"))
            .bearer_auth(format!("sk_{:0>32}", i))
            .header("X-Forwarded-For", forwarded_for)
            .send()
            .await
            .unwrap();
        statuses.push(res.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn failed_authentications_are_limited_per_address_and_only_a_trusted_proxy_names_it() {
    let app = app(|s| {
        s.rate_limit.failed_auth_per_min = 1;
        s.rate_limit.failed_auth_burst = 3;
    })
    .await;
    assert_eq!(guess(&app, "203.0.113.7").await, [401, 401, 401, 429]);
    // Not behind a trusted proxy: X-Forwarded-For is the client's word, not taken.
    assert_eq!(guess(&app, "203.0.113.8").await, [429; 4]);
    // A good credential from that address still works.
    let ok = send(&app, Method::GET, "/api/keys", Some(ADMIN_TOKEN), None).await;
    assert_eq!(ok.status(), 200);

    let behind_proxy = app_behind_loopback_proxy().await;
    assert_eq!(
        guess(&behind_proxy, "203.0.113.7").await,
        [401, 401, 401, 429]
    );
    assert_eq!(
        guess(&behind_proxy, "198.51.100.1, 203.0.113.8").await,
        [401, 401, 401, 429]
    );
}

async fn app_behind_loopback_proxy() -> TestApp {
    app(|s| {
        s.rate_limit.failed_auth_per_min = 1;
        s.rate_limit.failed_auth_burst = 3;
        s.http.trusted_proxies = vec!["127.0.0.1".parse().unwrap()];
    })
    .await
}

#[tokio::test]
async fn browsers_of_allowed_origins_pass_cors_and_others_do_not() {
    let app = app(|s| s.http.cors_allowed_origins = vec!["https://shop.example".into()]).await;
    let preflight = |origin: &str| {
        app.anonymous
            .request(Method::OPTIONS, app.url("/api/subscriptions/purchase"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header(
                "Access-Control-Request-Headers",
                "authorization, content-type, idempotency-key",
            )
            .send()
    };
    let res = preflight("https://shop.example").await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(
        header(&res, "access-control-allow-origin"),
        "https://shop.example"
    );
    let allowed = header(&res, "access-control-allow-headers").to_lowercase();
    assert!(
        allowed.contains("idempotency-key") && allowed.contains("authorization"),
        "{allowed}"
    );
    let res = preflight("https://evil.example").await.unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    assert_eq!(res.status(), 400);

    let res = app
        .anonymous
        .get(app.url("/api/plans"))
        .header("Origin", "https://shop.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&res, "access-control-allow-origin"),
        "https://shop.example"
    );
    let exposed = header(&res, "access-control-expose-headers").to_lowercase();
    assert!(
        exposed.contains("x-request-id") && exposed.contains("ratelimit"),
        "{exposed}"
    );
}

#[tokio::test]
async fn without_an_allowlist_no_origin_is_allowed() {
    let app = app(|_| {}).await;
    let res = app
        .anonymous
        .request(Method::OPTIONS, app.url("/api/plans"))
        .header("Origin", "https://shop.example")
        .header("Access-Control-Request-Method", "GET")
        .send()
        .await
        .unwrap();
    assert!(res.headers().get("access-control-allow-origin").is_none());
    assert_problem(res, 405, "method_not_allowed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hundred_purchases_at_once_with_one_key_get_the_burst_through_and_the_rest_429() {
    let app = app(|s| {
        s.rate_limit.credential_per_sec = 1;
        s.rate_limit.credential_burst = 20;
    })
    .await;
    let plan = {
        let res = app
            .anonymous
            .post(app.url("/api/plans"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({"name": "Hot", "capacity": 1000, "unit_amount": 100, "currency": "usd", "interval": "month"}))
            .send()
            .await
            .unwrap();
        crate::helpers::body(res).await["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    // A key of its own: the app's key stays free for the checks below.
    let burst_key =
        crate::helpers::make_key(&app.anonymous, &app.address, "purchases", "burst").await;
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(100));
    let tasks: Vec<_> = (0..100)
        .map(|i| {
            let (http, url, key, plan, barrier) = (
                app.anonymous.clone(),
                app.url("/api/subscriptions/purchase"),
                burst_key.clone(),
                plan.clone(),
                barrier.clone(),
            );
            tokio::spawn(async move {
                barrier.wait().await;
                http.post(url)
                    .bearer_auth(key)
                    .header("Idempotency-Key", format!("k{i}"))
                    .json(&serde_json::json!({"plan_id": plan, "customer_id": format!("cus_{i}"), "payment_method": "pm_card_visa"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    let (mut created, mut limited) = (0u32, 0u32);
    for t in tasks {
        match t.await.unwrap() {
            201 => created += 1,
            429 => limited += 1,
            other => panic!("unexpected {other}"),
        }
    }
    // A cell may come back while the hundred are answered (one per second).
    assert!(
        (20..=22).contains(&created),
        "{created} created, {limited} limited"
    );
    assert_eq!(created + limited, 100);
    let seats = app.plan(&plan).await["seats_left"].as_u64().unwrap();
    assert_eq!(
        seats,
        1000 - u64::from(created),
        "a refused purchase took no seat"
    );
    app.assert_invariants(&plan).await;
}
