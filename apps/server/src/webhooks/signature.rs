//! Stripe's webhook signatures, checked as Stripe specifies: the `Stripe-Signature`
//! header is `t=<unix seconds>,v1=<hex>[,v1=<hex>…]` (other schemes, such as `v0`, are
//! ignored), and a `v1` value is the HMAC-SHA256 of `"<t>.<raw body>"` keyed with the
//! endpoint's secret (the whole `whsec_…` string). The event is genuine when any `v1`
//! matches under any configured secret (several during a rotation), compared in constant
//! time, and `t` is within the tolerance of now (5 minutes), against replays.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Why a signature is refused. Its text is safe to log and to answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header is not 't=<unix time>,v1=<hex signature>'")]
    Malformed,
    #[error("the Stripe-Signature timestamp is outside the tolerance (a stale or replayed event)")]
    Stale,
    #[error(
        "no v1 signature of the Stripe-Signature header matches the body under a configured secret"
    )]
    Mismatch,
}

/// The parts of a `Stripe-Signature` header.
struct Header {
    timestamp: i64,
    signatures: Vec<[u8; 32]>,
}

fn parse(header: &str) -> Result<Header, SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        let (name, value) = part
            .trim()
            .split_once('=')
            .ok_or(SignatureError::Malformed)?;
        match name {
            "t" => {
                let t = value.parse().map_err(|_| SignatureError::Malformed)?;
                if timestamp.replace(t).is_some() {
                    return Err(SignatureError::Malformed);
                }
            }
            "v1" => {
                let mut sig = [0u8; 32];
                // A v1 that is not 64 hex digits can never match: ignored, like Stripe's
                // own libraries ignore what they cannot read.
                if hex::decode_to_slice(value, &mut sig).is_ok() {
                    signatures.push(sig);
                }
            }
            _ => {}
        }
    }
    match (timestamp, signatures.is_empty()) {
        (Some(timestamp), false) => Ok(Header {
            timestamp,
            signatures,
        }),
        _ => Err(SignatureError::Malformed),
    }
}

/// The `v1` signature of `body` sent at `timestamp` under `secret`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> [u8; 32] {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// A `Stripe-Signature` header for `body`, as Stripe (and paysim) send it.
pub fn header_for(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(sign(secret, timestamp, body))
    )
}

/// Checks `header` against `body`, the secrets and `now` (unix seconds).
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[String],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let header = parse(header.ok_or(SignatureError::Missing)?)?;
    if (now - header.timestamp).abs() > tolerance_secs {
        return Err(SignatureError::Stale);
    }
    for secret in secrets {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
            .expect("HMAC takes a key of any length");
        mac.update(header.timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        for sig in &header.signatures {
            // `verify_slice` compares in constant time.
            if mac.clone().verify_slice(sig).is_ok() {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    const NOW: i64 = 1_780_000_000;

    fn secrets(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn a_signature_made_with_the_secret_over_the_body_is_accepted() {
        let header = header_for(SECRET, NOW, BODY);
        assert_eq!(
            verify(Some(&header), BODY, &secrets(&[SECRET]), NOW, 300),
            Ok(())
        );
    }

    #[test]
    fn the_signature_is_the_hmac_sha256_of_the_timestamp_a_dot_and_the_body() {
        // HMAC-SHA256 keyed "whsec_test_secret" of "1780000000.<body>", computed
        // independently with Python's hmac module.
        let expected = "ec91baef515b76d132cffcff38a05932c6e1f9facad958f0166227c62878b2b1";
        assert_eq!(hex::encode(sign(SECRET, NOW, BODY)), expected);
    }

    #[test]
    fn any_v1_under_any_secret_of_a_rotation_is_enough_and_v0_is_ignored() {
        let good = hex::encode(sign("whsec_new", NOW, BODY));
        let header = format!("t={NOW},v0={good},v1={},v1={good}", "00".repeat(32));
        let both = secrets(&["whsec_old", "whsec_new"]);
        assert_eq!(verify(Some(&header), BODY, &both, NOW, 300), Ok(()));
        let v0_only = format!("t={NOW},v0={good}");
        assert_eq!(
            verify(Some(&v0_only), BODY, &both, NOW, 300),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn forged_stale_and_malformed_headers_are_refused_for_what_they_are() {
        let header = header_for(SECRET, NOW, BODY);
        let all = secrets(&[SECRET]);
        assert_eq!(
            verify(None, BODY, &all, NOW, 300),
            Err(SignatureError::Missing)
        );
        let other_body = br#"{"id":"evt_2"}"#;
        assert_eq!(
            verify(Some(&header), other_body, &all, NOW, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), BODY, &secrets(&["whsec_other"]), NOW, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(Some(&header), BODY, &all, NOW + 301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(Some(&header), BODY, &all, NOW - 301, 300),
            Err(SignatureError::Stale)
        );
        for bad in [
            "",
            "t=abc,v1=00",
            "v1=00",
            "t=1",
            "garbage",
            "t=1,t=2,v1=00",
        ] {
            assert_eq!(
                verify(Some(bad), BODY, &all, NOW, 300),
                Err(SignatureError::Malformed),
                "{bad}"
            );
        }
        assert_eq!(
            verify(Some(&header), BODY, &[], NOW, 300),
            Err(SignatureError::Mismatch)
        );
    }
}
