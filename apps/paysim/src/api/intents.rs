//! PaymentIntents: created and confirmed in one call (`confirm=true`), or created
//! unconfirmed, then confirmed, authenticated (3-D Secure, see `authenticate.rs`) or
//! cancelled. Every change is written to the ledger, then announced to the webhook
//! endpoints.

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use rand::Rng;
use serde_json::{json, Value};

use super::{
    authorized, error, faults, list_param, metadata, new_id, not_found, now, param, post, respond,
    Form, MaybeForm, Outcome, Sim,
};
use crate::{
    ledger::{PaymentIntent, State},
    Simulator,
};

/// What one of Stripe's test payment methods does when an intent is confirmed with it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Card {
    Pays,
    Declines(Decline),
    /// Asks for 3-D Secure.
    Authenticates,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Decline {
    code: &'static str,
    decline_code: &'static str,
    message: &'static str,
}

fn card(pm: &str) -> Option<Card> {
    let declines = |decline_code, message| {
        Some(Card::Declines(Decline {
            code: "card_declined",
            decline_code,
            message,
        }))
    };
    match pm {
        "pm_card_visa" | "pm_card_mastercard" | "pm_card_amex" | "pm_card_timeout" => {
            Some(Card::Pays)
        }
        "pm_card_chargeDeclined" => declines("generic_decline", "Your card was declined."),
        "pm_card_insufficientFunds" => {
            declines("insufficient_funds", "Your card has insufficient funds.")
        }
        "pm_card_authenticationRequired" | "pm_card_threeDSecure2Required" => {
            Some(Card::Authenticates)
        }
        _ => None,
    }
}

/// What a confirmation did.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Confirmed {
    Succeeded,
    RequiresAction,
    Declined(Decline),
}

/// How a confirmation is asked for.
struct Options {
    /// `error_on_requires_action=true`: a 3-D Secure card is a decline.
    error_on_requires_action: bool,
    return_url: Option<String>,
    /// Where the customer authenticates: this simulator's own page.
    authenticate_url: String,
}

impl Options {
    fn of(req: &HttpRequest, params: &[(String, String)], intent_id: &str) -> Self {
        let info = req.connection_info();
        Self {
            error_on_requires_action: param(params, "error_on_requires_action") == Some("true"),
            return_url: param(params, "return_url").map(str::to_owned),
            authenticate_url: format!(
                "{}://{}/v1/payment_intents/{intent_id}/authenticate",
                info.scheme(),
                info.host()
            ),
        }
    }
}

fn payment_method_object(pm: &str) -> Value {
    json!({ "id": pm, "object": "payment_method", "type": "card" })
}

/// The intent is paid.
pub(super) fn succeed(intent: &mut PaymentIntent) {
    intent.status = "succeeded".into();
    intent.amount_received = intent.amount;
    intent.latest_charge = Some(new_id("ch"));
    intent.last_payment_error = None;
    intent.next_action = None;
}

/// The intent waits for another payment method, because of `error`.
pub(super) fn fail(intent: &mut PaymentIntent, error: Value) {
    intent.status = "requires_payment_method".into();
    intent.payment_method = None;
    intent.last_payment_error = Some(error);
    intent.next_action = None;
}

/// Confirms `intent` with `pm`, whose behaviour is `card`: Stripe's transitions.
fn apply(intent: &mut PaymentIntent, pm: &str, card: Card, options: &Options) -> Confirmed {
    intent.payment_method = Some(pm.to_owned());
    let decline = match card {
        Card::Pays => {
            succeed(intent);
            return Confirmed::Succeeded;
        }
        Card::Authenticates if !options.error_on_requires_action => {
            intent.status = "requires_action".into();
            intent.last_payment_error = None;
            intent.next_action = Some(json!({
                "type": "redirect_to_url",
                "redirect_to_url": { "url": options.authenticate_url, "return_url": options.return_url },
            }));
            return Confirmed::RequiresAction;
        }
        Card::Authenticates => Decline {
            code: "card_declined",
            decline_code: "authentication_required",
            message: "Your card was declined. This transaction requires authentication.",
        },
        Card::Declines(d) => d,
    };
    fail(
        intent,
        json!({
            "type": "card_error", "code": decline.code, "decline_code": decline.decline_code,
            "message": decline.message, "payment_method": payment_method_object(pm),
        }),
    );
    Confirmed::Declined(decline)
}

/// Writes `intent` to the ledger; its JSON, or a 500 if the ledger could not be written.
pub(super) fn store(state: &mut State, intent: PaymentIntent) -> Result<Value, Outcome> {
    let object = serde_json::to_value(&intent).unwrap_or(Value::Null);
    match state.put_intent(intent) {
        Ok(()) => Ok(object),
        Err(e) => {
            tracing::error!(error = %e, "could not record a payment intent");
            Err(error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                None,
                "The ledger could not be written.",
                json!({}),
            )
            .into())
        }
    }
}

pub(super) fn invalid(param: &str, message: &str) -> Outcome {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        Some("parameter_invalid"),
        message,
        json!({ "param": param }),
    )
    .into()
}

fn no_such_payment_method(pm: &str) -> Outcome {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        Some("resource_missing"),
        &format!("No such PaymentMethod: '{pm}'"),
        json!({ "param": "payment_method" }),
    )
    .into()
}

/// 400 `payment_intent_unexpected_state`, with the intent, as Stripe answers.
pub(super) fn unexpected_state(object: Value, message: &str) -> Outcome {
    error(
        StatusCode::BAD_REQUEST,
        "invalid_request_error",
        Some("payment_intent_unexpected_state"),
        message,
        json!({ "payment_intent": object }),
    )
    .into()
}

/// Announces a confirmation and answers it.
fn finish(sim: &Simulator, object: Value, done: Confirmed, pm: &str) -> Outcome {
    let kind = match done {
        Confirmed::Succeeded => "payment_intent.succeeded",
        Confirmed::RequiresAction => "payment_intent.requires_action",
        Confirmed::Declined(_) => "payment_intent.payment_failed",
    };
    sim.webhooks.emit(kind, &object);
    match done {
        Confirmed::Succeeded => {
            let drop = pm == "pm_card_timeout"
                || (sim.faults.drop_rate > 0.0
                    && rand::thread_rng().gen_bool(sim.faults.drop_rate.min(1.0)));
            Outcome {
                status: StatusCode::OK,
                body: object,
                hold: drop,
            }
        }
        Confirmed::RequiresAction => (StatusCode::OK, object).into(),
        Confirmed::Declined(d) => error(
            StatusCode::PAYMENT_REQUIRED,
            "card_error",
            Some(d.code),
            d.message,
            json!({
                "decline_code": d.decline_code,
                "payment_intent": object,
                "payment_method": payment_method_object(pm),
            }),
        )
        .into(),
    }
}

/// `POST /v1/payment_intents`
pub(super) async fn create(req: HttpRequest, sim: Sim, form: Form) -> HttpResponse {
    post(&sim, &req, &form.into_inner(), create_intent).await
}

fn create_intent(sim: &Simulator, req: &HttpRequest, params: &[(String, String)]) -> Outcome {
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
    let confirm = match param(params, "confirm") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => return invalid("confirm", &format!("Invalid boolean: {other}")),
    };
    let pm = param(params, "payment_method");
    let card = match pm.map(|pm| (pm, card(pm))) {
        Some((pm, None)) => return no_such_payment_method(pm),
        Some((_, Some(card))) => Some(card),
        None => None,
    };
    let mut types = list_param(params, "payment_method_types");
    if types.is_empty() {
        types.push("card".into());
    }
    let id = new_id("pi");
    let mut intent = PaymentIntent {
        client_secret: Some(format!("{id}_secret_{}", uuid::Uuid::new_v4().simple())),
        id,
        object: "payment_intent".into(),
        amount,
        amount_received: 0,
        currency: currency.to_owned(),
        status: if pm.is_some() {
            "requires_confirmation"
        } else {
            "requires_payment_method"
        }
        .into(),
        payment_method: pm.map(str::to_owned),
        confirmation_method: "automatic".into(),
        payment_method_types: types,
        capture_method: "automatic".into(),
        next_action: None,
        canceled_at: None,
        cancellation_reason: None,
        metadata: metadata(params),
        description: param(params, "description").map(str::to_owned),
        created: now(),
        latest_charge: None,
        last_payment_error: None,
        livemode: false,
    };
    let (Some(pm), Some(card), true) = (pm, card, confirm) else {
        if confirm {
            return invalid("payment_method", "Missing required param: payment_method.");
        }
        return match store(&mut sim.state.lock(), intent) {
            Ok(object) => (StatusCode::OK, object).into(),
            Err(out) => out,
        };
    };
    let options = Options::of(req, params, &intent.id);
    let done = apply(&mut intent, pm, card, &options);
    match store(&mut sim.state.lock(), intent) {
        Ok(object) => finish(sim, object, done, pm),
        Err(out) => out,
    }
}

pub(super) fn params_of(form: MaybeForm) -> Vec<(String, String)> {
    form.map(web::Form::into_inner).unwrap_or_default()
}

/// `POST /v1/payment_intents/{id}/confirm`
pub(super) async fn confirm(
    req: HttpRequest,
    sim: Sim,
    id: web::Path<String>,
    form: MaybeForm,
) -> HttpResponse {
    post(&sim, &req, &params_of(form), |sim, req, params| {
        confirm_intent(sim, req, params, &id)
    })
    .await
}

fn confirm_intent(
    sim: &Simulator,
    req: &HttpRequest,
    params: &[(String, String)],
    id: &str,
) -> Outcome {
    let mut state = sim.state.lock();
    let Some(mut intent) = state.intent(id).cloned() else {
        return not_found("payment_intent", id, "intent").into();
    };
    if !matches!(
        intent.status.as_str(),
        "requires_payment_method" | "requires_confirmation" | "requires_action"
    ) {
        let message = format!(
            "You cannot confirm this PaymentIntent because it has a status of {}.",
            intent.status
        );
        return unexpected_state(serde_json::to_value(&intent).unwrap_or_default(), &message);
    }
    let Some(pm) = param(params, "payment_method")
        .map(str::to_owned)
        .or_else(|| intent.payment_method.clone())
    else {
        return unexpected_state(
            serde_json::to_value(&intent).unwrap_or_default(),
            "You cannot confirm this PaymentIntent because it's missing a payment method. \
             Specify a payment_method.",
        );
    };
    let Some(card) = card(&pm) else {
        return no_such_payment_method(&pm);
    };
    let done = apply(&mut intent, &pm, card, &Options::of(req, params, id));
    let object = match store(&mut state, intent) {
        Ok(object) => object,
        Err(out) => return out,
    };
    drop(state);
    finish(sim, object, done, &pm)
}

/// `GET /v1/payment_intents/{id}`
pub(super) async fn get(req: HttpRequest, sim: Sim, id: web::Path<String>) -> HttpResponse {
    if let Err(res) = authorized(&sim, &req) {
        return *res;
    }
    if let Err(res) = faults(&sim).await {
        return res;
    }
    let found = sim.state.lock().intent(&id).cloned();
    respond(match found {
        Some(intent) => (
            StatusCode::OK,
            serde_json::to_value(intent).unwrap_or(Value::Null),
        ),
        None => not_found("payment_intent", &id, "intent"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripes_test_cards_pay_decline_or_ask_for_3ds_and_others_are_unknown() {
        assert_eq!(card("pm_card_visa"), Some(Card::Pays));
        assert_eq!(card("pm_card_timeout"), Some(Card::Pays));
        assert!(
            matches!(card("pm_card_insufficientFunds"), Some(Card::Declines(d)) if d.decline_code == "insufficient_funds")
        );
        assert_eq!(
            card("pm_card_threeDSecure2Required"),
            Some(Card::Authenticates)
        );
        assert_eq!(card("pm_card_nope"), None);
    }
}
