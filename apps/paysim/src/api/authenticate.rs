//! The simulated 3-D Secure page, where an intent in `requires_action` is sent
//! (`next_action.redirect_to_url.url`). `GET` shows a page with two buttons; `POST` with
//! `result=pass|fail` (form or query) passes or fails the check: the intent succeeds, or
//! waits for another payment method with `last_payment_error.code`
//! `payment_intent_authentication_failure`. It stands for the card issuer's page, so it
//! takes no API key. A browser (`Accept: text/html`) is then sent to the confirmation's
//! `return_url` with Stripe's query (`payment_intent`, `payment_intent_client_secret`,
//! `redirect_status`), or shown the result; other clients get the intent as JSON.

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{
    error, intents::fail, intents::store, intents::succeed, intents::unexpected_state, not_found,
    param, respond, MaybeForm, Sim,
};

#[derive(Deserialize)]
pub(super) struct ResultQuery {
    result: Option<String>,
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn html(status: StatusCode, title: &str, body: &str) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width\">\
             <title>{title}</title><style>body{{font-family:sans-serif;max-width:32em;margin:3em auto}}\
             button{{font-size:1em;padding:.5em 1em;margin-right:1em}}</style></head>\
             <body><h1>{title}</h1>\n{body}\n</body></html>\n"
        ))
}

fn wants_html(req: &HttpRequest) -> bool {
    req.headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// `GET /v1/payment_intents/{id}/authenticate`
pub(super) async fn page(sim: Sim, id: web::Path<String>) -> HttpResponse {
    render(&sim, &id)
}

fn render(sim: &Sim, id: &str) -> HttpResponse {
    let Some(intent) = sim.state.lock().intent(id).cloned() else {
        return html(
            StatusCode::NOT_FOUND,
            "No such payment",
            &format!("<p>There is no PaymentIntent {}.</p>", escape(id)),
        );
    };
    if intent.status != "requires_action" {
        return html(
            StatusCode::OK,
            "Nothing to authenticate",
            &format!(
                "<p>PaymentIntent {} is <code>{}</code>.</p>",
                escape(&intent.id),
                escape(&intent.status)
            ),
        );
    }
    let button = |result: &str, label: &str| {
        format!(
            "<form method=\"post\" style=\"display:inline\">\
             <input type=\"hidden\" name=\"result\" value=\"{result}\">\
             <button type=\"submit\">{label}</button></form>"
        )
    };
    html(
        StatusCode::OK,
        "3-D Secure test payment",
        &format!(
            "<p>seatkeeper-paysim: authenticate the payment of <strong>{} {}</strong> \
             (minor units) for PaymentIntent <code>{}</code>.</p>\n<p>{}{}</p>",
            intent.amount,
            escape(&intent.currency.to_uppercase()),
            escape(&intent.id),
            button("pass", "Complete authentication"),
            button("fail", "Fail authentication"),
        ),
    )
}

/// `POST /v1/payment_intents/{id}/authenticate` with `result=pass|fail`.
pub(super) async fn submit(
    req: HttpRequest,
    sim: Sim,
    id: web::Path<String>,
    form: MaybeForm,
    query: web::Query<ResultQuery>,
) -> HttpResponse {
    let params = form.map(web::Form::into_inner).unwrap_or_default();
    let result = param(&params, "result").or(query.result.as_deref());
    let pass = match result {
        Some("pass") => true,
        Some("fail") => false,
        _ => {
            return respond(error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                Some("parameter_invalid"),
                "result must be 'pass' or 'fail'.",
                json!({ "param": "result" }),
            ))
        }
    };
    let mut state = sim.state.lock();
    let Some(mut intent) = state.intent(&id).cloned() else {
        return respond(not_found("payment_intent", &id, "intent"));
    };
    if intent.status != "requires_action" {
        drop(state);
        if wants_html(&req) {
            return render(&sim, &id);
        }
        let message = format!(
            "This PaymentIntent has a status of {}: there is nothing to authenticate.",
            intent.status
        );
        let out = unexpected_state(serde_json::to_value(&intent).unwrap_or_default(), &message);
        return respond((out.status, out.body));
    }
    let return_url = intent
        .next_action
        .as_ref()
        .and_then(|n| n.pointer("/redirect_to_url/return_url"))
        .and_then(Value::as_str)
        .map(str::to_owned);
    if pass {
        succeed(&mut intent);
    } else {
        let pm = intent.payment_method.clone().unwrap_or_default();
        fail(
            &mut intent,
            json!({
                "type": "invalid_request_error",
                "code": "payment_intent_authentication_failure",
                "message": "The provided PaymentMethod has failed authentication. You can provide \
                            payment_method_data or a new PaymentMethod to attempt to fulfill this \
                            PaymentIntent again.",
                "payment_method": { "id": pm, "object": "payment_method", "type": "card" },
            }),
        );
    }
    let secret = intent.client_secret.clone().unwrap_or_default();
    let object = match store(&mut state, intent) {
        Ok(object) => object,
        Err(out) => return respond((out.status, out.body)),
    };
    drop(state);
    let kind = if pass {
        "payment_intent.succeeded"
    } else {
        "payment_intent.payment_failed"
    };
    sim.webhooks.emit(kind, &object);
    if !wants_html(&req) {
        return respond((StatusCode::OK, object));
    }
    let status = if pass { "succeeded" } else { "failed" };
    match return_url {
        Some(url) => {
            let sep = if url.contains('?') { '&' } else { '?' };
            HttpResponse::SeeOther()
                .insert_header((
                    "Location",
                    format!(
                        "{url}{sep}payment_intent={id}&payment_intent_client_secret={secret}\
                         &redirect_status={status}"
                    ),
                ))
                .finish()
        }
        None => html(
            StatusCode::OK,
            if pass {
                "Authentication complete"
            } else {
                "Authentication failed"
            },
            &format!(
                "<p>PaymentIntent <code>{}</code>: <code>{status}</code>. You can close this \
                 page.</p>",
                escape(&id)
            ),
        ),
    }
}
