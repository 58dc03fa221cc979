//! The HTTP side of the simulator: Stripe's paths, form-encoded requests, JSON objects and
//! error shapes, and its `Idempotency-Key` rules.

mod authenticate;
mod cancel;
mod intents;
mod query;
mod refunds;
mod webhooks;

use std::sync::Arc;

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use rand::Rng;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::{ledger::IdempotentResponse, Simulator};

type Sim = web::Data<Arc<Simulator>>;
type Form = web::Form<Vec<(String, String)>>;
/// A form that may be absent (a POST without parameters, or with a query string only).
type MaybeForm = Option<web::Form<Vec<(String, String)>>>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/v1/payment_intents", web::post().to(intents::create))
        .route("/v1/payment_intents", web::get().to(query::list_intents))
        .route(
            "/v1/payment_intents/search",
            web::get().to(query::search_intents),
        )
        .route("/v1/payment_intents/{id}", web::get().to(intents::get))
        .route(
            "/v1/payment_intents/{id}/confirm",
            web::post().to(intents::confirm),
        )
        .route(
            "/v1/payment_intents/{id}/cancel",
            web::post().to(cancel::cancel),
        )
        .route(
            "/v1/payment_intents/{id}/authenticate",
            web::get().to(authenticate::page),
        )
        .route(
            "/v1/payment_intents/{id}/authenticate",
            web::post().to(authenticate::submit),
        )
        .route("/v1/refunds", web::post().to(refunds::create))
        .route("/v1/refunds", web::get().to(refunds::list))
        .route("/v1/webhook_endpoints", web::post().to(webhooks::create))
        .route("/v1/webhook_endpoints", web::get().to(webhooks::list))
        .route("/v1/webhook_endpoints/{id}", web::get().to(webhooks::get))
        .route(
            "/v1/webhook_endpoints/{id}",
            web::delete().to(webhooks::delete),
        )
        .route(
            "/v1/_sim/webhook_deliveries",
            web::get().to(webhooks::deliveries),
        );
}

fn now() -> i64 {
    crate::webhooks::now()
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// What a POST did: its answer, and whether to hold that answer back (a dropped answer).
struct Outcome {
    status: StatusCode,
    body: Value,
    hold: bool,
}

impl From<(StatusCode, Value)> for Outcome {
    fn from((status, body): (StatusCode, Value)) -> Self {
        Self {
            status,
            body,
            hold: false,
        }
    }
}

/// A POST of Stripe's API: the key is checked, faults are injected, and `work` runs at most
/// once per `Idempotency-Key` (a retry with the key gets the recorded answer).
async fn post(
    sim: &Simulator,
    req: &HttpRequest,
    params: &[(String, String)],
    work: impl FnOnce(&Simulator, &HttpRequest, &[(String, String)]) -> Outcome,
) -> HttpResponse {
    if let Err(res) = authorized(sim, req) {
        return *res;
    }
    if let Err(res) = faults(sim).await {
        return res;
    }
    let (key, print) = match gate(sim, req, params) {
        Gate::Done(res) => return res,
        Gate::First(key, print) => (Some(key), print),
        Gate::Open => (None, String::new()),
    };
    let out = work(sim, req, params);
    if let Some(key) = key {
        remember(sim, key, print, out.status, &out.body);
    }
    if out.hold {
        tracing::info!("done, holding the answer back (dropped answer)");
        tokio::time::sleep(sim.faults.drop_hang).await;
    }
    respond((out.status, out.body))
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

/// Stripe answers 401 without a bearer key, and with a key other than the simulator's
/// (when it has one: [`Simulator::with_secret_key`]). Like Stripe, the error's `type` is
/// `invalid_request_error`; clients tell it by the 401 (stripe-python raises
/// `AuthenticationError`).
fn authorized(sim: &Simulator, req: &HttpRequest) -> Result<(), Box<HttpResponse>> {
    let key = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let message = match (key, &sim.secret_key) {
        (None, _) => "You did not provide an API key. Provide it in the Authorization header as 'Bearer <key>'.".to_owned(),
        (Some(given), Some(expected)) if given != expected => {
            let tail = given.get(given.len().saturating_sub(4)..).unwrap_or("");
            format!("Invalid API Key provided: ****{tail}")
        }
        (Some(_), _) => return Ok(()),
    };
    Err(Box::new(respond(error(
        StatusCode::UNAUTHORIZED,
        "invalid_request_error",
        None,
        &message,
        json!({}),
    ))))
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

/// A list parameter, sent as `name[]=a&name[]=b` or as stripe-python does,
/// `name[0]=a&name[1]=b`.
fn list_param(params: &[(String, String)], name: &str) -> Vec<String> {
    params
        .iter()
        .filter(|(k, _)| {
            k.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix('['))
                .and_then(|rest| rest.strip_suffix(']'))
                .is_some_and(|i| i.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|(_, v)| v.clone())
        .collect()
}

fn not_found(kind: &str, id: &str, param: &str) -> (StatusCode, Value) {
    error(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such {kind}: '{id}'"),
        json!({ "param": param }),
    )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_parameters_come_with_empty_or_numbered_brackets() {
        let p = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let params = vec![
            p("enabled_events[0]", "a"),
            p("enabled_events[]", "b"),
            p("enabled_events[x]", "no"),
            p("enabled_events", "no"),
            p("other[0]", "no"),
        ];
        assert_eq!(list_param(&params, "enabled_events"), ["a", "b"]);
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
