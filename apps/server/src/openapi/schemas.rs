//! The named scalar schemas of the document: ids, names, amounts, statuses. The DTOs
//! hold domain values or plain strings; each of their fields names one of these types
//! with `#[schema(value_type = …)]`, so the domain crate stays free of HTTP and of
//! utoipa. Enumerations are listed from the domain's own tables, so they cannot drift.

use seatkeeper_domain::{AuditAction as DomainAuditAction, Currency as DomainCurrency};
use serde_json::json;
use strum::VariantNames;
use utoipa::{
    openapi::{schema::Type, KnownFormat, ObjectBuilder, RefOr, Schema, SchemaFormat},
    PartialSchema, ToSchema,
};

use crate::problem::Code;

/// Declares a documentation-only type per schema, named after the type.
macro_rules! scalar_schemas {
    ($($(#[doc = $doc:literal])* $name:ident => $build:expr;)*) => {
        $(
            $(#[doc = $doc])*
            pub struct $name;

            impl PartialSchema for $name {
                fn schema() -> RefOr<Schema> {
                    let object: ObjectBuilder = $build;
                    object.description(Some(super::doc_text(&[$($doc),*]))).into()
                }
            }

            impl ToSchema for $name {}
        )*
    };
}

fn string() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

fn uuid() -> ObjectBuilder {
    string().format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
}

fn integer(format: KnownFormat) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(format)))
}

/// What `PlanName::parse` accepts, as a pattern: whitespace, then 1 to 100 characters
/// that are not control characters and neither start nor end with whitespace, then
/// whitespace.
fn plan_name_pattern() -> String {
    // Rust's `str::trim`: the characters with the Unicode `White_Space` property.
    const SPACE: &str = "\\t\\n\\u000B\\f\\r \\u0085\\u00A0\\u1680\\u2000-\\u200A\\u2028\\u2029\\u202F\\u205F\\u3000";
    // `char::is_control`: the general category Cc.
    const CONTROL: &str = "\\u0000-\\u001F\\u007F-\\u009F";
    let max_inner = seatkeeper_domain::PlanName::MAX_CHARS - 2;
    format!(
        "^[{SPACE}]*[^{SPACE}{CONTROL}](?:[^{CONTROL}]{{0,{max_inner}}}[^{SPACE}{CONTROL}])?[{SPACE}]*$"
    )
}

scalar_schemas! {
    /// A plan id (UUIDv7, time-ordered).
    PlanId => uuid().examples([json!("0190f5c2-8a4b-7c3d-9e1f-2a3b4c5d6e7f")]);
    /// A subscription id (UUIDv7, time-ordered).
    SubscriptionId => uuid().examples([json!("0190f5d0-1b2c-7d3e-8f40-5a6b7c8d9e0f")]);
    /// A checkout session id (UUIDv7, time-ordered).
    CheckoutSessionId => uuid().examples([json!("0193b0c1-2d3e-7f40-8a5b-6c7d8e9f0a1b")]);
    /// `open`: a seat is held, the payment has not succeeded yet. `complete`: paid, the
    /// seat is the active subscription's. `expired`: not paid in time, or expired through
    /// the API; the seat was given back.
    CheckoutStatus => string().enum_values(Some(
        seatkeeper_domain::CheckoutStatus::VARIANTS.iter().copied(),
    ));
    /// An API key's id (UUIDv7, time-ordered); not its secret.
    ApiKeyId => uuid().examples([json!("0193a1b2-0c3d-7e4f-8a5b-6c7d8e9f0a1b")]);
    /// An API key's label for the people who manage keys. The server trims surrounding
    /// whitespace, then requires 1 to 100 characters, none of them a control character.
    KeyName => string()
        .pattern(Some(plan_name_pattern()))
        .examples([json!("web shop backend")]);
    /// What an API key may do. `admin`: everything. `purchases`: buy, read and cancel
    /// subscriptions of any customer, and make customer sessions; no plan
    /// administration, audit, reconciliation, metrics or keys.
    Role => string().enum_values(Some(seatkeeper_domain::Role::VARIANTS.iter().copied()));
    /// A customer id, also the scope of the customer's idempotency keys. 1 to 64 ASCII
    /// letters, digits, `_`, `-`, `.` or `:`.
    CustomerId => string()
        .min_length(Some(1))
        .max_length(Some(64))
        .pattern(Some("^[A-Za-z0-9_.:-]{1,64}$"))
        .examples([json!("cus_42")]);
    /// The plan's display name. The server trims surrounding whitespace (Unicode
    /// `White_Space`), then requires 1 to 100 characters (Unicode scalar values), none of
    /// them a control character (U+0000 to U+001F, U+007F to U+009F). Plans always show
    /// the trimmed name.
    PlanName => string()
        .pattern(Some(plan_name_pattern()))
        .examples([json!("Team")]);
    /// How many seats the plan has.
    Capacity => integer(KnownFormat::Int32)
        .minimum(Some(1))
        .maximum(Some(1_000_000))
        .examples([json!(50)]);
    /// The price of one seat per interval, in the currency's minor units (cents for `usd`).
    UnitAmount => integer(KnownFormat::Int64)
        .minimum(Some(0))
        .maximum(Some(99_999_999))
        .examples([json!(4900)]);
    /// An active ISO 4217 currency code in lower case, as Stripe writes them.
    Currency => string()
        .enum_values(Some(DomainCurrency::ALL.iter().copied()))
        .examples([json!("usd")]);
    /// How often a subscription renews.
    Interval => string().enum_values(Some(seatkeeper_domain::Interval::VARIANTS.iter().copied()));
    /// `active` plans sell seats; `archived` ones do not.
    PlanStatus => string().enum_values(Some(seatkeeper_domain::PlanStatus::VARIANTS.iter().copied()));
    /// `incomplete`: a seat is reserved, the charge has not completed. `active`: paid for,
    /// holds its seat. `incomplete_expired`: the charge was declined or never happened, the
    /// seat was released. `canceled`: cancelled by the customer, the seat was released.
    SubscriptionStatus => string().enum_values(Some(
        seatkeeper_domain::SubscriptionStatus::VARIANTS.iter().copied(),
    ));
    /// A payment method id as the payment provider knows it, such as Stripe's
    /// `pm_card_visa`; `pm_` then 1 to 252 ASCII letters, digits or `_`.
    PaymentMethod => string()
        .min_length(Some(4))
        .max_length(Some(255))
        .pattern(Some("^pm_[A-Za-z0-9_]+$"))
        .examples([json!("pm_card_visa")]);
    /// An RFC 3339 UTC timestamp.
    Timestamp => string()
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .examples([json!("2026-02-01T12:00:00.250Z")]);
    /// What an audit entry records. `plan_created`: the plan was created with every seat
    /// free. `seat_reserved`: a purchase reserved a seat (-1). `purchase_activated`: the
    /// charge succeeded (no seat moves). `seat_released`: the charge failed or never
    /// happened, the reserved seat was released (+1). `subscription_canceled`: an active
    /// subscription was cancelled (+1). `capacity_changed`: `seats_left` moved by the
    /// capacity difference. `plan_updated`: the name changed. `plan_archived`,
    /// `plan_activated`: the status changed (no seat moves). `payment_refunded`: a charge
    /// that landed after its purchase was given up, or after its checkout session expired
    /// with no seat free, was refunded (no seat moves). `seat_held`: a checkout session
    /// holds a seat (-1). `hold_expired`: a checkout session ended unpaid, its seat came
    /// back (+1). `checkout_completed`: a checkout session was paid, its held seat is the
    /// active subscription's (no seat moves).
    AuditAction => string().enum_values(Some(DomainAuditAction::ALL.iter().map(|a| a.as_str())));
    /// The stable machine-readable code of a problem; each code has one HTTP status and
    /// one title (see the `type` member: `urn:seatkeeper:problem:<code>`).
    ProblemCode => string().enum_values(Some(Code::ALL.iter().map(|c| c.as_str())));
}
