//! Inbound webhooks (CONTRACT §4): tickets pushed by other systems (seed 004's
//! `POST /api/webhooks/receive`) and the embeddable contact form (seed 001's
//! `POST /api/widget/contact`). Both become cases through the intake pipeline: the same
//! validation ([`crate::routes::support::parse_intake`]), the same `CaseDirectory::create`, the
//! same answer once the case and its `case.created` event are durable.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use casehub_actors::domain::Case;
use serde_json::{Value, json};
use subtle::{Choice, ConstantTimeEq};
use tower_http::cors::{AllowOrigin, CorsLayer};

use super::views::intake_response;
use crate::error::{ApiError, ApiResult};
use crate::extract::{JsonObject, RawJson};
use crate::openapi::{BodyErrors, ErrorEnvelope, ServerErrors};
use crate::routes::support::{IntakeResponse, create_once};
use crate::settings::{Secret, WidgetSettings};
use crate::state::AppState;

mod payload;
mod signature;
mod wire;
pub use wire::*;

/// What the contact form tells the customer (seed 001).
const CONTACT_THANKS: &str = "Thank you for contacting us. We will get back to you soon.";

/// Receive a ticket from another system.
///
/// `POST /api/webhooks/receive` (seed 004). `{"event": "ticket.create", "data": {…}}` creates
/// and triages a case (channel `webhook`) and answers as intake does. When
/// `delivery.inbound_secret` is set the raw body must be signed (`X-Webhook-Signature` or
/// Standard Webhooks headers). A `webhook-id` seen before answers the first case again and
/// creates nothing.
#[utoipa::path(
    post,
    path = "/api/webhooks/receive",
    tag = "inbound",
    operation_id = "webhook_receive",
    params(WebhookSignatureHeaders),
    request_body = TicketWebhookBody,
    responses(
        (status = 200, description = "The case, triaged; the first answer again for a repeated \
         `webhook-id`", body = IntakeResponse),
        (status = 400, description = "`VALIDATION_ERROR` or `MISSING_FIELD` naming every failing \
         field as sent (`event`, `data.customer_email`, …), or `INVALID_FORMAT` for a body that is \
         not a JSON object or a malformed `webhook-id`", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`: a secret is configured and the signature is \
         missing or wrong, or `webhook-timestamp` is outside the tolerance", body = ErrorEnvelope),
        BodyErrors, ServerErrors,
    ),
    security((), ("webhook_signature" = []), ("standard_webhooks" = [])),
)]
pub async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawJson { bytes, object }: RawJson,
) -> ApiResult<Json<Value>> {
    let delivery = &state.settings.delivery;
    let secret = delivery.inbound_secret.expose();
    if !secret.is_empty() {
        let now = chrono::Utc::now().timestamp();
        signature::verify(secret, &headers, &bytes, now, delivery.inbound_tolerance)
            .map_err(|refusal| ApiError::unauthorized(refusal.message()))?;
    }
    let webhook_id = webhook_id(&headers)?;
    let mut intake = payload::ticket_intake(&object)?;
    if let (Some(id), Value::Object(metadata)) = (&webhook_id, &mut intake.metadata) {
        metadata.insert("webhook_id".into(), json!(id));
    }
    // Own namespace: intake keys start with the caller's key fingerprint (`key-…:`).
    let key = webhook_id.map(|id| format!("inbound:{id}"));
    let case = create_once(&state, intake, key).await?;
    Ok(Json(intake_response(&case, &state.auth.links)))
}

/// The `webhook-id` header, if any: 1-255 visible ASCII characters.
fn webhook_id(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(raw) = headers.get("webhook-id") else {
        return Ok(None);
    };
    raw.to_str()
        .ok()
        .map(str::trim)
        .filter(|id| !id.is_empty() && id.len() <= 255)
        .map(|id| Some(id.to_string()))
        .ok_or_else(|| {
            ApiError::invalid_format(
                "webhook-id",
                "webhook-id must be 1-255 visible ASCII characters",
            )
        })
}

/// Submit the embeddable contact form.
///
/// `POST /api/widget/contact` (seed 001). Needs a widget key (`apiKey` in the body or
/// `X-API-Key`) from `widget.api_keys`; creates and triages a case (channel `portal`). CORS is
/// enabled for the origins in `widget.allowed_origins`, and a request whose `Origin` is not one
/// of them is refused.
#[utoipa::path(
    post,
    path = "/api/widget/contact",
    tag = "inbound",
    operation_id = "widget_contact",
    request_body = ContactBody,
    responses(
        (status = 200, description = "The case was created", body = ContactResponse),
        (status = 400, description = "`VALIDATION_ERROR` or `MISSING_FIELD` naming every failing \
         field (`name`, `email`, `message`, `customFields`), or `INVALID_FORMAT`", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`: no widget key, or an unknown one", body = ErrorEnvelope),
        (status = 403, description = "`FORBIDDEN`: the `Origin` is not in `widget.allowed_origins`", body = ErrorEnvelope),
        BodyErrors, ServerErrors,
    ),
    security(("widget_key" = [])),
)]
pub async fn contact(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonObject(body): JsonObject,
) -> ApiResult<Json<Value>> {
    let widget = &state.settings.widget;
    if let Some(origin) = headers.get("origin").and_then(|v| v.to_str().ok())
        && !origin_allowed(&widget.allowed_origins, origin)
    {
        return Err(ApiError::forbidden(
            "This origin may not use the contact form",
        ));
    }
    let presented = body
        .get("apiKey")
        .and_then(Value::as_str)
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            ApiError::unauthorized("A widget API key is required (body apiKey or X-API-Key)")
        })?;
    if !widget_key_known(&widget.api_keys, presented) {
        return Err(ApiError::unauthorized("Invalid widget API key"));
    }
    let intake = payload::contact_intake(&body)?;
    let case = create_once(&state, intake, None).await?;
    Ok(Json(json!({
        "success": true,
        "ticketId": case.case_id,
        "ticketNumber": ticket_number(&case),
        "message": CONTACT_THANKS,
        "request_id": case.request_id,
        "tracking_url": state.auth.links.tracking_url(case.case_id),
    })))
}

/// Compares against every key so the time taken does not tell which one matched, or whether any.
fn widget_key_known(keys: &[Secret], presented: &str) -> bool {
    let mut known = Choice::from(0);
    for key in keys {
        known |= key.expose().as_bytes().ct_eq(presented.as_bytes());
    }
    known.into()
}

/// The number people quote for a contact-form case: the first 48 bits of the case id. Fixed for
/// the case without storing anything, and below 2^53 so JavaScript reads it exactly.
fn ticket_number(case: &Case) -> u64 {
    let id = case.case_id.0.as_bytes();
    u64::from_be_bytes([0, 0, id[0], id[1], id[2], id[3], id[4], id[5]])
}

/// True when `origin` is allowed by `allowed` (`"*"` allows any); scheme and host compare
/// without regard to case or a trailing slash.
fn origin_allowed(allowed: &[String], origin: &str) -> bool {
    let origin = origin.trim().trim_end_matches('/');
    allowed
        .iter()
        .any(|a| a == "*" || a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

/// The CORS policy of `POST /api/widget/contact`: the origins of `widget.allowed_origins`,
/// `POST` with `Content-Type` and `X-API-Key`, preflight cached for an hour.
pub fn widget_cors(widget: &WidgetSettings) -> CorsLayer {
    let layer = CorsLayer::new()
        .allow_methods([Method::POST])
        .allow_headers([CONTENT_TYPE, HeaderName::from_static("x-api-key")])
        .expose_headers([
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderName::from_static("x-ratelimit-remaining"),
            HeaderName::from_static("x-ratelimit-reset"),
        ])
        .max_age(Duration::from_secs(3600));
    if widget.allowed_origins.iter().any(|o| o == "*") {
        return layer.allow_origin(AllowOrigin::any());
    }
    let allowed = widget.allowed_origins.clone();
    layer.allow_origin(AllowOrigin::predicate(move |origin: &HeaderValue, _| {
        origin.to_str().is_ok_and(|o| origin_allowed(&allowed, o))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_without_case_or_trailing_slash() {
        let allowed = vec!["https://shop.example.com/".to_string()];
        assert!(origin_allowed(&allowed, "https://SHOP.example.com"));
        assert!(!origin_allowed(&allowed, "https://evil.example.com"));
        assert!(origin_allowed(&["*".to_string()], "http://anything"));
        assert!(!origin_allowed(&[], "https://shop.example.com"));
    }

    #[test]
    fn widget_keys_must_match_exactly() {
        let keys = [Secret::new("k1"), Secret::new("k2")];
        assert!(widget_key_known(&keys, "k2"));
        assert!(!widget_key_known(&keys, "k"));
        assert!(!widget_key_known(&[], "k1"));
    }
}
