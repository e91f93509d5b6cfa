//! The automated-fix executor of CONTRACT §3 (approve), sent through the delivery pool.
//!
//! When a customer approves a solution with an automated fix and an executor is configured, the
//! case commits `executing` together with a `fix.requested` event in the outbox, so the request
//! is durable before the customer gets an answer. The dispatcher turns that event into a job for
//! the built-in target [`FIX_ENDPOINT_ID`] (and never for a webhook endpoint); a worker sends it
//! like any delivery (signed, same headers, retried by the delivery retry schedule) and, once the
//! job is settled, tells the case through [`FixOutcomes`]. The case then reads the job's state
//! from the store: delivered resolves it (`self-service-automated`), failed opens a review.
//! The store is the truth and the message only a wake-up, so a lost message is made good when
//! the case is next loaded or at start ([`crate::case::CaseDirectory::resume_unfinished`]).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::endpoint::{DeliveryOrdering, Endpoint, EndpointStatus, PayloadFormat};
use super::job::{DeliveryJob, DeliveryState};
use super::sender::Sender;
use crate::domain::CaseId;

/// The id the fix executor's jobs are queued under (not a `wh_` id, so never a stored endpoint).
pub const FIX_ENDPOINT_ID: &str = "fix_executor";

/// Where the pool reports a fix job that is settled (delivered, or failed for good).
pub trait FixOutcomes: Send + Sync + 'static {
    /// The fix request of `case_id` is settled; the case reads the outcome from the store.
    fn settled(&self, case_id: CaseId);
}

/// The configured fix executor as the pool sees it.
#[derive(Clone)]
pub struct FixRoute {
    /// The executor as an endpoint: its URL and secret, the global retry schedule.
    pub endpoint: Arc<Endpoint>,
    /// Sends fix requests. The executor's URL is trusted configuration, not an API input, so
    /// this sender may reach private addresses (executors usually live on internal networks).
    pub sender: Sender,
    pub outcomes: Arc<dyn FixOutcomes>,
}

impl std::fmt::Debug for FixRoute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FixRoute")
            .field("url", &self.endpoint.url)
            .finish_non_exhaustive()
    }
}

impl FixRoute {
    /// The executor at `url`, signing with `secret` (`whsec_` + base64), each attempt bounded
    /// by `timeout`.
    pub fn new(
        url: &str,
        secret: &str,
        timeout: Duration,
        outcomes: Arc<dyn FixOutcomes>,
        now: DateTime<Utc>,
    ) -> Result<Self, String> {
        Ok(FixRoute {
            endpoint: Arc::new(fix_endpoint(url, secret, now)),
            sender: Sender::new(timeout, true)?,
            outcomes,
        })
    }
}

/// The fix executor addressed as an endpoint. It subscribes to nothing: only `fix.requested`
/// events are routed to it, by the dispatcher.
pub fn fix_endpoint(url: &str, secret: &str, now: DateTime<Utc>) -> Endpoint {
    Endpoint {
        id: FIX_ENDPOINT_ID.to_string(),
        url: url.to_string(),
        events: Vec::new(),
        description: Some("automated-fix executor (delivery.fix_executor_url)".into()),
        status: EndpointStatus::Active,
        format: PayloadFormat::Json,
        retry_policy: None,
        rate_limit: None,
        ordering: DeliveryOrdering::Parallel,
        secret: secret.to_string(),
        previous_secret: None,
        disabled_reason: None,
        failing_since: None,
        created_at: now,
        updated_at: now,
    }
}

/// What became of a fix request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FixResult {
    /// The executor acknowledged it (2xx).
    Applied,
    /// Every attempt failed; why, for the review.
    Failed(String),
}

impl FixResult {
    /// The outcome a fix job records; `None` while it is still pending.
    pub fn of(job: &DeliveryJob) -> Option<FixResult> {
        match job.state {
            DeliveryState::Pending => None,
            DeliveryState::Delivered => Some(FixResult::Applied),
            DeliveryState::Failed => {
                let last = job.attempts.last().map_or_else(
                    || "no attempt was made".to_string(),
                    |a| match (a.status_code, &a.error) {
                        (Some(status), _) => format!("the fix executor answered HTTP {status}"),
                        (None, Some(error)) => format!("the fix executor was unreachable: {error}"),
                        (None, None) => "the fix executor did not answer".to_string(),
                    },
                );
                let n = job.attempt_count();
                let attempts = if n == 1 { "attempt" } else { "attempts" };
                Some(FixResult::Failed(format!("{last} ({n} {attempts})")))
            }
        }
    }

    /// The case id a fix job is for (from its payload).
    pub fn case_of(job: &DeliveryJob) -> Option<CaseId> {
        job.payload.value()["data"]["case_id"]
            .as_str()
            .and_then(|s| uuid::Uuid::try_parse(s).ok())
            .map(CaseId)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::delivery::Attempt;
    use crate::domain::{Event, EventKind, workflow};

    fn job() -> DeliveryJob {
        let case = uuid::Uuid::new_v4();
        let event = Event::new(
            EventKind::FixRequested,
            workflow::SELF_SERVICE,
            Utc::now(),
            json!({"case_id": case}),
        );
        DeliveryJob::new(&event, FIX_ENDPOINT_ID)
    }

    fn attempt(status: Option<u16>) -> Attempt {
        Attempt {
            attempt: 0,
            status_code: status,
            error: status.is_none().then(|| "connection refused".to_string()),
            duration_ms: 1,
            response_snippet: None,
            at: Utc::now(),
            next_attempt_at: None,
        }
    }

    #[test]
    fn a_fix_job_tells_its_case_and_its_outcome() {
        let mut j = job();
        assert!(FixResult::case_of(&j).is_some());
        assert_eq!(FixResult::of(&j), None);
        j.record(attempt(Some(500)), Some(Utc::now()));
        assert_eq!(FixResult::of(&j), None, "still pending: a retry is due");
        j.record(attempt(None), None);
        assert_eq!(
            FixResult::of(&j),
            Some(FixResult::Failed(
                "the fix executor was unreachable: connection refused (2 attempts)".into()
            ))
        );
        j.record(attempt(Some(204)), None);
        assert_eq!(FixResult::of(&j), Some(FixResult::Applied));
    }

    #[test]
    fn the_executor_endpoint_subscribes_to_nothing() {
        let e = fix_endpoint("http://fix.internal/run", "whsec_abc", Utc::now());
        assert_eq!(e.id, FIX_ENDPOINT_ID);
        assert!(!e.subscribes("fix.requested"));
        assert!(!e.subscribes("case.created"));
        assert_eq!(e.retry_policy, None, "the global retry schedule applies");
    }
}
