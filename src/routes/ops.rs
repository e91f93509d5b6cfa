//! Operations: health (seed 001's shape), the actor snapshot, the event outbox and the
//! test-only fault hook.

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use casehub_actors::domain::rfc3339;
use futures::Stream;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use utoipa::{IntoParams, ToSchema};

use super::support::{CasePath, parse_case_id};
use crate::error::{ApiError, ApiResult};
use crate::extract::{ClientIp, QueryPairs};
use crate::openapi::{AdminErrors, ErrorEnvelope, ServerErrors};
use crate::state::AppState;

/// Store round trips slower than this make health `degraded`.
const STORE_SLOW_MS: u128 = 500;

/// Store and actor health (seed 001's shape).
///
/// `GET /api/health` — 200 healthy or degraded, 503 unhealthy. No credentials.
#[utoipa::path(
    get,
    path = "/api/health",
    tag = "ops",
    responses(
        (status = 200, description = "`healthy` or `degraded`", body = Health),
        (status = 503, description = "`unhealthy`: the store is unreachable", body = Health),
    ),
)]
pub async fn health(State(state): State<AppState>) -> Response {
    let redis = state.settings.store.is_redis();
    let kind = if redis { "redis" } else { "embedded" };
    let (store_check, store_status) = match state.store.ping().await {
        Ok(latency) => {
            let ms = latency.as_millis();
            let status = if ms > STORE_SLOW_MS {
                "degraded"
            } else {
                "healthy"
            };
            let mut check = json!({"status": status, "latencyMs": ms, "kind": kind});
            if status == "degraded" {
                check["detail"] = json!("Slow response time");
            }
            (check, status)
        }
        Err(e) => {
            tracing::warn!(error = %e, "health: store check failed");
            let check = json!({"status": "unhealthy", "kind": kind, "detail": "store unreachable"});
            (check, "unhealthy")
        }
    };
    let redis_check = if redis {
        store_check.clone()
    } else {
        json!({"status": "not_configured"})
    };
    let actors = state.telemetry.actor("case_actor").snapshot();
    let delivery_check = match state.store.delivery_backlog().await {
        Ok(per_endpoint) => json!({
            "status": "healthy",
            "backlog": per_endpoint.values().sum::<u64>(),
            "backlog_by_endpoint": per_endpoint,
        }),
        Err(_) => json!({"status": "unhealthy", "detail": "delivery queue unreachable"}),
    };
    let overall = match store_status {
        "unhealthy" => "unhealthy",
        "degraded" => "degraded",
        _ => "healthy",
    };
    let body = json!({
        "status": overall,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime": state.started.elapsed().as_secs_f64(),
        "checks": {
            "store": store_check,
            "redis": redis_check,
            "delivery": delivery_check,
            "actors": {
                "status": "healthy",
                "case_actors_live": actors["live"],
                "restarts": actors["restarts"],
                "shards": state.cases.shard_count(),
            },
        },
        "timestamp": rfc3339(chrono::Utc::now()),
    });
    let code = if overall == "unhealthy" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, Json(body)).into_response()
}

/// The health check's status code and headers, without a body.
///
/// `HEAD /api/health` — for probes. The same check as `GET`; a handler of its own only so the
/// document gives the operation its own id.
#[utoipa::path(
    head,
    path = "/api/health",
    tag = "ops",
    responses(
        (status = 200, description = "`healthy` or `degraded`"),
        (status = 503, description = "`unhealthy`: the store is unreachable"),
    ),
)]
pub async fn health_head(state: State<AppState>) -> Response {
    health(state).await
}

/// The actor snapshot shared by `/ops/actors` and the stream.
fn actor_snapshot(state: &AppState) -> Value {
    json!({
        "timestamp": rfc3339(chrono::Utc::now()),
        "kinds": state.telemetry.snapshot(),
    })
}

/// A snapshot of the actor system per kind.
///
/// `GET /ops/actors` — admin: live actors, spawns, restarts, passivations, mailbox depth.
#[utoipa::path(
    get,
    path = "/ops/actors",
    tag = "ops",
    responses(
        (status = 200, description = "The snapshot", body = ActorSnapshot),
        AdminErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn actors(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    state.auth.require_admin(&headers, ip)?;
    Ok(Json(actor_snapshot(&state)))
}

/// Prometheus metrics.
///
/// `GET /metrics` — admin; Prometheus text format: HTTP requests, actors, store latency.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "ops",
    responses(
        (status = 200, description = "Prometheus text exposition format",
         content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        AdminErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn metrics(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> ApiResult<Response> {
    state.auth.require_admin(&headers, ip)?;
    let body = state.telemetry.encode();
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response())
}

/// The actor snapshot every second, and lifecycle events as they happen.
///
/// `GET /ops/stream` — admin; Server-Sent Events: `snapshot` (an `ActorSnapshot`) every second
/// and `lifecycle` (spawn, stop, restart, passivate) as they happen. Ends when the server shuts
/// down.
#[utoipa::path(
    get,
    path = "/ops/stream",
    tag = "ops",
    responses(
        (status = 200, description = "An endless Server-Sent Events stream of `snapshot` and \
         `lifecycle` events, each with a JSON `data` line", content_type = "text/event-stream",
         body = String),
        AdminErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn stream(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> ApiResult<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>> {
    state.auth.require_admin(&headers, ip)?;
    let lifecycle = state.telemetry.lifecycle();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let shutdown = state.shutdown.clone();
    let events = futures::stream::unfold(
        (state, lifecycle, tick, shutdown),
        |(state, mut lifecycle, mut tick, mut shutdown)| async move {
            let event = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return None,
                _ = tick.tick() => SseEvent::default()
                    .event("snapshot")
                    .data(actor_snapshot(&state).to_string()),
                received = lifecycle.recv() => match received {
                    Ok(e) => SseEvent::default()
                        .event("lifecycle")
                        .data(serde_json::to_string(&e).unwrap_or_default()),
                    // A reader too slow for the lifecycle rate skips ahead; say so.
                    Err(RecvError::Lagged(n)) => SseEvent::default().comment(format!("lagged {n}")),
                    Err(RecvError::Closed) => return None,
                },
            };
            Some((Ok(event), (state, lifecycle, tick, shutdown)))
        },
    );
    Ok(Sse::new(events).keep_alive(KeepAlive::default()))
}

/// The durable event outbox, in recording order.
///
/// `GET /v1/events?after=…&limit=…` — admin; seed 000 envelopes with their `msg_id` and
/// outbox `position`; `after` takes the previous page's `next_cursor`.
#[utoipa::path(
    get,
    path = "/v1/events",
    tag = "ops",
    params(EventsQuery),
    responses(
        (status = 200, description = "One page of events", body = EventList),
        (status = 400, description = "`INVALID_FORMAT`: `limit` or `after`", body = ErrorEnvelope),
        AdminErrors, ServerErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn events(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    query: QueryPairs,
) -> ApiResult<Json<Value>> {
    state.auth.require_admin(&headers, ip)?;
    let limit = query.page_size("limit", 100, 1000)?;
    let after = match query.get("after").filter(|a| !a.is_empty()) {
        None => 0,
        Some(raw) => raw.parse::<u64>().map_err(|_| {
            ApiError::invalid_format("after", "after must be a next_cursor of this listing")
        })?,
    };
    let entries = state.store.outbox(after, limit).await?;
    let next = entries.last().map(|e| e.position.to_string());
    let data: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let mut v = entry.event.envelope();
            v["msg_id"] = json!(entry.event.msg_id);
            v["position"] = json!(entry.position);
            v
        })
        .collect();
    Ok(Json(json!({"data": data, "next_cursor": next})))
}

/// Make a case actor panic (tests only).
///
/// `POST /ops/faults/cases/{case_id}/panic` — admin, and only with `testing.fault_injection`:
/// makes the case actor panic while handling this request, which then answers 500.
#[utoipa::path(
    post,
    path = "/ops/faults/cases/{case_id}/panic",
    tag = "ops",
    params(CasePath),
    responses(
        (status = 400, description = "`INVALID_FORMAT`: `case_id` is not a UUID", body = ErrorEnvelope),
        (status = 404, description = "`NOT_FOUND`: fault injection is disabled, or no such case", body = ErrorEnvelope),
        AdminErrors,
        (status = 500, description = "`INTERNAL_ERROR`: the actor panicked, as asked; it is \
         restarted from its snapshot", body = ErrorEnvelope),
        (status = 503, description = "`SERVICE_UNAVAILABLE`", body = ErrorEnvelope),
    ),
    security(("admin_key" = [])),
)]
pub async fn inject_panic(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Path(raw_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    state.auth.require_admin(&headers, ip)?;
    if !state.settings.testing.fault_injection {
        return Err(ApiError::not_found("Fault injection is disabled"));
    }
    let case_id = parse_case_id(&raw_id)?;
    state.cases.inject_panic(case_id).await?;
    Err(ApiError::internal())
}

// What the handlers above read and answer, for the OpenAPI document.

/// Paging of `GET /v1/events`.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Events recorded after this position: the `next_cursor` of the previous page.
    pub after: Option<String>,
    /// Page size, 1-1000; 100 when absent.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// Health in seed 001's shape.
#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(pattern = "^(healthy|degraded|unhealthy)$")]
    pub status: String,
    pub version: String,
    /// Seconds since start.
    pub uptime: f64,
    pub checks: HealthChecks,
    #[schema(format = DateTime)]
    pub timestamp: String,
}

/// The individual checks.
#[derive(Serialize, ToSchema)]
pub struct HealthChecks {
    pub store: StoreCheck,
    /// The store check again when the store is Redis, else `{"status": "not_configured"}`.
    #[schema(value_type = Object)]
    pub redis: Value,
    /// `{"status", "backlog", "backlog_by_endpoint"}`: pending deliveries.
    #[schema(value_type = Object)]
    pub delivery: Value,
    pub actors: ActorsCheck,
}

/// A store round trip.
#[derive(Serialize, ToSchema)]
pub struct StoreCheck {
    #[schema(pattern = "^(healthy|degraded|unhealthy)$")]
    pub status: String,
    /// `embedded` or `redis`.
    pub kind: String,
    /// Round-trip time; absent when the store is unreachable.
    #[serde(rename = "latencyMs", skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub latency_ms: Option<u64>,
    /// Why the check is not healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub detail: Option<String>,
}

/// The case actors.
#[derive(Serialize, ToSchema)]
pub struct ActorsCheck {
    pub status: String,
    pub case_actors_live: u64,
    pub restarts: u64,
    pub shards: u64,
}

/// The actor system per kind.
#[derive(Serialize, ToSchema)]
pub struct ActorSnapshot {
    #[schema(format = DateTime)]
    pub timestamp: String,
    /// Per actor kind (`case_actor`, `case_supervisor`, …): live count, messages handled,
    /// handling time, mailbox depth, spawns, restarts, passivations.
    #[schema(value_type = Object)]
    pub kinds: Value,
}

/// One page of the outbox.
#[derive(Serialize, ToSchema)]
pub struct EventList {
    pub data: Vec<OutboxEvent>,
    /// The last `position` of this page (pass as `after`); `null` when the page is empty.
    pub next_cursor: Option<String>,
}

/// A recorded event: the seed 000 envelope plus its message id.
#[derive(Serialize, ToSchema)]
pub struct OutboxEvent {
    /// `msg_` + ULID; the `webhook-id` of every delivery of this event.
    #[schema(pattern = "^msg_[0-9A-Z]{26}$")]
    pub msg_id: String,
    /// Where the event stands in the outbox: from 1, one more per event, in commit order.
    #[schema(minimum = 1)]
    pub position: u64,
    /// `case.created`, `case.updated`, `case.escalated`, `case.resolved`, `review.requested`,
    /// `review.completed`, `feedback.received`, …
    pub event: String,
    #[schema(format = DateTime)]
    pub timestamp: String,
    pub workflow: String,
    #[schema(value_type = Object)]
    pub data: Value,
}
