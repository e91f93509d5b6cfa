//! The HTTP surface: one module per route group, assembled by [`router`].

pub mod cases;
pub mod ops;
pub mod reviews;
pub mod support;
pub mod views;

use axum::Router;
use axum::http::{Method, StatusCode};
use axum::middleware::from_fn_with_state;
use axum::routing::{MethodRouter, get, post};

use crate::error::ApiError;
use crate::limits::{Group, enforce};
use crate::metrics::HttpMetrics;
use crate::state::AppState;

/// Wraps a route in its rate-limit group.
fn limited(
    state: &AppState,
    group: Group,
    route: MethodRouter<AppState>,
) -> MethodRouter<AppState> {
    route.route_layer(from_fn_with_state((state.clone(), group), enforce))
}

/// Every route casehub serves.
pub fn router(state: AppState, http_metrics: HttpMetrics) -> Router {
    let s = &state;
    Router::new()
        .route(
            "/webhook/support/intake",
            limited(s, Group::Intake, post(support::intake)),
        )
        .route(
            "/webhook/support/intake/{key}",
            limited(s, Group::Intake, post(support::intake_with_path_key)),
        )
        .route(
            "/webhook/support/self-service",
            limited(s, Group::SelfService, post(support::self_service)),
        )
        .route(
            "/webhook/support/approve/{case_id}",
            limited(s, Group::Approve, get(support::approve)),
        )
        .route(
            "/webhook/support/feedback/{case_id}",
            limited(s, Group::Feedback, get(support::feedback)),
        )
        .route(
            "/webhook/support/collaborative",
            limited(s, Group::Collaborative, post(support::collaborative)),
        )
        .route(
            "/webhook/support/review/{review_id}/edit",
            limited(s, Group::Review, post(reviews::edit)),
        )
        .route(
            "/webhook/support/review/{review_id}/{action}",
            limited(s, Group::Review, get(reviews::decide)),
        )
        .route("/webhook/support/status/{case_id}", get(cases::status))
        .route("/v1/cases", get(cases::list))
        .route("/v1/events", get(ops::events))
        .route("/api/health", get(ops::health))
        .route("/ops/actors", get(ops::actors))
        .route("/ops/stream", get(ops::stream))
        .route("/metrics", get(ops::metrics))
        .route("/ops/faults/cases/{case_id}/panic", post(ops::inject_panic))
        .route_layer(from_fn_with_state(http_metrics, crate::metrics::track))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::not_found("No such endpoint")
}

async fn method_not_allowed(method: Method) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!("{method} is not allowed on this endpoint"),
    )
}
