//! Reading cases: `GET /webhook/support/status/{id}` and the admin listing `GET /v1/cases`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use casehub_actors::domain::CaseStatus;
use casehub_actors::links::LinkAction;
use casehub_actors::store::{CaseQuery, decode_cursor};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};

use super::support::{CasePath, parse_case_id};
use super::views::{CaseView, case_view};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ClientIp, QueryPairs};
use crate::openapi::{self, ErrorEnvelope, KeyErrors, ServerErrors};
use crate::state::AppState;

/// Default and largest page size of `GET /v1/cases`.
const PAGE_DEFAULT: usize = 50;
const PAGE_MAX: usize = 200;

/// A case with its classification, solution, review, links and full history.
///
/// `GET /webhook/support/status/{case_id}` — an API key, or the case's tracking token (the
/// `tracking_url` the hub hands out carries it).
#[utoipa::path(
    get,
    path = "/webhook/support/status/{case_id}",
    tag = "cases",
    params(CasePath),
    responses(
        (status = 200, description = "The case", body = CaseStatusResponse),
        (status = 400, description = "`INVALID_FORMAT`: `case_id` is not a UUID", body = ErrorEnvelope),
        (status = 404, description = "`NOT_FOUND`: no such case", body = ErrorEnvelope),
        KeyErrors, ServerErrors,
    ),
    security(("api_key" = []), ("link_token" = [])),
)]
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

/// Cases, newest first, cursor-paginated.
///
/// `GET /v1/cases?status=…&limit=…&cursor=…` — an admin key or a reviewer token.
#[utoipa::path(
    get,
    path = "/v1/cases",
    tag = "cases",
    params(CaseListQuery),
    responses(
        (status = 200, description = "One page of cases", body = CaseList),
        (status = 400, description = "`INVALID_FORMAT`: `status`, `limit` or `cursor`", body = ErrorEnvelope),
        KeyErrors, ServerErrors,
    ),
    security(("admin_key" = []), ("reviewer_token" = [])),
)]
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
    let limit = query.page_size("limit", PAGE_DEFAULT, PAGE_MAX)?;
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

// What the handlers above read and answer, for the OpenAPI document.

/// Filters and paging of `GET /v1/cases`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CaseListQuery {
    /// Only cases in this status.
    #[param(inline, value_type = Option<openapi::wire::CaseStatus>)]
    pub status: Option<String>,
    /// Page size, 1-200; 50 when absent.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// The status answer.
#[derive(Serialize, ToSchema)]
pub struct CaseStatusResponse {
    pub success: bool,
    pub data: CaseView,
}

/// One page of `GET /v1/cases`.
#[derive(Serialize, ToSchema)]
pub struct CaseList {
    pub data: Vec<CaseView>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}
