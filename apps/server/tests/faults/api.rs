//! Reads through the servers' API, as the scenarios and the checks make them: [`get_json`]
//! (retrying failures a few times, so that a read does not fail for a restarting
//! instance), a plan's whole audit log ([`fetch_audit`]), and the waits of the scenarios
//! built on them (a subscription's status, a refund in the simulator's ledger).

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{scenario::Scenario, REQUEST_TIMEOUT, TOKEN};

impl Scenario {
    /// The id of the one subscription of `customer`.
    pub async fn only_subscription_of(&self, customer: &str) -> String {
        let url = format!(
            "{}/api/customers/{customer}/subscriptions",
            self.fleet.url(0)
        );
        let page = get_json(&self.http, &url, false).await.unwrap();
        let data = page["data"].as_array().cloned().unwrap_or_default();
        assert_eq!(data.len(), 1, "subscriptions of {customer}: {page}");
        data[0]["id"].as_str().unwrap().to_owned()
    }

    /// Waits (at most 15 s) until the subscription has `status`.
    pub async fn wait_for_status(&self, id: &str, status: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let url = format!("{}/api/subscriptions/{id}", self.fleet.url(0));
            let sub = get_json(&self.http, &url, false)
                .await
                .unwrap_or(Value::Null);
            if sub["status"] == status {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "subscription {id} is still {} after 15 s, not {status}",
                sub["status"]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (at most 15 s) until a succeeded charge of the subscription is refunded;
    /// returns the charge's id.
    pub async fn wait_for_refund_of(&self, id: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let intents = self
                .paysim
                .list_all(&self.http, "/v1/payment_intents")
                .await;
            let refunds = self.paysim.list_all(&self.http, "/v1/refunds").await;
            let charge = intents
                .iter()
                .find(|i| i["metadata"]["subscription_id"] == id && i["status"] == "succeeded");
            if let Some(charge) = charge {
                if refunds.iter().any(|r| r["payment_intent"] == charge["id"]) {
                    return charge["id"].as_str().unwrap().to_owned();
                }
            }
            assert!(
                Instant::now() < deadline,
                "no refunded charge of subscription {id} after 15 s (charge: {charge:?})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A plan's whole audit log (admin), page by page.
    pub async fn audit(&self, plan: &str) -> Vec<Value> {
        fetch_audit(&self.http, &self.fleet.url(0), plan)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A plan's whole audit log through `GET /api/plans/{id}/audit` (admin), following
/// `next_cursor`.
pub async fn fetch_audit(
    http: &reqwest::Client,
    api: &str,
    plan: &str,
) -> Result<Vec<Value>, String> {
    let mut audit: Vec<Value> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{api}/api/plans/{plan}/audit?limit=100");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page = get_json(http, &url, true).await?;
        audit.extend(page["data"].as_array().cloned().unwrap_or_default());
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            return Ok(audit);
        }
    }
}

/// `GET url` (with the admin token if `admin`): up to five tries, 200 ms apart; a 404 is
/// final.
pub async fn get_json(http: &reqwest::Client, url: &str, admin: bool) -> Result<Value, String> {
    let mut last = String::new();
    for _ in 0..5 {
        let mut req = http.get(url).timeout(REQUEST_TIMEOUT);
        if admin {
            req = req.bearer_auth(TOKEN);
        }
        match req.send().await {
            Ok(res) if res.status().is_success() => {
                return res.json().await.map_err(|e| format!("GET {url}: {e}"))
            }
            Ok(res) if res.status() == 404 => return Err(format!("GET {url}: 404")),
            Ok(res) => last = format!("GET {url}: {}", res.status()),
            Err(e) => last = format!("GET {url}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last)
}
