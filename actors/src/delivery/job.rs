//! Delivery jobs: one per (endpoint, message), the unit the durable queue stores and the delivery
//! log shows (CONTRACT §5). A job carries the envelope exactly as it is sent, so every retry of a
//! message sends the same bytes under the same `webhook-id`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::domain::{Event, rfc3339};

/// Attempts a job keeps; older ones are dropped (their count is not, see
/// [`DeliveryJob::record`]).
pub const MAX_ATTEMPTS_KEPT: usize = 50;
/// Longest stored response snippet, in bytes (CONTRACT §5: ≤ 1 KiB).
pub const SNIPPET_LIMIT: usize = 1024;

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Waiting for its (next) attempt at `due_at`.
    Pending,
    /// A 2xx acknowledged it.
    Delivered,
    /// The retry policy gave up; kept in the log and replayable.
    Failed,
}

impl DeliveryState {
    /// The name in the delivery log.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
        }
    }
}

/// One try at sending a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1-based; assigned by [`DeliveryJob::record`].
    pub attempt: u32,
    /// The response status, when there was a response.
    pub status_code: Option<u16>,
    /// Timeout or connection error, when there was no usable response.
    pub error: Option<String>,
    pub duration_ms: u64,
    /// The start of the response body, at most [`SNIPPET_LIMIT`] bytes.
    pub response_snippet: Option<String>,
    /// When the attempt started.
    pub at: DateTime<Utc>,
    /// When the next attempt is due; `None` once delivered or given up.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

impl Attempt {
    /// Whether the endpoint acknowledged (any 2xx).
    pub fn acknowledged(&self) -> bool {
        self.status_code.is_some_and(|s| (200..300).contains(&s))
    }

    fn view(&self) -> Value {
        json!({
            "attempt": self.attempt,
            "status_code": self.status_code,
            "error": self.error,
            "duration_ms": self.duration_ms,
            "response_snippet": self.response_snippet,
            "at": rfc3339(self.at),
            "next_attempt_at": self.next_attempt_at.map(rfc3339),
        })
    }
}

/// The envelope of a job as JSON text, kept as it was written: sending it and reading a job
/// back from the store cost a copy, never a parse into a tree and a re-encoding. Stored as the
/// JSON object itself (not a string), so stored jobs read the same either way.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Envelope(Box<serde_json::value::RawValue>);

impl Envelope {
    /// The envelope of `value`.
    pub fn of(value: &Value) -> Self {
        let text = serde_json::to_string(value).unwrap_or_else(|_| "{}".into());
        Envelope(
            serde_json::value::RawValue::from_string(text).unwrap_or_else(|_| {
                serde_json::value::RawValue::from_string("{}".into()).expect("{} is JSON")
            }),
        )
    }

    /// The envelope stored as `text`, which must be JSON.
    pub fn from_text(text: String) -> Result<Self, serde_json::Error> {
        serde_json::value::RawValue::from_string(text).map(Envelope)
    }

    /// The JSON text, exactly as sent.
    pub fn text(&self) -> &str {
        self.0.get()
    }

    /// Parsed, for the few readers that look inside (Slack formatting, the fix executor).
    pub fn value(&self) -> Value {
        serde_json::from_str(self.0.get()).unwrap_or(Value::Null)
    }
}

impl PartialEq for Envelope {
    fn eq(&self, other: &Self) -> bool {
        self.text() == other.text()
    }
}

/// One message for one endpoint: what to send, when, and what happened so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryJob {
    /// The event's msg id: the `webhook-id` of every attempt.
    pub msg_id: String,
    pub endpoint_id: String,
    /// The event name (`case.created`, …).
    pub event: String,
    /// The envelope as sent.
    pub payload: Envelope,
    /// The event's time; retry policies measure `max_age` from it.
    pub created_at: DateTime<Utc>,
    /// When the next attempt is due (meaningful while pending).
    pub due_at: DateTime<Utc>,
    pub state: DeliveryState,
    /// The last [`MAX_ATTEMPTS_KEPT`] attempts, oldest first.
    pub attempts: Vec<Attempt>,
}

impl DeliveryJob {
    /// A pending job for `event` to `endpoint_id`, due at once (at the event's time).
    pub fn new(event: &Event, endpoint_id: &str) -> Self {
        DeliveryJob {
            msg_id: event.msg_id.clone(),
            endpoint_id: endpoint_id.to_string(),
            event: event.event.as_str().to_string(),
            payload: Envelope::of(&event.envelope()),
            created_at: event.timestamp,
            due_at: event.timestamp,
            state: DeliveryState::Pending,
            attempts: Vec::new(),
        }
    }

    /// How many attempts were made, including those no longer kept.
    pub fn attempt_count(&self) -> u32 {
        self.attempts.last().map_or(0, |a| a.attempt)
    }

    /// Records an attempt. A 2xx makes the job `Delivered`; otherwise `next` schedules a retry
    /// (`Pending`, `due_at = next`) and `None` gives up (`Failed`). The attempt is numbered after
    /// the previous one (so the count survives the cap on kept attempts), its `next_attempt_at`
    /// is set to what was decided, and its snippet is cut to [`SNIPPET_LIMIT`] bytes.
    pub fn record(&mut self, mut attempt: Attempt, next: Option<DateTime<Utc>>) {
        attempt.attempt = self.attempt_count().saturating_add(1);
        if let Some(snippet) = attempt.response_snippet.as_mut() {
            truncate_utf8(snippet, SNIPPET_LIMIT);
        }
        if attempt.acknowledged() {
            self.state = DeliveryState::Delivered;
            attempt.next_attempt_at = None;
        } else if let Some(next) = next {
            self.state = DeliveryState::Pending;
            self.due_at = next;
            attempt.next_attempt_at = Some(next);
        } else {
            self.state = DeliveryState::Failed;
            attempt.next_attempt_at = None;
        }
        self.attempts.push(attempt);
        if self.attempts.len() > MAX_ATTEMPTS_KEPT {
            let excess = self.attempts.len() - MAX_ATTEMPTS_KEPT;
            self.attempts.drain(..excess);
        }
    }

    /// The delivery-log entry of CONTRACT §5: the last attempt's outcome at the top level
    /// (`null` fields before the first attempt), the final state, and every kept attempt.
    pub fn view(&self) -> Value {
        let last = self.attempts.last();
        let next_attempt_at = match self.state {
            DeliveryState::Pending => Some(rfc3339(self.due_at)),
            DeliveryState::Delivered | DeliveryState::Failed => None,
        };
        json!({
            "msg_id": self.msg_id,
            "endpoint_id": self.endpoint_id,
            "event": self.event,
            "attempt": self.attempt_count(),
            "status_code": last.and_then(|a| a.status_code),
            "error": last.and_then(|a| a.error.clone()),
            "duration_ms": last.map(|a| a.duration_ms),
            "response_snippet": last.and_then(|a| a.response_snippet.clone()),
            "at": last.map(|a| rfc3339(a.at)),
            "next_attempt_at": next_attempt_at,
            "state": self.state.as_str(),
            "created_at": rfc3339(self.created_at),
            "attempts": self.attempts.iter().map(Attempt::view).collect::<Vec<_>>(),
        })
    }
}

/// Cuts `s` to at most `max` bytes without splitting a character.
fn truncate_utf8(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{EventKind, workflow};

    fn job() -> DeliveryJob {
        let event = Event::new(
            EventKind::CaseCreated,
            workflow::INTAKE,
            Utc::now(),
            json!({"case_id": "c1"}),
        );
        DeliveryJob::new(&event, "wh_1")
    }

    fn attempt(status: Option<u16>, snippet: Option<&str>) -> Attempt {
        Attempt {
            attempt: 0,
            status_code: status,
            error: status.is_none().then(|| "connection refused".to_string()),
            duration_ms: 12,
            response_snippet: snippet.map(str::to_string),
            at: Utc::now(),
            next_attempt_at: None,
        }
    }

    #[test]
    fn new_job_is_pending_and_due_at_the_event_time() {
        let job = job();
        assert_eq!(job.state, DeliveryState::Pending);
        assert_eq!(job.due_at, job.created_at);
        assert_eq!(job.payload.value()["event"], "case.created");
        assert_eq!(job.attempt_count(), 0);
        let view = job.view();
        assert_eq!(view["attempt"], 0);
        assert_eq!(view["state"], "pending");
        assert!(view["status_code"].is_null());
        assert_eq!(view["next_attempt_at"], rfc3339(job.due_at));
    }

    #[test]
    fn record_moves_between_states() {
        let mut job = job();
        let next = Utc::now() + chrono::Duration::seconds(5);
        job.record(attempt(Some(500), Some("oops")), Some(next));
        assert_eq!(job.state, DeliveryState::Pending);
        assert_eq!(job.due_at, next);
        assert_eq!(job.attempts[0].next_attempt_at, Some(next));

        job.record(attempt(None, None), None);
        assert_eq!(job.state, DeliveryState::Failed);
        assert_eq!(job.attempts[1].next_attempt_at, None);

        // A manual retry that succeeds: delivered, even if a next time was offered.
        job.record(attempt(Some(204), None), Some(next));
        assert_eq!(job.state, DeliveryState::Delivered);
        assert_eq!(job.attempts[2].next_attempt_at, None);
        assert_eq!(
            job.attempts.iter().map(|a| a.attempt).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );

        let view = job.view();
        assert_eq!(view["attempt"], 3);
        assert_eq!(view["status_code"], 204);
        assert_eq!(view["state"], "delivered");
        assert!(view["next_attempt_at"].is_null());
        assert_eq!(view["attempts"].as_array().map(Vec::len), Some(3));
        assert_eq!(view["attempts"][1]["error"], "connection refused");
    }

    #[test]
    fn snippet_is_cut_to_one_kib_on_a_char_boundary() {
        let mut job = job();
        // 1023 ASCII bytes then a 3-byte char: byte 1024 falls inside it.
        let long = format!("{}€tail", "a".repeat(1023));
        job.record(attempt(Some(500), Some(&long)), None);
        let kept = job.attempts[0]
            .response_snippet
            .as_deref()
            .unwrap_or_default();
        assert_eq!(kept.len(), 1023);
        assert!(kept.chars().all(|c| c == 'a'));

        let exact = "é".repeat(512); // exactly 1024 bytes
        job.record(attempt(Some(500), Some(&exact)), None);
        assert_eq!(job.attempts[1].response_snippet.as_deref(), Some(&*exact));
    }

    #[test]
    fn attempts_are_capped_but_still_counted() {
        let mut job = job();
        let next = Utc::now();
        for _ in 0..(MAX_ATTEMPTS_KEPT + 7) {
            job.record(attempt(Some(503), None), Some(next));
        }
        assert_eq!(job.attempts.len(), MAX_ATTEMPTS_KEPT);
        assert_eq!(job.attempts[0].attempt, 8);
        assert_eq!(job.attempt_count(), (MAX_ATTEMPTS_KEPT + 7) as u32);
    }

    #[test]
    fn state_serializes_lowercase_and_jobs_round_trip() {
        assert_eq!(
            serde_json::to_value(DeliveryState::Failed).ok(),
            Some(json!("failed"))
        );
        let mut job = job();
        job.record(attempt(Some(429), Some("slow down")), Some(Utc::now()));
        let raw = serde_json::to_vec(&job).unwrap();
        let back: DeliveryJob = serde_json::from_slice(&raw).unwrap();
        assert_eq!(back, job);
    }
}
