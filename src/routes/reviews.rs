//! Human review actions over HTTP (CONTRACT §3): approve / reject by GET, edit by POST.
//! The same rules apply over the room WebSocket.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use casehub_actors::case::ReviewDecision;
use casehub_actors::domain::{ReviewAction, ReviewId};
use serde_json::{Value, json};

use crate::auth::ReviewerClaims;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ClientIp, Fields, JsonObject, QueryPairs};
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
    if let Some(claims) = &claims {
        // A reviewer token only acts on reviews of its rooms.
        let review = state
            .store
            .load_review(&decision.review_id)
            .await?
            .ok_or_else(|| ApiError::not_found("Review not found"))?;
        if !claims.may_enter(&review.room) {
            return Err(ApiError::forbidden(format!(
                "Your reviewer token does not cover room {}",
                review.room
            )));
        }
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

/// `GET /webhook/support/review/{review_id}/{approve|reject}?reviewer=…&comments=…`
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

/// `POST /webhook/support/review/{review_id}/edit`
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
