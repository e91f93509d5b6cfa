//! The case and what hangs off it: classification, solution, review, history (seed 000 objects).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use super::enums::*;
use super::ids::{CaseId, ReviewId};

/// A validated intake request: everything the edge accepted, already typed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Intake {
    pub customer_id: Uuid,
    pub customer_email: String,
    pub customer_name: String,
    pub description: String,
    pub severity: Option<Severity>,
    pub product: Option<String>,
    pub product_version: Option<String>,
    pub environment: Option<Environment>,
    pub channel: Channel,
    pub metadata: Value,
}

/// Seed 000's Classification object (with `resolution_path` as the contract's response names it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Classification {
    pub category: Category,
    pub subcategory: String,
    pub priority: Priority,
    pub confidence: f64,
    pub estimated_complexity: Complexity,
    pub resolution_path: ResolutionPath,
    /// Seed 000's name for `resolution_path`; both are sent.
    pub suggested_resolution_path: ResolutionPath,
    pub reasoning: String,
    pub tags: Vec<String>,
    pub similar_cases: Vec<Uuid>,
}

/// A reference attached to a solution.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reference {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub title: String,
    pub url: String,
}

/// Seed 000's Solution object.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Solution {
    /// Knowledge-base entry this came from.
    pub id: String,
    pub title: String,
    pub solution_steps: Vec<String>,
    pub diagnostic_commands: Vec<String>,
    pub automated_fix_available: bool,
    pub estimated_time: u32,
    pub confidence: f64,
    pub references: Vec<Reference>,
    pub risks: Vec<String>,
    pub requires_approval: bool,
    pub reasoning: String,
}

/// A human review of a case.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Review {
    pub review_id: ReviewId,
    pub case_id: CaseId,
    pub status: ReviewStatus,
    /// Room name (no `#`).
    pub room: String,
    pub urgency: Urgency,
    pub reason: String,
    pub specialist_request: Option<String>,
    pub additional_context: Option<String>,
    pub created_at: DateTime<Utc>,
    pub reviewer: Option<String>,
    pub comments: Option<String>,
    pub edited_solution: Option<String>,
    pub edit_reason: Option<String>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl Review {
    /// A new pending review of `case_id` in `room`, with a fresh id and no decision yet.
    pub fn pending(
        case_id: CaseId,
        room: String,
        urgency: Urgency,
        reason: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Review {
            review_id: ReviewId::new(),
            case_id,
            status: ReviewStatus::Pending,
            room,
            urgency,
            reason: reason.into(),
            specialist_request: None,
            additional_context: None,
            created_at: now,
            reviewer: None,
            comments: None,
            edited_solution: None,
            edit_reason: None,
            completed_at: None,
        }
    }

    /// The channel name callers see (`#room`).
    pub fn assigned_channel(&self) -> String {
        format!("#{}", self.room)
    }
}

/// One transition in a case's history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HistoryEntry {
    pub status: CaseStatus,
    pub at: DateTime<Utc>,
    pub by: String,
}

/// The customer's pending or given answer to the current self-service offer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Offer {
    pub decision: Option<Decision>,
    pub decided_at: Option<DateTime<Utc>>,
    /// When the approval went to the fix executor: the msg id of the `fix.requested` event, and
    /// so of its delivery job, whose state settles the case.
    #[serde(default)]
    pub fix_msg_id: Option<String>,
}

/// A support case: the snapshot a case actor persists after every transition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Case {
    pub case_id: CaseId,
    pub customer_id: Uuid,
    pub customer_email: String,
    pub customer_name: String,
    pub request_id: String,
    pub channel: Channel,
    pub description: String,
    pub severity: Option<Severity>,
    pub product: Option<String>,
    pub product_version: Option<String>,
    pub environment: Option<Environment>,
    pub category: Category,
    pub subcategory: String,
    pub priority: Priority,
    pub confidence_score: f64,
    pub status: CaseStatus,
    /// Status right after intake, for replaying an idempotent intake response.
    pub intake_status: CaseStatus,
    pub resolution_type: Option<ResolutionType>,
    pub escalated: bool,
    pub created_at: DateTime<Utc>,
    pub triaged_at: Option<DateTime<Utc>>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub resolution_time_minutes: Option<i64>,
    pub satisfaction_score: Option<u8>,
    pub feedback_comment: Option<String>,
    pub metadata: Value,
    pub classification: Classification,
    pub solution: Option<Solution>,
    pub offer: Option<Offer>,
    pub review: Option<Review>,
    /// Earlier reviews of this case, oldest first.
    pub past_reviews: Vec<ReviewId>,
    pub history: Vec<HistoryEntry>,
    /// Bumped on every persisted transition.
    pub version: u64,
}

impl Case {
    /// Moves to `status`, recording who did it and when.
    pub fn transition(&mut self, status: CaseStatus, at: DateTime<Utc>, by: &str) {
        self.status = status;
        self.history.push(HistoryEntry {
            status,
            at,
            by: by.to_string(),
        });
    }

    /// Minutes between creation and `at`, rounded up (any time at all counts as a minute).
    pub fn minutes_since_created(&self, at: DateTime<Utc>) -> i64 {
        let ms = (at - self.created_at).num_milliseconds().max(0);
        (ms + 59_999) / 60_000
    }
}
