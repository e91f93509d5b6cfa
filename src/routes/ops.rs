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
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use super::support::parse_case_id;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ClientIp, QueryPairs};
use crate::state::AppState;

/// Store round trips slower than this make health `degraded`.
const STORE_SLOW_MS: u128 = 500;

/// `GET` / `HEAD /api/health` — 200 healthy or degraded, 503 unhealthy. No credentials.
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

/// The actor snapshot shared by `/ops/actors` and the stream.
fn actor_snapshot(state: &AppState) -> Value {
    json!({
        "timestamp": rfc3339(chrono::Utc::now()),
        "kinds": state.telemetry.snapshot(),
    })
}

/// `GET /ops/actors` — admin; a JSON snapshot of the actor system per kind.
pub async fn actors(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    state.auth.require_admin(&headers, ip)?;
    Ok(Json(actor_snapshot(&state)))
}

/// `GET /metrics` — admin; Prometheus text format.
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

/// `GET /ops/stream` — admin; Server-Sent Events: `snapshot` every second and `lifecycle`
/// events as they happen. Ends when the server shuts down.
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

/// `GET /v1/events?after=msg_…&limit=…` — admin; the durable event outbox in recording order.
pub async fn events(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    query: QueryPairs,
) -> ApiResult<Json<Value>> {
    state.auth.require_admin(&headers, ip)?;
    let limit = match query.get("limit") {
        None => 100,
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::invalid_format("limit", "limit must be 1-1000"))?,
    };
    let after = query.get("after").filter(|a| !a.is_empty());
    let events = state.store.outbox(after, limit).await?;
    let next = events.last().map(|e| e.msg_id.clone());
    let data: Vec<Value> = events
        .iter()
        .map(|e| {
            let mut v = e.envelope();
            v["msg_id"] = json!(e.msg_id);
            v
        })
        .collect();
    Ok(Json(json!({"data": data, "next_cursor": next})))
}

/// `POST /ops/faults/cases/{case_id}/panic` — admin, and only with `testing.fault_injection`:
/// makes the case actor panic while handling this request.
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
