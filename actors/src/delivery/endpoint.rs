//! Webhook endpoints (CONTRACT §5, seed 003's shape): where events go, which ones, and how.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::pattern::EventPattern;
use super::signing::new_secret;

/// How long a rotated-out secret keeps signing next to the new one.
pub const ROTATION_OVERLAP: Duration = Duration::from_secs(24 * 3600);

/// Whether an endpoint receives deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointStatus {
    Active,
    /// Keeps its queue; receives it when set active again.
    Paused,
    /// Disabled by a 410, by failing too long, or by an operator.
    Disabled,
}

/// Payload shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PayloadFormat {
    /// The seed 000 envelope.
    #[default]
    Json,
    /// A Slack incoming-webhook message.
    Slack,
}

/// Delivery order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryOrdering {
    #[default]
    Parallel,
    /// Strictly one after another, in event order.
    Fifo,
}

/// A delay written as a humantime string (`"5s"`, `"2m"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Delay(#[serde(with = "humantime_serde")] pub Duration);

/// When to retry a failed attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum RetryPolicy {
    /// Fixed delays after the first attempt, then give up (seed 000: 1 s, 5 s, 30 s).
    Schedule { delays: Vec<Delay> },
    /// `base * factor^n` with full jitter, until `max_age` after the event (seed 002).
    Exponential {
        #[serde(with = "humantime_serde")]
        base: Duration,
        factor: f64,
        #[serde(with = "humantime_serde")]
        max_age: Duration,
    },
}

impl RetryPolicy {
    /// Checks bounds; the message names the offending field.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            RetryPolicy::Schedule { delays } => {
                if delays.len() > 50 {
                    return Err("retry_policy.delays: at most 50 entries".into());
                }
                if delays
                    .iter()
                    .any(|d| d.0 > Duration::from_secs(7 * 24 * 3600))
                {
                    return Err("retry_policy.delays: each delay at most 7 days".into());
                }
            }
            RetryPolicy::Exponential {
                base,
                factor,
                max_age,
            } => {
                if base.is_zero() {
                    return Err("retry_policy.base: must be positive".into());
                }
                if !(1.0..=10.0).contains(factor) {
                    return Err("retry_policy.factor: must be between 1 and 10".into());
                }
                if max_age.is_zero() || *max_age > Duration::from_secs(30 * 24 * 3600) {
                    return Err("retry_policy.max_age: must be between 1 s and 30 days".into());
                }
            }
        }
        Ok(())
    }
}

/// A secret that still signs until `until` after a rotation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetiringSecret {
    pub secret: String,
    pub until: DateTime<Utc>,
}

/// A webhook endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    /// `wh_` + ULID.
    pub id: String,
    pub url: String,
    pub events: Vec<EventPattern>,
    pub description: Option<String>,
    pub status: EndpointStatus,
    pub format: PayloadFormat,
    /// `None`: the global policy.
    pub retry_policy: Option<RetryPolicy>,
    /// Deliveries per second at most, `None`: unthrottled.
    pub rate_limit: Option<u32>,
    pub ordering: DeliveryOrdering,
    pub secret: String,
    pub previous_secret: Option<RetiringSecret>,
    pub disabled_reason: Option<String>,
    /// Since when every attempt has failed; cleared by a success.
    #[serde(default)]
    pub failing_since: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Endpoint {
    /// A new active endpoint with a fresh id (ordered by creation) and secret.
    pub fn new(url: String, events: Vec<EventPattern>, now: DateTime<Utc>) -> Self {
        Endpoint {
            id: format!("wh_{}", crate::domain::new_ulid(now)),
            url,
            events,
            description: None,
            status: EndpointStatus::Active,
            format: PayloadFormat::Json,
            retry_policy: None,
            rate_limit: None,
            ordering: DeliveryOrdering::Parallel,
            secret: new_secret(),
            previous_secret: None,
            disabled_reason: None,
            failing_since: None,
            created_at: now,
            updated_at: now,
        }
    }

    /// Whether the endpoint subscribes to `event`.
    pub fn subscribes(&self, event: &str) -> bool {
        self.events.iter().any(|p| p.matches(event))
    }

    /// Replaces the secret; the old one keeps signing for [`ROTATION_OVERLAP`].
    pub fn rotate_secret(&mut self, now: DateTime<Utc>) {
        let overlap = chrono::Duration::from_std(ROTATION_OVERLAP).unwrap_or_default();
        let old = std::mem::replace(&mut self.secret, new_secret());
        self.previous_secret = Some(RetiringSecret {
            secret: old,
            until: now + overlap,
        });
        self.updated_at = now;
    }

    /// The secrets that sign a delivery made at `now`: the current one, and the rotated-out one
    /// while it overlaps.
    pub fn signing_secrets(&self, now: DateTime<Utc>) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let Some(prev) = self.previous_secret.as_ref().filter(|p| now < p.until) {
            secrets.push(prev.secret.as_str());
        }
        secrets
    }

    /// The public view: everything but the secrets.
    pub fn view(&self) -> Value {
        json!({
            "id": self.id,
            "url": self.url,
            "events": self.events,
            "description": self.description,
            "status": self.status,
            "format": self.format,
            "retry_policy": self.retry_policy,
            "rate_limit": self.rate_limit,
            "ordering": self.ordering,
            "disabled_reason": self.disabled_reason,
            "failing_since": self.failing_since,
            "secret_rotation_overlap_until": self.previous_secret.as_ref().map(|p| p.until),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_overlaps_for_a_day() {
        let now = Utc::now();
        let mut e = Endpoint::new(
            "https://example.com/hook".into(),
            vec![EventPattern::All],
            now,
        );
        assert!(e.id.starts_with("wh_") && e.id.len() == 29);
        let first = e.secret.clone();
        e.rotate_secret(now);
        assert_ne!(e.secret, first);
        assert_eq!(
            e.signing_secrets(now),
            vec![e.secret.as_str(), first.as_str()]
        );
        let later = now + chrono::Duration::hours(25);
        assert_eq!(e.signing_secrets(later), vec![e.secret.as_str()]);
        assert!(e.view().get("secret").is_none());
        assert!(e.subscribes("case.created"));
    }

    #[test]
    fn retry_policies_parse_and_validate() {
        let p: RetryPolicy =
            serde_json::from_value(json!({"kind": "schedule", "delays": ["1s", "5s", "30s"]}))
                .unwrap();
        assert!(p.validate().is_ok());
        let p: RetryPolicy = serde_json::from_value(
            json!({"kind": "exponential", "base": "1s", "factor": 2.0, "max_age": "24h"}),
        )
        .unwrap();
        assert!(p.validate().is_ok());
        let bad: RetryPolicy = serde_json::from_value(
            json!({"kind": "exponential", "base": "1s", "factor": 0.5, "max_age": "24h"}),
        )
        .unwrap();
        assert!(bad.validate().unwrap_err().contains("retry_policy.factor"));
        assert!(serde_json::from_value::<RetryPolicy>(json!({"kind": "linear"})).is_err());
    }
}
