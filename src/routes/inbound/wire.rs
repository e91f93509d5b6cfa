//! What the inbound handlers read and answer, for the OpenAPI document. The handlers validate
//! raw JSON field by field (to report every failing field at once), so these types only describe.

use serde::Serialize;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::openapi;

/// The signature headers of `POST /api/webhooks/receive`. When `delivery.inbound_secret` is
/// set, a request needs `X-Webhook-Signature` or all three Standard Webhooks headers.
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct WebhookSignatureHeaders {
    /// Hex HMAC-SHA256 of the raw body, keyed by the secret's UTF-8 bytes (seed 004).
    #[param(rename = "X-Webhook-Signature")]
    pub x_webhook_signature: Option<String>,
    /// Standard Webhooks message id. An id seen before is acknowledged with the first answer and
    /// creates nothing (checked whether or not a secret is set).
    #[param(rename = "webhook-id", min_length = 1, max_length = 255)]
    pub webhook_id: Option<String>,
    /// Standard Webhooks send time, unix seconds; refused when further than
    /// `delivery.inbound_tolerance` (5 minutes) from now.
    #[param(rename = "webhook-timestamp")]
    pub webhook_timestamp: Option<i64>,
    /// Space-separated `v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`;
    /// one match suffices. Keyed by the base64-decoded part of a `whsec_` secret, else the
    /// secret's UTF-8 bytes.
    #[param(rename = "webhook-signature")]
    pub webhook_signature: Option<String>,
}

/// A ticket pushed by another system (seed 004).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({
    "event": "ticket.create",
    "data": {"subject": "Support Request", "message": "Customer message here, in some detail.",
             "customer_email": "customer@example.com", "customer_name": "John Doe",
             "priority": "medium", "category": "Technical"}
}))]
pub struct TicketWebhookBody {
    /// Only `ticket.create`; anything else is a 400 `VALIDATION_ERROR` naming `event`.
    #[schema(example = "ticket.create")]
    pub event: String,
    pub data: TicketData,
}

/// The ticket of a `ticket.create` webhook. Unknown fields are ignored; `null` counts as absent.
#[derive(Serialize, ToSchema)]
pub struct TicketData {
    /// Put before the message in the case description (`subject + "\n\n" + message`).
    pub subject: Option<String>,
    /// Subject and message together: 10-10000 characters.
    pub message: String,
    /// A valid email address.
    #[schema(format = Email)]
    pub customer_email: String,
    /// The email address when absent.
    pub customer_name: Option<String>,
    /// The case's severity; any letter case.
    #[schema(value_type = Option<openapi::wire::Severity>)]
    pub priority: Option<String>,
    /// Free text, kept in the case's metadata.
    #[schema(max_length = 100)]
    pub category: Option<String>,
}

/// A contact form sent from the embeddable widget (seed 001).
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({
    "apiKey": "widget-api-key", "name": "John Doe", "email": "john@example.com",
    "message": "I have a question about your product",
    "customFields": {"company": "Acme Corp", "phone": "+1-555-0123"}
}))]
pub struct ContactBody {
    /// A key from `widget.api_keys`; or send it as `X-API-Key`.
    pub api_key: Option<String>,
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    #[schema(min_length = 10, max_length = 10_000)]
    pub message: String,
    /// Anything the form collects besides; kept in the case's metadata as `custom_fields`.
    #[schema(value_type = Option<Object>)]
    pub custom_fields: Option<Value>,
}

/// The contact form's answer (seed 001, plus the tracking link).
#[derive(Serialize, ToSchema)]
pub struct ContactResponse {
    pub success: bool,
    /// The case id.
    #[serde(rename = "ticketId")]
    pub ticket_id: Uuid,
    /// A number for people to quote: the first 48 bits of the case id, so it is fixed for the
    /// case and exact in JavaScript. Not a lookup key; `ticketId` is.
    #[serde(rename = "ticketNumber")]
    #[schema(minimum = 0, maximum = 281_474_976_710_655_u64)]
    pub ticket_number: u64,
    pub message: String,
    /// `REQ-YYYYMMDD-` and 6 or more alphanumerics.
    pub request_id: String,
    /// Signed link to `GET /webhook/support/status/{case_id}`.
    #[schema(format = "uri")]
    pub tracking_url: String,
}
