//! The HTTP side of the simulator: Stripe's paths, form-encoded requests, JSON objects and
//! error shapes, and its `Idempotency-Key` rules.

use std::{collections::BTreeMap, sync::Arc};

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::{
    ledger::{IdempotentResponse, PaymentIntent, Refund},
    Simulator,
};

type Sim = web::Data<Arc<Simulator>>;
type Form = web::Form<Vec<(String, String)>>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/payment_intents", web::post().to(create_intent))
        .route("/v1/payment_intents", web::get().to(list_intents))
        .route("/v1/payment_intents/search", web::get().to(search_intents))
        .route("/v1/payment_intents/{id}", web::get().to(get_intent))
        .route("/v1/refunds", web::post().to(create_refund))
        .route("/v1/refunds", web::get().to(list_refunds));
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

fn error(
    status: StatusCode,
    kind: &str,
    code: Option<&str>,
    message: &str,
    extra: Value,
) -> (StatusCode, Value) {
    let mut e = Map::new();
    e.insert("type".into(), json!(kind));
    if let Some(code) = code {
        e.insert("code".into(), json!(code));
    }
    e.insert("message".into(), json!(message));
    if let Value::Object(extra) = extra {
        e.extend(extra);
    }
    (status, json!({ "error": e }))
}

fn respond((status, body): (StatusCode, Value)) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(body.to_string())
}

/// Stripe answers 401 without a bearer key.
fn authorized(req: &HttpRequest) -> Result<(), Box<HttpResponse>> {
    let ok = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|k| !k.trim().is_empty());
    if ok {
        Ok(())
    } else {
        Err(Box::new(respond(error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            "You did not provide an API key. Provide it in the Authorization header as 'Bearer <key>'.",
            json!({}),
        ))))
    }
}

/// Latency first, then the injected 500s (which change nothing).
async fn faults(sim: &Simulator) -> Result<(), HttpResponse> {
    if !sim.faults.latency.is_zero() {
        tokio::time::sleep(sim.faults.latency).await;
    }
    if sim.faults.error_rate > 0.0 && rand::thread_rng().gen_bool(sim.faults.error_rate.min(1.0)) {
        return Err(respond(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            None,
            "An unexpected error occurred in the simulator (injected fault).",
            json!({}),
        )));
    }
    Ok(())
}

/// The canonical form of a request's parameters, for idempotency comparisons.
fn fingerprint(path: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<_> = params.iter().collect();
    sorted.sort();
    let mut h = Sha256::new();
    h.update(path);
    for (k, v) in sorted {
        h.update(format!("\n{k}={v}"));
    }
    hex::encode(h.finalize())
}

/// What an idempotent POST does with its key before doing any work.
enum Gate {
    /// No key: just run.
    Open,
    /// First request with this key: run, then record under the key.
    First(String, String),
    /// Answer now (a replay, a mismatch, or a request in progress).
    Done(HttpResponse),
}

fn gate(sim: &Simulator, req: &HttpRequest, params: &[(String, String)]) -> Gate {
    let Some(key) = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
    else {
        return Gate::Open;
    };
    let print = fingerprint(req.path(), params);
    let mut state = sim.state.lock();
    if let Some(stored) = state.idempotency.get(&key) {
        if stored.params != print {
            return Gate::Done(respond(error(
                StatusCode::BAD_REQUEST,
                "idempotency_error",
                None,
                &format!("Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '{key}' if you meant to execute a different request."),
                json!({}),
            )));
        }
        let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
        return Gate::Done(
            HttpResponse::build(status)
                .content_type("application/json")
                .insert_header(("Idempotent-Replayed", "true"))
                .insert_header(("Original-Request", key.as_str()))
                .body(stored.body.clone()),
        );
    }
    if !state.in_progress.insert(key.clone()) {
        return Gate::Done(respond(error(
            StatusCode::CONFLICT,
            "idempotency_error",
            Some("idempotency_key_in_use"),
            "There is currently another in-progress request using this Stripe Idempotency Key. Please try again later.",
            json!({}),
        )));
    }
    Gate::First(key, print)
}

/// Records the answer of a first request under its key and lets the key go.
fn remember(sim: &Simulator, key: String, params: String, status: StatusCode, body: &Value) {
    let mut state = sim.state.lock();
    state.in_progress.remove(&key);
    // Stripe does not store answers to requests that failed with a 500.
    if status.is_server_error() {
        return;
    }
    let response = IdempotentResponse {
        params,
        status: status.as_u16(),
        body: body.to_string(),
    };
    if let Err(e) = state.put_response(key, response) {
        tracing::error!(error = %e, "could not record an idempotent response");
    }
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn metadata(params: &[(String, String)]) -> Map<String, Value> {
    params
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("metadata[")
                .and_then(|rest| rest.strip_suffix(']'))
                .map(|name| (name.to_owned(), json!(v)))
        })
        .collect()
}

async fn create_intent(req: HttpRequest, sim: Sim, form: Form) -> HttpResponse {
    if let Err(res) = authorized(&req) {
        return *res;
    }
    if let Err(res) = faults(&sim).await {
        return res;
    }
    let params = form.into_inner();
    let (key, print) = match gate(&sim, &req, &params) {
        Gate::Done(res) => return res,
        Gate::First(key, print) => (Some(key), print),
        Gate::Open => (None, String::new()),
    };
    let (status, body, charged) = confirm_intent(&sim, &params);
    if let Some(key) = key {
        remember(&sim, key, print, status, &body);
    }
    let pm = param(&params, "payment_method").unwrap_or("");
    let drop = charged
        && (pm == "pm_card_timeout"
            || (sim.faults.drop_rate > 0.0
                && rand::thread_rng().gen_bool(sim.faults.drop_rate.min(1.0))));
    if drop {
        tracing::info!("charged, holding the answer back (dropped answer)");
        tokio::time::sleep(sim.faults.drop_hang).await;
    }
    respond((status, body))
}

/// Creates and confirms a PaymentIntent; the third value says whether money moved.
fn confirm_intent(sim: &Simulator, params: &[(String, String)]) -> (StatusCode, Value, bool) {
    let invalid = |param: &str, message: &str| {
        let (s, b) = error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_invalid"),
            message,
            json!({ "param": param }),
        );
        (s, b, false)
    };
    let Some(amount) = param(params, "amount").and_then(|a| a.parse::<i64>().ok()) else {
        return invalid("amount", "Missing or invalid required param: amount.");
    };
    if amount < 1 {
        return invalid("amount", "Amount must be at least 1.");
    }
    let currency = param(params, "currency").unwrap_or("");
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_lowercase()) {
        return invalid("currency", "Missing or invalid required param: currency.");
    }
    if param(params, "confirm") != Some("true") {
        return invalid("confirm", "The simulator only supports confirm=true.");
    }
    let Some(pm) = param(params, "payment_method") else {
        return invalid("payment_method", "Missing required param: payment_method.");
    };
    let decline = match pm {
        "pm_card_visa" | "pm_card_mastercard" | "pm_card_amex" | "pm_card_timeout" => None,
        "pm_card_chargeDeclined" => Some((
            "card_declined",
            "generic_decline",
            "Your card was declined.",
        )),
        "pm_card_insufficientFunds" => Some((
            "card_declined",
            "insufficient_funds",
            "Your card has insufficient funds.",
        )),
        other => {
            let (s, b) = error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("resource_missing"),
                &format!("No such PaymentMethod: '{other}'"),
                json!({ "param": "payment_method" }),
            );
            return (s, b, false);
        }
    };
    let mut intent = PaymentIntent {
        id: new_id("pi"),
        object: "payment_intent".into(),
        amount,
        amount_received: 0,
        currency: currency.to_owned(),
        status: "requires_payment_method".into(),
        payment_method: pm.to_owned(),
        confirmation_method: "automatic".into(),
        metadata: metadata(params),
        description: param(params, "description").map(str::to_owned),
        created: now(),
        latest_charge: None,
        last_payment_error: None,
        livemode: false,
    };
    let charged = decline.is_none();
    match decline {
        None => {
            intent.status = "succeeded".into();
            intent.amount_received = amount;
            intent.latest_charge = Some(new_id("ch"));
        }
        Some((code, decline_code, message)) => {
            intent.last_payment_error = Some(json!({
                "type": "card_error", "code": code, "decline_code": decline_code, "message": message,
            }));
        }
    }
    if let Err(e) = sim.state.lock().put_intent(intent.clone()) {
        tracing::error!(error = %e, "could not record a payment intent");
        let (s, b) = error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            None,
            "The ledger could not be written.",
            json!({}),
        );
        return (s, b, false);
    }
    let object = serde_json::to_value(&intent).unwrap_or(Value::Null);
    match decline {
        None => (StatusCode::OK, object, charged),
        Some((code, decline_code, message)) => {
            let (s, b) = error(
                StatusCode::PAYMENT_REQUIRED,
                "card_error",
                Some(code),
                message,
                json!({ "decline_code": decline_code, "payment_intent": object }),
            );
            (s, b, false)
        }
    }
}

async fn get_intent(req: HttpRequest, sim: Sim, id: web::Path<String>) -> HttpResponse {
    if let Err(res) = authorized(&req) {
        return *res;
    }
    if let Err(res) = faults(&sim).await {
        return res;
    }
    match sim.state.lock().intent(&id) {
        Some(intent) => respond((
            StatusCode::OK,
            serde_json::to_value(intent).unwrap_or(Value::Null),
        )),
        None => respond(error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such payment_intent: '{id}'"),
            json!({ "param": "intent" }),
        )),
    }
}

#[derive(Deserialize)]
struct ListQuery {
    limit: Option<usize>,
    starting_after: Option<String>,
    payment_intent: Option<String>,
}

/// A Stripe list: newest first, `limit` 1–100 (10 by default), after `starting_after`.
fn page<T: serde::Serialize>(
    url: &str,
    items: Vec<(String, T)>,
    q: &ListQuery,
) -> Result<Value, Box<HttpResponse>> {
    let limit = q.limit.unwrap_or(10);
    if !(1..=100).contains(&limit) {
        return Err(Box::new(respond(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_invalid_integer"),
            "limit must be between 1 and 100.",
            json!({ "param": "limit" }),
        ))));
    }
    let start = match &q.starting_after {
        None => 0,
        Some(after) => match items.iter().position(|(id, _)| id == after) {
            Some(i) => i + 1,
            None => {
                return Err(Box::new(respond(error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    Some("resource_missing"),
                    &format!("No such object: '{after}'"),
                    json!({ "param": "starting_after" }),
                ))))
            }
        },
    };
    let total = items.len();
    let data: Vec<Value> = items
        .into_iter()
        .skip(start)
        .take(limit)
        .map(|(_, item)| serde_json::to_value(item).unwrap_or(Value::Null))
        .collect();
    Ok(json!({
        "object": "list",
        "url": url,
        "has_more": start + data.len() < total,
        "data": data,
    }))
}

async fn list_intents(req: HttpRequest, sim: Sim, q: web::Query<ListQuery>) -> HttpResponse {
    if let Err(res) = authorized(&req) {
        return *res;
    }
    let items: Vec<(String, PaymentIntent)> = sim
        .state
        .lock()
        .intents
        .iter()
        .rev()
        .map(|i| (i.id.clone(), i.clone()))
        .collect();
    match page("/v1/payment_intents", items, &q) {
        Ok(body) => respond((StatusCode::OK, body)),
        Err(res) => *res,
    }
}

#[derive(Deserialize)]
struct SearchQuery {
    query: String,
    limit: Option<usize>,
}

/// `metadata['key']:'value'` clauses joined by ` AND `.
fn parse_search(query: &str) -> Option<BTreeMap<String, String>> {
    query
        .split(" AND ")
        .map(|clause| {
            let rest = clause.trim().strip_prefix("metadata[")?;
            let (name, value) = rest.split_once("]:")?;
            let unquote = |s: &str| {
                let s = s.trim();
                s.strip_prefix('\'')
                    .and_then(|s| s.strip_suffix('\''))
                    .or_else(|| s.strip_prefix('"').and_then(|s| s.strip_suffix('"')))
                    .map(str::to_owned)
            };
            Some((unquote(name)?, unquote(value)?))
        })
        .collect()
}

async fn search_intents(req: HttpRequest, sim: Sim, q: web::Query<SearchQuery>) -> HttpResponse {
    if let Err(res) = authorized(&req) {
        return *res;
    }
    if let Err(res) = faults(&sim).await {
        return res;
    }
    let Some(clauses) = parse_search(&q.query) else {
        return respond(error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_invalid"),
            "The simulator searches only metadata['key']:'value' clauses joined by AND.",
            json!({ "param": "query" }),
        ));
    };
    let limit = q.limit.unwrap_or(10).clamp(1, 100);
    let state = sim.state.lock();
    let data: Vec<&PaymentIntent> = state
        .intents
        .iter()
        .rev()
        .filter(|i| {
            clauses
                .iter()
                .all(|(k, v)| i.metadata.get(k).and_then(Value::as_str) == Some(v))
        })
        .take(limit)
        .collect();
    respond((
        StatusCode::OK,
        json!({ "object": "search_result", "url": "/v1/payment_intents/search", "has_more": false, "data": data }),
    ))
}

async fn create_refund(req: HttpRequest, sim: Sim, form: Form) -> HttpResponse {
    if let Err(res) = authorized(&req) {
        return *res;
    }
    if let Err(res) = faults(&sim).await {
        return res;
    }
    let params = form.into_inner();
    let (key, print) = match gate(&sim, &req, &params) {
        Gate::Done(res) => return res,
        Gate::First(key, print) => (Some(key), print),
        Gate::Open => (None, String::new()),
    };
    let (status, body) = refund(&sim, &params);
    if let Some(key) = key {
        remember(&sim, key, print, status, &body);
    }
    respond((status, body))
}

fn refund(sim: &Simulator, params: &[(String, String)]) -> (StatusCode, Value) {
    let Some(pi) = param(params, "payment_intent") else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("parameter_missing"),
            "Missing required param: payment_intent.",
            json!({ "param": "payment_intent" }),
        );
    };
    let mut state = sim.state.lock();
    let Some(intent) = state.intent(pi).cloned() else {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("resource_missing"),
            &format!("No such payment_intent: '{pi}'"),
            json!({ "param": "payment_intent" }),
        );
    };
    if intent.status != "succeeded" {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("payment_intent_unexpected_state"),
            &format!("This PaymentIntent ({pi}) does not have a successful charge to refund."),
            json!({ "param": "payment_intent" }),
        );
    }
    let left = intent.amount_received - state.refunded(pi);
    if left <= 0 {
        return error(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            Some("charge_already_refunded"),
            &format!(
                "Charge {} has already been refunded.",
                intent.latest_charge.clone().unwrap_or_default()
            ),
            json!({}),
        );
    }
    let refund = Refund {
        id: new_id("re"),
        object: "refund".into(),
        amount: left,
        currency: intent.currency.clone(),
        payment_intent: intent.id.clone(),
        charge: intent.latest_charge.clone(),
        status: "succeeded".into(),
        created: now(),
    };
    if let Err(e) = state.put_refund(refund.clone()) {
        tracing::error!(error = %e, "could not record a refund");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            None,
            "The ledger could not be written.",
            json!({}),
        );
    }
    (
        StatusCode::OK,
        serde_json::to_value(refund).unwrap_or(Value::Null),
    )
}

async fn list_refunds(req: HttpRequest, sim: Sim, q: web::Query<ListQuery>) -> HttpResponse {
    if let Err(res) = authorized(&req) {
        return *res;
    }
    let items: Vec<(String, Refund)> = sim
        .state
        .lock()
        .refunds
        .iter()
        .rev()
        .filter(|r| {
            q.payment_intent
                .as_ref()
                .is_none_or(|pi| &r.payment_intent == pi)
        })
        .map(|r| (r.id.clone(), r.clone()))
        .collect();
    match page("/v1/refunds", items, &q) {
        Ok(body) => respond((StatusCode::OK, body)),
        Err(res) => *res,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_queries_are_metadata_clauses_joined_by_and() {
        let q =
            parse_search("metadata['subscription_id']:'abc' AND metadata[\"k\"]:\"v\"").unwrap();
        assert_eq!(q["subscription_id"], "abc");
        assert_eq!(q["k"], "v");
        assert!(parse_search("status:'succeeded'").is_none());
    }

    #[test]
    fn the_fingerprint_ignores_parameter_order_but_not_values() {
        let a = vec![
            ("amount".to_owned(), "1".to_owned()),
            ("currency".to_owned(), "usd".to_owned()),
        ];
        let b = vec![
            ("currency".to_owned(), "usd".to_owned()),
            ("amount".to_owned(), "1".to_owned()),
        ];
        let c = vec![
            ("currency".to_owned(), "usd".to_owned()),
            ("amount".to_owned(), "2".to_owned()),
        ];
        assert_eq!(fingerprint("/p", &a), fingerprint("/p", &b));
        assert_ne!(fingerprint("/p", &a), fingerprint("/p", &c));
    }
}
