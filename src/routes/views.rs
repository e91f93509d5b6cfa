//! How cases look on the wire: the status view with signed links, and the intake response;
//! and the same shapes as schemas for the OpenAPI document.

use casehub_actors::domain::{Case, CaseStatus, Priority};
use casehub_actors::links::LinkSigner;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::openapi;

/// Seed 000's Case object plus classification, solution, review, links and history.
pub fn case_view(case: &Case, links: &LinkSigner) -> Value {
    let mut view = serde_json::to_value(case).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut view {
        // Internal bookkeeping, not part of the case's public shape.
        map.remove("intake_status");
        map.remove("offer");
        map.insert("links".into(), case_links(case, links));
    }
    view
}

/// `approve`/`reject` while an offer awaits the customer, `feedback` once resolved, and always
/// `tracking`.
pub fn case_links(case: &Case, links: &LinkSigner) -> Value {
    let id = case.case_id;
    let mut out = serde_json::Map::new();
    let awaiting = case.status == CaseStatus::InProgress
        && case.offer.as_ref().is_some_and(|o| o.decision.is_none());
    if awaiting {
        out.insert("approve".into(), links.approve_url(id).into());
        out.insert("reject".into(), links.reject_url(id).into());
    }
    if case.status == CaseStatus::Resolved {
        out.insert("feedback".into(), links.feedback_url(id).into());
    }
    out.insert("tracking".into(), links.tracking_url(id).into());
    Value::Object(out)
}

fn response_time(priority: Priority) -> &'static str {
    match priority {
        Priority::Critical => "Within 5 minutes",
        Priority::High => "Within 15 minutes",
        Priority::Medium => "Within 1 hour",
        Priority::Low => "Within 4 hours",
    }
}

/// The intake answer (seed 000 plus `customer_id`), as it was when the case was created.
pub fn intake_response(case: &Case, links: &LinkSigner) -> Value {
    let c = &case.classification;
    let mut body = json!({
        "success": true,
        "case_id": case.case_id,
        "customer_id": case.customer_id,
        "request_id": case.request_id,
        "status": case.intake_status,
        "classification": {
            "category": c.category,
            "subcategory": c.subcategory,
            "priority": c.priority,
            "confidence": c.confidence,
            "estimated_complexity": c.estimated_complexity,
            "resolution_path": c.resolution_path,
            "suggested_resolution_path": c.suggested_resolution_path,
            "reasoning": c.reasoning,
            "tags": c.tags,
            "similar_cases": c.similar_cases,
        },
        "message": "Your support request has been received and is being processed.",
        "estimated_response_time": response_time(case.priority),
        "tracking_url": links.tracking_url(case.case_id),
    });
    if case.intake_status == CaseStatus::PendingReview {
        // The review opened at intake: the oldest one, which may since have been superseded.
        let first = case
            .past_reviews
            .first()
            .or(case.review.as_ref().map(|r| &r.review_id));
        body["review_id"] = json!(first);
        if let Some(review) = case.review.as_ref().filter(|r| Some(&r.review_id) == first) {
            body["assigned_channel"] = json!(review.assigned_channel());
        }
    }
    body
}

// The shapes above, as schemas for the OpenAPI document. They describe the serialized domain
// types (`casehub_actors::domain`), which cannot carry the schema derive themselves;
// `tests/it/openapi.rs` validates real answers against them so they cannot drift apart.

/// A case as `GET /webhook/support/status/{case_id}` and `GET /v1/cases` show it: seed 000's
/// Case object plus classification, solution, review, links and full history.
#[derive(Serialize, ToSchema)]
pub struct CaseView {
    pub case_id: Uuid,
    pub customer_id: Uuid,
    pub customer_email: String,
    pub customer_name: String,
    pub request_id: String,
    #[schema(value_type = openapi::wire::Channel)]
    pub channel: String,
    pub description: String,
    #[schema(value_type = Option<openapi::wire::Severity>)]
    pub severity: Option<String>,
    pub product: Option<String>,
    pub product_version: Option<String>,
    #[schema(value_type = Option<openapi::wire::Environment>)]
    pub environment: Option<String>,
    #[schema(value_type = openapi::wire::Category)]
    pub category: String,
    pub subcategory: String,
    #[schema(value_type = openapi::wire::Priority)]
    pub priority: String,
    pub confidence_score: f64,
    #[schema(value_type = openapi::wire::CaseStatus)]
    pub status: String,
    #[schema(value_type = Option<openapi::wire::ResolutionType>)]
    pub resolution_type: Option<String>,
    /// Whether the case was ever escalated to human review.
    pub escalated: bool,
    #[schema(format = DateTime)]
    pub created_at: String,
    #[schema(format = DateTime)]
    pub triaged_at: Option<String>,
    #[schema(format = DateTime)]
    pub resolved_at: Option<String>,
    #[schema(format = DateTime)]
    pub closed_at: Option<String>,
    pub resolution_time_minutes: Option<i64>,
    #[schema(minimum = 1, maximum = 5)]
    pub satisfaction_score: Option<u8>,
    pub feedback_comment: Option<String>,
    #[schema(value_type = Object)]
    pub metadata: Value,
    pub classification: ClassificationView,
    pub solution: Option<SolutionView>,
    /// The current or last review.
    pub review: Option<ReviewView>,
    /// Earlier reviews of this case, oldest first.
    pub past_reviews: Vec<String>,
    /// Every transition, oldest first.
    pub history: Vec<HistoryEntryView>,
    /// Bumped on every persisted transition.
    pub version: u64,
    pub links: CaseLinks,
}

/// Seed 000's Classification object.
#[derive(Serialize, ToSchema)]
pub struct ClassificationView {
    #[schema(value_type = openapi::wire::Category)]
    pub category: String,
    pub subcategory: String,
    #[schema(value_type = openapi::wire::Priority)]
    pub priority: String,
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub confidence: f64,
    #[schema(value_type = openapi::wire::Complexity)]
    pub estimated_complexity: String,
    #[schema(value_type = openapi::wire::ResolutionPath)]
    pub resolution_path: String,
    /// Seed 000's name for `resolution_path`; both are sent.
    #[schema(value_type = openapi::wire::ResolutionPath)]
    pub suggested_resolution_path: String,
    pub reasoning: String,
    pub tags: Vec<String>,
    pub similar_cases: Vec<Uuid>,
}

/// Seed 000's Solution object.
#[derive(Serialize, ToSchema)]
pub struct SolutionView {
    /// The knowledge-base entry it came from.
    pub id: String,
    pub title: String,
    pub solution_steps: Vec<String>,
    pub diagnostic_commands: Vec<String>,
    pub automated_fix_available: bool,
    /// Minutes.
    pub estimated_time: u32,
    pub confidence: f64,
    pub references: Vec<ReferenceView>,
    pub risks: Vec<String>,
    pub requires_approval: bool,
    pub reasoning: String,
}

/// A reference attached to a solution.
#[derive(Serialize, ToSchema)]
pub struct ReferenceView {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub title: String,
    pub url: String,
}

/// A human review of a case.
#[derive(Serialize, ToSchema)]
pub struct ReviewView {
    /// `rev-` and 12 or more lowercase letters or digits.
    #[schema(pattern = "^rev-[a-z0-9]{12,}$")]
    pub review_id: String,
    pub case_id: Uuid,
    #[schema(value_type = openapi::wire::ReviewStatus)]
    pub status: String,
    /// The room name (no `#`).
    pub room: String,
    #[schema(value_type = openapi::wire::Urgency)]
    pub urgency: String,
    pub reason: String,
    pub specialist_request: Option<String>,
    pub additional_context: Option<String>,
    #[schema(format = DateTime)]
    pub created_at: String,
    pub reviewer: Option<String>,
    pub comments: Option<String>,
    pub edited_solution: Option<String>,
    pub edit_reason: Option<String>,
    #[schema(format = DateTime)]
    pub completed_at: Option<String>,
}

/// One transition in a case's history.
#[derive(Serialize, ToSchema)]
pub struct HistoryEntryView {
    #[schema(value_type = openapi::wire::CaseStatus)]
    pub status: String,
    #[schema(format = DateTime)]
    pub at: String,
    /// Who made the transition.
    pub by: String,
}

/// Signed links for the case's current state.
#[derive(Serialize, ToSchema)]
pub struct CaseLinks {
    /// While a self-service offer awaits the customer.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = "uri", nullable = false)]
    pub approve: Option<String>,
    /// While a self-service offer awaits the customer.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = "uri", nullable = false)]
    pub reject: Option<String>,
    /// Once the case is resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(format = "uri", nullable = false)]
    pub feedback: Option<String>,
    /// Always.
    #[schema(format = "uri")]
    pub tracking: String,
}
