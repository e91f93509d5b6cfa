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
use crate::state::AppState;

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

/// `POST /webhook/support/intake`
pub async fn intake(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    body: JsonObject,
) -> ApiResult<Json<Value>> {
    let caller = state.auth.require_key(&headers, None, ip)?;
    create_case(&state, &caller, &headers, body).await
}

/// `POST /webhook/support/intake/{key}` (the key as a path token).
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
    let links = &state.auth.links;
    let Some(key) = key else {
        let case = state.cases.create(intake, None).await?;
        return Ok(Json(intake_response(&case, links)));
    };
    // One creator per key at a time; the loser of a race finds the winner's record.
    let lock = {
        let mut locks = state.idempotency_locks.lock();
        locks.entry(key.clone()).or_default().clone()
    };
    let guard = lock.lock().await;
    let ttl = chrono::Duration::from_std(state.settings.idempotency.ttl)
        .unwrap_or(chrono::Duration::hours(24));
    let not_before = chrono::Utc::now() - ttl;
    let result = match state.store.idempotent_case(&key, not_before).await? {
        Some(id) => state.cases.get(id).await,
        None => state.cases.create(intake, Some(key.clone())).await,
    };
    drop(guard);
    {
        let mut locks = state.idempotency_locks.lock();
        if Arc::strong_count(&lock) <= 2 {
            locks.remove(&key);
        }
    }
    Ok(Json(intake_response(&result?, links)))
}

/// `POST /webhook/support/self-service`
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

/// `GET /webhook/support/approve/{case_id}?action=approve|reject&token=…`
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

/// `GET /webhook/support/feedback/{case_id}?score=1..5&comment=…&token=…`
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

/// `POST /webhook/support/collaborative`
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
