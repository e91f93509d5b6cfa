//! The one error type of the HTTP edge and its envelope (CONTRACT §1):
//! `{"success": false, "error": {"code", "message", "details"}, "timestamp"}`.
//!
//! 5xx bodies say nothing internal; the cause is logged where the error is made.

use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use casehub_actors::case::CaseError;
use casehub_actors::domain::rfc3339;
use casehub_actors::store::StoreError;
use serde::Serialize;
use serde_json::{Value, json};

/// One failing field.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FieldError {
    pub field: String,
    pub error: String,
}

/// An error answer: status, contract code, message, details and extra headers.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Value,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    /// An error with empty details.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: json!({}),
            headers: Vec::new(),
        }
    }

    /// Replaces the details object.
    pub fn with_details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    /// Replaces the status (the code and envelope stay).
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// 400 INVALID_FORMAT about one field.
    pub fn invalid_format(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(StatusCode::BAD_REQUEST, "INVALID_FORMAT", message.clone())
            .with_details(json!({"field": field, "fields": [{"field": field, "error": message}]}))
    }

    /// 400 for a set of field errors: `MISSING_FIELD` when the only problem is one missing
    /// field, else `VALIDATION_ERROR`.
    pub fn fields(errors: Vec<FieldError>, missing: &[String]) -> Self {
        if errors.len() == 1 && missing.len() == 1 {
            let field = &missing[0];
            return Self::new(
                StatusCode::BAD_REQUEST,
                "MISSING_FIELD",
                format!("Missing required field: {field}"),
            )
            .with_details(
                json!({"field": field, "requirement": errors[0].error, "fields": errors}),
            );
        }
        Self::new(
            StatusCode::BAD_REQUEST,
            "VALIDATION_ERROR",
            "Request validation failed",
        )
        .with_details(json!({ "fields": errors }))
    }

    /// 401 UNAUTHORIZED.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message)
    }

    /// 403 FORBIDDEN.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "FORBIDDEN", message)
    }

    /// 404 NOT_FOUND.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    /// 500 INTERNAL_ERROR with a generic message.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "An internal error occurred; it has been logged",
        )
    }

    /// 503 SERVICE_UNAVAILABLE.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            message,
        )
    }

    /// The envelope body.
    pub fn body(&self) -> Value {
        json!({
            "success": false,
            "error": {"code": self.code, "message": self.message, "details": self.details},
            "timestamp": rfc3339(chrono::Utc::now()),
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body())).into_response();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) | StoreError::Fenced(cause) => {
                tracing::warn!(%cause, "store unavailable");
                ApiError::unavailable("The store is unavailable; retry shortly")
            }
            other => {
                tracing::error!(error = %other, "store failure");
                ApiError::internal()
            }
        }
    }
}

impl From<CaseError> for ApiError {
    fn from(e: CaseError) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match &e {
            CaseError::Store(StoreError::Unavailable(cause) | StoreError::Fenced(cause)) => {
                tracing::warn!(%cause, "store unavailable");
            }
            CaseError::Store(cause) => tracing::error!(error = %cause, "store failure"),
            CaseError::Internal => tracing::error!("case actor failed while handling a request"),
            _ => {}
        }
        let error = ApiError::new(status, e.code(), e.client_message());
        match e {
            CaseError::NotFound => {
                error.with_details(json!({"suggestion": "Verify the case ID is correct"}))
            }
            CaseError::ReviewNotFound => {
                error.with_details(json!({"suggestion": "Verify the review ID is correct"}))
            }
            CaseError::InvalidState { status, .. } => {
                error.with_details(json!({ "status": status }))
            }
            _ => error,
        }
    }
}

/// Result type of handlers.
pub type ApiResult<T> = Result<T, ApiError>;
