//! Timestamps in JSON bodies: RFC 3339 in UTC, written without `core::fmt`.
//!
//! The text is exactly what chrono's own `Serialize` writes (`SecondsFormat::AutoSi`
//! with `Z`: no fraction, or 3, 6 or 9 digits, whichever is shortest without losing
//! precision), so clients see no difference; only the cost differs. chrono formats
//! through `Display`, one `write_char` at a time, and a purchase answer carries three
//! timestamps: in profiles of the in-memory purchase path that was ~7 % of the server's
//! instructions, and in interleaved pairs a build writing them through chrono sold 6.9 %
//! fewer purchases per second in memory (`docs/benchmarks.md`, "What issue 17 costs").
//! Years outside 0–9999 and leap seconds, which chrono writes in its own way, are handed
//! to chrono.

use chrono::{Datelike, Timelike};
use seatkeeper_domain::Timestamp;
use serde::Serializer;

/// `2026-11-22T07:15:42.123456Z`: at most 30 bytes.
const MAX_LEN: usize = 30;

/// Writes `t` into `buf`; `None` when chrono must do it (see the module docs).
fn write(t: &Timestamp, buf: &mut [u8; MAX_LEN]) -> Option<usize> {
    let year = t.year();
    let nanos = t.nanosecond();
    if !(0..=9999).contains(&year) || nanos >= 1_000_000_000 {
        return None;
    }
    fn digits(buf: &mut [u8], mut value: u32) {
        for slot in buf.iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    digits(&mut buf[0..4], year as u32);
    buf[4] = b'-';
    digits(&mut buf[5..7], t.month());
    buf[7] = b'-';
    digits(&mut buf[8..10], t.day());
    buf[10] = b'T';
    digits(&mut buf[11..13], t.hour());
    buf[13] = b':';
    digits(&mut buf[14..16], t.minute());
    buf[16] = b':';
    digits(&mut buf[17..19], t.second());
    let mut len = 19;
    let fraction = if nanos == 0 {
        None
    } else if nanos.is_multiple_of(1_000_000) {
        Some((nanos / 1_000_000, 3))
    } else if nanos.is_multiple_of(1_000) {
        Some((nanos / 1_000, 6))
    } else {
        Some((nanos, 9))
    };
    if let Some((value, width)) = fraction {
        buf[len] = b'.';
        digits(&mut buf[len + 1..len + 1 + width], value);
        len += 1 + width;
    }
    buf[len] = b'Z';
    Some(len + 1)
}

/// Appends `t` to `out` as the text [`serialize`] writes (without quotes).
pub fn write_to(t: &Timestamp, out: &mut Vec<u8>) {
    let mut buf = [0u8; MAX_LEN];
    match write(t, &mut buf) {
        Some(len) => out.extend_from_slice(&buf[..len]),
        None => {
            let quoted = serde_json::to_string(t).expect("a timestamp serializes");
            out.extend_from_slice(quoted.trim_matches('"').as_bytes());
        }
    }
}

/// `t` as the text [`serialize`] writes, for messages.
pub fn format(t: Timestamp) -> String {
    let mut out = Vec::with_capacity(MAX_LEN);
    write_to(&t, &mut out);
    String::from_utf8(out).expect("a timestamp is ASCII")
}

/// `#[serde(serialize_with = "timestamp::serialize")]`
pub fn serialize<S: Serializer>(t: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; MAX_LEN];
    match write(t, &mut buf) {
        // Only ASCII digits and separators were written.
        Some(len) => s.serialize_str(std::str::from_utf8(&buf[..len]).expect("ASCII")),
        None => serde::Serialize::serialize(t, s),
    }
}

/// `#[serde(serialize_with = "timestamp::serialize_opt")]`
pub fn serialize_opt<S: Serializer>(t: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => serialize(t, s),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    #[derive(serde::Serialize)]
    struct Ours(#[serde(serialize_with = "serialize")] Timestamp);

    fn ours(t: Timestamp) -> String {
        serde_json::to_string(&Ours(t)).unwrap()
    }

    fn chronos(t: Timestamp) -> String {
        serde_json::to_string(&t).unwrap()
    }

    #[test]
    fn timestamps_are_written_exactly_as_chrono_writes_them() {
        let base = Utc.with_ymd_and_hms(2026, 11, 22, 7, 5, 9).unwrap();
        let mut cases = vec![
            base,
            Utc.with_ymd_and_hms(1970, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(0, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap(),
            Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0).unwrap(),
            Utc.with_ymd_and_hms(-1, 6, 1, 12, 0, 0).unwrap(),
            Utc::now(),
        ];
        // Every precision AutoSi chooses between, and the edges of each.
        for nanos in [
            1,
            999,
            1_000,
            1_001,
            999_000,
            999_999,
            1_000_000,
            1_000_001,
            120_000_000,
            123_456_000,
            123_456_789,
            999_999_999,
        ] {
            cases.push(base + chrono::Duration::nanoseconds(nanos));
        }
        // A spread of ordinary instants: days, months, leap years, times of day.
        let mut t = Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 58).unwrap();
        for i in 0..5_000i64 {
            t += chrono::Duration::nanoseconds(86_399_999_999_997 + i * 7_919_000_123);
            cases.push(t);
        }
        for t in cases {
            assert_eq!(ours(t), chronos(t), "{t:?}");
        }
    }

    #[test]
    fn a_leap_second_is_written_as_chrono_writes_it() {
        let leap = chrono::NaiveDate::from_ymd_opt(2016, 12, 31)
            .unwrap()
            .and_hms_nano_opt(23, 59, 59, 1_500_000_000)
            .unwrap()
            .and_utc();
        assert_eq!(ours(leap), chronos(leap));
    }

    #[test]
    fn a_missing_timestamp_is_null() {
        #[derive(serde::Serialize)]
        struct Opt(#[serde(serialize_with = "serialize_opt")] Option<Timestamp>);
        assert_eq!(serde_json::to_string(&Opt(None)).unwrap(), "null");
        let t = Utc::now();
        assert_eq!(serde_json::to_string(&Opt(Some(t))).unwrap(), chronos(t));
    }
}
