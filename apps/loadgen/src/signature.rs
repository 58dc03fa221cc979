//! The `Stripe-Signature` header of a webhook delivery, made as Stripe makes it:
//! `t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>" keyed with the endpoint's
//! secret>` (the whole `whsec_…` string is the key).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The header for `body`, sent at unix time `timestamp`, signed with `secret`.
pub fn stripe_signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    const NOW: i64 = 1_780_000_000;

    #[test]
    fn the_header_carries_the_known_vector_of_the_servers_signature_tests() {
        // apps/server/src/webhooks/signature.rs: computed independently with Python's hmac.
        assert_eq!(
            stripe_signature(SECRET, NOW, BODY),
            "t=1780000000,v1=ec91baef515b76d132cffcff38a05932c6e1f9facad958f0166227c62878b2b1"
        );
    }

    #[test]
    fn the_server_accepts_the_header_and_refuses_it_under_another_secret() {
        use seatkeeper_server::webhooks::signature::{verify, SignatureError};
        let header = stripe_signature(SECRET, NOW, BODY);
        let secrets = |s: &str| vec![s.to_owned()];
        assert_eq!(
            verify(Some(&header), BODY, &secrets(SECRET), NOW, 300),
            Ok(())
        );
        assert_eq!(
            verify(Some(&header), BODY, &secrets("whsec_other"), NOW, 300),
            Err(SignatureError::Mismatch)
        );
    }
}
