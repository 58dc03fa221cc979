//! The pages in a real browser: headless Chromium driven over WebDriver ([`harness`])
//! against a server started on a free port, as a customer and an operator would use them.
//! Screenshots land in `target/screenshots/` (and `docs/screenshots/` with
//! `UPDATE_SCREENSHOTS=1`).

#[allow(dead_code, unused_macros)]
#[macro_use]
#[path = "../api/helpers.rs"]
mod helpers;

#[path = "../common/mod.rs"]
mod common;

mod admin;
mod harness;
mod storefront;
