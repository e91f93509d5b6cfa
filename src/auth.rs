//! Who is calling (CONTRACT §2): API keys (header or path token), the IP allowlist, signed link
//! tokens and reviewer JWTs. Secrets are compared in constant time.

use std::net::IpAddr;

use axum::http::HeaderMap;
use casehub_actors::domain::CaseId;
use casehub_actors::links::{LinkAction, LinkSigner};
use ipnet::IpNet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::settings::{Role, Settings};

/// Parses `a.b.c.d/n`, `::/n` or a bare address (a /32 or /128).
pub fn parse_cidr(s: &str) -> Option<IpNet> {
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}

/// An authenticated API-key caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub role: Role,
    /// A stable, non-secret name for the key (scopes idempotency keys and rate limits).
    pub fingerprint: String,
}

/// Reviewer token claims.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReviewerClaims {
    /// Reviewer email.
    pub sub: String,
    /// Room names, or `["*"]`.
    pub rooms: Vec<String>,
    pub exp: i64,
    #[serde(default)]
    pub iat: i64,
}

impl ReviewerClaims {
    /// True when the token covers `room`.
    pub fn may_enter(&self, room: &str) -> bool {
        self.rooms.iter().any(|r| r == "*" || r == room)
    }
}

/// The configured credentials.
pub struct Auth {
    keys: Vec<(Vec<u8>, Role, String)>,
    allowlist: Vec<IpNet>,
    reviewer_key: (EncodingKey, DecodingKey),
    pub links: LinkSigner,
    pub require_link_tokens: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("keys", &self.keys.len())
            .field("allowlist", &self.allowlist)
            .finish_non_exhaustive()
    }
}

fn fingerprint(key: &str) -> String {
    let digest = Sha256::digest(key.as_bytes());
    format!("key-{}", hex::encode(&digest[..6]))
}

impl Auth {
    /// Builds from validated settings.
    pub fn new(settings: &Settings) -> Self {
        let a = &settings.auth;
        let secret = a.reviewer_secret.expose().as_bytes();
        Auth {
            keys: a
                .api_keys
                .iter()
                .map(|k| {
                    let key = k.key.expose();
                    (key.as_bytes().to_vec(), k.role, fingerprint(key))
                })
                .collect(),
            allowlist: a
                .ip_allowlist
                .iter()
                .filter_map(|c| parse_cidr(c))
                .collect(),
            reviewer_key: (
                EncodingKey::from_secret(secret),
                DecodingKey::from_secret(secret),
            ),
            links: LinkSigner::new(&settings.server.public_url, a.link_secret.expose()),
            require_link_tokens: a.require_link_tokens,
        }
    }

    /// The caller a presented key belongs to (checking every key, in constant time each).
    pub fn lookup(&self, presented: &str) -> Option<Caller> {
        let mut found = None;
        for (key, role, fp) in &self.keys {
            if bool::from(key.as_slice().ct_eq(presented.as_bytes())) {
                found = Some(Caller {
                    role: *role,
                    fingerprint: fp.clone(),
                });
            }
        }
        found
    }

    fn ip_allowed(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map(IpAddr::V4)
                .unwrap_or(IpAddr::V6(v6)),
            v4 => v4,
        };
        self.allowlist.is_empty() || self.allowlist.iter().any(|net| net.contains(&ip))
    }

    /// The API key from `X-API-Key` or, failing that, the path token.
    pub fn presented_key<'a>(headers: &'a HeaderMap, path_key: Option<&'a str>) -> Option<&'a str> {
        headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .or(path_key)
            .filter(|k| !k.is_empty())
    }

    /// Requires a valid API key from an allowed address: 401 without one, 403 from elsewhere.
    pub fn require_key(
        &self,
        headers: &HeaderMap,
        path_key: Option<&str>,
        ip: IpAddr,
    ) -> Result<Caller, ApiError> {
        let Some(presented) = Self::presented_key(headers, path_key) else {
            return Err(ApiError::unauthorized(
                "An API key is required (X-API-Key header or path token)",
            ));
        };
        self.check_key(presented, ip)
    }

    /// Checks a presented key: 401 when unknown, 403 when the address is not allowed.
    pub fn check_key(&self, presented: &str, ip: IpAddr) -> Result<Caller, ApiError> {
        let caller = self
            .lookup(presented)
            .ok_or_else(|| ApiError::unauthorized("Invalid API key"))?;
        if !self.ip_allowed(ip) {
            return Err(ApiError::forbidden(
                "Requests from this address are not allowed",
            ));
        }
        Ok(caller)
    }

    /// Requires an admin key.
    pub fn require_admin(&self, headers: &HeaderMap, ip: IpAddr) -> Result<Caller, ApiError> {
        let caller = self.require_key(headers, None, ip)?;
        if caller.role != Role::Admin {
            return Err(ApiError::forbidden("This endpoint needs an admin API key"));
        }
        Ok(caller)
    }

    /// A customer link: an API key (if one is presented it must be valid) or the link token for
    /// `action` on `case`. 403 when the token is missing or wrong (unless tokens are not required).
    pub fn require_link(
        &self,
        headers: &HeaderMap,
        ip: IpAddr,
        case: CaseId,
        action: LinkAction,
        token: Option<&str>,
    ) -> Result<(), ApiError> {
        if let Some(key) = Self::presented_key(headers, None) {
            return self.check_key(key, ip).map(|_| ());
        }
        if !self.require_link_tokens {
            return Ok(());
        }
        match token {
            Some(t) if self.links.verify(case, action, t) => Ok(()),
            Some(_) => Err(ApiError::forbidden("Invalid link token")),
            None => Err(ApiError::forbidden("This link needs its token")),
        }
    }

    /// Verifies a reviewer token (signature, expiry, algorithm).
    pub fn verify_reviewer(&self, token: &str) -> Result<ReviewerClaims, ApiError> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 5;
        jsonwebtoken::decode::<ReviewerClaims>(token, &self.reviewer_key.1, &validation)
            .map(|data| data.claims)
            .map_err(|_| ApiError::unauthorized("Invalid or expired reviewer token"))
    }

    /// The bearer token of `Authorization`, if any.
    pub fn bearer(headers: &HeaderMap) -> Option<&str> {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
    }

    /// Either an API key or a reviewer token. Returns the reviewer's claims when it was a token.
    pub fn require_key_or_reviewer(
        &self,
        headers: &HeaderMap,
        ip: IpAddr,
    ) -> Result<Option<ReviewerClaims>, ApiError> {
        if let Some(key) = Self::presented_key(headers, None) {
            return self.check_key(key, ip).map(|_| None);
        }
        match Self::bearer(headers) {
            Some(token) => self.verify_reviewer(token).map(Some),
            None => Err(ApiError::unauthorized(
                "An API key or a reviewer token (Authorization: Bearer) is required",
            )),
        }
    }

    /// Mints a reviewer token.
    pub fn mint_reviewer(
        &self,
        reviewer: &str,
        rooms: &[String],
        ttl: std::time::Duration,
    ) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = ReviewerClaims {
            sub: reviewer.to_string(),
            rooms: rooms.to_vec(),
            iat: now,
            exp: now + ttl.as_secs() as i64,
        };
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.reviewer_key.0,
        )
        .expect("HS256 encoding cannot fail")
    }
}
