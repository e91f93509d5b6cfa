//! Endpoint signing secrets at rest (CONTRACT §5: "stored encrypted when `delivery.secret_key`
//! is configured").
//!
//! A [`SecretSealer`] holds the optional key. Sealed values are versioned text,
//! `enc:v1:` + base64(24-byte nonce ‖ XChaCha20-Poly1305 ciphertext and tag), with the endpoint
//! id as associated data, so a sealed secret copied onto another endpoint does not open. Anything
//! without the prefix is a plaintext secret from before a key was set (or stored without one) and
//! opens as itself, so existing rows keep working and are sealed on their next write.
//!
//! Endpoints are stored sealed and travel sealed through the store and the API; only the
//! delivery pool opens them, into copies used for signing and never written back.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;

use super::endpoint::Endpoint;
use crate::store::SharedStore;

/// Prefix of a sealed value; the version names the format and the cipher.
pub const SEALED_PREFIX: &str = "enc:v1:";
const NONCE_LEN: usize = 24;

/// Why a secret could not be sealed or opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// `delivery.secret_key` is not base64 of 32 bytes.
    #[error("the key must be base64 of exactly 32 bytes")]
    BadKey,
    /// A sealed value is stored but no key is configured.
    #[error("endpoint {0}: its secret is stored encrypted but delivery.secret_key is empty")]
    NoKey(String),
    /// The value does not decrypt with this key (another key, or tampered).
    #[error("endpoint {0}: its stored secret does not decrypt with delivery.secret_key")]
    WrongKey(String),
    /// The store failed while endpoints were checked.
    #[error("{0}")]
    Store(String),
}

/// Seals and opens endpoint secrets with the configured key, or passes them through without one.
/// Cheap to clone.
#[derive(Clone, Default)]
pub struct SecretSealer {
    cipher: Option<XChaCha20Poly1305>,
}

impl std::fmt::Debug for SecretSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretSealer")
            .field("enabled", &self.enabled())
            .finish()
    }
}

impl SecretSealer {
    /// A sealer for `key_b64` (base64 of 32 bytes); empty means secrets are stored as they are.
    pub fn from_base64(key_b64: &str) -> Result<Self, SealError> {
        let key_b64 = key_b64.trim();
        if key_b64.is_empty() {
            return Ok(SecretSealer::default());
        }
        let key = STANDARD.decode(key_b64).map_err(|_| SealError::BadKey)?;
        if key.len() != 32 {
            return Err(SealError::BadKey);
        }
        let cipher = XChaCha20Poly1305::new_from_slice(&key).map_err(|_| SealError::BadKey)?;
        Ok(SecretSealer {
            cipher: Some(cipher),
        })
    }

    /// Whether a key is configured.
    pub fn enabled(&self) -> bool {
        self.cipher.is_some()
    }

    /// Whether `stored` is a sealed value (as opposed to a plaintext secret).
    pub fn is_sealed(stored: &str) -> bool {
        stored.starts_with(SEALED_PREFIX)
    }

    /// Seals `secret` for endpoint `id`; without a key, or when already sealed, returns it as is.
    pub fn seal(&self, id: &str, secret: &str) -> String {
        let Some(cipher) = &self.cipher else {
            return secret.to_string();
        };
        if Self::is_sealed(secret) {
            return secret.to_string();
        }
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: secret.as_bytes(),
                    aad: id.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encrypts any message below 256 GiB");
        let mut raw = nonce.to_vec();
        raw.extend_from_slice(&sealed);
        format!("{SEALED_PREFIX}{}", STANDARD.encode(raw))
    }

    /// Opens a stored value of endpoint `id`: a sealed one with the key, a plaintext one as is.
    pub fn open(&self, id: &str, stored: &str) -> Result<String, SealError> {
        let Some(b64) = stored.strip_prefix(SEALED_PREFIX) else {
            return Ok(stored.to_string());
        };
        let cipher = self
            .cipher
            .as_ref()
            .ok_or_else(|| SealError::NoKey(id.to_string()))?;
        let wrong = || SealError::WrongKey(id.to_string());
        let raw = STANDARD.decode(b64).map_err(|_| wrong())?;
        if raw.len() < NONCE_LEN {
            return Err(wrong());
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| wrong())?;
        let plain = cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: sealed,
                    aad: id.as_bytes(),
                },
            )
            .map_err(|_| wrong())?;
        String::from_utf8(plain).map_err(|_| wrong())
    }

    /// Seals every secret of `endpoint` that is not sealed yet (before it is stored).
    pub fn seal_endpoint(&self, endpoint: &mut Endpoint) {
        endpoint.secret = self.seal(&endpoint.id, &endpoint.secret);
        if let Some(prev) = endpoint.previous_secret.as_mut() {
            prev.secret = self.seal(&endpoint.id, &prev.secret);
        }
    }

    /// A copy of `endpoint` with its secrets opened, for signing. Never store it.
    pub fn opened(&self, endpoint: &Endpoint) -> Result<Endpoint, SealError> {
        let mut open = endpoint.clone();
        open.secret = self.open(&endpoint.id, &endpoint.secret)?;
        if let Some(prev) = open.previous_secret.as_mut() {
            prev.secret = self.open(&endpoint.id, &prev.secret)?;
        }
        Ok(open)
    }

    /// Whether storing `endpoint` again would change it: a key is set and a secret is still
    /// plaintext.
    pub fn needs_sealing(&self, endpoint: &Endpoint) -> bool {
        self.enabled()
            && (!Self::is_sealed(&endpoint.secret)
                || endpoint
                    .previous_secret
                    .as_ref()
                    .is_some_and(|p| !Self::is_sealed(&p.secret)))
    }
}

/// At start: checks that every stored endpoint secret opens with `sealer` (so a wrong or missing
/// key stops casehub instead of failing every delivery), and with a key set seals the plaintext
/// secrets stored before it was. Returns how many endpoints were sealed.
pub async fn seal_stored(store: &SharedStore, sealer: &SecretSealer) -> Result<usize, SealError> {
    let store_err = |e: crate::store::StoreError| SealError::Store(e.to_string());
    let mut sealed = 0;
    for mut endpoint in store.list_endpoints().await.map_err(store_err)? {
        sealer.opened(&endpoint)?;
        if sealer.needs_sealing(&endpoint) {
            sealer.seal_endpoint(&mut endpoint);
            store.put_endpoint(&endpoint).await.map_err(store_err)?;
            sealed += 1;
        }
    }
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::delivery::EventPattern;
    use crate::delivery::signing::new_secret;

    fn key() -> String {
        STANDARD.encode([7u8; 32])
    }

    fn endpoint() -> Endpoint {
        Endpoint::new(
            "https://example.com/hook".into(),
            vec![EventPattern::All],
            Utc::now(),
        )
    }

    #[test]
    fn sealed_values_are_versioned_fresh_and_open_again() {
        let sealer = SecretSealer::from_base64(&key()).unwrap();
        let secret = new_secret();
        let a = sealer.seal("wh_1", &secret);
        let b = sealer.seal("wh_1", &secret);
        assert!(a.starts_with(SEALED_PREFIX));
        assert!(!a.contains(&secret) && !a.contains(&secret["whsec_".len()..]));
        assert_ne!(a, b, "a fresh nonce per seal");
        assert_eq!(sealer.open("wh_1", &a).unwrap(), secret);
        // Sealing is idempotent.
        assert_eq!(sealer.seal("wh_1", &a), a);
    }

    #[test]
    fn the_endpoint_id_and_the_key_bind_a_sealed_value() {
        let sealer = SecretSealer::from_base64(&key()).unwrap();
        let sealed = sealer.seal("wh_1", "whsec_abc");
        assert_eq!(
            sealer.open("wh_2", &sealed),
            Err(SealError::WrongKey("wh_2".into()))
        );
        let other = SecretSealer::from_base64(&STANDARD.encode([8u8; 32])).unwrap();
        assert!(matches!(
            other.open("wh_1", &sealed),
            Err(SealError::WrongKey(_))
        ));
        let none = SecretSealer::default();
        assert_eq!(
            none.open("wh_1", &sealed),
            Err(SealError::NoKey("wh_1".into()))
        );
        let mut tampered = sealed.clone();
        tampered.pop();
        tampered.push(if sealed.ends_with('A') { 'B' } else { 'A' });
        assert!(sealer.open("wh_1", &tampered).is_err());
    }

    #[test]
    fn plaintext_rows_open_as_they_are_and_without_a_key_nothing_changes() {
        let sealer = SecretSealer::from_base64(&key()).unwrap();
        assert_eq!(sealer.open("wh_1", "whsec_plain").unwrap(), "whsec_plain");
        let none = SecretSealer::from_base64("").unwrap();
        assert!(!none.enabled());
        assert_eq!(none.seal("wh_1", "whsec_plain"), "whsec_plain");
        for bad in ["c2hvcnQ=", "not base64!"] {
            assert_eq!(
                SecretSealer::from_base64(bad).err(),
                Some(SealError::BadKey)
            );
        }
    }

    #[test]
    fn endpoints_seal_both_secrets_and_open_into_a_signing_copy() {
        let sealer = SecretSealer::from_base64(&key()).unwrap();
        let now = Utc::now();
        let mut e = endpoint();
        e.rotate_secret(now);
        let plain = e.clone();
        assert!(sealer.needs_sealing(&e));
        sealer.seal_endpoint(&mut e);
        assert!(!sealer.needs_sealing(&e));
        let stored = serde_json::to_string(&e).unwrap();
        assert!(!stored.contains(&plain.secret));
        let prev = &plain.previous_secret.as_ref().unwrap().secret;
        assert!(!stored.contains(prev.as_str()));
        let open = sealer.opened(&e).unwrap();
        assert_eq!(open, plain);
        assert_eq!(
            open.signing_secrets(now),
            vec![plain.secret.as_str(), prev.as_str()]
        );
    }
}
