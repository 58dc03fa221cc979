//! The permission table, whole: every endpoint against every kind of caller — no
//! credential, a malformed header, an unknown key, a revoked key, a `purchases` key, an
//! `admin` key, the admin token, the customer's own session, another customer's session,
//! an expired session and a tampered one — each with its status, and a check that nothing
//! changed wherever the request was refused.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use super::{buy, session};
use crate::{
    common::app::key_id,
    helpers::{body, make_key, TestApp, ADMIN_TOKEN, SESSION_SECRET},
};

/// The callers, in the order of the table's columns: a name and the `Authorization`
/// header sent (none: anonymous).
struct Callers(Vec<(&'static str, Option<String>)>);

const COLUMNS: usize = 11;

/// A session token of the server's own signing secret, with chosen claims.
fn signed(customer: &str, exp: i64) -> String {
    let claims = json!({"iss": "seatkeeper", "aud": "customer_session", "sub": customer,
        "iat": exp - 1800, "exp": exp});
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SESSION_SECRET.as_bytes()),
    )
    .unwrap()
}

impl Callers {
    async fn of(app: &TestApp) -> Self {
        let bearer = |c: &str| Some(format!("Bearer {c}"));
        let revoked = make_key(&app.anonymous, &app.address, "admin", "revoked").await;
        let keys = body(app.admin_get("/api/keys").await).await;
        let id = key_id(&keys, &revoked);
        let res = app
            .anonymous
            .delete(app.url(&format!("/api/keys/{id}")))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200);
        let admin_key = make_key(&app.anonymous, &app.address, "admin", "ops").await;
        let own = session(app, &app.purchases_key, "cus_a").await;
        let other = session(app, &app.purchases_key, "cus_b").await;
        let expired = signed("cus_a", chrono::Utc::now().timestamp() - 10);
        // cus_b's claims under the signature of cus_a's session.
        let mut parts: Vec<&str> = own.split('.').collect();
        let theirs = signed("cus_b", chrono::Utc::now().timestamp() + 600);
        parts[1] = theirs.split('.').nth(1).unwrap();
        let tampered = parts.join(".");
        // The revoked key leaves the lookup cache of this instance within a second.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        Self(vec![
            ("no credential", None),
            (
                "malformed header",
                Some(format!("Basic {}", app.purchases_key)),
            ),
            ("unknown key", bearer(&format!("sk_{}", "Z".repeat(32)))),
            ("revoked key", bearer(&revoked)),
            ("purchases key", bearer(&app.purchases_key)),
            ("admin key", bearer(&admin_key)),
            ("admin token", bearer(ADMIN_TOKEN)),
            ("own session", bearer(&own)),
            ("another customer's session", bearer(&other)),
            ("expired session", bearer(&expired)),
            ("tampered session", bearer(&tampered)),
        ])
    }
}

/// Everything a request could change, read with the admin token (keys without their last
/// use, which a refused request with a valid key may move).
async fn snapshot(app: &TestApp, plan: &str) -> Value {
    let keys = body(app.admin_get("/api/keys?limit=100").await).await;
    let keys: Vec<Value> = keys["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| json!([k["id"], k["revoked_at"]]))
        .collect();
    json!({
        "plans": body(app.get("/api/plans?limit=100").await).await,
        "stats": app.stats(plan).await,
        "audit": app.audit(plan).await,
        "subscriptions": body(app.admin_get("/api/customers/cus_a/subscriptions?limit=100").await).await,
        "keys": keys,
    })
}

async fn send(
    app: &TestApp,
    method: &Method,
    path: &str,
    header: Option<&str>,
    json: Option<&Value>,
) -> (u16, String) {
    let mut req = app.anonymous.request(method.clone(), app.url(path));
    if let Some(h) = header {
        req = req.header("Authorization", h);
    }
    if path == "/api/subscriptions/purchase" {
        req = req.header("Idempotency-Key", uuid::Uuid::new_v4().to_string());
    }
    if let Some(json) = json {
        req = req.json(json);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

const PUBLIC: [u16; COLUMNS] = [200; COLUMNS];
//                         none  bad  unk  rev  purch admin token own  other exp  tamp
const READ_OWN: [u16; COLUMNS] = [401, 401, 401, 401, 200, 200, 200, 200, 404, 401, 401];
const ADMIN: [u16; COLUMNS] = [401, 401, 401, 401, 403, 200, 200, 403, 403, 401, 401];
const MADE_BY_ADMIN: [u16; COLUMNS] = [401, 401, 401, 401, 403, 201, 201, 403, 403, 401, 401];
const SESSIONS: [u16; COLUMNS] = [401, 401, 401, 401, 201, 201, 201, 403, 403, 401, 401];
const BUY_OWN: [u16; COLUMNS] = [401, 401, 401, 401, 201, 201, 201, 201, 403, 401, 401];

on_every_store!(
    every_endpoint_answers_every_kind_of_caller_as_the_table_says_and_refusals_change_nothing
);
async fn every_endpoint_answers_every_kind_of_caller_as_the_table_says_and_refusals_change_nothing(
    app: TestApp,
) {
    let plan = app.create_plan(100).await;
    let callers = Callers::of(&app).await;
    let sub = body(buy(&app, &plan, "cus_a", Some(&app.purchases_key)).await).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let target = make_key(&app.anonymous, &app.address, "purchases", "target").await;
    let target_id = key_id(&body(app.admin_get("/api/keys").await).await, &target);
    let purchase =
        json!({"plan_id": plan, "customer_id": "cus_a", "payment_method": "pm_card_visa"});
    let new_plan = json!({"name": "P", "capacity": 3, "unit_amount": 100, "currency": "usd", "interval": "month"});

    let table: Vec<(Method, String, Option<Value>, [u16; COLUMNS])> = vec![
        (Method::GET, "/api/plans".into(), None, PUBLIC),
        (Method::GET, format!("/api/plans/{plan}"), None, PUBLIC),
        (
            Method::GET,
            format!("/api/plans/{plan}/stats"),
            None,
            PUBLIC,
        ),
        (Method::GET, "/health".into(), None, PUBLIC),
        (Method::GET, "/health/ready".into(), None, PUBLIC),
        (Method::GET, "/openapi.json".into(), None, PUBLIC),
        (
            Method::POST,
            "/api/subscriptions/purchase".into(),
            Some(purchase),
            BUY_OWN,
        ),
        (
            Method::GET,
            format!("/api/subscriptions/{sub}"),
            None,
            READ_OWN,
        ),
        (
            Method::GET,
            "/api/customers/cus_a/subscriptions".into(),
            None,
            READ_OWN,
        ),
        (
            Method::POST,
            "/api/customer_sessions".into(),
            Some(json!({"customer_id": "cus_a"})),
            SESSIONS,
        ),
        (
            Method::POST,
            "/api/plans".into(),
            Some(new_plan),
            MADE_BY_ADMIN,
        ),
        (
            Method::PATCH,
            format!("/api/plans/{plan}"),
            Some(json!({"capacity": 101})),
            ADMIN,
        ),
        (Method::GET, format!("/api/plans/{plan}/audit"), None, ADMIN),
        (Method::GET, "/api/admin/reconciliation".into(), None, ADMIN),
        (Method::GET, "/metrics".into(), None, ADMIN),
        (Method::GET, "/api/keys".into(), None, ADMIN),
        (
            Method::POST,
            "/api/keys".into(),
            Some(json!({"role": "purchases", "name": "n"})),
            MADE_BY_ADMIN,
        ),
        (
            Method::DELETE,
            format!("/api/keys/{target_id}"),
            None,
            ADMIN,
        ),
    ];
    let mut refused = 0;
    for (method, path, json, expected) in &table {
        for ((who, header), want) in callers.0.iter().zip(expected) {
            let before = snapshot(&app, &plan).await;
            let (status, text) = send(&app, method, path, header.as_deref(), json.as_ref()).await;
            assert_eq!(status, *want, "{method} {path} as {who}: {text}");
            if status >= 400 {
                refused += 1;
                let codes: &[&str] = match status {
                    401 => &["unauthorized"],
                    403 => &["forbidden"],
                    _ => &["subscription_not_found", "not_found"],
                };
                assert!(
                    codes
                        .iter()
                        .any(|c| text.contains(&format!("\"code\":\"{c}\""))),
                    "{method} {path} as {who}: {text}"
                );
                assert_eq!(
                    snapshot(&app, &plan).await,
                    before,
                    "{method} {path} as {who} changed something"
                );
            }
        }
    }
    // Cancelling: each caller on an active subscription of cus_a's of its own.
    //                         none  bad  unk  rev  purch admin token own  other exp  tamp
    let cancel: [u16; COLUMNS] = [401, 401, 401, 401, 200, 200, 200, 200, 404, 401, 401];
    for ((who, header), want) in callers.0.iter().zip(cancel) {
        let id = body(buy(&app, &plan, "cus_a", Some(&app.purchases_key)).await).await["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let before = snapshot(&app, &plan).await;
        let path = format!("/api/subscriptions/{id}/cancel");
        let (status, text) = send(&app, &Method::POST, &path, header.as_deref(), None).await;
        assert_eq!(status, want, "cancel as {who}: {text}");
        if status >= 400 {
            refused += 1;
            assert_eq!(
                snapshot(&app, &plan).await,
                before,
                "cancel as {who} changed something"
            );
        }
    }
    assert!(refused > 100, "{refused} refusals checked");
    app.assert_invariants(&plan).await;
}
