//! `GET /assets/{name}`: the pages' stylesheet and scripts, compiled into the binary from
//! `apps/server/assets/`. Each answer carries a strong `ETag` (a digest of the file) and
//! `Cache-Control: no-cache`, so browsers keep them and ask again cheaply; a matching
//! `If-None-Match` answers 304.

use std::sync::LazyLock;

use actix_web::{
    get,
    http::header::{self, HeaderValue},
    web, HttpRequest, HttpResponse,
};
use sha2::{Digest, Sha256};

use crate::problem::{ApiError, Code};

/// Every asset: its name, content type and content.
const FILES: &[(&str, &str, &str)] = &[
    (
        "admin.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/admin.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/app.css"),
    ),
    (
        "storefront.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/storefront.js"),
    ),
];

/// Each asset's `ETag`, computed once.
static ETAGS: LazyLock<Vec<String>> = LazyLock::new(|| {
    FILES
        .iter()
        .map(|(_, _, body)| format!("\"{}\"", hex::encode(&Sha256::digest(body)[..12])))
        .collect()
});

#[get("/assets/{name}")]
pub async fn asset(req: HttpRequest, name: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let Some(i) = FILES.iter().position(|(n, _, _)| *n == name.as_str()) else {
        return Err(ApiError::new(
            Code::NotFound,
            format!("there is no asset named '{name}'"),
        ));
    };
    let (_, content_type, body) = FILES[i];
    let etag = &ETAGS[i];
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if fresh {
        HttpResponse::NotModified().finish()
    } else {
        HttpResponse::Ok().content_type(content_type).body(body)
    };
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(res)
}
