//! The OpenAPI 3.1 description of the HTTP surface (CONTRACT §7), served at `GET /openapi.json`.
//!
//! Nothing here lists routes. Every handler carries its own `#[utoipa::path]`, and
//! [`crate::routes::router`] registers each one with `utoipa_axum::routes!`, which adds the route
//! to the axum router and its operation to the document in one statement; the rate-limit wrapper
//! documents the headers and the 429 it adds in the same call that adds the layer. Only a plain
//! `.route(...)` that bypasses `routes!` could serve an undocumented route, and
//! `tests/it/openapi.rs` checks the document and the router against each other over HTTP.
//!
//! This module holds what the operations share: the document's frame and security schemes, the
//! error envelope and the error responses, the schemas of the domain's closed vocabularies, and
//! the handler that serves the finished document.

use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::path::{Operation, PathItem, Paths};
use utoipa::openapi::response::Response as ResponseDoc;
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::openapi::{Header, OpenApi, Ref, RefOr};
use utoipa::{IntoResponses, Modify, OpenApi as _, ToSchema};

use crate::error::ApiError;

/// The document's frame: info, tags, security schemes and the shared error schema. Paths are
/// added by the router as it registers each route.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "casehub",
        description = "A realtime support hub: cases as supervised actors, live review rooms, \
                       signed webhooks. Every error answers the envelope `ErrorEnvelope`."
    ),
    components(schemas(ErrorEnvelope)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "support", description = "The support workflow (CONTRACT §3)"),
        (name = "reviews", description = "Human review actions over HTTP (CONTRACT §3)"),
        (name = "cases", description = "Reading cases"),
        (name = "inbound", description = "Cases pushed by other systems and the contact form (CONTRACT §4)"),
        (name = "ops", description = "Operations: health, metrics, the actor tree, the outbox (CONTRACT §7)")
    )
)]
struct ApiDoc;

/// The document before any path is registered, with `public_url` as its one server.
pub fn frame(public_url: &str) -> OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.servers = Some(vec![Server::new(public_url)]);
    doc
}

/// The security schemes operations name in their `security(...)` (CONTRACT §2).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let header_key = |description: &str| {
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-API-Key",
                description,
            )))
        };
        components.add_security_scheme(
            "api_key",
            header_key("An API key from `auth.api_keys`, any role."),
        );
        components.add_security_scheme(
            "admin_key",
            header_key("An API key from `auth.api_keys` with the `admin` role."),
        );
        let mut reviewer = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .bearer_format("JWT")
            .build();
        reviewer.description = Some(
            "A reviewer token (HS256; `sub` = reviewer email, `rooms`, `exp`), as minted by \
             `casehub token`."
                .into(),
        );
        components.add_security_scheme("reviewer_token", SecurityScheme::Http(reviewer));
        components.add_security_scheme(
            "widget_key",
            header_key("A key from `widget.api_keys`; the body's `apiKey` works too."),
        );
        components.add_security_scheme(
            "webhook_signature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "X-Webhook-Signature",
                "Hex HMAC-SHA256 of the raw body, keyed by `delivery.inbound_secret`'s UTF-8 \
                 bytes. Needed only while that secret is set.",
            ))),
        );
        components.add_security_scheme(
            "standard_webhooks",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "webhook-signature",
                "Standard Webhooks: `webhook-id`, `webhook-timestamp` and `webhook-signature` \
                 (`v1,<base64 HMAC-SHA256 of \"{id}.{timestamp}.{body}\">`). Needed only while \
                 `delivery.inbound_secret` is set.",
            ))),
        );
        components.add_security_scheme(
            "link_token",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "token",
                "The signature the hub puts on the approve, reject, feedback and tracking links \
                 it hands out; valid for that case and action only.",
            ))),
        );
    }
}

/// The one error body of every endpoint (CONTRACT §1).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "success": false,
    "error": {"code": "NOT_FOUND", "message": "Case not found",
              "details": {"suggestion": "Verify the case ID is correct"}},
    "timestamp": "2026-11-22T10:00:00Z"
}))]
pub struct ErrorEnvelope {
    /// Always `false`.
    pub success: bool,
    pub error: ErrorBody,
    /// When the error was answered: RFC 3339 UTC with `Z`.
    #[schema(format = DateTime)]
    pub timestamp: String,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// The contract's code: `VALIDATION_ERROR`, `MISSING_FIELD`, `INVALID_FORMAT` (400),
    /// `UNAUTHORIZED` (401), `FORBIDDEN` (403), `NOT_FOUND` (404), `METHOD_NOT_ALLOWED` (405),
    /// `ALREADY_PROCESSED`, `INVALID_STATE`, `ALREADY_CLAIMED` (409), `PAYLOAD_TOO_LARGE` (413),
    /// `UNSUPPORTED_MEDIA_TYPE` (415), `RATE_LIMITED` (429), `INTERNAL_ERROR` (500),
    /// `SERVICE_UNAVAILABLE` (503).
    pub code: String,
    /// For people; never internal detail.
    pub message: String,
    /// For programs: `field` and `fields: [{field, error}]` for validation errors, `status` for
    /// `INVALID_STATE`, `limit`, `window` and `retry_after` for `RATE_LIMITED`.
    #[schema(value_type = Object)]
    pub details: Value,
}

/// 401 / 403 of an endpoint that takes an API key.
#[derive(IntoResponses)]
pub enum KeyErrors {
    /// `UNAUTHORIZED`: no credentials, or unknown ones.
    #[response(status = 401)]
    Unauthorized(ErrorEnvelope),
    /// `FORBIDDEN`: the caller's address is outside `auth.ip_allowlist`, or the credentials do
    /// not cover this resource.
    #[response(status = 403)]
    Forbidden(ErrorEnvelope),
}

/// 401 / 403 of an admin endpoint.
#[derive(IntoResponses)]
pub enum AdminErrors {
    /// `UNAUTHORIZED`: no API key, or an unknown one.
    #[response(status = 401)]
    Unauthorized(ErrorEnvelope),
    /// `FORBIDDEN`: the key does not have the admin role, or the caller's address is outside
    /// `auth.ip_allowlist`.
    #[response(status = 403)]
    Forbidden(ErrorEnvelope),
}

/// 413 / 415 of an endpoint that takes a JSON body.
#[derive(IntoResponses)]
pub enum BodyErrors {
    /// `PAYLOAD_TOO_LARGE`: the body is above `server.body_limit`.
    #[response(status = 413)]
    PayloadTooLarge(ErrorEnvelope),
    /// `UNSUPPORTED_MEDIA_TYPE`: the body is not declared `application/json`.
    #[response(status = 415)]
    UnsupportedMediaType(ErrorEnvelope),
}

/// 500 / 503, which any endpoint that reaches a case or the store can answer.
#[derive(IntoResponses)]
pub enum ServerErrors {
    /// `INTERNAL_ERROR`: logged with its cause; the body says nothing internal.
    #[response(status = 500)]
    Internal(ErrorEnvelope),
    /// `SERVICE_UNAVAILABLE`: the store is unreachable or the case actors are at capacity;
    /// retry shortly.
    #[response(status = 503)]
    Unavailable(ErrorEnvelope),
}

const RATE_LIMIT_HEADERS: [(&str, &str); 3] = [
    (
        "X-RateLimit-Limit",
        "Requests allowed per minute for this caller and endpoint.",
    ),
    ("X-RateLimit-Remaining", "Requests left in the window."),
    (
        "X-RateLimit-Reset",
        "When the window is full again (unix seconds).",
    ),
];

/// Documents what the rate-limit layer adds to every operation in `paths` (CONTRACT §8): the
/// `X-RateLimit-*` headers on each response and the 429 `RATE_LIMITED` answer. Called by the
/// router in the same statement that adds the layer.
pub fn document_rate_limit(paths: &mut Paths) {
    let integer = || ObjectBuilder::new().schema_type(Type::Integer).build();
    let header = |description: &str| {
        let mut h = Header::new(integer());
        h.description = Some(description.into());
        RefOr::T(h)
    };
    for item in paths.paths.values_mut() {
        for operation in operations_mut(item) {
            let responses = &mut operation.responses.responses;
            let mut limited = ResponseDoc::new(
                "`RATE_LIMITED`: over this endpoint's per-minute limit for the caller; \
                 `details {limit, window, retry_after}`.",
            );
            limited.content.insert(
                "application/json".into(),
                RefOr::T(utoipa::openapi::Content::new(Some(Ref::from_schema_name(
                    "ErrorEnvelope",
                )))),
            );
            limited.headers.insert(
                "Retry-After".into(),
                header("Seconds until a request will be accepted again."),
            );
            responses.insert("429".into(), RefOr::T(limited));
            for response in responses.values_mut() {
                if let RefOr::T(response) = response {
                    for (name, description) in RATE_LIMIT_HEADERS {
                        response.headers.insert(name.into(), header(description));
                    }
                }
            }
        }
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
        &mut item.query,
    ]
    .into_iter()
    .flatten()
    .chain(item.additional_operations.values_mut())
}

/// The domain's closed vocabularies as named schemas (`CaseStatus`, `Severity`, …), read from the
/// domain enums themselves so the document lists exactly the values the edge accepts and
/// answers. The enums live in `casehub-actors` and cannot carry the schema derive, so each gets a
/// stand-in here; a wire-shape field names it with `#[schema(value_type = wire::CaseStatus)]`.
pub mod wire {
    use std::borrow::Cow;

    use casehub_actors::domain;
    use utoipa::openapi::RefOr;
    use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

    macro_rules! wire_enums {
        ($($ty:ident),+ $(,)?) => {
            $(
                #[doc = concat!("The wire values of `casehub_actors::domain::", stringify!($ty), "`.")]
                pub struct $ty;

                impl utoipa::PartialSchema for $ty {
                    fn schema() -> RefOr<Schema> {
                        let values = domain::$ty::ALL.iter().map(|v| v.as_str());
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some(values))
                            .into()
                    }
                }

                impl utoipa::ToSchema for $ty {
                    fn name() -> Cow<'static, str> {
                        Cow::Borrowed(stringify!($ty))
                    }
                }
            )+
        };
    }

    wire_enums!(
        CaseStatus,
        Category,
        Channel,
        Complexity,
        Decision,
        Environment,
        Priority,
        ResolutionPath,
        ResolutionType,
        ReviewAction,
        ReviewStatus,
        Severity,
        Urgency,
    );
}

/// The finished document as served: serialized once, when the router has registered every
/// route. Cheap to clone.
#[derive(Clone, Default)]
pub struct Published(Arc<OnceLock<Bytes>>);

impl Published {
    /// Fixes the served document. The router is built once, so later calls are ignored.
    pub fn publish(&self, document: &OpenApi) {
        match document.to_pretty_json() {
            Ok(json) => {
                let _ = self.0.set(Bytes::from(json));
            }
            // Leaves the route answering 503; the rest of the API is unaffected.
            Err(e) => tracing::error!(error = %e, "cannot serialize the OpenAPI document"),
        }
    }
}

/// This OpenAPI document.
///
/// `GET /openapi.json` — no credentials.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "ops",
    operation_id = "openapi",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of every HTTP endpoint",
         content_type = "application/json", body = Object),
        (status = 503, description = "`SERVICE_UNAVAILABLE`: the document could not be built",
         body = ErrorEnvelope),
    )
)]
pub async fn serve(State(published): State<Published>) -> Response {
    match published.0.get() {
        Some(body) => ([(CONTENT_TYPE, "application/json")], body.clone()).into_response(),
        None => ApiError::unavailable("The API description is not available").into_response(),
    }
}
