//! `GET /admin`: the admin console. The page itself holds no data and needs no
//! credential: `assets/admin.js` asks for an `admin` key or the admin token, keeps it in
//! the tab's `sessionStorage`, and does everything through the JSON API with it — plans
//! (list, create, change capacity and status), a plan's live seat breakdown, its audit
//! log and the check that the log replays to its seats, the reconciliation report, and
//! the API keys (list, create, revoke).

use actix_web::{get, web, HttpResponse};
use askama::Template;

use super::{html, PageConfig};
use crate::problem::ApiError;

#[derive(Template)]
#[template(path = "admin.html")]
struct Console;

#[get("/admin")]
pub async fn page(config: web::Data<PageConfig>) -> Result<HttpResponse, ApiError> {
    html(&config, &Console)
}
