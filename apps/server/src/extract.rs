//! Turning requests into validated input: JSON bodies with field-level errors, list
//! parameters and the `Idempotency-Key` header. Every failure
//! is an [`ApiError`] 4xx that names what is wrong.

use actix_web::{http::header, HttpRequest};
use seatkeeper_domain::{IdempotencyKey, InvalidValue, Limit, PageRequest};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::problem::{ApiError, Code, FieldError};

/// Parses a JSON request body into `T`, naming the field at fault on failure.
///
/// A body that parses is read once, by serde_json alone; only a body that fails is read
/// again with `serde_path_to_error` (which allocates the name of every key it passes)
/// to say which field is wrong.
pub fn json_body<'a, T: Deserialize<'a>>(req: &HttpRequest, body: &'a [u8]) -> Result<T, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !is_json(content_type) {
        return Err(ApiError::new(
            Code::UnsupportedMediaType,
            format!(
                "the body must be JSON sent as 'Content-Type: application/json' (got '{content_type}')"
            ),
        ));
    }
    // serde would also read a struct from a JSON array; only objects are accepted.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::invalid(vec![FieldError::new(
            "body",
            "must be a JSON object",
        )]));
    }
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let message = strip_position(&inner.to_string());
        if inner.is_syntax() || inner.is_eof() {
            return ApiError::new(
                Code::InvalidRequest,
                format!("the body is not valid JSON: {message}"),
            );
        }
        let field = if path == "." {
            backticked(&message).unwrap_or_else(|| "body".into())
        } else {
            path
        };
        ApiError::invalid(vec![FieldError::new(field, message)])
    })
}

/// Whether a `Content-Type` names JSON: `application/json` or any `…+json`, in any
/// case, parameters ignored.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let json_suffix = essence
        .len()
        .checked_sub(5)
        .and_then(|i| essence.get(i..))
        .is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json"));
    essence.eq_ignore_ascii_case("application/json") || json_suffix
}

/// serde_json appends " at line L column C"; the field name says more to a client.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// The field named in "missing field `x`" or "unknown field `x`, expected …".
fn backticked(message: &str) -> Option<String> {
    let start = message.find('`')? + 1;
    let end = start + message[start..].find('`')?;
    Some(message[start..end].to_owned())
}

/// Collects field errors while converting a request DTO into domain values.
#[derive(Default)]
pub struct Fields {
    errors: Vec<FieldError>,
}

impl Fields {
    /// Keeps the value, or records why `field` is invalid.
    pub fn check<T>(&mut self, field: &str, result: Result<T, InvalidValue>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.errors.push(FieldError::new(field, e.0));
                None
            }
        }
    }

    /// Like [`Fields::check`] for an optional field.
    pub fn check_opt<T, U>(
        &mut self,
        field: &str,
        value: Option<U>,
        parse: impl FnOnce(U) -> Result<T, InvalidValue>,
    ) -> Option<T> {
        value.and_then(|v| self.check(field, parse(v)))
    }

    /// A 400 when any field failed.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }

    /// The 400 naming every field that failed (called when some value is missing).
    pub fn into_error(self) -> ApiError {
        ApiError::invalid(self.errors)
    }
}

/// `?limit=&cursor=` of a list whose cursor is an id: the plans (a plan id) and a
/// customer's subscriptions (a subscription id). Read as strings, so that a bad value
/// is answered as a field error naming it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// How many items to return, from 1 to 100. Anything else answers 400
    /// `invalid_request` naming `limit`.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page, as given: the id of the last item of that
    /// page (a UUID); the page starts after it. Any other value answers 400
    /// `invalid_request` naming `cursor`.
    #[param(value_type = Option<String>, format = Uuid)]
    pub cursor: Option<String>,
}

impl ListQuery {
    /// Validates the parameters, parsing the cursor with `parse_cursor`.
    pub fn page<C>(
        &self,
        parse_cursor: impl FnOnce(&str) -> Result<C, InvalidValue>,
    ) -> Result<PageRequest<C>, ApiError> {
        page(self.limit.as_deref(), self.cursor.as_deref(), parse_cursor)
    }
}

/// `?limit=&cursor=` of a plan's audit log, whose cursor is a sequence number. Read as
/// strings, so that a bad value is answered as a field error naming it.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SeqListQuery {
    /// How many items to return, from 1 to 100. Anything else answers 400
    /// `invalid_request` naming `limit`.
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100, default = 20)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page, as given: the `seq` of the last entry of
    /// that page, in decimal; the page starts after it. Any other value answers 400
    /// `invalid_request` naming `cursor`.
    #[param(value_type = Option<i64>, minimum = 0)]
    pub cursor: Option<String>,
}

impl SeqListQuery {
    /// Validates the parameters.
    pub fn page(&self) -> Result<PageRequest<u64>, ApiError> {
        page(self.limit.as_deref(), self.cursor.as_deref(), |c| {
            // What the document says: a non-negative int64 (u64 would take more).
            c.parse::<i64>()
                .ok()
                .and_then(|seq| u64::try_from(seq).ok())
                .ok_or_else(|| InvalidValue::new("not a sequence number"))
        })
    }
}

/// Validates `limit` and `cursor`, parsing the cursor with `parse_cursor`.
fn page<C>(
    limit: Option<&str>,
    cursor: Option<&str>,
    parse_cursor: impl FnOnce(&str) -> Result<C, InvalidValue>,
) -> Result<PageRequest<C>, ApiError> {
    let mut fields = Fields::default();
    let limit = match limit {
        None => Some(Limit::DEFAULT),
        Some(s) => fields.check(
            "limit",
            s.parse::<i64>()
                .map_err(|_| {
                    InvalidValue::new(format!("must be an integer from 1 to {}", Limit::MAX))
                })
                .and_then(Limit::new),
        ),
    };
    let after = match cursor {
        None => Some(None),
        Some(c) => fields
            .check(
                "cursor",
                parse_cursor(c).map_err(|_| {
                    InvalidValue::new(
                        "is not a cursor this list returned (use next_cursor as given)",
                    )
                }),
            )
            .map(Some),
    };
    fields.finish()?;
    Ok(PageRequest {
        after: after.flatten(),
        limit: limit.unwrap_or_default(),
    })
}

/// The `Idempotency-Key` header, validated (rows 1 and 2 of idempotency.md).
pub fn idempotency_key(req: &HttpRequest) -> Result<IdempotencyKey, ApiError> {
    let mut values = req.headers().get_all("idempotency-key");
    let Some(value) = values.next() else {
        return Err(ApiError::new(
            Code::IdempotencyKeyMissing,
            "purchases need an Idempotency-Key header: a unique value per purchase, resent unchanged on every retry",
        ));
    };
    if values.next().is_some() {
        return Err(ApiError::new(
            Code::IdempotencyKeyInvalid,
            "send exactly one Idempotency-Key header",
        ));
    }
    let text = value.to_str().map_err(|_| {
        ApiError::new(
            Code::IdempotencyKeyInvalid,
            "the Idempotency-Key header must be printable ASCII",
        )
    })?;
    IdempotencyKey::parse(text).map_err(|e| {
        ApiError::new(
            Code::IdempotencyKeyInvalid,
            format!("the Idempotency-Key header {e}"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_content_types_are_recognised_in_any_case_with_parameters() {
        for yes in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            " application/json ;charset=UTF-8",
            "application/problem+json",
            "application/vnd.api+JSON",
        ] {
            assert!(is_json(yes), "{yes}");
        }
        for no in [
            "",
            "json",
            "text/plain",
            "application/jsonx",
            "application/json-seq",
            "application/x-www-form-urlencoded",
            "text/json; x=application/json",
            "applicación/json",
        ] {
            assert!(!is_json(no), "{no}");
        }
    }

    #[test]
    fn serde_positions_are_stripped_and_backticked_fields_found() {
        assert_eq!(
            strip_position("missing field `name` at line 1 column 2"),
            "missing field `name`"
        );
        assert_eq!(
            backticked("unknown field `foo`, expected `a`").as_deref(),
            Some("foo")
        );
        assert_eq!(backticked("nothing here"), None);
    }
}
