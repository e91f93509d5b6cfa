//! What the support handlers read and answer, for the OpenAPI document. The handlers validate
//! raw JSON field by field (to report every failing field at once), so these types only describe.

use serde::Serialize;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::super::views::{ClassificationView, SolutionView};
use serde_json::Value;

use crate::openapi;

/// The optional `Idempotency-Key` header of intake.
#[derive(IntoParams)]
#[into_params(parameter_in = Header, names("Idempotency-Key"))]
pub struct IdempotencyKey(
    /// 1-255 visible ASCII characters. A repeat within `idempotency.ttl` (24 h) returns the
    /// original answer and creates nothing.
    #[param(min_length = 1, max_length = 255)]
    pub Option<String>,
);

/// A case id in the path.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct CasePath {
    /// The case (UUID v4).
    pub case_id: Uuid,
}

/// The query of the approve link.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApproveQuery {
    /// The customer's answer; `approve` when absent.
    #[param(inline, value_type = Option<openapi::wire::Decision>)]
    pub action: Option<String>,
}

/// The query of the feedback link.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedbackQuery {
    /// The customer's satisfaction, 1 (worst) to 5 (best).
    #[param(minimum = 1, maximum = 5)]
    pub score: u8,
    /// Free text; trimmed and cut at 2000 characters.
    pub comment: Option<String>,
}

/// A support request (seed 000). Unknown fields are ignored; `null` counts as absent.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "customer_email": "john.doe@example.com", "customer_name": "John Doe",
    "description": "Our SSL certificate expired and browsers show a certificate error.",
    "severity": "high", "environment": "production"
}))]
pub struct IntakeBody {
    /// A valid email address.
    #[schema(format = Email, min_length = 1, max_length = 254)]
    pub customer_email: String,
    #[schema(min_length = 1, max_length = 200)]
    pub customer_name: String,
    /// What is wrong, 10-10000 characters.
    #[schema(min_length = 10, max_length = 10_000)]
    pub description: String,
    /// When absent the hub derives a stable one from the email (UUID v5).
    pub customer_id: Option<Uuid>,
    /// The caller's view of the urgency; triage may raise the priority above it.
    #[schema(value_type = Option<openapi::wire::Severity>)]
    pub severity: Option<String>,
    #[schema(max_length = 200)]
    pub product: Option<String>,
    #[schema(max_length = 100)]
    pub product_version: Option<String>,
    #[schema(value_type = Option<openapi::wire::Environment>)]
    pub environment: Option<String>,
    /// How the request reached the caller; `webhook` when absent.
    #[schema(value_type = Option<openapi::wire::Channel>)]
    pub channel: Option<String>,
    /// Free-form; kept with the case.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// The intake answer (seed 000 plus `customer_id`).
#[derive(Serialize, ToSchema)]
pub struct IntakeResponse {
    pub success: bool,
    pub case_id: Uuid,
    pub customer_id: Uuid,
    /// `REQ-YYYYMMDD-` and 6 or more alphanumerics.
    #[schema(pattern = "^REQ-[0-9]{8}-[A-Za-z0-9]{6,}$")]
    pub request_id: String,
    /// `triaged`, or `pending_review` when a review opened at intake.
    #[schema(value_type = openapi::wire::CaseStatus)]
    pub status: String,
    pub classification: ClassificationView,
    pub message: String,
    pub estimated_response_time: String,
    /// Signed link to `GET /webhook/support/status/{case_id}`.
    #[schema(format = "uri")]
    pub tracking_url: String,
    /// The review opened at intake, when `status` is `pending_review`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_id: Option<String>,
    /// `#room` of that review.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_channel: Option<String>,
}

/// Which case to offer self-service for.
#[derive(Serialize, ToSchema)]
pub struct SelfServiceBody {
    pub case_id: Uuid,
    /// Must match the case.
    pub customer_id: Uuid,
    /// Re-run self-service from `triaged`, `in_progress` or `escalated`.
    pub force: Option<bool>,
}

/// The self-service answer (seed 000 plus the solution and its links).
#[derive(Serialize, ToSchema)]
pub struct SelfServiceResponse {
    pub success: bool,
    pub case_id: Uuid,
    /// `in_progress`.
    #[schema(value_type = openapi::wire::CaseStatus)]
    pub status: String,
    pub resolution: SelfServiceResolution,
    pub solution: SolutionView,
    pub links: OfferLinks,
    pub message: String,
}

/// A summary of the offered solution.
#[derive(Serialize, ToSchema)]
pub struct SelfServiceResolution {
    pub solution_provided: bool,
    /// `automated` when the solution has an automated fix, else `manual`.
    #[schema(pattern = "^(automated|manual)$")]
    pub solution_type: String,
    /// Minutes.
    pub estimated_time: u32,
    pub steps_count: u32,
}

/// The customer's signed answer links.
#[derive(Serialize, ToSchema)]
pub struct OfferLinks {
    #[schema(format = "uri")]
    pub approve: String,
    #[schema(format = "uri")]
    pub reject: String,
}

/// The approve link's answer.
#[derive(Serialize, ToSchema)]
pub struct ApproveResponse {
    pub success: bool,
    pub case_id: Uuid,
    #[schema(value_type = openapi::wire::Decision)]
    pub action: String,
    /// `executing` after approve, `pending_review` after reject.
    #[schema(value_type = openapi::wire::CaseStatus)]
    pub status: String,
    pub message: String,
    /// The review opened by a reject.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_id: Option<String>,
    /// `#room` of that review.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assigned_channel: Option<String>,
}

/// The feedback link's answer.
#[derive(Serialize, ToSchema)]
pub struct FeedbackResponse {
    pub success: bool,
    pub case_id: Uuid,
    pub feedback_received: bool,
    pub message: String,
}

/// Which case to review, and how urgently.
#[derive(Serialize, ToSchema)]
pub struct CollaborativeBody {
    pub case_id: Uuid,
    /// Must match the case.
    pub customer_id: Uuid,
    /// `normal` when absent.
    #[schema(value_type = Option<openapi::wire::Urgency>)]
    pub urgency: Option<String>,
    #[schema(max_length = 500)]
    pub specialist_request: Option<String>,
    #[schema(max_length = 10_000)]
    pub additional_context: Option<String>,
}

/// The collaborative answer.
#[derive(Serialize, ToSchema)]
pub struct CollaborativeResponse {
    pub success: bool,
    pub case_id: Uuid,
    pub review_id: String,
    /// `pending_review`.
    #[schema(value_type = openapi::wire::CaseStatus)]
    pub status: String,
    /// `#room` the review was routed to.
    pub assigned_channel: String,
    pub estimated_review_time: String,
    pub message: String,
}
