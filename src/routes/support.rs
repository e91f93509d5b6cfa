//! The support workflow of seed 000 (CONTRACT §3): intake, self-service, the customer's approve
//! and feedback links, and collaborative support.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use casehub_actors::case::CollaborativeRequest;
use casehub_actors::domain::*;
use casehub_actors::links::LinkAction;
use serde_json::{Value, json};

use super::views::{case_links, intake_response};
use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ClientIp, Fields, JsonObject, QueryPairs};
use crate::openapi::{BodyErrors, ErrorEnvelope, KeyErrors, ServerErrors};
use crate::state::AppState;

mod wire;
pub use wire::*;

/// Longest description accepted (seed 000).
const DESCRIPTION_MAX: usize = 10_000;

/// Parses a path case id: 400 `INVALID_FORMAT` naming `case_id` when it is not a UUID.
pub fn parse_case_id(raw: &str) -> ApiResult<CaseId> {
    CaseId::parse(raw).ok_or_else(|| ApiError::invalid_format("case_id", "case_id must be a UUID"))
}

/// Validates an intake body into an [`Intake`], reporting every failing field at once.
pub fn parse_intake(body: &serde_json::Map<String, Value>) -> ApiResult<Intake> {
    let mut f = Fields::new(body);
    let customer_id = f.optional_uuid("customer_id");
    let email = f.required_str("customer_email", "customer_email", 1, 254);
    if let Some(e) = &email
        && !email_address::EmailAddress::is_valid(e)
    {
        f.error("customer_email", "Invalid email format");
    }
    let name = f.required_str("customer_name", "customer_name", 1, 200);
    let description = f.required_str("description", "Description", 1, DESCRIPTION_MAX);
    if let Some(d) = &description
        && d.chars().count() < 10
    {
        f.error("description", "Description must be at least 10 characters");
    }
    let severity = f.optional_enum("severity", Severity::parse, &Severity::choices());
    let product = f.optional_str("product", "product", 200);
    let product_version = f.optional_str("product_version", "product_version", 100);
    let environment = f.optional_enum("environment", Environment::parse, &Environment::choices());
    let channel = f.optional_enum("channel", Channel::parse, &Channel::choices());
    let metadata = f.optional_object("metadata");
    f.finish()?;
    let (Some(email), Some(name), Some(description)) = (email, name, description) else {
        return Err(ApiError::internal());
    };
    Ok(Intake {
        customer_id: customer_id.unwrap_or_else(|| customer_id_for_email(&email)),
        customer_email: email,
        customer_name: name,
        description,
        severity,
        product,
        product_version,
        environment,
        channel: channel.unwrap_or(Channel::Webhook),
        metadata,
    })
}

/// Create and triage a case.
///
/// `POST /webhook/support/intake`. The answer is sent once the case is durably stored and its
/// `case.created` event durably queued. A critical priority or an `escalate` path opens a review
/// at once (`status: pending_review`, with `review_id`).
#[utoipa::path(
    post,
    path = "/webhook/support/intake",
    tag = "support",
    params(IdempotencyKey),
    request_body = IntakeBody,
    responses(
        (status = 200, description = "The case, triaged; a replay of the first answer for a \
         repeated `Idempotency-Key`", body = IntakeResponse),
        (status = 400, description = "`VALIDATION_ERROR` or `MISSING_FIELD` naming every \
         failing field, or `INVALID_FORMAT` for a body that is not a JSON object", body = ErrorEnvelope),
        KeyErrors, BodyErrors, ServerErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn intake(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: JsonObject,
) -> ApiResult<Json<Value>> {
    let caller = state.auth.require_key(&headers, None, ip)?;
    create_case(&state, &caller, &headers, body).await
}

/// Create and triage a case, with the API key as a path token.
///
/// `POST /webhook/support/intake/{key}` (seed 000), for senders that cannot set headers;
/// otherwise the same as `POST /webhook/support/intake`.
#[utoipa::path(
    post,
    path = "/webhook/support/intake/{key}",
    tag = "support",
    params(
        ("key" = String, Path, description = "An API key from `auth.api_keys`"),
        IdempotencyKey,
    ),
    request_body = IntakeBody,
    responses(
        (status = 200, description = "The case, triaged; a replay of the first answer for a \
         repeated `Idempotency-Key`", body = IntakeResponse),
        (status = 400, description = "`VALIDATION_ERROR` or `MISSING_FIELD` naming every \
         failing field, or `INVALID_FORMAT` for a body that is not a JSON object", body = ErrorEnvelope),
        KeyErrors, BodyErrors, ServerErrors,
    ),
)]
pub async fn intake_with_path_key(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: JsonObject,
) -> ApiResult<Json<Value>> {
    let caller = state.auth.check_key(&key, ip)?;
    create_case(&state, &caller, &headers, body).await
}

async fn create_case(
    state: &AppState,
    caller: &Caller,
    headers: &HeaderMap,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let intake = parse_intake(&body)?;
    let key = match headers.get("idempotency-key") {
        None => None,
        Some(v) => {
            let k = v
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| {
                    ApiError::invalid_format(
                        "Idempotency-Key",
                        "Idempotency-Key must be 1-255 visible ASCII characters",
                    )
                })?;
            Some(format!("{}:{k}", caller.fingerprint))
        }
    };
    let case = create_once(state, intake, key).await?;
    Ok(Json(intake_response(&case, &state.auth.links)))
}

/// Creates a case, at most once per `key` while `idempotency.ttl` lasts: a repeat gets the
/// case the first request created (intake's `Idempotency-Key`, inbound `webhook-id`).
pub async fn create_once(state: &AppState, intake: Intake, key: Option<String>) -> ApiResult<Case> {
    let Some(key) = key else {
        return Ok(state.cases.create(intake, None).await?);
    };
    // One creator per key at a time; the loser of a race finds the winner's record.
    let lock = {
        let mut locks = state.idempotency_locks.lock();
        locks.entry(key.clone()).or_default().clone()
    };
    let guard = lock.lock().await;
    // Nodes sharing the store: one creator per key across all of them, too.
    let lease = format!("idempotency:{key}");
    let wait = state.settings.server.request_timeout;
    let result = match state.cluster.acquire_within(&lease, wait).await {
        Ok(true) => {
            let ttl = chrono::Duration::from_std(state.settings.idempotency.ttl)
                .unwrap_or(chrono::Duration::hours(24));
            let not_before = chrono::Utc::now() - ttl;
            let found = match state.store.idempotent_case(&key, not_before).await {
                Ok(Some(id)) => state.cases.get(id).await.map_err(ApiError::from),
                Ok(None) => state
                    .cases
                    .create(intake, Some(key.clone()))
                    .await
                    .map_err(ApiError::from),
                Err(e) => Err(e.into()),
            };
            state.cluster.release(&lease).await;
            found
        }
        Ok(false) => Err(ApiError::unavailable(
            "Another request with this key is still being handled; retry shortly",
        )),
        // Redis away: no node can create (or find) the case now.
        Err(e) => Err(e.into()),
    };
    drop(guard);
    {
        let mut locks = state.idempotency_locks.lock();
        // Ours and the map's: nobody else waits on this key.
        if Arc::strong_count(&lock) <= 2 {
            locks.remove(&key);
        }
    }
    result
}

/// Offer a knowledge-base solution the customer can approve or reject.
///
/// `POST /webhook/support/self-service`. Answers the solution and signed `approve` / `reject`
/// links. `force: true` re-runs self-service from `triaged`, `in_progress` or `escalated`.
#[utoipa::path(
    post,
    path = "/webhook/support/self-service",
    tag = "support",
    request_body = SelfServiceBody,
    responses(
        (status = 200, description = "The case is `in_progress` with a solution on offer", body = SelfServiceResponse),
        (status = 400, description = "`VALIDATION_ERROR`, `MISSING_FIELD` or `INVALID_FORMAT`", body = ErrorEnvelope),
        (status = 404, description = "`NOT_FOUND`: no such case, or `customer_id` does not match it", body = ErrorEnvelope),
        (status = 409, description = "`ALREADY_PROCESSED` (already offered, without `force`) or \
         `INVALID_STATE` (the case's path is not self-service; `details.status`)", body = ErrorEnvelope),
        KeyErrors, BodyErrors, ServerErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn self_service(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    state.auth.require_key(&headers, None, ip)?;
    let mut f = Fields::new(&body);
    let case_id = f.required_uuid("case_id");
    let customer_id = f.required_uuid("customer_id");
    let force = f.optional_bool("force");
    f.finish()?;
    let (Some(case_id), Some(customer_id)) = (case_id, customer_id) else {
        return Err(ApiError::internal());
    };
    let case = state
        .cases
        .self_service(CaseId(case_id), customer_id, force)
        .await?;
    let solution = case.solution.as_ref().ok_or_else(ApiError::internal)?;
    let links = case_links(&case, &state.auth.links);
    Ok(Json(json!({
        "success": true,
        "case_id": case.case_id,
        "status": case.status,
        "resolution": {
            "solution_provided": true,
            "solution_type": if solution.automated_fix_available { "automated" } else { "manual" },
            "estimated_time": solution.estimated_time,
            "steps_count": solution.solution_steps.len(),
        },
        "solution": solution,
        "links": {"approve": links["approve"], "reject": links["reject"]},
        "message": "Self-service resolution initiated",
    })))
}

/// The customer's answer to a self-service offer.
///
/// `GET /webhook/support/approve/{case_id}?action=approve|reject&token=…`: the link the hub
/// handed out. Approve moves the case to `executing`; reject opens a review (`pending_review`,
/// with `review_id`).
#[utoipa::path(
    get,
    path = "/webhook/support/approve/{case_id}",
    tag = "support",
    params(CasePath, ApproveQuery),
    responses(
        (status = 200, description = "The decision was recorded", body = ApproveResponse),
        (status = 400, description = "`INVALID_FORMAT`: `case_id` is not a UUID or `action` is unknown", body = ErrorEnvelope),
        (status = 404, description = "`NOT_FOUND`: no such case", body = ErrorEnvelope),
        (status = 409, description = "`ALREADY_PROCESSED` or `INVALID_STATE` (no offer awaits an answer)", body = ErrorEnvelope),
        KeyErrors, ServerErrors,
    ),
    security(("link_token" = []), ("api_key" = [])),
)]
pub async fn approve(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    query: QueryPairs,
) -> ApiResult<Json<Value>> {
    let case_id = parse_case_id(&raw_id)?;
    let decision = match query.get("action") {
        None | Some("approve") => Decision::Approve,
        Some("reject") => Decision::Reject,
        Some(_) => {
            return Err(ApiError::invalid_format(
                "action",
                "action must be one of approve|reject",
            ));
        }
    };
    let action = match decision {
        Decision::Approve => LinkAction::Approve,
        Decision::Reject => LinkAction::Reject,
    };
    state
        .auth
        .require_link(&headers, ip, case_id, action, query.get("token"))?;
    let case = state.cases.decide(case_id, decision).await?;
    let body = match decision {
        Decision::Approve => json!({
            "success": true,
            "case_id": case.case_id,
            "action": "approve",
            "status": case.status,
            "message": "Your approval was received; the solution is being applied. You will receive confirmation shortly.",
        }),
        Decision::Reject => {
            let review = case.review.as_ref().ok_or_else(ApiError::internal)?;
            json!({
                "success": true,
                "case_id": case.case_id,
                "action": "reject",
                "status": case.status,
                "review_id": review.review_id,
                "assigned_channel": review.assigned_channel(),
                "message": "The solution was declined; a specialist will review your case.",
            })
        }
    };
    Ok(Json(body))
}

/// Rate a resolved case; closes it.
///
/// `GET /webhook/support/feedback/{case_id}?score=1..5&comment=…&token=…`, once per case.
#[utoipa::path(
    get,
    path = "/webhook/support/feedback/{case_id}",
    tag = "support",
    params(CasePath, FeedbackQuery),
    responses(
        (status = 200, description = "The feedback was recorded and the case closed", body = FeedbackResponse),
        (status = 400, description = "`VALIDATION_ERROR` or `MISSING_FIELD` for `score`, or \
         `INVALID_FORMAT` for `case_id`", body = ErrorEnvelope),
        (status = 404, description = "`NOT_FOUND`: no such case", body = ErrorEnvelope),
        (status = 409, description = "`ALREADY_PROCESSED` (feedback given) or `INVALID_STATE` \
         (the case is not `resolved`)", body = ErrorEnvelope),
        KeyErrors, ServerErrors,
    ),
    security(("link_token" = []), ("api_key" = [])),
)]
pub async fn feedback(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    query: QueryPairs,
) -> ApiResult<Json<Value>> {
    let case_id = parse_case_id(&raw_id)?;
    let score = match query.get("score") {
        None => return Err(ApiError::fields(
            vec![crate::error::FieldError {
                field: "score".into(),
                error: "score is required (1-5)".into(),
            }],
            &["score".to_string()],
        )),
        Some(s) => s
            .trim()
            .parse::<u8>()
            .ok()
            .filter(|n| (1..=5).contains(n))
            .ok_or_else(|| {
                ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "VALIDATION_ERROR",
                    "score must be an integer from 1 to 5",
                )
                .with_details(json!({"fields": [{"field": "score", "error": "must be an integer from 1 to 5"}]}))
            })?,
    };
    let comment = query
        .get("comment")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(|c| c.chars().take(2000).collect::<String>());
    state.auth.require_link(
        &headers,
        ip,
        case_id,
        LinkAction::Feedback,
        query.get("token"),
    )?;
    let case = state.cases.feedback(case_id, score, comment).await?;
    Ok(Json(json!({
        "success": true,
        "case_id": case.case_id,
        "feedback_received": true,
        "message": "Thank you for your feedback!",
    })))
}

/// Open a human review of a case in a review room.
///
/// `POST /webhook/support/collaborative`. The case moves to `pending_review`; reviewers in the
/// assigned room see it live.
#[utoipa::path(
    post,
    path = "/webhook/support/collaborative",
    tag = "support",
    request_body = CollaborativeBody,
    responses(
        (status = 200, description = "The review is open", body = CollaborativeResponse),
        (status = 400, description = "`VALIDATION_ERROR`, `MISSING_FIELD` or `INVALID_FORMAT`", body = ErrorEnvelope),
        (status = 404, description = "`NOT_FOUND`: no such case, or `customer_id` does not match it", body = ErrorEnvelope),
        (status = 409, description = "`ALREADY_PROCESSED` or `INVALID_STATE` (`details.status`)", body = ErrorEnvelope),
        KeyErrors, BodyErrors, ServerErrors,
    ),
    security(("api_key" = [])),
)]
pub async fn collaborative(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    state.auth.require_key(&headers, None, ip)?;
    let mut f = Fields::new(&body);
    let case_id = f.required_uuid("case_id");
    let customer_id = f.required_uuid("customer_id");
    let urgency = f.optional_enum("urgency", Urgency::parse, &Urgency::choices());
    let specialist_request = f.optional_str("specialist_request", "specialist_request", 500);
    let additional_context = f.optional_str("additional_context", "additional_context", 10_000);
    f.finish()?;
    let (Some(case_id), Some(customer_id)) = (case_id, customer_id) else {
        return Err(ApiError::internal());
    };
    let urgency = urgency.unwrap_or(Urgency::Normal);
    let request = CollaborativeRequest {
        customer_id,
        urgency,
        specialist_request,
        additional_context,
    };
    let case = state.cases.collaborative(CaseId(case_id), request).await?;
    let review = case.review.as_ref().ok_or_else(ApiError::internal)?;
    Ok(Json(json!({
        "success": true,
        "case_id": case.case_id,
        "review_id": review.review_id,
        "status": case.status,
        "assigned_channel": review.assigned_channel(),
        "estimated_review_time": match urgency {
            Urgency::Urgent => "Within 30 minutes",
            Urgency::Normal => "Within 2 hours",
        },
        "message": "Your case has been escalated for specialist review.",
    })))
}
