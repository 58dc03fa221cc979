//! What a customer session may not see or change, and whom audit entries name.

use reqwest::Method;
use serde_json::json;

use super::{buy, send, session, Callers};
use crate::helpers::{assert_problem, body, TestApp};

on_every_store!(
    a_customer_session_cannot_reach_another_customers_subscriptions_and_changes_nothing
);
async fn a_customer_session_cannot_reach_another_customers_subscriptions_and_changes_nothing(
    app: TestApp,
) {
    let plan = app.create_plan(5).await;
    let theirs = body(buy(&app, &plan, "cus_b", Some(&app.purchases_key)).await).await;
    let theirs_id = theirs["id"].as_str().unwrap().to_owned();
    let mine = session(&app, &app.purchases_key, "cus_a").await;
    let before = (
        app.plan(&plan).await,
        app.stats(&plan).await,
        app.audit(&plan).await,
    );

    let unknown = "0190f5d0-1b2c-7d3e-8f40-000000000000";
    for (path, method) in [
        (format!("/api/subscriptions/{theirs_id}"), Method::GET),
        (
            format!("/api/subscriptions/{theirs_id}/cancel"),
            Method::POST,
        ),
    ] {
        let res = send(&app, method.clone(), &path, Some(&mine), None).await;
        let problem = assert_problem(res, 404, "subscription_not_found").await;
        // Answered exactly as an id nobody has.
        let path_unknown = path.replace(&theirs_id, unknown);
        let res = send(&app, method, &path_unknown, Some(&mine), None).await;
        let unknown_problem = assert_problem(res, 404, "subscription_not_found").await;
        assert_eq!(
            problem["detail"]
                .as_str()
                .unwrap()
                .replace(&theirs_id, unknown),
            unknown_problem["detail"]
        );
        assert_eq!(
            problem.get("subscription_id").is_some(),
            unknown_problem.get("subscription_id").is_some()
        );
    }
    let res = send(
        &app,
        Method::GET,
        "/api/customers/cus_b/subscriptions",
        Some(&mine),
        None,
    )
    .await;
    assert_problem(res, 404, "not_found").await;
    let res = buy(&app, &plan, "cus_b", Some(&mine)).await;
    assert_problem(res, 403, "forbidden").await;

    assert_eq!(
        (
            app.plan(&plan).await,
            app.stats(&plan).await,
            app.audit(&plan).await
        ),
        before,
        "nothing changed"
    );
    let still = body(app.get(&format!("/api/subscriptions/{theirs_id}")).await).await;
    assert_eq!(still["status"], "active");
    let mine_list = body(
        send(
            &app,
            Method::GET,
            "/api/customers/cus_a/subscriptions",
            Some(&mine),
            None,
        )
        .await,
    )
    .await;
    assert_eq!(mine_list["data"].as_array().unwrap().len(), 0);
    app.assert_invariants(&plan).await;
}

on_every_store!(audit_entries_name_the_admin_token_the_key_or_the_customer);
async fn audit_entries_name_the_admin_token_the_key_or_the_customer(app: TestApp) {
    let callers = Callers::of(&app, "cus_a").await;
    let admin_key = callers.admin_key.as_deref().unwrap();
    let created = send(
        &app,
        Method::POST,
        "/api/plans",
        Some(admin_key),
        Some(json!({"name": "P", "capacity": 3, "unit_amount": 100, "currency": "usd", "interval": "month"})),
    )
    .await;
    let plan = body(created).await["id"].as_str().unwrap().to_owned();
    let renamed = app
        .admin_patch(&format!("/api/plans/{plan}"), &json!({"name": "Q"}))
        .await;
    assert_eq!(renamed.status(), 200);
    let by_session = body(buy(&app, &plan, "cus_a", callers.session.as_deref()).await).await;
    let by_key = body(buy(&app, &plan, "cus_a", callers.purchases.as_deref()).await).await;
    let cancel = format!(
        "/api/subscriptions/{}/cancel",
        by_key["id"].as_str().unwrap()
    );
    assert_eq!(
        send(
            &app,
            Method::POST,
            &cancel,
            callers.session.as_deref(),
            None
        )
        .await
        .status(),
        200
    );

    let keys = body(app.admin_get("/api/keys").await).await;
    let id_of = |secret: &str| crate::common::app::key_id(&keys, secret);
    let admin_actor = format!("key:{}", id_of(admin_key));
    let purchases_actor = format!("key:{}", id_of(&app.purchases_key));
    let audit = app.audit(&plan).await;
    let actors: Vec<(&str, &str)> = audit
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["actor"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actors,
        vec![
            ("plan_created", admin_actor.as_str()),
            ("plan_updated", "admin"),
            ("seat_reserved", "customer:cus_a"),
            ("purchase_activated", "customer:cus_a"),
            ("seat_reserved", purchases_actor.as_str()),
            ("purchase_activated", purchases_actor.as_str()),
            ("subscription_canceled", "customer:cus_a"),
        ]
    );
    assert_eq!(by_session["customer_id"], "cus_a");
    app.assert_invariants(&plan).await;
}
