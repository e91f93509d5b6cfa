//! The room wire protocol (CONTRACT §6): frames the server sends, frames a reviewer sends.
//!
//! Every server frame is serialised once and shared as [`Bytes`] by all connections of a room.

use bytes::Bytes;
use serde_json::{Map, Value, json};

use crate::domain::{ReviewAction, ReviewId};

/// Close code for a connection whose outgoing buffer overflowed (it may resume with `since`).
pub const CLOSE_TOO_SLOW: u16 = 4008;
/// Close code when the server shuts down.
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code when the room the connection belonged to failed.
pub const CLOSE_INTERNAL: u16 = 1011;

/// Longest `comments`, `edited_solution` and `edit_reason` accepted, in characters.
const MAX_TEXT: usize = 10_000;
/// Longest `ref` string echoed back.
const MAX_REF: usize = 200;

/// What a reviewer asks for over the socket.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientRequest {
    Claim,
    Release,
    Act {
        action: ReviewAction,
        comments: Option<String>,
        edited_solution: Option<String>,
        edit_reason: Option<String>,
    },
}

/// One parsed reviewer frame: the request, its review and the caller's `ref`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientFrame {
    pub reference: Value,
    pub review_id: ReviewId,
    pub request: ClientRequest,
}

impl ClientFrame {
    /// The frame as a reviewer would send it, so [`parse`] gives it back (a node relaying a
    /// reviewer's frame to the node running the room sends this).
    pub fn to_text(&self) -> String {
        let mut obj = Map::new();
        let kind = match &self.request {
            ClientRequest::Claim => "claim",
            ClientRequest::Release => "release",
            ClientRequest::Act { action, .. } => action.as_str(),
        };
        obj.insert("type".into(), json!(kind));
        obj.insert("ref".into(), self.reference.clone());
        obj.insert("review_id".into(), json!(self.review_id.as_str()));
        if let ClientRequest::Act {
            comments,
            edited_solution,
            edit_reason,
            ..
        } = &self.request
        {
            for (name, value) in [
                ("comments", comments),
                ("edited_solution", edited_solution),
                ("edit_reason", edit_reason),
            ] {
                if let Some(value) = value {
                    obj.insert(name.into(), json!(value));
                }
            }
        }
        Value::Object(obj).to_string()
    }
}

/// A frame that could not be understood, answered with an `error` frame.
#[derive(Debug, Clone, PartialEq)]
pub struct FrameError {
    pub reference: Value,
    pub code: &'static str,
    pub message: String,
}

impl FrameError {
    fn new(reference: &Value, code: &'static str, message: impl Into<String>) -> Self {
        FrameError {
            reference: reference.clone(),
            code,
            message: message.into(),
        }
    }

    /// The `error` frame answering it.
    pub fn frame(&self) -> Bytes {
        error(&self.reference, self.code, &self.message)
    }
}

fn text_field(
    obj: &Map<String, Value>,
    name: &str,
    reference: &Value,
    required: bool,
) -> Result<Option<String>, FrameError> {
    match obj.get(name) {
        None | Some(Value::Null) if required => Err(FrameError::new(
            reference,
            "VALIDATION_ERROR",
            format!("{name} is required"),
        )),
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => {
            let s = s.trim();
            if required && s.is_empty() {
                return Err(FrameError::new(
                    reference,
                    "VALIDATION_ERROR",
                    format!("{name} must not be empty"),
                ));
            }
            if s.chars().count() > MAX_TEXT {
                return Err(FrameError::new(
                    reference,
                    "VALIDATION_ERROR",
                    format!("{name} must be at most {MAX_TEXT} characters"),
                ));
            }
            Ok((!s.is_empty()).then(|| s.to_string()))
        }
        Some(_) => Err(FrameError::new(
            reference,
            "VALIDATION_ERROR",
            format!("{name} must be a string"),
        )),
    }
}

/// Parses a reviewer's text frame.
pub fn parse(text: &str) -> Result<ClientFrame, FrameError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        FrameError::new(
            &Value::Null,
            "INVALID_FORMAT",
            format!("frame is not JSON: {e}"),
        )
    })?;
    let Value::Object(obj) = value else {
        return Err(FrameError::new(
            &Value::Null,
            "INVALID_FORMAT",
            "frame must be a JSON object",
        ));
    };
    let reference = match obj.get("ref") {
        None => Value::Null,
        Some(r @ (Value::Number(_) | Value::Null)) => r.clone(),
        Some(Value::String(s)) if s.chars().count() <= MAX_REF => Value::String(s.clone()),
        Some(_) => {
            return Err(FrameError::new(
                &Value::Null,
                "VALIDATION_ERROR",
                format!("ref must be a number or a string of at most {MAX_REF} characters"),
            ));
        }
    };
    let kind = obj
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| FrameError::new(&reference, "VALIDATION_ERROR", "type is required"))?;
    let review_id = match obj.get("review_id") {
        Some(Value::String(raw)) => ReviewId::parse(raw).ok_or_else(|| {
            FrameError::new(
                &reference,
                "INVALID_FORMAT",
                "review_id must be rev- followed by 12 or more lowercase letters or digits",
            )
        })?,
        _ => {
            return Err(FrameError::new(
                &reference,
                "VALIDATION_ERROR",
                "review_id is required",
            ));
        }
    };
    let act = |action| -> Result<ClientRequest, FrameError> {
        let edit = action == ReviewAction::Edit;
        Ok(ClientRequest::Act {
            action,
            comments: text_field(&obj, "comments", &reference, false)?,
            edited_solution: text_field(&obj, "edited_solution", &reference, edit)?,
            edit_reason: text_field(&obj, "edit_reason", &reference, edit)?,
        })
    };
    let request = match kind {
        "claim" => ClientRequest::Claim,
        "release" => ClientRequest::Release,
        "approve" => act(ReviewAction::Approve)?,
        "reject" => act(ReviewAction::Reject)?,
        "edit" => act(ReviewAction::Edit)?,
        other => {
            return Err(FrameError::new(
                &reference,
                "VALIDATION_ERROR",
                format!(
                    "unknown type {:?}: one of claim, release, approve, reject, edit",
                    other.chars().take(40).collect::<String>()
                ),
            ));
        }
    };
    Ok(ClientFrame {
        reference,
        review_id,
        request,
    })
}

fn frame(value: Value) -> Bytes {
    Bytes::from(value.to_string())
}

/// `{"type": "ack", "ref", "result"}`.
pub fn ack(reference: &Value, result: Value) -> Bytes {
    frame(json!({"type": "ack", "ref": reference, "result": result}))
}

/// `{"type": "error", "ref", "code", "message"}`.
pub fn error(reference: &Value, code: &str, message: &str) -> Bytes {
    frame(json!({"type": "error", "ref": reference, "code": code, "message": message}))
}

/// `{"type": "presence", "joined" | "left": reviewer}`.
pub fn presence(joined: bool, reviewer: &str) -> Bytes {
    let key = if joined { "joined" } else { "left" };
    frame(json!({"type": "presence", key: reviewer}))
}

/// `{"type": "event", "seq", "event", "data", "at"}` as text (it is stored as is).
pub fn event(seq: u64, name: &str, data: &Value, at: &str) -> String {
    json!({"type": "event", "seq": seq, "event": name, "data": data, "at": at}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_request_and_keeps_the_ref() {
        let f = parse(r#"{"type":"claim","ref":"a1","review_id":"rev-abcdefabcdef"}"#).unwrap();
        assert_eq!(f.request, ClientRequest::Claim);
        assert_eq!(f.reference, json!("a1"));
        let f = parse(
            r#"{"type":"edit","ref":7,"review_id":"rev-abcdefabcdef","edited_solution":" x ","edit_reason":"y"}"#,
        )
        .unwrap();
        assert_eq!(
            f.request,
            ClientRequest::Act {
                action: ReviewAction::Edit,
                comments: None,
                edited_solution: Some("x".into()),
                edit_reason: Some("y".into()),
            }
        );
        assert_eq!(f.reference, json!(7));
    }

    #[test]
    fn a_frame_written_back_parses_to_itself() {
        for text in [
            r#"{"type":"claim","ref":"a1","review_id":"rev-abcdefabcdef"}"#,
            r#"{"type":"release","ref":null,"review_id":"rev-abcdefabcdef"}"#,
            r#"{"type":"approve","ref":3,"review_id":"rev-abcdefabcdef","comments":"ok"}"#,
            r#"{"type":"reject","review_id":"rev-abcdefabcdef"}"#,
            r#"{"type":"edit","ref":"e","review_id":"rev-abcdefabcdef","edited_solution":"x","edit_reason":"y","comments":"z"}"#,
        ] {
            let frame = parse(text).unwrap();
            assert_eq!(parse(&frame.to_text()).unwrap(), frame, "{text}");
        }
    }

    #[test]
    fn bad_frames_get_a_code_and_their_ref() {
        let e = parse("{nope").unwrap_err();
        assert_eq!((e.code, e.reference), ("INVALID_FORMAT", Value::Null));
        let e = parse(r#"{"type":"claim","ref":"r","review_id":"REV-1"}"#).unwrap_err();
        assert_eq!(
            (e.code, e.reference.clone()),
            ("INVALID_FORMAT", json!("r"))
        );
        let e = parse(r#"{"type":"edit","ref":"r","review_id":"rev-abcdefabcdef"}"#).unwrap_err();
        assert_eq!(e.code, "VALIDATION_ERROR");
        assert!(e.message.contains("edited_solution"), "{}", e.message);
        let e = parse(r#"{"type":"dance","review_id":"rev-abcdefabcdef"}"#).unwrap_err();
        assert!(e.message.contains("unknown type"));
        let e = parse(r#"[1,2]"#).unwrap_err();
        assert_eq!(e.code, "INVALID_FORMAT");
        let frame: Value = serde_json::from_slice(&e.frame()).unwrap();
        assert_eq!(frame["type"], "error");
    }
}
