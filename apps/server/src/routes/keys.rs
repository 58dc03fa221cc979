//! `/api/keys`: making, listing and revoking API keys (admin only).

use actix_web::{delete, get, post, web, HttpRequest, HttpResponse};
use seatkeeper_domain::{service::RevokeKeyError, ApiKeyId};

use super::{created_at, AppState};
use crate::{
    auth::Admin,
    dto::{CreateKeyRequest, CreatedKeyBody, KeyBody, List},
    extract::{json_body, ListQuery},
    openapi::{bodies::KeyList, responses::*, schemas},
    problem::{ApiError, Code},
};

fn key_not_found(raw: &str) -> ApiError {
    ApiError::new(
        Code::KeyNotFound,
        format!("there is no API key with id '{raw}'"),
    )
}

/// Make an API key
///
/// Makes a key with a role and a name, and answers its `secret` — the only time it is
/// ever shown: the server keeps only its SHA-256. The key works on every instance at
/// once. `admin` keys may do everything; `purchases` keys may buy, read and cancel any
/// customer's subscriptions and make customer sessions. Needs an `admin` key or the admin token.
#[utoipa::path(
    operation_id = "createApiKey",
    tag = "access",
    security(("adminToken" = []), ("apiKey" = [])),
    request_body(content = CreateKeyRequest),
    responses(
        (status = 201, description = "The key, with its secret (shown this once).", body = CreatedKeyBody,
            headers(("Location" = String, description = "The key's path (`/api/keys/{id}`), for `DELETE`."))),
        (status = 400, response = InvalidRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[post("/api/keys")]
pub async fn create(
    admin: Admin,
    req: HttpRequest,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (name, role) = json_body::<CreateKeyRequest>(&req, &body)?.try_into_domain()?;
    let (key, secret) = state.keys.create(name, role, &admin.0.actor()).await?;
    Ok(created_at(
        format!("/api/keys/{}", key.id()),
        CreatedKeyBody::new(&key, &secret),
    ))
}

/// List API keys
///
/// Every key, revoked ones included, ordered by id (creation order), without secrets:
/// each shows the first 11 characters of its secret (`prefix`) to tell them apart, and
/// when it was last used (to within a minute). The cursor is a key id. Needs an `admin` key or the admin token.
#[utoipa::path(
    operation_id = "listApiKeys",
    tag = "access",
    security(("adminToken" = []), ("apiKey" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "One page of keys.", body = KeyList),
        (status = 400, response = InvalidListQuery),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[get("/api/keys")]
pub async fn list(
    _: Admin,
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = query.page(|c| c.parse::<ApiKeyId>())?;
    let page = state.keys.list(page).await?;
    Ok(HttpResponse::Ok().json(List {
        data: page.items.iter().map(KeyBody::from).collect(),
        next_cursor: page.next.map(|id| id.to_string()),
    }))
}

/// Revoke an API key
///
/// The key stops working on every instance within a second. Revoking a revoked key
/// changes nothing and answers it again (with its first `revoked_at`). Needs an `admin` key or the admin token.
#[utoipa::path(
    operation_id = "revokeApiKey",
    tag = "access",
    security(("adminToken" = []), ("apiKey" = [])),
    params(("id" = schemas::ApiKeyId, Path, description = "The key's id (a UUID). Any other value answers 404 `key_not_found`.")),
    responses(
        (status = 200, description = "The key, now (or already) revoked.", body = KeyBody),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = KeyNotFound),
        (status = 500, response = Internal),
        (status = 503, response = StoreUnavailable),
    ),
)]
#[delete("/api/keys/{id}")]
pub async fn revoke(
    admin: Admin,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: ApiKeyId = path.parse().map_err(|_| key_not_found(&path))?;
    let key = state
        .keys
        .revoke(id, &admin.0.actor())
        .await
        .map_err(|e| match e {
            RevokeKeyError::NotFound(_) => key_not_found(&path),
            RevokeKeyError::Store(e) => e.into(),
        })?;
    Ok(HttpResponse::Ok().json(KeyBody::from(&key)))
}
