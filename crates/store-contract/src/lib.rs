//! The storage contract suite: what every Seatkeeper store (the in-memory one, PostgreSQL,
//! MongoDB) must do to be a [`Store`], checked against the store itself.
//!
//! Each port method's doc comment in `seatkeeper_domain::ports` is its contract; each
//! case of [`cases`] checks one part of it (results, documented errors, "changes
//! nothing", atomicity under real concurrency), and every case that moves seats ends with
//! [`seatkeeper_domain::invariants::check_store_plan`] on the plans it touched.
//!
//! # Running the suite against a store
//!
//! A store provides a [`StoreFactory`] that hands out a fresh, empty store per call, and
//! invokes [`contract_tests!`] once in one of its integration test files. The macro
//! expands to one `#[tokio::test(flavor = "multi_thread", worker_threads = 4)]` per case,
//! named after the case, plus a test that fails when the expansion misses a case of the
//! suite. The store's crate needs `tokio` (features `macros`, `rt-multi-thread`) as a
//! dev-dependency.
//!
//! ```ignore
//! // A factory that is always there:
//! seatkeeper_store_contract::contract_tests!(MemoryFactory);
//!
//! // A factory built asynchronously that may be unavailable (no database here): the
//! // expression after `async` is awaited inside each test and must give a
//! // `Result<impl StoreFactory, Unavailable>`; `Err` makes each test print
//! // `skipped: <reason>` and pass. Whether to fail instead (say, when `CI` is set) is the
//! // factory's decision, not the suite's.
//! seatkeeper_store_contract::contract_tests!(async postgres_factory());
//! ```
//!
//! The factory expression is evaluated once per test, inside that test's runtime, so a
//! factory may own a connection pool tied to the runtime.
//!
//! # Timestamps
//!
//! Cases build timestamps from `chrono::Utc::now()` truncated to milliseconds
//! ([`support::now`]), the coarsest precision of the supported databases (MongoDB), and
//! expect every stored timestamp back exactly.

use std::{fmt, sync::Arc, time::Duration};

use async_trait::async_trait;
use seatkeeper_domain::ports::Store;

pub mod batching;
pub mod cases;
pub mod checkout_support;
pub mod outage;
pub mod support;

/// Hands out stores for the contract cases.
#[async_trait]
pub trait StoreFactory: Send + Sync {
    /// A new, empty store that shares nothing with any store handed out before (a fresh
    /// database or schema for a database-backed store). Panics with a clear message when
    /// it cannot make one: at this point the store was found available.
    async fn fresh(&self) -> Arc<dyn Store>;
}

#[async_trait]
impl<T: StoreFactory + ?Sized> StoreFactory for Box<T> {
    async fn fresh(&self) -> Arc<dyn Store> {
        (**self).fresh().await
    }
}

#[async_trait]
impl<T: StoreFactory + ?Sized> StoreFactory for Arc<T> {
    async fn fresh(&self) -> Arc<dyn Store> {
        (**self).fresh().await
    }
}

/// Why a store cannot be tested here (for example: its database is not reachable). The
/// cases of a factory that answers this are skipped, not failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(pub String);

impl Unavailable {
    pub fn new(reason: impl Into<String>) -> Self {
        Self(reason.into())
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `connected`, or `None` after a line saying `test` was skipped and why: how a test that
/// needs a store's server begins when none may be reachable (each store's
/// `TestDatabases::for_test`).
pub fn or_skip<T>(test: &str, connected: Result<T, String>) -> Option<T> {
    match connected {
        Ok(value) => Some(value),
        Err(reason) => {
            eprintln!("skipped {test}: {reason}");
            None
        }
    }
}

/// How long one case may run before it is failed as hung (a deadlock, a lost wake-up).
pub const CASE_TIME_LIMIT: Duration = Duration::from_secs(120);

/// The name of every case of the suite, in the order the macro runs them.
pub const CASES: &[&str] = crate::__contract_cases!(names);

/// Runs the whole contract suite against a store: one test per case. See the crate
/// documentation for the two forms.
#[macro_export]
macro_rules! contract_tests {
    (async $factory:expr) => {
        $crate::__contract_cases!(tests deferred $factory);
    };
    ($factory:expr) => {
        $crate::__contract_cases!(tests ready $factory);
    };
}

/// The one list of cases, as `module::case`. Every `pub async fn` in `src/cases/*.rs` must
/// be here; `__private::defined_cases` reads the sources to make sure of it.
#[doc(hidden)]
#[macro_export]
macro_rules! __contract_cases {
    ($($args:tt)*) => {
        $crate::__contract_expand! { ($($args)*)
            checkouts::opening_a_checkout_holds_a_seat_audits_it_and_reads_back_exactly,
            checkouts::availability_is_the_plan_and_the_seats_its_open_sessions_hold,
            checkouts::opening_again_with_the_same_key_answers_the_same_session_and_changes_nothing,
            checkouts::a_customer_holds_one_open_session_per_plan_and_refusals_change_nothing,
            checkouts::paying_a_session_makes_its_seat_an_active_subscription_once,
            checkouts::a_failed_payment_keeps_the_session_open_for_another_card,
            checkouts::expiring_a_session_gives_its_seat_back_once_and_not_before_its_time,
            checkouts::a_late_payment_takes_a_free_seat_or_is_due_a_refund_recorded_once,
            checkouts::a_payment_of_another_intent_is_refused_and_changes_nothing,
            checkouts::sessions_are_due_by_check_at_earliest_first_until_nothing_is_left,
            checkouts::webhook_events_are_claimed_once_and_claimable_again_once_released,
            checkouts::purging_deletes_only_sessions_that_ended_and_events_that_are_old,
            checkout_races::sixty_customers_opening_sessions_for_ten_seats_hold_exactly_ten,
            checkout_races::one_key_opened_thirty_times_at_once_holds_one_seat,
            checkout_races::payment_expiry_failure_and_cancellation_of_one_session_at_once_settle_it_once,
            checkout_races::twenty_sessions_paid_and_expired_at_once_keep_the_invariants,
            checkout_races::one_webhook_event_delivered_forty_times_at_once_is_claimed_once,
            checkout_races::one_key_opened_on_several_plans_at_once_opens_one_session,
            store::the_store_answers_a_ping,
            feed::every_kind_of_plan_change_is_announced_by_the_plans_id,
            feed::each_listener_hears_every_plan_and_only_by_its_own_id,
            recovery::stale_incomplete_purchases_are_leased_once_until_their_lease_ends,
            recovery::a_released_recovery_task_goes_to_the_next_reconciler_at_once,
            recovery::declining_with_verify_after_schedules_a_late_charge_check_when_it_is_due,
            recovery::a_late_charge_refund_is_audited_once_and_moves_no_seat,
            recovery::a_refund_recorded_outside_a_check_is_audited_once,
            recovery::many_reconcilers_claiming_at_once_never_get_the_same_task,
            plans::a_created_plan_reads_back_exactly_as_it_was_stored,
            plans::reading_an_unknown_plan_finds_nothing,
            plans::plans_are_listed_in_id_order_one_page_at_a_time,
            plans::updating_a_plan_applies_the_patch_and_records_one_audit_entry_per_change,
            plans::a_patch_that_changes_nothing_records_nothing,
            plans::updating_an_unknown_plan_is_not_found,
            plans::lowering_capacity_below_the_held_seats_is_refused_and_changes_nothing,
            plans::plan_stats_count_the_subscriptions_of_each_status,
            plans::the_audit_log_pages_by_seq_and_is_none_for_an_unknown_plan,
            subscriptions::a_subscription_reads_back_exactly_and_an_unknown_one_is_none,
            subscriptions::a_customers_subscriptions_are_listed_in_id_order_without_anyone_elses,
            subscriptions::cancelling_an_active_subscription_releases_its_seat_once,
            subscriptions::a_cancelled_purchase_still_replays_the_subscription_as_it_was_sold,
            subscriptions::cancelling_a_subscription_that_is_not_active_is_refused_and_changes_nothing,
            subscriptions::cancelling_an_unknown_subscription_is_not_found,
            idempotency::claiming_a_new_key_acquires_a_fresh_record_at_started,
            idempotency::claiming_a_key_under_a_live_lock_is_in_use_and_changes_nothing,
            idempotency::claiming_a_key_with_a_different_request_is_a_fingerprint_mismatch,
            idempotency::claiming_a_finished_key_replays_its_outcome_and_request_id,
            idempotency::an_abandoned_lease_is_taken_over_keeping_the_recovery_point,
            idempotency::a_released_key_is_acquired_again_at_once_keeping_its_recovery_point,
            idempotency::a_record_past_its_retention_is_forgotten_and_the_key_starts_afresh,
            idempotency::releasing_a_key_lets_go_only_for_its_current_owner,
            idempotency::purging_removes_exactly_the_records_expired_at_that_moment,
            purchases::reserving_a_seat_takes_it_and_records_the_recovery_point,
            purchases::reserving_without_holding_the_key_is_lock_lost_and_changes_nothing,
            purchases::reserving_a_seat_of_an_unknown_plan_finishes_the_key_as_plan_not_found,
            purchases::reserving_a_seat_of_an_archived_plan_finishes_the_key_as_plan_inactive,
            purchases::reserving_the_last_seat_then_one_more_is_sold_out,
            purchases::a_charged_purchase_activates_the_subscription_and_finishes_its_key_as_created,
            purchases::a_declined_purchase_expires_the_subscription_releases_the_seat_and_finishes_its_key,
            purchases::completing_a_purchase_twice_is_not_incomplete_and_changes_nothing,
            purchases::completing_an_unknown_subscription_is_not_found,
            purchases::completing_a_purchase_finishes_its_key_even_after_a_release_or_a_takeover,
            purchases::completing_an_old_purchase_leaves_a_newer_purchase_under_the_same_key_alone,
            purchases::reserving_with_a_new_key_claims_it_and_takes_the_seat_in_one_step,
            purchases::reserving_with_a_key_that_has_a_record_is_key_exists_and_changes_nothing,
            purchases::reserving_with_a_new_key_where_no_seat_can_be_had_finishes_the_new_key,
            concurrency::two_hundred_simultaneous_reservations_of_fifty_seats_reserve_exactly_fifty,
            concurrency::a_hundred_simultaneous_claims_of_one_new_key_acquire_it_exactly_once,
            concurrency::a_hundred_simultaneous_claims_of_one_abandoned_key_take_it_over_exactly_once,
            concurrency::a_hundred_simultaneous_claims_of_a_key_past_its_retention_start_it_afresh_exactly_once,
            concurrency::reservations_racing_cancellations_and_capacity_changes_keep_every_invariant,
            concurrency::reservations_racing_takeovers_of_their_keys_either_land_first_or_are_lock_lost,
            concurrency::completing_one_purchase_many_times_at_once_completes_it_exactly_once,
            concurrency::cancelling_one_subscription_many_times_at_once_releases_its_seat_once,
            concurrency::completions_racing_cancellations_of_the_same_subscriptions_keep_every_invariant,
            concurrency::purging_expired_keys_while_they_are_reclaimed_never_removes_a_live_record,
            concurrency::a_hundred_simultaneous_new_key_reservations_of_one_key_claim_it_exactly_once,
            concurrency::new_key_reservations_racing_claims_of_the_same_keys_give_each_key_one_holder,
            keys::a_created_key_reads_back_exactly_by_its_secrets_hash_and_no_other,
            keys::storing_a_key_whose_id_or_hash_is_stored_fails_and_changes_nothing,
            keys::keys_are_listed_in_id_order_one_page_at_a_time_revoked_ones_included,
            keys::revoking_a_key_keeps_the_first_time_and_an_unknown_key_is_none,
            keys::recording_a_use_only_moves_the_last_use_forward,
            keys::many_simultaneous_uses_and_revocations_of_one_key_keep_the_latest_use_and_one_revocation,
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_expand {
    ((names) $($module:ident :: $case:ident,)*) => {
        &[$(stringify!($case)),*]
    };
    ((tests $mode:ident $factory:expr) $($module:ident :: $case:ident,)*) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let factory = $crate::__contract_factory!($mode $factory);
                $crate::__private::run_case(
                    stringify!($case),
                    $crate::cases::$module::$case(&factory),
                )
                .await;
            }
        )*

        #[test]
        fn the_contract_macro_runs_every_case_of_the_suite() {
            $crate::__private::check_coverage(&[$(stringify!($case)),*]);
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __contract_factory {
    (ready $factory:expr) => {
        $factory
    };
    (deferred $factory:expr) => {{
        let available: ::core::result::Result<_, $crate::Unavailable> = $factory.await;
        match available {
            ::core::result::Result::Ok(factory) => factory,
            ::core::result::Result::Err(unavailable) => {
                ::std::println!("skipped: {unavailable}");
                return;
            }
        }
    }};
}

/// What the macro expansion calls. Not an API.
#[doc(hidden)]
pub mod __private {
    use std::{collections::BTreeSet, future::Future};

    use crate::{CASES, CASE_TIME_LIMIT};

    /// The sources of the case modules: every `pub async fn` at the start of a line is a
    /// case.
    const CASE_SOURCES: &[(&str, &str)] = &[
        ("store", include_str!("cases/store.rs")),
        ("plans", include_str!("cases/plans.rs")),
        ("subscriptions", include_str!("cases/subscriptions.rs")),
        ("idempotency", include_str!("cases/idempotency.rs")),
        ("purchases", include_str!("cases/purchases.rs")),
        ("concurrency", include_str!("cases/concurrency.rs")),
        ("recovery", include_str!("cases/recovery.rs")),
        ("keys", include_str!("cases/keys.rs")),
        ("checkouts", include_str!("cases/checkouts.rs")),
        ("checkout_races", include_str!("cases/checkout_races.rs")),
        ("feed", include_str!("cases/feed.rs")),
    ];

    /// Every case the sources define, as `module::case`-free names.
    pub fn defined_cases() -> Vec<&'static str> {
        CASE_SOURCES
            .iter()
            .flat_map(|(_, source)| source.lines())
            .filter_map(|line| line.strip_prefix("pub async fn "))
            .filter_map(|rest| rest.split('(').next())
            .map(str::trim)
            .collect()
    }

    /// Fails unless `expanded` (the tests a macro expansion made), [`CASES`] and the cases
    /// the sources define are the same set, each name once.
    pub fn check_coverage(expanded: &[&str]) {
        let defined = defined_cases();
        for (what, names) in [
            ("the macro expansion", expanded),
            ("CASES", CASES),
            ("the case sources", &defined[..]),
        ] {
            let unique: BTreeSet<&str> = names.iter().copied().collect();
            assert_eq!(
                unique.len(),
                names.len(),
                "{what} lists a case twice: {names:?}"
            );
        }
        let expanded: BTreeSet<&str> = expanded.iter().copied().collect();
        let listed: BTreeSet<&str> = CASES.iter().copied().collect();
        let defined: BTreeSet<&str> = defined.into_iter().collect();
        assert_eq!(
            defined.difference(&expanded).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "cases defined in src/cases/*.rs but not run by contract_tests! \
             (add them to __contract_cases! in the contract crate's lib.rs)"
        );
        assert_eq!(
            expanded.difference(&defined).collect::<Vec<_>>(),
            Vec::<&&str>::new(),
            "tests run by contract_tests! that no case source defines"
        );
        assert_eq!(listed, defined, "CASES disagrees with the case sources");
    }

    /// Runs one case, failing it when it runs past [`CASE_TIME_LIMIT`].
    pub async fn run_case(name: &str, case: impl Future<Output = ()>) {
        if tokio::time::timeout(CASE_TIME_LIMIT, case).await.is_err() {
            panic!(
                "contract case {name} did not finish within {CASE_TIME_LIMIT:?}: \
                 the store hangs (a deadlock or a lost wake-up?)"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_case_in_the_sources_is_listed_once_in_cases() {
        __private::check_coverage(CASES);
    }

    #[test]
    fn case_names_are_sentences_in_snake_case() {
        for name in CASES {
            assert!(
                name.split('_').count() >= 4
                    && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name} does not read as a sentence"
            );
        }
    }
}
