//! Who may post to `POST /api/webhooks/receive` when `delivery.inbound_secret` is set
//! (CONTRACT §4): a request passes with EITHER
//!
//! - `X-Webhook-Signature: hex(HMAC-SHA256(secret's UTF-8 bytes, raw body))` (seed 004), or
//! - Standard Webhooks headers `webhook-id`, `webhook-timestamp` (unix seconds, within
//!   `delivery.inbound_tolerance` of now, either way) and `webhook-signature` (space-separated
//!   `v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{raw body}">`, any one matching), keyed by the
//!   base64-decoded part of a `whsec_` secret, else the secret's bytes; the same key rule the
//!   hub signs its own deliveries with.
//!
//! Signatures are checked with `Mac::verify_slice`, which compares in constant time.

use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use casehub_actors::delivery::signing::standard_key;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Why a request was refused; every variant answers 401.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Neither `X-Webhook-Signature` nor the three Standard Webhooks headers.
    Missing,
    /// A signature was given but none matches.
    Mismatch,
    /// `webhook-timestamp` is not unix seconds.
    BadTimestamp,
    /// `webhook-timestamp` is further from now than the tolerance.
    Stale,
}

impl Refusal {
    /// For the caller: what to fix, without saying what was expected.
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Missing => {
                "A signature is required: X-Webhook-Signature, or webhook-id, webhook-timestamp \
                 and webhook-signature"
            }
            Refusal::Mismatch => "Invalid webhook signature",
            Refusal::BadTimestamp => "webhook-timestamp must be unix seconds",
            Refusal::Stale => "webhook-timestamp is outside the accepted tolerance",
        }
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; the error exists only for fixed-key MACs.
    <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length")
}

/// Checks `body` against the signature headers; `now` is unix seconds.
pub fn verify(
    secret: &str,
    headers: &HeaderMap,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), Refusal> {
    let hex_signature = header(headers, "x-webhook-signature");
    let standard = (
        header(headers, "webhook-id"),
        header(headers, "webhook-timestamp"),
        header(headers, "webhook-signature"),
    );
    if let Some(signature) = hex_signature
        && body_signature_matches(secret, body, signature)
    {
        return Ok(());
    }
    match standard {
        (Some(id), Some(timestamp), Some(signatures)) => {
            standard_matches(secret, id, timestamp, signatures, body, now, tolerance)
        }
        _ if hex_signature.is_some() => Err(Refusal::Mismatch),
        _ => Err(Refusal::Missing),
    }
}

fn body_signature_matches(secret: &str, body: &[u8], signature: &str) -> bool {
    let Ok(presented) = hex::decode(signature) else {
        return false;
    };
    let mut mac = mac(secret.as_bytes());
    mac.update(body);
    mac.verify_slice(&presented).is_ok()
}

fn standard_matches(
    secret: &str,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<(), Refusal> {
    let sent: i64 = timestamp.parse().map_err(|_| Refusal::BadTimestamp)?;
    // Refusing old (and future) timestamps is what stops a captured request being replayed
    // after the sender's retry window.
    if now.abs_diff(sent) > tolerance.as_secs() {
        return Err(Refusal::Stale);
    }
    let mut signed = mac(&standard_key(secret));
    signed.update(id.as_bytes());
    signed.update(b".");
    // The timestamp exactly as sent: it is what the sender signed.
    signed.update(timestamp.as_bytes());
    signed.update(b".");
    signed.update(body);
    // Several signatures appear while a sender rotates its secret; unknown versions are skipped.
    let matched = signatures
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|b64| STANDARD.decode(b64).ok())
        .any(|presented| signed.clone().verify_slice(&presented).is_ok());
    if matched {
        Ok(())
    } else {
        Err(Refusal::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    const FIVE_MINUTES: Duration = Duration::from_secs(300);

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).expect("header value"));
        }
        map
    }

    /// The Standard Webhooks specification's published test vector (also in the svix libraries'
    /// test suites), verified rather than signed: a sender's own library must pass here.
    #[test]
    fn accepts_the_standard_webhooks_test_vector() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let body = br#"{"test": 2432232314}"#;
        let h = headers(&[
            ("webhook-id", "msg_p5jXN8AQM9LWM0D4loKWxJek"),
            ("webhook-timestamp", "1614265330"),
            (
                "webhook-signature",
                "v1a,bm9wZQ== v1,bm9wZQ== v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
            ),
        ]);
        assert_eq!(verify(secret, &h, body, 1614265330, FIVE_MINUTES), Ok(()));
        // One byte of the body changed.
        let tampered = br#"{"test": 2432232315}"#;
        assert_eq!(
            verify(secret, &h, tampered, 1614265330, FIVE_MINUTES),
            Err(Refusal::Mismatch)
        );
        // Six minutes later the same request is a replay.
        assert_eq!(
            verify(secret, &h, body, 1614265330 + 360, FIVE_MINUTES),
            Err(Refusal::Stale)
        );
        assert_eq!(
            verify(secret, &h, body, 1614265330 - 360, FIVE_MINUTES),
            Err(Refusal::Stale)
        );
    }

    /// RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    #[test]
    fn accepts_the_hex_body_signature() {
        let body = b"what do ya want for nothing?";
        let good = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        let h = headers(&[("x-webhook-signature", good)]);
        assert_eq!(verify("Jefe", &h, body, 0, FIVE_MINUTES), Ok(()));
        let h = headers(&[("x-webhook-signature", &good.to_uppercase())]);
        assert_eq!(verify("Jefe", &h, body, 0, FIVE_MINUTES), Ok(()));
        let h = headers(&[("x-webhook-signature", "5bdc")]);
        assert_eq!(
            verify("Jefe", &h, body, 0, FIVE_MINUTES),
            Err(Refusal::Mismatch)
        );
        let h = headers(&[("x-webhook-signature", "not hex")]);
        assert_eq!(
            verify("Jefe", &h, body, 0, FIVE_MINUTES),
            Err(Refusal::Mismatch)
        );
    }

    #[test]
    fn refuses_missing_or_incomplete_headers() {
        let none = HeaderMap::new();
        assert_eq!(
            verify("s", &none, b"{}", 0, FIVE_MINUTES),
            Err(Refusal::Missing)
        );
        let partial = headers(&[("webhook-id", "msg_1"), ("webhook-timestamp", "0")]);
        assert_eq!(
            verify("s", &partial, b"{}", 0, FIVE_MINUTES),
            Err(Refusal::Missing)
        );
        let bad_ts = headers(&[
            ("webhook-id", "msg_1"),
            ("webhook-timestamp", "yesterday"),
            ("webhook-signature", "v1,AAAA"),
        ]);
        assert_eq!(
            verify("s", &bad_ts, b"{}", 0, FIVE_MINUTES),
            Err(Refusal::BadTimestamp)
        );
    }
}
