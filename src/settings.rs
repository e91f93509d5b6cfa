//! Typed settings, loaded once: `config/default.toml` (compiled in), then `--config FILE`, then
//! `CASEHUB__SECTION__KEY` environment variables. Invalid settings fail at start with a message
//! naming the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use casehub_actors::alerts::AlertSettings;
use casehub_actors::routing::ReviewRouting;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

/// The defaults, documented key by key.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// A secret string that never prints.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }

    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// All settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub server: ServerSettings,
    pub store: StoreSettings,
    pub cluster: casehub_actors::cluster::ClusterSettings,
    pub auth: AuthSettings,
    pub rate_limits: RateLimitSettings,
    pub cases: CaseSettings,
    pub triage: TriageSettings,
    pub reviews: ReviewRouting,
    pub rooms: casehub_actors::rooms::RoomSettings,
    pub alerts: AlertSettings,
    pub delivery: DeliverySettings,
    pub widget: WidgetSettings,
    pub idempotency: IdempotencySettings,
    pub log: LogSettings,
    pub testing: TestingSettings,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    pub bind: String,
    pub public_url: String,
    pub body_limit: usize,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Kernel send buffer per accepted connection in bytes; 0 keeps the OS default.
    pub tcp_send_buffer: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    pub url: String,
    pub data_dir: PathBuf,
    pub key_prefix: String,
    pub durable: bool,
    pub cache_mb: usize,
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl StoreSettings {
    /// True when `url` selects Redis.
    pub fn is_redis(&self) -> bool {
        !self.url.is_empty()
    }
}

/// What an API key may do.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Systems calling the support workflow.
    Client,
    /// Everything a client may, plus `/v1/*`, `/ops/*` and `/metrics`.
    Admin,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKey {
    pub key: Secret,
    pub role: Role,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    pub api_keys: Vec<ApiKey>,
    pub reviewer_secret: Secret,
    pub link_secret: Secret,
    pub require_link_tokens: bool,
    pub ip_allowlist: Vec<String>,
    pub allow_dev_secrets: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    pub enabled: bool,
    pub intake: u32,
    pub self_service: u32,
    pub approve: u32,
    pub feedback: u32,
    pub collaborative: u32,
    pub review: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseSettings {
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub passivation_sweep: Duration,
    pub shards: usize,
    pub max_active: usize,
    pub max_in_flight: usize,
    pub restart_budget: usize,
    #[serde(with = "humantime_serde")]
    pub restart_window: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriageSettings {
    pub rules_file: String,
    pub knowledge_base_file: String,
    pub similar_cases_window: usize,
}

/// Webhooks in and out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliverySettings {
    pub allow_private_targets: bool,
    /// Secret for `POST /api/webhooks/receive`; empty accepts unsigned requests.
    pub inbound_secret: Secret,
    /// Standard Webhooks timestamps further than this from now are refused.
    #[serde(with = "humantime_serde")]
    pub inbound_tolerance: Duration,
    /// Per-attempt timeout of outgoing deliveries, in milliseconds.
    pub timeout_ms: u64,
    /// Delays after the first attempt, then `failed`.
    #[serde(deserialize_with = "durations")]
    pub retry_schedule: Vec<Duration>,
    /// Delivery workers in the pool.
    pub workers: usize,
    /// Deliveries in flight per endpoint at most.
    pub per_endpoint_concurrency: usize,
    /// Threads of the delivery pool's own runtime (HTTP intake keeps the server's runtime; on
    /// the Redis store the pool shares the server's runtime and this is not used).
    pub threads: usize,
    /// How often due retries are looked for.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Failures in a row that open an endpoint's circuit.
    pub circuit_threshold: u32,
    /// How long an open circuit holds an endpoint's deliveries before one probe.
    #[serde(with = "humantime_serde")]
    pub circuit_cooldown: Duration,
    /// An endpoint failing without a single success this long is disabled.
    #[serde(with = "humantime_serde")]
    pub disable_after: Duration,
    /// Base64 of 32 bytes: endpoint secrets are stored encrypted with it; empty stores them as
    /// they are (casehub warns at start).
    pub secret_key: Secret,
    /// Where approved automated fixes are sent (CONTRACT §3 approve); empty: approval means the
    /// customer applied the steps.
    pub fix_executor_url: String,
    /// Standard Webhooks secret (`whsec_` + base64) that signs fix requests.
    pub fix_executor_secret: Secret,
}

/// A Standard Webhooks secret: `whsec_` + base64 of 24 to 64 random bytes.
fn valid_webhook_secret(secret: &str) -> bool {
    use base64::Engine;
    secret
        .strip_prefix("whsec_")
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .is_some_and(|key| (24..=64).contains(&key.len()))
}

fn durations<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    let raw: Vec<String> = Deserialize::deserialize(d)?;
    raw.iter()
        .map(|s| humantime::parse_duration(s).map_err(serde::de::Error::custom))
        .collect()
}

/// The embeddable contact form.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WidgetSettings {
    /// Keys accepted by `POST /api/widget/contact` (body `apiKey` or `X-API-Key`).
    pub api_keys: Vec<Secret>,
    /// Origins allowed by CORS; `"*"` allows any.
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdempotencySettings {
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
}

/// Log output form.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    pub format: LogFormat,
    pub level: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestingSettings {
    pub fault_injection: bool,
}

/// A setting that cannot be used, naming its key.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct SettingsError(pub String);

/// The development secrets shipped in `config/default.toml`.
const DEV_SECRETS: &[&str] = &[
    "dev-client-key",
    "dev-admin-key",
    "change-me",
    "change-me-too",
];

impl Settings {
    /// Defaults, then `file` (which must exist), then `CASEHUB__…` environment variables.
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        let mut figment = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(file) = file {
            if !file.is_file() {
                return Err(SettingsError(format!(
                    "--config {}: no such file",
                    file.display()
                )));
            }
            figment = figment.merge(Toml::file(file));
        }
        figment = figment.merge(Env::prefixed("CASEHUB__").split("__"));
        Self::extract(figment)
    }

    /// The compiled-in defaults only (tests start from these).
    pub fn defaults() -> Settings {
        Self::extract(Figment::from(Toml::string(DEFAULT_TOML)))
            .expect("config/default.toml is valid")
    }

    fn extract(figment: Figment) -> Result<Settings, SettingsError> {
        let settings: Settings = figment.extract().map_err(|e| {
            let mut messages = Vec::new();
            for e in e {
                let key = e.path.join(".");
                if key.is_empty() {
                    messages.push(e.kind.to_string());
                } else {
                    messages.push(format!("{key}: {}", e.kind));
                }
            }
            SettingsError(messages.join("; "))
        })?;
        settings.validate()?;
        Ok(settings)
    }

    /// The bind address, parsed.
    pub fn bind_addr(&self) -> Result<SocketAddr, SettingsError> {
        self.server.bind.parse().map_err(|_| {
            SettingsError(format!(
                "server.bind: {:?} is not an address:port",
                self.server.bind
            ))
        })
    }

    /// Checks what types cannot; every message names its key.
    pub fn validate(&self) -> Result<(), SettingsError> {
        let fail = |m: String| Err(SettingsError(m));
        self.bind_addr()?;
        let url = &self.server.public_url;
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() < 10 {
            return fail(format!("server.public_url: {url:?} is not an http(s) URL"));
        }
        if self.server.body_limit < 1024 {
            return fail("server.body_limit: must be at least 1024 bytes".into());
        }
        let store_url = &self.store.url;
        if !(store_url.is_empty()
            || store_url.starts_with("redis://")
            || store_url.starts_with("rediss://"))
        {
            return fail(format!(
                "store.url: {:?} must be empty (embedded) or redis://…",
                self.store.url
            ));
        }
        if self.store.timeout.is_zero() {
            return fail("store.timeout: must be positive".into());
        }
        let c = &self.cluster;
        if c.lease_ttl < Duration::from_secs(1) || c.lease_ttl < self.store.timeout * 2 {
            return fail(
                "cluster.lease_ttl: must be at least 1s and twice store.timeout (a renewal may                  take a store.timeout)"
                    .into(),
            );
        }
        if !c
            .node_id
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            || c.node_id.len() > 64
        {
            return fail("cluster.node_id: letters, digits, - and _ only, at most 64".into());
        }
        if self.auth.api_keys.is_empty() {
            return fail("auth.api_keys: at least one key is required".into());
        }
        for (i, k) in self.auth.api_keys.iter().enumerate() {
            if k.key.expose().len() < 8 {
                return fail(format!(
                    "auth.api_keys[{i}].key: must be at least 8 characters"
                ));
            }
        }
        if self.auth.reviewer_secret.expose().len() < 8 {
            return fail("auth.reviewer_secret: must be at least 8 characters".into());
        }
        if self.auth.link_secret.expose().len() < 8 {
            return fail("auth.link_secret: must be at least 8 characters".into());
        }
        for (i, cidr) in self.auth.ip_allowlist.iter().enumerate() {
            if crate::auth::parse_cidr(cidr).is_none() {
                return fail(format!("auth.ip_allowlist[{i}]: {cidr:?} is not a CIDR"));
            }
        }
        let r = &self.rate_limits;
        for (key, v) in [
            ("intake", r.intake),
            ("self_service", r.self_service),
            ("approve", r.approve),
            ("feedback", r.feedback),
            ("collaborative", r.collaborative),
            ("review", r.review),
        ] {
            if v == 0 {
                return fail(format!("rate_limits.{key}: must be at least 1 per minute"));
            }
        }
        if self.cases.shards == 0 || self.cases.shards > 1024 {
            return fail("cases.shards: must be between 1 and 1024".into());
        }
        if self.cases.max_in_flight == 0 {
            return fail("cases.max_in_flight: must be at least 1".into());
        }
        if self.cases.idle_timeout.is_zero() {
            return fail("cases.idle_timeout: must be positive".into());
        }
        if self.store.cache_mb == 0 || self.store.cache_mb > 1 << 20 {
            return fail("store.cache_mb: must be between 1 and 1048576".into());
        }
        if self.cases.max_active < self.cases.shards {
            return fail("cases.max_active: must be at least cases.shards (one per shard)".into());
        }
        if self.cases.passivation_sweep.is_zero() {
            return fail("cases.passivation_sweep: must be positive".into());
        }
        self.reviews.validate().map_err(SettingsError)?;
        self.rooms.validate().map_err(SettingsError)?;
        let d = &self.delivery;
        if d.timeout_ms == 0 || d.timeout_ms > 120_000 {
            return fail("delivery.timeout_ms: must be 1-120000".into());
        }
        if d.workers == 0 || d.workers > 1024 {
            return fail("delivery.workers: must be 1-1024".into());
        }
        if d.threads == 0 || d.threads > 64 {
            return fail("delivery.threads: must be 1-64".into());
        }
        if d.per_endpoint_concurrency == 0 {
            return fail("delivery.per_endpoint_concurrency: must be at least 1".into());
        }
        if d.workers > 1 && d.per_endpoint_concurrency >= d.workers {
            // Otherwise one endpoint that never answers can hold every worker.
            return fail(format!(
                "delivery.per_endpoint_concurrency: must be below delivery.workers ({}) so one \
                 endpoint cannot take every worker",
                d.workers
            ));
        }
        if d.circuit_threshold == 0 {
            return fail("delivery.circuit_threshold: must be at least 1".into());
        }
        if d.poll_interval.is_zero() {
            return fail("delivery.poll_interval: must be positive".into());
        }
        if self.delivery.inbound_tolerance.is_zero() {
            return fail("delivery.inbound_tolerance: must be positive".into());
        }
        if let Err(e) =
            casehub_actors::delivery::sealing::SecretSealer::from_base64(d.secret_key.expose())
        {
            return fail(format!("delivery.secret_key: {e}"));
        }
        if !d.fix_executor_url.is_empty() {
            let url = &d.fix_executor_url;
            let ok = reqwest::Url::parse(url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some());
            if !ok {
                return fail(format!(
                    "delivery.fix_executor_url: {url:?} is not an http(s) URL"
                ));
            }
            if !valid_webhook_secret(d.fix_executor_secret.expose()) {
                return fail(
                    "delivery.fix_executor_secret: required with fix_executor_url; \
                     whsec_ + base64 of 24 to 64 bytes"
                        .into(),
                );
            }
        }
        for (i, origin) in self.widget.allowed_origins.iter().enumerate() {
            let ok =
                origin == "*" || origin.starts_with("http://") || origin.starts_with("https://");
            if !ok {
                return fail(format!(
                    "widget.allowed_origins[{i}]: {origin:?} is not \"*\" or an http(s) origin"
                ));
            }
        }
        if self.alerts.threshold == 0 {
            return fail("alerts.threshold: must be at least 1".into());
        }
        if self.alerts.window.is_zero() {
            return fail("alerts.window: must be positive".into());
        }
        if self.uses_dev_secrets() && !self.auth.allow_dev_secrets {
            let ip = self.bind_addr()?.ip();
            if !ip.is_loopback() {
                return fail(format!(
                    "auth: development keys or secrets are in use while server.bind is {ip}, \
                     not loopback; set real ones (auth.api_keys, auth.reviewer_secret, \
                     auth.link_secret) or auth.allow_dev_secrets = true"
                ));
            }
        }
        Ok(())
    }

    /// True while any key or secret is one of the shipped development values.
    pub fn uses_dev_secrets(&self) -> bool {
        let a = &self.auth;
        a.api_keys
            .iter()
            .map(|k| k.key.expose())
            .chain(self.widget.api_keys.iter().map(Secret::expose))
            .chain([a.reviewer_secret.expose(), a.link_secret.expose()])
            .any(|s| DEV_SECRETS.contains(&s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let s = Settings::defaults();
        assert_eq!(s.server.bind, "127.0.0.1:8080");
        assert!(s.uses_dev_secrets());
        assert!(format!("{:?}", s.auth).contains("Secret(***)"));
        assert!(!format!("{:?}", s.auth).contains("change-me"));
    }

    #[test]
    fn errors_name_the_key() {
        let bad = |toml: &str| {
            Settings::extract(Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(toml)))
                .unwrap_err()
                .to_string()
        };
        assert!(bad("[server]\nbind = \"nope\"").contains("server.bind"));
        assert!(bad("[cases]\nidle_timeout = \"soon\"").contains("cases.idle_timeout"));
        assert!(bad("[cases]\nmax_active = 0").contains("cases.max_active"));
        assert!(bad("[store]\ncache_mb = 0").contains("store.cache_mb"));
        assert!(bad("[rate_limits]\nintake = 0").contains("rate_limits.intake"));
        assert!(bad("[server]\nbogus = 1").contains("bogus"));
        assert!(bad("[auth]\nip_allowlist = [\"10.0.0.0/99\"]").contains("auth.ip_allowlist[0]"));
        assert!(bad("[server]\nbind = \"0.0.0.0:8080\"").contains("allow_dev_secrets"));
        assert!(bad("[delivery]\nsecret_key = \"c2hvcnQ=\"").contains("delivery.secret_key"));
        assert!(bad("[delivery]\nthreads = 0").contains("delivery.threads"));
        assert!(
            bad("[delivery]\nper_endpoint_concurrency = 16")
                .contains("delivery.per_endpoint_concurrency")
        );
        assert!(
            bad("[delivery]\nfix_executor_url = \"ftp://x\"").contains("delivery.fix_executor_url")
        );
        assert!(
            bad("[delivery]\nfix_executor_url = \"http://fix.internal/run\"")
                .contains("delivery.fix_executor_secret")
        );
    }
}
