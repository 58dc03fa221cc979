//! Customer sessions: short-lived bearer tokens that let a browser act for one customer.
//!
//! A session is a JWT (RFC 7519) signed with HMAC-SHA256 under the shared
//! `auth.session_secret`: any instance checks it without a store round trip. Its claims
//! are the customer (`sub`), the issue and expiry times (`iat`, `exp`, whole seconds),
//! and a fixed issuer and audience so that no other token signed with the same key passes
//! for a session. Nothing but HS256 is accepted (no `none`, no algorithm switch). A
//! session cannot be revoked before it expires: keep `auth.session_ttl_secs` short.

use std::time::Duration;

use chrono::TimeZone;
use jsonwebtoken::{errors::ErrorKind, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use seatkeeper_domain::{CustomerId, Timestamp};
use serde::{Deserialize, Serialize};

const ISSUER: &str = "seatkeeper";
const AUDIENCE: &str = "customer_session";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    iss: String,
    aud: String,
    sub: String,
    iat: i64,
    exp: i64,
}

/// A session just made: the token to hand to the browser, and until when it works.
#[derive(Debug, Clone)]
pub struct Session {
    pub token: String,
    pub customer_id: CustomerId,
    pub expires_at: Timestamp,
}

/// Why a token is not a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionRejected {
    #[error("the customer session has expired")]
    Expired,
    #[error("the credential is not an API key, a customer session or the admin token")]
    Invalid,
}

/// Makes and checks customer sessions.
pub struct Sessions {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl Sessions {
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // The expiry is the one the answer promised; instances share a clock source.
        validation.leeway = 0;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// A session for `customer` from `now`, expiring `ttl` later (in whole seconds).
    pub fn issue(&self, customer: CustomerId, now: Timestamp) -> Session {
        let iat = now.timestamp();
        let exp = iat + i64::try_from(self.ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims {
            iss: ISSUER.into(),
            aud: AUDIENCE.into(),
            sub: customer.as_str().to_owned(),
            iat,
            exp,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HMAC signing of plain claims cannot fail");
        Session {
            token,
            customer_id: customer,
            expires_at: chrono::Utc
                .timestamp_opt(exp, 0)
                .single()
                .expect("an expiry within a day of now"),
        }
    }

    /// The customer a token is a current session of.
    pub fn verify(&self, token: &str) -> Result<CustomerId, SessionRejected> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => SessionRejected::Expired,
                _ => SessionRejected::Invalid,
            })?;
        CustomerId::parse(&data.claims.sub).map_err(|_| SessionRejected::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions(secret: &[u8], ttl_secs: u64) -> Sessions {
        Sessions::new(secret, Duration::from_secs(ttl_secs))
    }

    fn cus(id: &str) -> CustomerId {
        CustomerId::parse(id).unwrap()
    }

    #[test]
    fn a_session_names_its_customer_until_it_expires() {
        let s = sessions(b"0123456789abcdef0123456789abcdef", 1800);
        let now = chrono::Utc::now();
        let session = s.issue(cus("cus_42"), now);
        assert_eq!(s.verify(&session.token), Ok(cus("cus_42")));
        assert_eq!(session.expires_at.timestamp(), now.timestamp() + 1800);
        let old = s.issue(cus("cus_42"), now - chrono::Duration::seconds(1801));
        assert_eq!(s.verify(&old.token), Err(SessionRejected::Expired));
    }

    #[test]
    fn a_token_signed_with_another_secret_or_altered_is_invalid() {
        let ours = sessions(b"0123456789abcdef0123456789abcdef", 60);
        let theirs = sessions(b"fedcba9876543210fedcba9876543210", 60);
        let now = chrono::Utc::now();
        let forged = theirs.issue(cus("cus_1"), now);
        assert_eq!(ours.verify(&forged.token), Err(SessionRejected::Invalid));
        let token = ours.issue(cus("cus_1"), now).token;
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        // Another customer's claims under the first signature.
        let other = ours.issue(cus("cus_2"), now).token;
        parts[1] = other.split('.').nth(1).unwrap().to_owned();
        assert_eq!(ours.verify(&parts.join(".")), Err(SessionRejected::Invalid));
        for junk in ["", "a.b.c", "sk_whatever", &token[..token.len() - 2]] {
            assert_eq!(ours.verify(junk), Err(SessionRejected::Invalid), "{junk}");
        }
    }

    #[test]
    fn an_unsigned_token_is_never_a_session() {
        // {"alg":"none","typ":"JWT"} . {"iss":"seatkeeper","aud":"customer_session",
        // "sub":"cus_1","iat":0,"exp":4102444800} . (no signature)
        let unsigned = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJpc3MiOiJzZWF0a2VlcGVyIiwiYXVkIjoiY3VzdG9tZXJfc2Vzc2lvbiIsInN1YiI6ImN1c18xIiwiaWF0IjowLCJleHAiOjQxMDI0NDQ4MDB9.";
        let s = sessions(b"0123456789abcdef0123456789abcdef", 60);
        assert_eq!(s.verify(unsigned), Err(SessionRejected::Invalid));
    }
}
