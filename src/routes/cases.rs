//! Reading cases: `GET /webhook/support/status/{id}` and the admin listing `GET /v1/cases`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use casehub_actors::domain::CaseStatus;
use casehub_actors::links::LinkAction;
use casehub_actors::store::{CaseQuery, decode_cursor};
use serde_json::{Value, json};

use super::support::parse_case_id;
use super::views::case_view;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ClientIp, QueryPairs};
use crate::state::AppState;

/// Default and largest page size of `GET /v1/cases`.
const PAGE_DEFAULT: usize = 50;
const PAGE_MAX: usize = 200;

/// `GET /webhook/support/status/{case_id}` — an API key, or the case's tracking token.
pub async fn status(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
    query: QueryPairs,
) -> ApiResult<Json<Value>> {
    let case_id = parse_case_id(&raw_id)?;
    match (Auth::presented_key(&headers, None), query.get("token")) {
        (Some(key), _) => {
            state.auth.check_key(key, ip)?;
        }
        (None, Some(token)) => {
            if !state.auth.links.verify(case_id, LinkAction::Status, token) {
                return Err(ApiError::forbidden("Invalid link token"));
            }
        }
        (None, None) => {
            return Err(ApiError::unauthorized(
                "An API key or the case's tracking link token is required",
            ));
        }
    }
    let case = state.cases.get(case_id).await?;
    Ok(Json(json!({
        "success": true,
        "data": case_view(&case, &state.auth.links),
    })))
}

/// `GET /v1/cases?status=…&limit=…&cursor=…` — admin key or reviewer token; newest first.
pub async fn list(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    query: QueryPairs,
) -> ApiResult<Json<Value>> {
    if Auth::presented_key(&headers, None).is_some() {
        state.auth.require_admin(&headers, ip)?;
    } else {
        state.auth.require_key_or_reviewer(&headers, ip)?;
    }
    let status = match query.get("status") {
        None | Some("") => None,
        Some(s) => Some(CaseStatus::parse(s).ok_or_else(|| {
            ApiError::invalid_format(
                "status",
                format!("status must be one of {}", CaseStatus::choices()),
            )
        })?),
    };
    let limit = match query.get("limit") {
        None => PAGE_DEFAULT,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=PAGE_MAX).contains(n))
            .ok_or_else(|| {
                ApiError::invalid_format("limit", format!("limit must be 1-{PAGE_MAX}"))
            })?,
    };
    let cursor = match query.get("cursor") {
        None | Some("") => None,
        Some(c) if decode_cursor(c).is_some() => Some(c.to_string()),
        Some(_) => return Err(ApiError::invalid_format("cursor", "cursor is not valid")),
    };
    let page = state
        .store
        .list_cases(CaseQuery {
            status,
            limit,
            cursor,
        })
        .await?;
    let data: Vec<Value> = page
        .cases
        .iter()
        .map(|c| case_view(c, &state.auth.links))
        .collect();
    Ok(Json(json!({"data": data, "next_cursor": page.next_cursor})))
}
