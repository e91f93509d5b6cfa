//! The inbound bodies translated into an intake: seed 004's `ticket.create` webhook and seed 001's
//! contact form. Each is rewritten into an intake body and validated by the same
//! [`parse_intake`] as `POST /webhook/support/intake`, so a case is a case whichever door it came
//! in by; errors are then reported under the names the caller sent (`data.customer_email`,
//! `email`), together with the problems only these shapes can have, all at once.

use casehub_actors::domain::{Intake, Severity};
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult, FieldError};
use crate::routes::support::parse_intake;

/// The one event `POST /api/webhooks/receive` accepts.
pub const TICKET_CREATE: &str = "ticket.create";

/// Longest `category` kept from a ticket webhook.
const CATEGORY_MAX: usize = 100;

/// Field problems under the caller's names, collected before answering.
#[derive(Default)]
struct Problems {
    errors: Vec<FieldError>,
    missing: Vec<String>,
}

impl Problems {
    fn missing(&mut self, field: &str) {
        self.missing.push(field.to_string());
        self.invalid(field, format!("{field} is required"));
    }

    fn invalid(&mut self, field: &str, error: impl Into<String>) {
        self.errors.push(FieldError {
            field: field.to_string(),
            error: error.into(),
        });
    }

    fn has(&self, field: &str) -> bool {
        self.errors.iter().any(|e| e.field == field)
    }

    /// Takes over the field errors of a rejected intake, renamed by `names` (intake name →
    /// caller's name). A field already reported, or one in `skip`, is not reported twice. An
    /// error that is not about fields is handed back as it is.
    fn absorb(
        &mut self,
        rejected: ApiError,
        names: &[(&str, &str)],
        skip: &[&str],
    ) -> ApiResult<()> {
        let Some(fields) = rejected.details["fields"].as_array() else {
            return Err(rejected);
        };
        let rename = |field: &str| {
            names
                .iter()
                .find(|(intake, _)| *intake == field)
                .map_or(field.to_string(), |(_, caller)| caller.to_string())
        };
        let missing_one = (rejected.code == "MISSING_FIELD")
            .then(|| rejected.details["field"].as_str())
            .flatten();
        for f in fields {
            let (Some(field), Some(error)) = (f["field"].as_str(), f["error"].as_str()) else {
                continue;
            };
            let name = rename(field);
            if skip.contains(&field) || self.has(&name) {
                continue;
            }
            if missing_one == Some(field) {
                self.missing.push(name.clone());
            }
            self.invalid(&name, error);
        }
        Ok(())
    }

    fn into_error(self) -> ApiError {
        ApiError::fields(self.errors, &self.missing)
    }

    /// The intake when neither `parsed` nor this found a problem, else every problem at once.
    fn finish(
        mut self,
        parsed: ApiResult<Intake>,
        names: &[(&str, &str)],
        skip: &[&str],
    ) -> ApiResult<Intake> {
        match parsed {
            Ok(intake) if self.errors.is_empty() => Ok(intake),
            Ok(_) => Err(self.into_error()),
            Err(rejected) => {
                self.absorb(rejected, names, skip)?;
                Err(self.into_error())
            }
        }
    }
}

/// Records `field` as missing when `name` is absent or null. The intake would say so too, but
/// only as one problem among others when a defaulted field fails with it.
fn require(p: &mut Problems, obj: &Map<String, Value>, name: &str, field: &str) {
    if obj.get(name).is_none_or(Value::is_null) {
        p.missing(field);
    }
}

/// An optional string field, trimmed; `None` when absent, null or blank.
fn optional_str(
    p: &mut Problems,
    obj: &Map<String, Value>,
    name: &str,
    field: &str,
) -> Option<String> {
    match obj.get(name) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.trim().to_string()).filter(|s| !s.is_empty()),
        Some(_) => {
            p.invalid(field, format!("{field} must be a string"));
            None
        }
    }
}

/// A seed 004 `ticket.create` body as an intake (channel `webhook`).
///
/// `data.message` and `data.customer_email` are required; `data.subject` is optional (the
/// description is `subject + "\n\n" + message`, or the message alone); `data.customer_name`
/// defaults to the email address, because seed 004's own example omits it; `data.priority` is
/// the intake `severity`, any letter case; `data.category`, `data.subject` and the event are kept
/// in the case's metadata.
pub fn ticket_intake(body: &Map<String, Value>) -> ApiResult<Intake> {
    let mut p = Problems::default();
    match body.get("event") {
        None | Some(Value::Null) => p.missing("event"),
        Some(Value::String(e)) if e == TICKET_CREATE => {}
        Some(Value::String(e)) => p.invalid(
            "event",
            format!("Unsupported event {e:?}; supported: {TICKET_CREATE}"),
        ),
        Some(_) => p.invalid("event", "event must be a string"),
    }
    let data = match body.get("data") {
        None | Some(Value::Null) => {
            p.missing("data");
            None
        }
        Some(Value::Object(data)) => Some(data),
        Some(_) => {
            p.invalid("data", "data must be an object");
            None
        }
    };
    let Some(data) = data else {
        return Err(p.into_error());
    };

    require(&mut p, data, "customer_email", "data.customer_email");
    require(&mut p, data, "message", "data.message");
    let subject = optional_str(&mut p, data, "subject", "data.subject");
    let message = optional_str(&mut p, data, "message", "data.message");
    let severity = optional_str(&mut p, data, "priority", "data.priority").and_then(|raw| {
        let parsed = Severity::parse(&raw.to_ascii_lowercase());
        if parsed.is_none() {
            p.invalid(
                "data.priority",
                format!("must be one of {}", Severity::choices()),
            );
        }
        parsed
    });
    let category = optional_str(&mut p, data, "category", "data.category");
    if category
        .as_ref()
        .is_some_and(|c| c.chars().count() > CATEGORY_MAX)
    {
        p.invalid(
            "data.category",
            format!("data.category must be at most {CATEGORY_MAX} characters"),
        );
    }

    let email = data.get("customer_email").cloned().unwrap_or(Value::Null);
    let name = match data.get("customer_name") {
        None | Some(Value::Null) => email.clone(),
        Some(name) => name.clone(),
    };
    let description = match (&subject, &message) {
        (Some(s), Some(m)) => Value::from(format!("{s}\n\n{m}")),
        (None, Some(m)) => Value::from(m.as_str()),
        // Reported above as `data.message`; the intake's own complaint is skipped below.
        (_, None) => Value::Null,
    };
    let mut intake = Map::new();
    intake.insert("customer_email".into(), email);
    intake.insert("customer_name".into(), name);
    intake.insert("description".into(), description);
    intake.insert("severity".into(), json!(severity.map(Severity::as_str)));
    intake.insert("channel".into(), json!("webhook"));
    intake.insert(
        "metadata".into(),
        json!({"source": "webhook", "event": TICKET_CREATE, "subject": subject, "category": category}),
    );
    // A name that defaulted to the email is only wrong when the email is, which is reported.
    let skip: &[&str] = if data.get("customer_name").is_none_or(Value::is_null) {
        &["customer_name"]
    } else {
        &[]
    };
    let names = [
        ("customer_email", "data.customer_email"),
        ("customer_name", "data.customer_name"),
        ("description", "data.message"),
        ("severity", "data.priority"),
    ];
    p.finish(parse_intake(&intake), &names, skip)
}

/// A seed 001 contact form as an intake (channel `portal`): `name`, `email` and `message` are
/// the intake's `customer_name`, `customer_email` and `description`; `customFields` (an object)
/// is kept in the case's metadata. `apiKey` is checked by the handler, not here.
pub fn contact_intake(body: &Map<String, Value>) -> ApiResult<Intake> {
    let mut p = Problems::default();
    for name in ["name", "email", "message"] {
        require(&mut p, body, name, name);
    }
    let custom_fields = match body.get("customFields") {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => {
            p.invalid("customFields", "customFields must be an object");
            json!({})
        }
    };
    let field = |name: &str| body.get(name).cloned().unwrap_or(Value::Null);
    let mut intake = Map::new();
    intake.insert("customer_email".into(), field("email"));
    intake.insert("customer_name".into(), field("name"));
    intake.insert("description".into(), field("message"));
    intake.insert("channel".into(), json!("portal"));
    intake.insert(
        "metadata".into(),
        json!({"source": "widget", "custom_fields": custom_fields}),
    );
    let names = [
        ("customer_email", "email"),
        ("customer_name", "name"),
        ("description", "message"),
    ];
    p.finish(parse_intake(&intake), &names, &[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use casehub_actors::domain::Channel;

    fn object(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn fields(e: &ApiError) -> Vec<String> {
        e.details["fields"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["field"].as_str().map(String::from))
            .collect()
    }

    #[test]
    fn a_ticket_becomes_an_intake() {
        let body = object(json!({"event": "ticket.create", "data": {
            "subject": "Login broken", "message": "Nobody can log in since this morning.",
            "customer_email": "ann@example.com", "priority": "HIGH", "category": "Technical"}}));
        let intake = ticket_intake(&body).expect("valid ticket");
        assert_eq!(
            intake.description,
            "Login broken\n\nNobody can log in since this morning."
        );
        assert_eq!(intake.severity, Some(Severity::High));
        assert_eq!(intake.channel, Channel::Webhook);
        assert_eq!(intake.customer_name, "ann@example.com");
        assert_eq!(intake.metadata["category"], json!("Technical"));
        assert_eq!(intake.metadata["event"], json!("ticket.create"));
    }

    #[test]
    fn ticket_problems_are_reported_together_under_the_callers_names() {
        let body = object(json!({"event": "ticket.create", "data": {
            "subject": "Hi", "customer_email": "not-an-email", "customer_name": 7,
            "priority": "urgent"}}));
        let e = ticket_intake(&body).expect_err("invalid ticket");
        assert_eq!(e.code, "VALIDATION_ERROR");
        let mut got = fields(&e);
        got.sort();
        assert_eq!(
            got,
            [
                "data.customer_email",
                "data.customer_name",
                "data.message",
                "data.priority"
            ]
        );

        let body = object(json!({"event": "ticket.update", "data": {}}));
        let e = ticket_intake(&body).expect_err("unknown event");
        assert!(fields(&e).contains(&"event".to_string()));

        let body = object(json!({"event": "ticket.create", "data": {
            "subject": "Login broken", "message": "Nobody can log in since this morning."}}));
        let e = ticket_intake(&body).expect_err("no email");
        assert_eq!(e.code, "MISSING_FIELD");
        assert_eq!(fields(&e), ["data.customer_email"]);
    }

    #[test]
    fn a_contact_form_becomes_an_intake() {
        let body = object(json!({"name": "Jo", "email": "jo@example.com",
            "message": "I have a question about your product", "customFields": {"company": "Acme"}}));
        let intake = contact_intake(&body).expect("valid form");
        assert_eq!(intake.channel, Channel::Portal);
        assert_eq!(intake.metadata["custom_fields"]["company"], json!("Acme"));

        let body = object(json!({"name": "Jo", "message": "short", "customFields": []}));
        let e = contact_intake(&body).expect_err("invalid form");
        let mut got = fields(&e);
        got.sort();
        assert_eq!(got, ["customFields", "email", "message"]);
    }
}
