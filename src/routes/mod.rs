//! The HTTP surface: one module per route group, assembled by [`router`].
//!
//! Each route is registered with `utoipa_axum::routes!`, which takes the path and methods from
//! the handler's `#[utoipa::path]` and adds both the axum route and its OpenAPI operation, so the
//! router and `GET /openapi.json` (see [`crate::openapi`]) list the same endpoints.

pub mod cases;
pub mod console;
pub mod endpoints;
pub mod inbound;
pub mod ops;
pub mod reviews;
pub mod rooms;
pub mod support;
pub mod views;

use axum::Router;
use axum::http::{Method, StatusCode};
use axum::middleware::from_fn_with_state;
use utoipa_axum::router::{OpenApiRouter, UtoipaMethodRouter, UtoipaMethodRouterExt};
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::limits::{Group, enforce};
use crate::metrics::HttpMetrics;
use crate::openapi;
use crate::state::AppState;

/// Wraps a route in its rate-limit group, and documents what that adds (the `X-RateLimit-*`
/// headers and the 429) in the same step.
fn limited(
    state: &AppState,
    group: Group,
    (schemas, mut paths, route): UtoipaMethodRouter<AppState>,
) -> UtoipaMethodRouter<AppState> {
    openapi::document_rate_limit(&mut paths);
    let route = route.route_layer(from_fn_with_state((state.clone(), group), enforce));
    (schemas, paths, route)
}

/// Adds a CORS policy to a route, preflight included. No handler serves `OPTIONS`, so the
/// preflight reaches the route's fallback; setting that fallback here (rather than leaving the
/// default that `method_not_allowed_fallback` below replaces) keeps it inside the CORS layer.
fn with_cors(
    cors: tower_http::cors::CorsLayer,
    (schemas, paths, route): UtoipaMethodRouter<AppState>,
) -> UtoipaMethodRouter<AppState> {
    (
        schemas,
        paths,
        route.fallback(method_not_allowed).layer(cors),
    )
}

/// Every route casehub serves, including `GET /openapi.json`, which describes all of them.
pub fn router(state: AppState, http_metrics: HttpMetrics) -> Router {
    let s = &state;
    let published = openapi::Published::default();
    let (router, document) =
        OpenApiRouter::with_openapi(openapi::frame(&s.settings.server.public_url))
            .routes(limited(s, Group::Intake, routes!(support::intake)))
            .routes(limited(
                s,
                Group::Intake,
                routes!(support::intake_with_path_key),
            ))
            .routes(limited(
                s,
                Group::SelfService,
                routes!(support::self_service),
            ))
            .routes(limited(s, Group::Approve, routes!(support::approve)))
            .routes(limited(s, Group::Feedback, routes!(support::feedback)))
            .routes(limited(
                s,
                Group::Collaborative,
                routes!(support::collaborative),
            ))
            .routes(limited(s, Group::Intake, routes!(inbound::receive)))
            .routes(with_cors(
                inbound::widget_cors(&s.settings.widget),
                limited(s, Group::Intake, routes!(inbound::contact)),
            ))
            .routes(limited(s, Group::Review, routes!(reviews::edit)))
            .routes(limited(s, Group::Review, routes!(reviews::decide)))
            .routes(routes!(cases::status))
            .routes(routes!(cases::list))
            .routes(routes!(endpoints::list, endpoints::create))
            .routes(routes!(
                endpoints::get_one,
                endpoints::patch,
                endpoints::delete
            ))
            .routes(routes!(endpoints::rotate_secret))
            .routes(routes!(endpoints::deliveries))
            .routes(routes!(endpoints::retry))
            .routes(routes!(endpoints::test_send))
            .routes(routes!(ops::events))
            .routes(routes!(ops::health, ops::health_head))
            .routes(routes!(ops::actors))
            .routes(routes!(ops::stream))
            .routes(routes!(ops::metrics))
            .routes(routes!(ops::inject_panic))
            .routes(routes!(console::page))
            .routes(routes!(rooms::join))
            .routes(routes!(rooms::list))
            // The document's own route has the document as its state; it is filled in below, once
            // every route (this one included) is registered.
            .routes(routes!(openapi::serve).with_state(published.clone()))
            .split_for_parts();
    published.publish(&document);
    router
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
