//! Webhook endpoint management under `/v1/webhooks/endpoints` (CONTRACT §5, seed 003's shape).
//! Admin only. The secret is answered on create and on rotation, never otherwise.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use casehub_actors::delivery::endpoint::{DeliveryOrdering, PayloadFormat, RetryPolicy};
use casehub_actors::delivery::pool::DispatchMsg;
use casehub_actors::delivery::sealing::SecretSealer;
use casehub_actors::delivery::{DeliveryState, Endpoint, EndpointStatus, EventPattern, ssrf};
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult, FieldError};
use crate::extract::{ClientIp, JsonObject, QueryPairs};
use crate::openapi::{AdminErrors, BodyErrors, ErrorEnvelope, ServerErrors};
use crate::state::AppState;

/// How long resolving an endpoint's host may take.
const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// The fields of a create or patch body, each checked; `None` when absent.
#[derive(Default)]
struct EndpointFields {
    url: Option<String>,
    events: Option<Vec<EventPattern>>,
    description: Option<Option<String>>,
    status: Option<EndpointStatus>,
    format: Option<PayloadFormat>,
    retry_policy: Option<Option<RetryPolicy>>,
    rate_limit: Option<Option<u32>>,
    ordering: Option<DeliveryOrdering>,
}

fn typed<T: DeserializeOwned>(
    body: &Map<String, Value>,
    name: &str,
    what: &str,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    let value = body.get(name)?;
    match serde_json::from_value(value.clone()) {
        Ok(v) => Some(v),
        Err(_) => {
            errors.push(FieldError {
                field: name.into(),
                error: format!("must be {what}"),
            });
            None
        }
    }
}

/// Checks the URL's form and that it does not resolve to a forbidden address.
async fn check_url(raw: &str, allow_private: bool) -> Result<String, String> {
    let url =
        reqwest::Url::parse(raw).map_err(|_| "must be an absolute http(s) URL".to_string())?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must use http or https".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    let host = url.host_str().ok_or("must have a host")?.to_string();
    if allow_private {
        return Ok(url.to_string());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let resolved = tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((host, port)))
        .await
        .map_err(|_| "host did not resolve in time".to_string())?
        .map_err(|_| "host does not resolve".to_string())?;
    let addrs: Vec<_> = resolved.map(|a| a.ip()).collect();
    if addrs.is_empty() {
        return Err("host does not resolve".into());
    }
    if addrs.iter().any(|ip| ssrf::is_forbidden(*ip)) {
        return Err(
            "resolves to a loopback, private, link-local or otherwise non-public address".into(),
        );
    }
    Ok(url.to_string())
}

async fn parse_fields(
    state: &AppState,
    body: &Map<String, Value>,
    creating: bool,
) -> ApiResult<EndpointFields> {
    let mut errors = Vec::new();
    let mut missing = Vec::new();
    let mut f = EndpointFields::default();
    match body.get("url").and_then(Value::as_str) {
        Some(raw) => match check_url(raw, state.settings.delivery.allow_private_targets).await {
            Ok(url) => f.url = Some(url),
            Err(e) => errors.push(FieldError {
                field: "url".into(),
                error: e,
            }),
        },
        None if body.get("url").is_some() => errors.push(FieldError {
            field: "url".into(),
            error: "must be a string".into(),
        }),
        None if creating => {
            missing.push("url".to_string());
            errors.push(FieldError {
                field: "url".into(),
                error: "url is required".into(),
            });
        }
        None => {}
    }
    match body.get("events") {
        Some(Value::Array(items)) if !items.is_empty() && items.len() <= 100 => {
            let parsed: Result<Vec<EventPattern>, String> = items
                .iter()
                .map(|v| {
                    v.as_str()
                        .ok_or_else(|| "entries must be strings".to_string())
                        .and_then(EventPattern::parse)
                })
                .collect();
            match parsed {
                Ok(p) => f.events = Some(p),
                Err(e) => errors.push(FieldError {
                    field: "events".into(),
                    error: e,
                }),
            }
        }
        Some(_) => errors.push(FieldError {
            field: "events".into(),
            error: "must be a non-empty array of at most 100 event names or patterns".into(),
        }),
        None if creating => {
            missing.push("events".to_string());
            errors.push(FieldError {
                field: "events".into(),
                error: "events is required".into(),
            });
        }
        None => {}
    }
    if let Some(v) = body.get("description") {
        match v {
            Value::Null => f.description = Some(None),
            Value::String(s) if s.chars().count() <= 500 => {
                f.description = Some(Some(s.trim().to_string()))
            }
            _ => errors.push(FieldError {
                field: "description".into(),
                error: "must be a string of at most 500 characters".into(),
            }),
        }
    }
    f.status = typed(body, "status", "one of active|paused|disabled", &mut errors);
    f.format = typed(body, "format", "one of json|slack", &mut errors);
    f.ordering = typed(body, "ordering", "one of parallel|fifo", &mut errors);
    if let Some(v) = body.get("rate_limit") {
        match v {
            Value::Null => f.rate_limit = Some(None),
            _ => match v.as_u64().filter(|n| (1..=10_000).contains(n)) {
                Some(n) => f.rate_limit = Some(Some(n as u32)),
                None => errors.push(FieldError {
                    field: "rate_limit".into(),
                    error: "must be deliveries per second, 1-10000, or null".into(),
                }),
            },
        }
    }
    if let Some(v) = body.get("retry_policy") {
        if v.is_null() {
            f.retry_policy = Some(None);
        } else {
            match serde_json::from_value::<RetryPolicy>(v.clone()) {
                Ok(p) => match p.validate() {
                    Ok(()) => f.retry_policy = Some(Some(p)),
                    Err(e) => errors.push(FieldError {
                        field: "retry_policy".into(),
                        error: e,
                    }),
                },
                Err(_) => errors.push(FieldError {
                    field: "retry_policy".into(),
                    error: "must be {\"kind\": \"schedule\", \"delays\": [\"1s\", …]} or \
                            {\"kind\": \"exponential\", \"base\", \"factor\", \"max_age\"}"
                        .into(),
                }),
            }
        }
    }
    if errors.is_empty() {
        Ok(f)
    } else {
        Err(ApiError::fields(errors, &missing))
    }
}

fn apply(endpoint: &mut Endpoint, f: EndpointFields) {
    if let Some(url) = f.url {
        endpoint.url = url;
    }
    if let Some(events) = f.events {
        endpoint.events = events;
    }
    if let Some(description) = f.description {
        endpoint.description = description.filter(|d| !d.is_empty());
    }
    if let Some(status) = f.status {
        if status != EndpointStatus::Disabled {
            endpoint.disabled_reason = None;
        } else if endpoint.status != EndpointStatus::Disabled {
            endpoint.disabled_reason = Some("disabled by an operator".into());
        }
        endpoint.status = status;
    }
    if let Some(format) = f.format {
        endpoint.format = format;
    }
    if let Some(policy) = f.retry_policy {
        endpoint.retry_policy = policy;
    }
    if let Some(limit) = f.rate_limit {
        endpoint.rate_limit = limit;
    }
    if let Some(ordering) = f.ordering {
        endpoint.ordering = ordering;
    }
}

fn with_secret(endpoint: &Endpoint, secret: &str) -> Value {
    let mut view = endpoint.view();
    view["secret"] = json!(secret);
    view
}

/// Seals the endpoint's secrets with `delivery.secret_key` (a no-op without one) and stores it.
async fn store_sealed(state: &AppState, endpoint: &mut Endpoint) -> ApiResult<()> {
    let sealer =
        SecretSealer::from_base64(state.settings.delivery.secret_key.expose()).map_err(|e| {
            // Validated at start; unreachable unless settings change underneath.
            tracing::error!(error = %e, "delivery.secret_key");
            ApiError::internal()
        })?;
    sealer.seal_endpoint(endpoint);
    state.store.put_endpoint(endpoint).await?;
    endpoints_changed(state);
    Ok(())
}

/// Wakes the delivery dispatcher after an endpoint write, so a pause, a deletion or a new
/// secret stops what it read ahead now and a resumed endpoint starts now, not at the next poll.
fn endpoints_changed(state: &AppState) {
    let _ = state.dispatcher.cast(DispatchMsg::Tick);
}

async fn find(state: &AppState, id: &str) -> ApiResult<Endpoint> {
    state
        .store
        .load_endpoint(id)
        .await?
        .ok_or_else(|| ApiError::not_found("Webhook endpoint not found"))
}

/// `POST /v1/webhooks/endpoints` — 201 with the endpoint and its secret (shown only here).
#[utoipa::path(
    post,
    path = "/v1/webhooks/endpoints",
    operation_id = "create_endpoint",
    tag = "webhooks",
    request_body = EndpointBody,
    responses(
        (status = 201, description = "Created; `data.secret` is shown only now", body = EndpointEnvelope),
        (status = 400, description = "`VALIDATION_ERROR` / `MISSING_FIELD`: url, events, …", body = ErrorEnvelope),
        AdminErrors, BodyErrors, ServerErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn create(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> ApiResult<Response> {
    state.auth.require_admin(&headers, ip)?;
    let fields = parse_fields(&state, &body, true).await?;
    let now = chrono::Utc::now();
    let mut endpoint = Endpoint::new(String::new(), Vec::new(), now);
    apply(&mut endpoint, fields);
    let secret = endpoint.secret.clone();
    store_sealed(&state, &mut endpoint).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"data": with_secret(&endpoint, &secret)})),
    )
        .into_response())
}

/// `GET /v1/webhooks/endpoints`
#[utoipa::path(
    get,
    path = "/v1/webhooks/endpoints",
    operation_id = "list_endpoints",
    tag = "webhooks",
    responses(
        (status = 200, description = "Every endpoint, oldest first", body = EndpointList),
        AdminErrors, ServerErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    state.auth.require_admin(&headers, ip)?;
    let endpoints = state.store.list_endpoints().await?;
    let data: Vec<Value> = endpoints.iter().map(Endpoint::view).collect();
    Ok(Json(json!({ "data": data })))
}

/// `GET /v1/webhooks/endpoints/{id}`
#[utoipa::path(
    get,
    path = "/v1/webhooks/endpoints/{id}",
    operation_id = "get_endpoint",
    tag = "webhooks",
    params(("id" = String, Path, description = "`wh_` + ULID")),
    responses(
        (status = 200, description = "The endpoint", body = EndpointEnvelope),
        (status = 404, description = "`NOT_FOUND`", body = ErrorEnvelope),
        AdminErrors, ServerErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn get_one(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    state.auth.require_admin(&headers, ip)?;
    Ok(Json(json!({"data": find(&state, &id).await?.view()})))
}

/// `PATCH /v1/webhooks/endpoints/{id}` — changes only the fields given.
#[utoipa::path(
    patch,
    path = "/v1/webhooks/endpoints/{id}",
    operation_id = "patch_endpoint",
    tag = "webhooks",
    params(("id" = String, Path, description = "`wh_` + ULID")),
    request_body = EndpointBody,
    responses(
        (status = 200, description = "The changed endpoint", body = EndpointEnvelope),
        (status = 400, description = "`VALIDATION_ERROR`", body = ErrorEnvelope),
        (status = 404, description = "`NOT_FOUND`", body = ErrorEnvelope),
        AdminErrors, BodyErrors, ServerErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn patch(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    state.auth.require_admin(&headers, ip)?;
    let mut endpoint = find(&state, &id).await?;
    let fields = parse_fields(&state, &body, false).await?;
    apply(&mut endpoint, fields);
    endpoint.updated_at = chrono::Utc::now();
    store_sealed(&state, &mut endpoint).await?;
    Ok(Json(json!({"data": endpoint.view()})))
}

/// `DELETE /v1/webhooks/endpoints/{id}` — 204, no body.
#[utoipa::path(
    delete,
    path = "/v1/webhooks/endpoints/{id}",
    operation_id = "delete_endpoint",
    tag = "webhooks",
    params(("id" = String, Path, description = "`wh_` + ULID")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "`NOT_FOUND`", body = ErrorEnvelope),
        AdminErrors, ServerErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn delete(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<StatusCode> {
    state.auth.require_admin(&headers, ip)?;
    if state.store.delete_endpoint(&id).await? {
        endpoints_changed(&state);
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("Webhook endpoint not found"))
    }
}

/// `POST /v1/webhooks/endpoints/{id}/rotate-secret` — a new secret; the old one keeps signing
/// alongside it for 24 hours.
#[utoipa::path(
    post,
    path = "/v1/webhooks/endpoints/{id}/rotate-secret",
    operation_id = "rotate_endpoint_secret",
    tag = "webhooks",
    params(("id" = String, Path, description = "`wh_` + ULID")),
    responses(
        (status = 200, description = "The endpoint with its new secret", body = EndpointEnvelope),
        (status = 404, description = "`NOT_FOUND`", body = ErrorEnvelope),
        AdminErrors, ServerErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn rotate_secret(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    state.auth.require_admin(&headers, ip)?;
    let mut endpoint = find(&state, &id).await?;
    endpoint.rotate_secret(chrono::Utc::now());
    let secret = endpoint.secret.clone();
    store_sealed(&state, &mut endpoint).await?;
    Ok(Json(json!({"data": with_secret(&endpoint, &secret)})))
}

/// Create or patch body (all fields optional on patch).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct EndpointBody {
    /// http(s) URL; must not resolve to a private address unless allowed.
    pub url: String,
    /// Exact event names, `prefix.*` wildcards or `*`.
    #[schema(example = json!(["case.*", "review.completed"]))]
    pub events: Vec<String>,
    pub description: Option<String>,
    /// active | paused | disabled
    pub status: Option<String>,
    /// json | slack
    pub format: Option<String>,
    /// `{"kind": "schedule", "delays": ["1s","5s","30s"]}` or
    /// `{"kind": "exponential", "base": "1s", "factor": 2.0, "max_age": "24h"}`
    #[schema(value_type = Option<Object>)]
    pub retry_policy: Option<Value>,
    /// Deliveries per second at most.
    pub rate_limit: Option<u32>,
    /// parallel | fifo
    pub ordering: Option<String>,
}

/// An endpoint as answered (`secret` only on create and rotation).
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct EndpointView {
    pub id: String,
    pub url: String,
    pub events: Vec<String>,
    pub description: Option<String>,
    pub status: String,
    pub format: String,
    #[schema(value_type = Option<Object>)]
    pub retry_policy: Option<Value>,
    pub rate_limit: Option<u32>,
    pub ordering: String,
    pub disabled_reason: Option<String>,
    pub secret_rotation_overlap_until: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// `whsec_` + base64 of 32 random bytes.
    pub secret: Option<String>,
}

/// `{"data": Endpoint}`
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct EndpointEnvelope {
    pub data: EndpointView,
}

/// `{"data": [Endpoint…]}`
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct EndpointList {
    pub data: Vec<EndpointView>,
}

/// `GET /v1/webhooks/endpoints/{id}/deliveries?before=&limit=` — the delivery log, newest first.
#[utoipa::path(
    get,
    path = "/v1/webhooks/endpoints/{id}/deliveries",
    operation_id = "endpoint_deliveries",
    tag = "webhooks",
    params(
        ("id" = String, Path, description = "`wh_` + ULID"),
        ("before" = Option<String>, Query, description = "A msg id: the page after it"),
        ("limit" = Option<usize>, Query, description = "1-200, default 50"),
    ),
    responses(
        (status = 200, description = "Deliveries with every attempt", body = Object),
        (status = 404, description = "`NOT_FOUND`", body = ErrorEnvelope),
        AdminErrors, ServerErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn deliveries(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    headers: HeaderMap,
    query: QueryPairs,
) -> ApiResult<Json<Value>> {
    state.auth.require_admin(&headers, ip)?;
    find(&state, &id).await?;
    let limit = query.page_size("limit", 50, 200)?;
    let before = query.get("before").filter(|b| !b.is_empty());
    let jobs = state.store.endpoint_deliveries(&id, before, limit).await?;
    let next = (jobs.len() == limit)
        .then(|| jobs.last().map(|j| j.msg_id.clone()))
        .flatten();
    let data: Vec<Value> = jobs.iter().map(|j| j.view()).collect();
    Ok(Json(json!({"data": data, "next_cursor": next})))
}

/// `POST /v1/webhooks/deliveries/{msg_id}/retry` — sends the message again now, to every
/// endpoint it went to (delivered, failed or pending); the attempt history is kept.
#[utoipa::path(
    post,
    path = "/v1/webhooks/deliveries/{msg_id}/retry",
    operation_id = "retry_delivery",
    tag = "webhooks",
    params(("msg_id" = String, Path, description = "`msg_` + ULID")),
    responses(
        (status = 202, description = "Queued again", body = Object),
        (status = 404, description = "`NOT_FOUND`: no delivery of that message", body = ErrorEnvelope),
        AdminErrors, ServerErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn retry(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(msg_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    state.auth.require_admin(&headers, ip)?;
    let mut jobs = state.store.deliveries_of_message(&msg_id).await?;
    if jobs.is_empty() {
        return Err(ApiError::not_found("No delivery of that message"));
    }
    let now = chrono::Utc::now();
    for job in &mut jobs {
        job.state = DeliveryState::Pending;
        job.due_at = now;
        state.store.update_delivery(job).await?;
    }
    let _ = state.dispatcher.cast(DispatchMsg::Tick);
    let data: Vec<Value> = jobs.iter().map(|j| j.view()).collect();
    Ok((StatusCode::ACCEPTED, Json(json!({ "data": data }))).into_response())
}

/// `POST /v1/webhooks/endpoints/{id}/test` — queues a signed `webhook.test` delivery to this
/// endpoint only; it shows in the endpoint's delivery log like any other.
#[utoipa::path(
    post,
    path = "/v1/webhooks/endpoints/{id}/test",
    operation_id = "test_endpoint",
    tag = "webhooks",
    params(("id" = String, Path, description = "`wh_` + ULID")),
    responses(
        (status = 202, description = "Queued; the delivery log shows the outcome", body = Object),
        (status = 404, description = "`NOT_FOUND`", body = ErrorEnvelope),
        AdminErrors, ServerErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn test_send(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    state.auth.require_admin(&headers, ip)?;
    let endpoint = find(&state, &id).await?;
    let answer = state
        .dispatcher
        .call(
            |reply| DispatchMsg::Test(Box::new(endpoint), reply),
            Some(std::time::Duration::from_secs(5)),
        )
        .await;
    let job = match answer {
        Ok(ractor::rpc::CallResult::Success(Ok(job))) => job,
        Ok(ractor::rpc::CallResult::Success(Err(cause))) => {
            tracing::warn!(%cause, "queueing a test delivery failed");
            return Err(ApiError::unavailable(
                "The delivery queue is unavailable; retry shortly",
            ));
        }
        _ => {
            return Err(ApiError::unavailable(
                "The delivery pool is busy; retry shortly",
            ));
        }
    };
    let _ = state.dispatcher.cast(DispatchMsg::Tick);
    Ok((StatusCode::ACCEPTED, Json(json!({"data": job.view()}))).into_response())
}
