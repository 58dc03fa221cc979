//! The fault-injection suite of issue 6: real `seatkeeper-server` processes on a fresh
//! database — each scenario runs twice, on PostgreSQL (`<scenario>::on_postgres`) and on
//! the MongoDB replica set (`<scenario>::on_mongodb`) — charging through the payment
//! simulator (`seatkeeper-paysim`, run in this test process, so it outlives every server
//! it serves), under faults:
//!
//! 1. `kill -9` of server processes at random moments during a load of purchases;
//! 2. payment faults: declines, dropped answers, provider 500s and 429s;
//! 3. the database cut away (behind a TCP proxy in this process) for several seconds;
//! 4. all of them at once, with two clients per key retrying every failure with the same key;
//! 5. a charge landing after the reconciler gave its purchase up (the simulator holds it);
//! 6. a provider that cannot answer the reconciler's look-ups;
//! 7. checkout sessions under webhooks lost, duplicated, reordered, delayed past the
//!    sessions' expiry, and forged;
//! 8. `kill -9` during checkouts and purchases that race for the same seats;
//! 9. the database cut away while the provider's webhooks arrive.
//!
//! Every client retries each non-definitive answer (409 `idempotency_key_in_use`, 503,
//! no answer) with the same key until it gets a definitive one or a bounded deadline
//! passes; some scenarios let a share of clients walk away instead, so that only the
//! reconciler can finish their purchases. Each scenario ends, once the load has stopped and
//! recovery has settled (`GET /api/admin/reconciliation` shows nothing in doubt), with
//! [`invariants::check_invariants`]: seats, audit log and subscriptions through the API,
//! money through the simulator's ledger. Each prints a one-line summary (run with
//! `--nocapture` to see it).
//!
//! A scenario is skipped (with a message naming the database and the reason) when its
//! database server cannot be reached, except under `CI`, where that fails. The scenarios
//! run one at a time.
//!
//! Layout:
//!
//! - [`scenarios`]: the scenarios themselves, [`scenarios::under_load`] (1–4) and
//!   [`scenarios::reconciler`] (5, 6) and [`scenarios::checkouts`] (7–9); the tests are
//!   declared here, at the root, so that their names are the scenarios' own;
//! - [`scenario`]: one run — a fresh database, the simulator, the servers, the plans — and
//!   the faults it injects into the servers and the database (kills, outages);
//! - [`knobs`]: the servers' timing settings; [`processes`]: the server processes, started,
//!   killed and restarted; [`paysim`]: the simulator with its slow lane and injected 429s,
//!   and its webhooks, delivered through the fleet's [`relay`] (the TCP proxy in front of
//!   the database is `common::Proxy`);
//! - [`load`]: the clients and their load; [`checkout_load`]: the checkout clients;
//!   [`forged`]: forged webhooks; [`outcomes`]: what they saw and were told;
//! - [`api`]: reads through the servers' API and the waits built on them;
//! - [`conclude`]: how every run ends, and [`invariants`]: the checks it runs, the audit
//!   log's replay and the final replay of every key included.

mod api;
mod checkout_load;
#[path = "../common/mod.rs"]
mod common;
mod conclude;
mod forged;
mod invariants;
mod knobs;
mod load;
mod outcomes;
mod paysim;
mod processes;
mod relay;
mod scenario;
mod scenarios;

use std::time::Duration;

pub const TOKEN: &str = "fault-suite-admin-token";
pub const SECRET: &str = "sk_test_fault_suite";
/// The secret the simulator signs its webhooks with and the servers verify them by.
pub const WEBHOOK_SECRET: &str = "whsec_fault_suite_0123456789abcdef";
/// The longest a client waits for one answer; anything longer is a hang.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The scenarios share two cores with the database and their servers: one at a time.
pub static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs a scenario (`family::scenario`, under [`scenarios`]) on every durable store:
/// `<scenario>::on_postgres` and `<scenario>::on_mongodb`.
macro_rules! on_every_store {
    ($($family:ident :: $scenario:ident),+ $(,)?) => {$(
        mod $scenario {
            use crate::common::stores::DatabaseKind;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_postgres() {
                crate::scenarios::$family::$scenario(DatabaseKind::Postgres).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_mongodb() {
                crate::scenarios::$family::$scenario(DatabaseKind::Mongo).await;
            }
        }
    )+};
}

on_every_store!(
    under_load::kill_9_at_random_moments_during_load_loses_no_purchase_and_charges_no_key_twice,
    under_load::payment_declines_dropped_answers_provider_500s_and_429s_during_load_leave_every_charge_attached_or_refunded,
    under_load::a_database_outage_during_load_answers_503_problems_then_recovers_by_itself_with_invariants_intact,
    under_load::clients_retrying_every_failure_with_the_same_key_through_kills_payment_faults_and_an_outage_are_charged_once_per_key,
    reconciler::a_charge_that_lands_after_the_reconciler_gave_its_purchase_up_is_refunded_and_audited,
    reconciler::while_the_provider_is_down_purchases_wait_in_doubt_without_a_busy_loop_and_finish_when_it_is_back,
    checkouts::webhooks_lost_duplicated_reordered_delayed_past_expiry_and_forged_leave_each_paid_checkout_complete_once,
    checkouts::kill_9_during_checkouts_and_purchases_for_the_same_seats_holds_nothing_past_expiry_and_charges_each_seat_once,
    checkouts::a_database_outage_while_webhooks_arrive_is_made_up_for_by_the_providers_retries,
);
