//! Webhook signatures (CONTRACT §5): the seed-000 `X-Webhook-Signature` (hex HMAC-SHA256 of the
//! raw body, keyed by the secret string's UTF-8 bytes) and Standard Webhooks
//! (`v1,` + base64 HMAC-SHA256 of `{msg_id}.{timestamp}.{body}`, keyed by the base64-decoded part
//! of the secret after `whsec_`).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

/// Prefix of every endpoint secret.
pub const SECRET_PREFIX: &str = "whsec_";

/// A new endpoint secret: `whsec_` + base64 of 32 random bytes.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", STANDARD.encode(bytes))
}

/// The Standard Webhooks key of a secret: the base64-decoded part after `whsec_`, or the
/// secret's bytes when it has no such prefix or does not decode.
pub fn standard_key(secret: &str) -> Vec<u8> {
    secret
        .strip_prefix(SECRET_PREFIX)
        .and_then(|b64| STANDARD.decode(b64).ok())
        .unwrap_or_else(|| secret.as_bytes().to_vec())
}

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// `X-Webhook-Signature`: hex HMAC-SHA256 of `body` keyed by the secret string.
pub fn body_signature(secret: &str, body: &[u8]) -> String {
    hex::encode(hmac(secret.as_bytes(), &[body]))
}

/// One Standard Webhooks signature: `v1,<base64>`.
pub fn standard_signature(secret: &str, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    let ts = timestamp.to_string();
    let mac = hmac(
        &standard_key(secret),
        &[msg_id.as_bytes(), b".", ts.as_bytes(), b".", body],
    );
    format!("v1,{}", STANDARD.encode(mac))
}

/// The `webhook-signature` header: one signature per secret, space-separated (several while a
/// rotated secret still overlaps).
pub fn standard_header(secrets: &[&str], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| standard_signature(s, msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_webhooks_published_vector() {
        // From the Standard Webhooks specification's reference test suite.
        let sig = standard_signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn body_signature_is_hex_hmac_of_the_secret_string() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            body_signature("Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn secrets_have_the_contract_shape_and_overlap_lists_both() {
        let s = new_secret();
        assert!(s.starts_with("whsec_"));
        assert_eq!(standard_key(&s).len(), 32);
        assert_ne!(new_secret(), s);
        let header = standard_header(
            &[&s, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
            "msg_1",
            1,
            b"{}",
        );
        assert_eq!(header.split(' ').count(), 2);
        assert!(header.split(' ').all(|p| p.starts_with("v1,")));
    }
}
