//! Verifying the `Stripe-Signature` header, exactly as Stripe's libraries do.
//!
//! The header is `t=<unix seconds>,v1=<hex>,v1=<hex>,v0=<hex>…`. A `v1` signature is
//! HMAC-SHA256, keyed with the endpoint's signing secret (the whole `whsec_…` string), over
//! `"{t}.{raw body}"`. The request is accepted when any `v1` matches under any configured
//! secret (several during a rotation); other schemes are ignored. Comparisons are constant-time.
//! The timestamp must be within the tolerance of now, in either direction, so a captured request
//! cannot be replayed later.

use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureError {
    Missing,
    Malformed(&'static str),
    NoMatch,
    OutsideTolerance { age_seconds: i64 },
}

impl SignatureError {
    pub fn message(&self) -> String {
        match self {
            Self::Missing => "missing Stripe-Signature header".into(),
            Self::Malformed(problem) => format!("malformed Stripe-Signature header: {problem}"),
            Self::NoMatch => {
                "no v1 signature in Stripe-Signature matches the body under the configured \
                 webhook secret(s)"
                    .into()
            }
            Self::OutsideTolerance { age_seconds } => format!(
                "Stripe-Signature timestamp is {age_seconds} s from now, outside the tolerance"
            ),
        }
    }
}

/// The parts of a `Stripe-Signature` header Tally uses.
struct Header<'a> {
    timestamp_text: &'a str,
    timestamp: i64,
    v1: Vec<&'a str>,
}

fn parse(header: &str) -> Result<Header<'_>, SignatureError> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for item in header.split(',') {
        let Some((key, value)) = item.split_once('=') else {
            continue;
        };
        match key.trim() {
            "t" => {
                let text = value.trim();
                let parsed = text
                    .parse::<i64>()
                    .map_err(|_| SignatureError::Malformed("t is not a unix timestamp"))?;
                timestamp = Some((text, parsed));
            }
            "v1" => v1.push(value.trim()),
            _ => {}
        }
    }
    let Some((timestamp_text, timestamp)) = timestamp else {
        return Err(SignatureError::Malformed("no t= timestamp"));
    };
    if v1.is_empty() {
        return Err(SignatureError::Malformed("no v1= signature"));
    }
    Ok(Header {
        timestamp_text,
        timestamp,
        v1,
    })
}

/// The `v1` signature Stripe computes for `body` sent at `timestamp`, hex (what tests and the
/// README's curl example send).
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    hex::encode(mac(secret, timestamp, body))
}

fn mac(secret: &str, timestamp: &str, body: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// Checks `header` against the raw `body`. `now` is the current unix time in seconds.
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[String],
    tolerance: Duration,
    now: i64,
) -> Result<(), SignatureError> {
    let header = parse(header.ok_or(SignatureError::Missing)?)?;
    let candidates: Vec<[u8; 32]> = header
        .v1
        .iter()
        .filter_map(|signature| hex::decode(signature).ok())
        .filter_map(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .collect();
    let mut matched = subtle::Choice::from(0);
    for secret in secrets {
        let expected = mac(secret, header.timestamp_text, body);
        for candidate in &candidates {
            matched |= expected.ct_eq(candidate);
        }
    }
    if !bool::from(matched) {
        return Err(SignatureError::NoMatch);
    }
    let age_seconds = now.saturating_sub(header.timestamp);
    if age_seconds.unsigned_abs() > tolerance.as_secs() {
        return Err(SignatureError::OutsideTolerance { age_seconds });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const TOLERANCE: Duration = Duration::from_secs(300);

    fn secrets() -> Vec<String> {
        vec![SECRET.to_owned()]
    }

    #[test]
    fn a_signature_stripe_would_make_verifies() {
        // Known answer: `echo -n '1492774577.{}' | openssl dgst -sha256 -hmac whsec_test_secret`.
        let body = b"{}";
        let expected = "53140ab8fa70c511cc40d5c9198af7dde7bbaee877038c056d8250c3bd3b2e11";
        assert_eq!(sign(SECRET, "1492774577", body), expected);
        let header = format!("t=1492774577,v1={expected},v0=6ffbb59b2300aae63f272406069a9788");
        assert_eq!(
            verify(Some(&header), body, &secrets(), TOLERANCE, 1492774577 + 10),
            Ok(())
        );
    }

    #[test]
    fn anything_else_is_refused() {
        let body = br#"{"id":"evt_1"}"#;
        let good = sign(SECRET, "1000", body);
        let check = |header: Option<&str>, body: &[u8], now: i64| {
            verify(header, body, &secrets(), TOLERANCE, now)
        };
        assert_eq!(check(None, body, 1000), Err(SignatureError::Missing));
        assert!(matches!(
            check(Some("garbage"), body, 1000),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            check(Some(&format!("t=soon,v1={good}")), body, 1000),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            check(Some("t=1000,v0=abc"), body, 1000),
            Err(SignatureError::Malformed(_))
        ));
        let header = format!("t=1000,v1={good}");
        assert_eq!(check(Some(&header), body, 1000), Ok(()));
        assert_eq!(
            check(Some(&header), br#"{"id":"evt_2"}"#, 1000),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            check(Some(&format!("t=1001,v1={good}")), body, 1000),
            Err(SignatureError::NoMatch)
        );
        assert_eq!(
            check(Some(&header), body, 1301),
            Err(SignatureError::OutsideTolerance { age_seconds: 301 })
        );
        assert_eq!(
            check(Some(&header), body, 699),
            Err(SignatureError::OutsideTolerance { age_seconds: -301 })
        );
        assert_eq!(check(Some(&header), body, 1300), Ok(()));
        // A v0 (test-mode legacy) signature alone is never enough.
        assert!(matches!(
            check(Some(&format!("t=1000,v0={good}")), body, 1000),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn any_v1_under_any_secret_matches() {
        let body = b"{}";
        let old = sign("whsec_old", "1000", body);
        let new = sign("whsec_new", "1000", body);
        let header = format!("t=1000,v1={new},v1={old}");
        let only_old = vec!["whsec_old".to_owned()];
        assert_eq!(
            verify(Some(&header), body, &only_old, TOLERANCE, 1000),
            Ok(())
        );
        let header = format!("t=1000,v1={old}");
        let both = vec!["whsec_new".to_owned(), "whsec_old".to_owned()];
        assert_eq!(verify(Some(&header), body, &both, TOLERANCE, 1000), Ok(()));
        let neither = vec!["whsec_other".to_owned()];
        assert_eq!(
            verify(Some(&header), body, &neither, TOLERANCE, 1000),
            Err(SignatureError::NoMatch)
        );
    }
}
