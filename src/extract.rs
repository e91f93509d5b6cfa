//! Extractors whose rejections are the contract's errors, and field-by-field validation that
//! reports every failing field at once (CONTRACT §1).

use std::net::IpAddr;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::header::CONTENT_TYPE;
use axum::http::request::Parts;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::{ApiError, FieldError};
use crate::state::{AppState, client_ip};

/// The client address.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(ClientIp(client_ip(&parts.extensions)))
    }
}

/// The query string as decoded pairs; never fails (malformed escapes decode lossily).
#[derive(Debug, Default)]
pub struct QueryPairs(pub Vec<(String, String)>);

impl QueryPairs {
    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl QueryPairs {
    /// A page size: `default` when absent, else an integer in `1..=max` (400 otherwise).
    pub fn page_size(&self, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=max).contains(n))
                .ok_or_else(|| ApiError::invalid_format(name, format!("{name} must be 1-{max}"))),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for QueryPairs {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let pairs = parts
            .uri
            .query()
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        Ok(QueryPairs(pairs))
    }
}

/// A JSON object body: 415 without a JSON content type, 413 past the body limit, 400
/// `INVALID_FORMAT` when it is not a JSON object.
#[derive(Debug)]
pub struct JsonObject(pub Map<String, Value>);

fn is_json(content_type: &str) -> bool {
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl FromRequest<AppState> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        let RawJson { object, .. } = RawJson::from_request(req, state).await?;
        Ok(JsonObject(object))
    }
}

/// A JSON object body together with the exact bytes it was parsed from, for handlers that
/// verify a signature over the raw body. Rejects exactly as [`JsonObject`] does.
#[derive(Debug)]
pub struct RawJson {
    /// The body as received.
    pub bytes: Bytes,
    /// The body parsed.
    pub object: Map<String, Value>,
}

impl FromRequest<AppState> for RawJson {
    type Rejection = ApiError;

    async fn from_request(req: Request<Body>, state: &AppState) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !is_json(content_type) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                "Content-Type must be application/json",
            ));
        }
        let limit = state.settings.server.body_limit;
        let bytes = axum::body::to_bytes(req.into_body(), limit)
            .await
            .map_err(|_| payload_too_large(limit))?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_FORMAT",
                format!("Request body is not valid JSON: {e}"),
            )
        })?;
        match value {
            Value::Object(object) => Ok(RawJson { bytes, object }),
            _ => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_FORMAT",
                "Request body must be a JSON object",
            )),
        }
    }
}

/// 413 for a body over `limit` bytes.
pub fn payload_too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "PAYLOAD_TOO_LARGE",
        format!("Request body exceeds the limit of {limit} bytes"),
    )
    .with_details(serde_json::json!({ "limit_bytes": limit }))
}

/// Reads fields from a JSON object, collecting every problem before answering.
pub struct Fields<'a> {
    obj: &'a Map<String, Value>,
    errors: Vec<FieldError>,
    missing: Vec<String>,
}

impl<'a> Fields<'a> {
    /// Starts reading `obj`.
    pub fn new(obj: &'a Map<String, Value>) -> Self {
        Fields {
            obj,
            errors: Vec::new(),
            missing: Vec::new(),
        }
    }

    fn fail(&mut self, field: &str, error: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.to_string(),
            error: error.into(),
        });
    }

    fn present(&self, name: &str) -> Option<&'a Value> {
        self.obj.get(name).filter(|v| !v.is_null())
    }

    /// A string of `min..=max` characters (trimmed); records "required" when absent.
    pub fn required_str(
        &mut self,
        name: &str,
        label: &str,
        min: usize,
        max: usize,
    ) -> Option<String> {
        match self.present(name) {
            None => {
                self.missing.push(name.to_string());
                self.fail(name, format!("{label} is required"));
                None
            }
            Some(v) => self.check_str(name, label, v, min, max),
        }
    }

    /// An optional string of at most `max` characters.
    pub fn optional_str(&mut self, name: &str, label: &str, max: usize) -> Option<String> {
        let v = self.present(name)?;
        self.check_str(name, label, v, 0, max)
            .filter(|s| !s.is_empty())
    }

    fn check_str(
        &mut self,
        name: &str,
        label: &str,
        v: &Value,
        min: usize,
        max: usize,
    ) -> Option<String> {
        let Some(s) = v.as_str() else {
            self.fail(name, format!("{label} must be a string"));
            return None;
        };
        let s = s.trim();
        let len = s.chars().count();
        if len < min {
            if min == 1 {
                self.missing.push(name.to_string());
                self.fail(name, format!("{label} is required"));
            } else {
                self.fail(name, format!("{label} must be at least {min} characters"));
            }
            return None;
        }
        if len > max {
            self.fail(name, format!("{label} must be at most {max} characters"));
            return None;
        }
        Some(s.to_string())
    }

    /// An optional value of a closed vocabulary.
    pub fn optional_enum<T>(
        &mut self,
        name: &str,
        parse: fn(&str) -> Option<T>,
        choices: &str,
    ) -> Option<T> {
        let v = self.present(name)?;
        match v.as_str().and_then(parse) {
            Some(t) => Some(t),
            None => {
                self.fail(name, format!("must be one of {choices}"));
                None
            }
        }
    }

    /// A required hyphenated UUID.
    pub fn required_uuid(&mut self, name: &str) -> Option<Uuid> {
        if self.present(name).is_none() {
            self.missing.push(name.to_string());
            self.fail(name, format!("{name} is required"));
            return None;
        }
        self.optional_uuid(name)
    }

    /// An optional hyphenated UUID.
    pub fn optional_uuid(&mut self, name: &str) -> Option<Uuid> {
        let v = self.present(name)?;
        match v.as_str().and_then(casehub_actors::domain::parse_uuid) {
            Some(id) => Some(id),
            None => {
                self.fail(name, "must be a UUID");
                None
            }
        }
    }

    /// An optional boolean (default false).
    pub fn optional_bool(&mut self, name: &str) -> bool {
        match self.present(name) {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => {
                self.fail(name, "must be a boolean");
                false
            }
        }
    }

    /// An optional JSON object (default `{}`), at most `max_bytes` serialised.
    pub fn optional_object(&mut self, name: &str) -> Value {
        match self.present(name) {
            None => Value::Object(Map::new()),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => {
                self.fail(name, "must be an object");
                Value::Object(Map::new())
            }
        }
    }

    /// Records a custom problem.
    pub fn error(&mut self, name: &str, error: impl Into<String>) {
        self.fail(name, error);
    }

    /// `Ok(())` when every field passed, else the error naming all of them.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(ApiError::fields(self.errors, &self.missing))
        }
    }
}
