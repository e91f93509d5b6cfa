//! Events: what the outbox records and the bus carries (CONTRACT §5).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ids::new_msg_id;

/// Event names of CONTRACT §5.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    #[serde(rename = "case.created")]
    CaseCreated,
    #[serde(rename = "case.updated")]
    CaseUpdated,
    #[serde(rename = "case.escalated")]
    CaseEscalated,
    #[serde(rename = "case.resolved")]
    CaseResolved,
    #[serde(rename = "review.requested")]
    ReviewRequested,
    #[serde(rename = "review.completed")]
    ReviewCompleted,
    #[serde(rename = "feedback.received")]
    FeedbackReceived,
    #[serde(rename = "endpoint.disabled")]
    EndpointDisabled,
    #[serde(rename = "alert.triggered")]
    AlertTriggered,
    /// Sent to one endpoint on request (`POST /v1/webhooks/endpoints/{id}/test`); never
    /// recorded in the outbox.
    #[serde(rename = "webhook.test")]
    WebhookTest,
    /// Internal: an approved automated fix to send to the fix executor (CONTRACT §3 approve).
    /// Recorded in the outbox with the case's `executing` transition; delivered only to the
    /// executor, never to webhook endpoints.
    #[serde(rename = "fix.requested")]
    FixRequested,
}

impl EventKind {
    /// The event name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::CaseCreated => "case.created",
            EventKind::CaseUpdated => "case.updated",
            EventKind::CaseEscalated => "case.escalated",
            EventKind::CaseResolved => "case.resolved",
            EventKind::ReviewRequested => "review.requested",
            EventKind::ReviewCompleted => "review.completed",
            EventKind::FeedbackReceived => "feedback.received",
            EventKind::EndpointDisabled => "endpoint.disabled",
            EventKind::AlertTriggered => "alert.triggered",
            EventKind::WebhookTest => "webhook.test",
            EventKind::FixRequested => "fix.requested",
        }
    }
}

/// The workflow names of seed 000, carried in the envelope.
pub mod workflow {
    pub const INTAKE: &str = "workflow-1-intake-triage";
    pub const SELF_SERVICE: &str = "workflow-2-self-service";
    pub const COLLABORATIVE: &str = "workflow-4-collaborative";
}

/// One recorded event: the seed 000 envelope plus its message id.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// `msg_` + ULID; the `webhook-id` of every delivery of this event.
    pub msg_id: String,
    pub event: EventKind,
    pub timestamp: DateTime<Utc>,
    pub workflow: String,
    pub data: Value,
}

impl Event {
    /// A new event stamped `at`.
    pub fn new(event: EventKind, workflow: &str, at: DateTime<Utc>, data: Value) -> Self {
        Event {
            msg_id: new_msg_id(at),
            event,
            timestamp: at,
            workflow: workflow.to_string(),
            data,
        }
    }

    /// The envelope receivers get: `{"event", "timestamp", "workflow", "data"}`.
    pub fn envelope(&self) -> Value {
        serde_json::json!({
            "event": self.event.as_str(),
            "timestamp": crate::domain::rfc3339(self.timestamp),
            "workflow": self.workflow,
            "data": self.data,
        })
    }
}
