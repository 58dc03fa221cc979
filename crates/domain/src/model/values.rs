use std::fmt;

use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// Declares a label type: text for people, 1 to 100 characters once trimmed (Unicode
/// scalar values), no control characters; kept trimmed.
macro_rules! label {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub const MAX_CHARS: usize = 100;

            pub fn parse(s: &str) -> Result<Self, InvalidValue> {
                let trimmed = s.trim();
                if trimmed.is_empty() {
                    return Err(InvalidValue::new("must not be empty"));
                }
                if trimmed.chars().count() > Self::MAX_CHARS {
                    return Err(InvalidValue::new(format!(
                        "must be at most {} characters",
                        Self::MAX_CHARS
                    )));
                }
                if trimmed.chars().any(char::is_control) {
                    return Err(InvalidValue::new("must not contain control characters"));
                }
                Ok(Self(trimmed.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(s: String) -> Result<Self, Self::Error> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(n: $name) -> Self {
                n.0
            }
        }
    };
}

label!(
    /// A plan's display name.
    PlanName
);
label!(
    /// An API key's label, for the people who manage keys.
    KeyName
);

/// How many seats a plan has: 1 to 1,000,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u32")]
pub struct Capacity(u32);

impl Capacity {
    pub const MAX: u32 = 1_000_000;

    pub fn new(n: i64) -> Result<Self, InvalidValue> {
        if n < 1 || n > i64::from(Self::MAX) {
            return Err(InvalidValue::new(format!(
                "must be an integer from 1 to {}",
                Self::MAX
            )));
        }
        Ok(Self(n as u32))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl TryFrom<i64> for Capacity {
    type Error = InvalidValue;
    fn try_from(n: i64) -> Result<Self, Self::Error> {
        Self::new(n)
    }
}

impl From<Capacity> for u32 {
    fn from(c: Capacity) -> Self {
        c.0
    }
}

/// A price in the currency's minor units (cents): 0 to 99,999,999, as Stripe allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct UnitAmount(i64);

impl UnitAmount {
    pub const MAX: i64 = 99_999_999;

    pub fn new(n: i64) -> Result<Self, InvalidValue> {
        if !(0..=Self::MAX).contains(&n) {
            return Err(InvalidValue::new(format!(
                "must be an integer number of minor units from 0 to {}",
                Self::MAX
            )));
        }
        Ok(Self(n))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl TryFrom<i64> for UnitAmount {
    type Error = InvalidValue;
    fn try_from(n: i64) -> Result<Self, Self::Error> {
        Self::new(n)
    }
}

impl From<UnitAmount> for i64 {
    fn from(a: UnitAmount) -> Self {
        a.0
    }
}

/// Active ISO 4217 currency codes, lower case, sorted.
const ISO_4217: &[&str] = &[
    "aed", "afn", "all", "amd", "ang", "aoa", "ars", "aud", "awg", "azn", "bam", "bbd", "bdt",
    "bgn", "bhd", "bif", "bmd", "bnd", "bob", "brl", "bsd", "btn", "bwp", "byn", "bzd", "cad",
    "cdf", "chf", "clp", "cny", "cop", "crc", "cuc", "cup", "cve", "czk", "djf", "dkk", "dop",
    "dzd", "egp", "ern", "etb", "eur", "fjd", "fkp", "gbp", "gel", "ghs", "gip", "gmd", "gnf",
    "gtq", "gyd", "hkd", "hnl", "htg", "huf", "idr", "ils", "inr", "iqd", "irr", "isk", "jmd",
    "jod", "jpy", "kes", "kgs", "khr", "kmf", "kpw", "krw", "kwd", "kyd", "kzt", "lak", "lbp",
    "lkr", "lrd", "lsl", "lyd", "mad", "mdl", "mga", "mkd", "mmk", "mnt", "mop", "mru", "mur",
    "mvr", "mwk", "mxn", "myr", "mzn", "nad", "ngn", "nio", "nok", "npr", "nzd", "omr", "pab",
    "pen", "pgk", "php", "pkr", "pln", "pyg", "qar", "ron", "rsd", "rub", "rwf", "sar", "sbd",
    "scr", "sdg", "sek", "sgd", "shp", "sle", "sll", "sos", "srd", "ssp", "stn", "svc", "syp",
    "szl", "thb", "tjs", "tmt", "tnd", "top", "try", "ttd", "twd", "tzs", "uah", "ugx", "usd",
    "uyu", "uzs", "ves", "vnd", "vuv", "wst", "xaf", "xcd", "xof", "xpf", "yer", "zar", "zmw",
    "zwl",
];

/// An ISO 4217 currency code in lower case, as Stripe writes them (`usd`, `eur`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

impl Currency {
    /// Every code [`Currency::parse`] accepts, sorted.
    pub const ALL: &'static [&'static str] = ISO_4217;

    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        if ISO_4217.binary_search(&s).is_err() {
            return Err(InvalidValue::new(
                "must be an ISO 4217 currency code in lower case, such as 'usd' or 'eur'",
            ));
        }
        let b = s.as_bytes();
        Ok(Self([b[0], b[1], b[2]]))
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII codes from the table are ever stored.
        std::str::from_utf8(&self.0).unwrap_or("???")
    }

    /// How many digits of an amount are the minor unit: 0 for Stripe's zero-decimal
    /// currencies (`jpy`, `krw`…), 3 for its three-decimal ones (`kwd`…), else 2.
    pub fn minor_digits(&self) -> u32 {
        const ZERO: &[&str] = &[
            "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd",
            "vuv", "xaf", "xof", "xpf",
        ];
        const THREE: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];
        if ZERO.contains(&self.as_str()) {
            0
        } else if THREE.contains(&self.as_str()) {
            3
        } else {
            2
        }
    }

    /// An amount in this currency's minor unit, written for people: `49.00 USD`,
    /// `4900 JPY`, `-1.500 KWD`.
    pub fn format(&self, minor_amount: i64) -> String {
        let code = self.as_str().to_ascii_uppercase();
        let digits = self.minor_digits();
        if digits == 0 {
            return format!("{minor_amount} {code}");
        }
        let unit = 10i64.pow(digits);
        let sign = if minor_amount < 0 { "-" } else { "" };
        let abs = minor_amount.unsigned_abs();
        let (whole, part) = (abs / unit as u64, abs % unit as u64);
        format!(
            "{sign}{whole}.{part:0width$} {code}",
            width = digits as usize
        )
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Currency {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Currency> for String {
    fn from(c: Currency) -> Self {
        c.as_str().to_owned()
    }
}

/// How often a subscription renews.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum Interval {
    Month,
    Year,
}

impl Interval {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        InvalidValue::parse_name(s)
    }

    pub fn as_str(&self) -> &'static str {
        self.into()
    }

    /// The end of a period of this interval starting at `start`.
    pub fn period_end(&self, start: super::Timestamp) -> super::Timestamp {
        let months = match self {
            Self::Month => 1,
            Self::Year => 12,
        };
        start
            .checked_add_months(chrono::Months::new(months))
            .unwrap_or(start)
    }
}

/// Whether a plan sells seats.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::VariantNames,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PlanStatus {
    Active,
    Archived,
}

impl PlanStatus {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        InvalidValue::parse_name(s)
    }

    pub fn as_str(&self) -> &'static str {
        self.into()
    }
}

/// A payment method reference as the gateway knows it, such as Stripe's `pm_card_visa`:
/// `pm_` followed by 1 to 252 ASCII letters, digits or `_`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PaymentMethod(String);

impl PaymentMethod {
    pub const MAX_LEN: usize = 255;

    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let valid = s.len() > 3
            && s.len() <= Self::MAX_LEN
            && s.starts_with("pm_")
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !valid {
            return Err(InvalidValue::new(
                "must be a payment method id such as 'pm_card_visa' ('pm_' then letters, digits or '_', at most 255 characters)",
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PaymentMethod {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<PaymentMethod> for String {
    fn from(p: PaymentMethod) -> Self {
        p.0
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn amounts_are_written_with_their_currencys_minor_unit() {
        let c = |s| Currency::parse(s).unwrap();
        assert_eq!(c("usd").format(4900), "49.00 USD");
        assert_eq!(c("eur").format(5), "0.05 EUR");
        assert_eq!(c("jpy").format(4900), "4900 JPY");
        assert_eq!(c("kwd").format(-1500), "-1.500 KWD");
        assert_eq!(c("usd").format(0), "0.00 USD");
    }

    use super::*;

    #[test]
    fn the_currency_table_is_sorted_so_binary_search_works() {
        assert!(ISO_4217.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn capacity_accepts_one_to_a_million_and_nothing_else() {
        assert!(Capacity::new(0).is_err());
        assert!(Capacity::new(-5).is_err());
        assert!(Capacity::new(1_000_001).is_err());
        assert_eq!(Capacity::new(1).unwrap().get(), 1);
        assert_eq!(Capacity::new(1_000_000).unwrap().get(), 1_000_000);
    }

    #[test]
    fn plan_names_are_trimmed_and_may_be_unicode_but_not_blank() {
        assert_eq!(
            PlanName::parse("  Équipe 🚀 ").unwrap().as_str(),
            "Équipe 🚀"
        );
        assert!(PlanName::parse("   ").is_err());
        assert!(PlanName::parse(&"é".repeat(101)).is_err());
        assert!(PlanName::parse("a\u{0}b").is_err());
    }

    #[test]
    fn currencies_must_be_lower_case_iso_codes() {
        assert!(Currency::parse("usd").is_ok());
        assert!(Currency::parse("USD").is_err());
        assert!(Currency::parse("xyz").is_err());
        assert!(Currency::parse("").is_err());
    }

    #[test]
    fn payment_methods_look_like_stripe_ids() {
        assert!(PaymentMethod::parse("pm_card_visa").is_ok());
        assert!(PaymentMethod::parse("pm_").is_err());
        assert!(PaymentMethod::parse("card_visa").is_err());
        assert!(PaymentMethod::parse("pm_card visa").is_err());
    }

    #[test]
    fn a_yearly_period_ends_twelve_months_later() {
        let start = "2026-01-31T10:00:00Z"
            .parse::<super::super::Timestamp>()
            .unwrap();
        assert_eq!(
            Interval::Month.period_end(start).to_rfc3339(),
            "2026-02-28T10:00:00+00:00"
        );
        assert_eq!(
            Interval::Year.period_end(start).to_rfc3339(),
            "2027-01-31T10:00:00+00:00"
        );
    }
}
