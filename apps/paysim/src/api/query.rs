//! Reading PaymentIntents: Stripe's list and its search by metadata.

use std::collections::BTreeMap;

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{authorized, error, faults, page, respond, ListQuery, Sim};
use crate::ledger::PaymentIntent;

pub(super) async fn list_intents(
    req: HttpRequest,
    sim: Sim,
    q: web::Query<ListQuery>,
) -> HttpResponse {
    if let Err(res) = authorized(&sim, &req) {
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
pub(super) struct SearchQuery {
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

pub(super) async fn search_intents(
    req: HttpRequest,
    sim: Sim,
    q: web::Query<SearchQuery>,
) -> HttpResponse {
    if let Err(res) = authorized(&sim, &req) {
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
}
