//! Human review actions over HTTP (CONTRACT §3): approve / reject by GET, edit by POST.
//! The same rules apply over the room WebSocket.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use casehub_actors::case::ReviewDecision;
use casehub_actors::domain::{ReviewAction, ReviewId};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::auth::ReviewerClaims;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ClientIp, Fields, JsonObject, QueryPairs};
use crate::openapi::{self, BodyErrors, ErrorEnvelope, KeyErrors, ServerErrors};
use crate::state::AppState;

fn parse_review_id(raw: &str) -> ApiResult<ReviewId> {
    ReviewId::parse(raw).ok_or_else(|| {
        ApiError::invalid_format(
            "review_id",
            "review_id must be rev- followed by 12 or more lowercase letters or digits",
        )
    })
}

/// The acting reviewer: a reviewer token's subject wins over the `reviewer` field; with an API
/// key the field is required.
fn reviewer_name(claims: &Option<ReviewerClaims>, given: Option<String>) -> ApiResult<String> {
    match (claims, given) {
        (Some(c), _) => Ok(c.sub.clone()),
        (None, Some(r)) => Ok(r),
        (None, None) => Err(ApiError::fields(
            vec![crate::error::FieldError {
                field: "reviewer".into(),
                error: "reviewer is required".into(),
            }],
            &["reviewer".to_string()],
        )),
    }
}

async fn act(
    state: &AppState,
    claims: Option<ReviewerClaims>,
    decision: ReviewDecision,
) -> ApiResult<Json<Value>> {
    let review = state
        .store
        .load_review(&decision.review_id)
        .await?
        .ok_or_else(|| ApiError::not_found("Review not found"))?;
    // A reviewer token only acts on reviews of its rooms.
    if let Some(claims) = &claims
        && !claims.may_enter(&review.room)
    {
        return Err(ApiError::forbidden(format!(
            "Your reviewer token does not cover room {}",
            review.room
        )));
    }
    // Only the holder of a claim may act on a claimed review (the same rule as in the room).
    match state
        .rooms
        .claim_holder(&review.room, &review.review_id)
        .await
    {
        Ok(Some(holder)) if holder != decision.reviewer => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "ALREADY_CLAIMED",
                format!("Review {} is claimed by {holder}", review.review_id),
            )
            .with_details(json!({"claimed_by": holder})));
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "claim check skipped: room unavailable"),
    }
    let action = decision.action;
    let review_id = decision.review_id.clone();
    let case = state.cases.review(decision).await?;
    let message = match action {
        ReviewAction::Approve => "Solution approved and being delivered to customer.",
        ReviewAction::Edit => "Edited solution approved and being delivered to customer.",
        ReviewAction::Reject => "Review rejected; the case is escalated.",
    };
    Ok(Json(json!({
        "success": true,
        "review_id": review_id,
        "case_id": case.case_id,
        "action": action,
        "status": case.status,
        "message": message,
    })))
}

/// Approve or reject a review.
///
/// `GET /webhook/support/review/{review_id}/{approve|reject}?reviewer=…&comments=…`. Approve
/// delivers the solution (`delivering`); reject escalates the case (`escalated`). A reviewer
/// token acts only on reviews of its rooms and names the reviewer itself.
#[utoipa::path(
    get,
    path = "/webhook/support/review/{review_id}/{action}",
    tag = "reviews",
    params(ReviewPath, DecideQuery),
    responses(
        (status = 200, description = "The review was decided", body = ReviewActionResponse),
        (status = 400, description = "`INVALID_FORMAT` (`review_id` or `action`) or \
         `MISSING_FIELD` (`reviewer`, with an API key)", body = ErrorEnvelope),
        (status = 404, description = "`NOT_FOUND`: no such review", body = ErrorEnvelope),
        (status = 409, description = "`ALREADY_PROCESSED`, `INVALID_STATE` or `ALREADY_CLAIMED` \
         (another reviewer holds the claim)", body = ErrorEnvelope),
        KeyErrors, ServerErrors,
    ),
    security(("api_key" = []), ("reviewer_token" = [])),
)]
pub async fn decide(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path((raw_id, raw_action)): Path<(String, String)>,
    headers: HeaderMap,
    query: QueryPairs,
) -> ApiResult<Json<Value>> {
    let claims = state.auth.require_key_or_reviewer(&headers, ip)?;
    let review_id = parse_review_id(&raw_id)?;
    let action = match raw_action.as_str() {
        "approve" => ReviewAction::Approve,
        "reject" => ReviewAction::Reject,
        "edit" => {
            return Err(ApiError::invalid_format(
                "action",
                "edit takes POST /webhook/support/review/{review_id}/edit with a JSON body",
            ));
        }
        _ => {
            return Err(ApiError::invalid_format(
                "action",
                "action must be one of approve|reject|edit",
            ));
        }
    };
    let given = query
        .get("reviewer")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(|r| r.chars().take(200).collect());
    let comments = query
        .get("comments")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| c.chars().take(5000).collect());
    let reviewer = reviewer_name(&claims, given)?;
    let decision = ReviewDecision {
        review_id,
        action,
        reviewer,
        comments,
        edited_solution: None,
        edit_reason: None,
    };
    act(&state, claims, decision).await
}

/// Approve a review with an edited solution.
///
/// `POST /webhook/support/review/{review_id}/edit`. The edited solution is delivered to the
/// customer (`delivering`).
#[utoipa::path(
    post,
    path = "/webhook/support/review/{review_id}/edit",
    tag = "reviews",
    params(
        ("review_id" = String, Path, pattern = "^rev-[a-z0-9]{12,}$",
         description = "`rev-` and 12 or more lowercase letters or digits"),
    ),
    request_body = ReviewEditBody,
    responses(
        (status = 200, description = "The edited solution is being delivered", body = ReviewActionResponse),
        (status = 400, description = "`VALIDATION_ERROR`, `MISSING_FIELD` or `INVALID_FORMAT`", body = ErrorEnvelope),
        (status = 404, description = "`NOT_FOUND`: no such review", body = ErrorEnvelope),
        (status = 409, description = "`ALREADY_PROCESSED`, `INVALID_STATE` or `ALREADY_CLAIMED`", body = ErrorEnvelope),
        KeyErrors, BodyErrors, ServerErrors,
    ),
    security(("api_key" = []), ("reviewer_token" = [])),
)]
pub async fn edit(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let claims = state.auth.require_key_or_reviewer(&headers, ip)?;
    let review_id = parse_review_id(&raw_id)?;
    let mut f = Fields::new(&body);
    let given = if claims.is_some() {
        f.optional_str("reviewer", "reviewer", 200)
    } else {
        f.required_str("reviewer", "reviewer", 1, 200)
    };
    let edited_solution = f.required_str("edited_solution", "edited_solution", 1, 20_000);
    let edit_reason = f.required_str("edit_reason", "edit_reason", 1, 2_000);
    f.finish()?;
    let reviewer = reviewer_name(&claims, given)?;
    let decision = ReviewDecision {
        review_id,
        action: ReviewAction::Edit,
        reviewer,
        comments: None,
        edited_solution,
        edit_reason,
    };
    act(&state, claims, decision).await
}

// What the handlers above read and answer, for the OpenAPI document.

/// The review and what to do with it.
#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReviewPath {
    /// `rev-` and 12 or more lowercase letters or digits.
    #[param(pattern = "^rev-[a-z0-9]{12,}$")]
    pub review_id: String,
    /// `approve` or `reject`; an edit is `POST …/{review_id}/edit`.
    #[param(pattern = "^(approve|reject)$")]
    pub action: String,
}

/// Who decides, and why.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DecideQuery {
    /// The acting reviewer; required with an API key, ignored with a reviewer token (its
    /// subject acts).
    pub reviewer: Option<String>,
    /// Cut at 5000 characters.
    pub comments: Option<String>,
}

/// An edited solution.
#[derive(Serialize, ToSchema)]
pub struct ReviewEditBody {
    /// The acting reviewer; required with an API key, ignored with a reviewer token (its
    /// subject acts).
    #[schema(max_length = 200)]
    pub reviewer: Option<String>,
    /// The solution the customer receives.
    #[schema(min_length = 1, max_length = 20_000)]
    pub edited_solution: String,
    #[schema(min_length = 1, max_length = 2_000)]
    pub edit_reason: String,
}

/// The answer to a review action.
#[derive(Serialize, ToSchema)]
pub struct ReviewActionResponse {
    pub success: bool,
    pub review_id: String,
    pub case_id: Uuid,
    #[schema(value_type = openapi::wire::ReviewAction)]
    pub action: String,
    /// `delivering` after approve or edit, `escalated` after reject.
    #[schema(value_type = openapi::wire::CaseStatus)]
    pub status: String,
    pub message: String,
}
