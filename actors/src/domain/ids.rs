//! Identifiers with the shapes CONTRACT §1 fixes.

use chrono::{DateTime, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Namespace for customer ids derived from an email address (UUID v5).
const CUSTOMER_NAMESPACE: Uuid = Uuid::from_u128(0x6a1c_44f0_3f2b_4c7e_9a51_0c0f_ca5e_4b0b);

/// A case id: a UUID v4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CaseId(pub Uuid);

impl CaseId {
    /// A fresh random (v4) id.
    pub fn new() -> Self {
        CaseId(Uuid::new_v4())
    }

    /// Parses any RFC 4122 UUID in hyphenated form.
    pub fn parse(s: &str) -> Option<Self> {
        parse_uuid(s).map(CaseId)
    }
}

impl Default for CaseId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for CaseId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Parses a hyphenated UUID (the only form the contract uses).
pub fn parse_uuid(s: &str) -> Option<Uuid> {
    if s.len() != 36 {
        return None;
    }
    Uuid::parse_str(s).ok()
}

/// The stable customer id for an email address when the caller gives none.
pub fn customer_id_for_email(email: &str) -> Uuid {
    Uuid::new_v5(&CUSTOMER_NAMESPACE, email.trim().to_lowercase().as_bytes())
}

fn random_alnum(len: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(|b| (b as char).to_ascii_lowercase())
        .collect()
}

/// A review id: `rev-` + 12 lowercase alphanumerics.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ReviewId(pub String);

impl ReviewId {
    /// A fresh random id.
    pub fn new() -> Self {
        ReviewId(format!("rev-{}", random_alnum(12)))
    }

    /// Accepts `rev-` followed by 12 or more lowercase alphanumerics.
    pub fn parse(s: &str) -> Option<Self> {
        let rest = s.strip_prefix("rev-")?;
        let ok = rest.len() >= 12
            && rest.len() <= 64
            && rest
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        ok.then(|| ReviewId(s.to_string()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ReviewId {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Display for ReviewId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A request id: `REQ-YYYYMMDD-` + 6 lowercase alphanumerics.
pub fn new_request_id(now: DateTime<Utc>) -> String {
    format!("REQ-{}-{}", now.format("%Y%m%d"), random_alnum(6))
}

/// Monotonic within this process, so events recorded in the same millisecond keep their order.
static MSG_IDS: parking_lot::Mutex<ulid::Generator> =
    parking_lot::Mutex::new(ulid::Generator::new());

/// A ULID for `now`, strictly after every earlier one made by this process.
pub fn new_ulid(now: DateTime<Utc>) -> ulid::Ulid {
    let at = std::time::SystemTime::from(now);
    MSG_IDS
        .lock()
        .generate_from_datetime(at)
        .unwrap_or_else(|_| {
            // Only after 2^80 ids in one millisecond: fall back to a random one.
            ulid::Ulid::from_parts(now.timestamp_millis().max(0) as u64, rand::rng().random())
        })
}

/// A message (event) id: `msg_` + ULID. Ids sort in the order they were made.
pub fn new_msg_id(now: DateTime<Utc>) -> String {
    format!("msg_{}", new_ulid(now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_contract_shapes() {
        let r = ReviewId::new();
        assert!(ReviewId::parse(r.as_str()).is_some());
        assert!(ReviewId::parse("rev-ABC").is_none());
        let req = new_request_id(Utc::now());
        assert!(req.starts_with("REQ-") && req.len() == 4 + 8 + 1 + 6);
        let now = Utc::now();
        let ids: Vec<String> = (0..100).map(|_| new_msg_id(now)).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids[0].starts_with("msg_"));
        assert_eq!(CaseId::new().0.get_version_num(), 4);
        assert_eq!(
            customer_id_for_email("A@b.com"),
            customer_id_for_email("a@b.com ")
        );
        assert!(CaseId::parse("not-a-uuid").is_none());
    }
}
