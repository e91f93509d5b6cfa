//! Unit tests of the follow loop's pure parts: backoff, URLs, error messages, and raw SSE bytes
//! pumped into plain output.

use std::io;

use futures::stream;

use super::*;

/// Pumps `chunks` (raw SSE bytes, split wherever the test likes) into plain output.
async fn pump_plain(chunks: Vec<Result<String, io::Error>>) -> (End, Vec<String>) {
    let mut buf = Vec::new();
    let mut out = PlainOutput::new(&mut buf);
    let mut backoff = Backoff::default();
    let end = pump(
        stream::iter(chunks),
        &mut RateTracker::default(),
        &mut out,
        &mut backoff,
    )
    .await
    .expect("pump");
    let text = String::from_utf8(buf).expect("utf-8");
    (end, text.lines().map(str::to_owned).collect())
}

fn snapshot(at: &str, messages: u64) -> String {
    format!(
        "event: snapshot\ndata: {{\"timestamp\": \"{at}\", \"kinds\": {{\"case_actor\": \
         {{\"live\": 1, \"messages\": {messages}, \"handling_seconds_sum\": 0.0, \
         \"handling_count\": 0, \"mailbox\": 0, \"restarts\": 0, \"passivations\": 0, \
         \"failures\": 0}}}}}}\n\n"
    )
}

#[tokio::test]
async fn sse_bytes_become_lines_skipping_comments_unknown_and_malformed_events() {
    let first = snapshot("2026-11-22T16:00:00Z", 10);
    let second = snapshot("2026-11-22T16:00:01Z", 44);
    let (head, tail) = second.split_at(30);
    let chunks = [
        ": keep-alive\n\n",
        &first,
        "event: snapshot\ndata: {not json\n\n",
        "event: brand_new\ndata: {}\n\n",
        "event: lifecycle\ndata: {\"kind\": \"case_actor\", \"event\": \"restart\", ",
        "\"id\": \"0f8c\", \"at\": \"2026-11-22T16:00:00Z\"}\n\n",
        head,
        tail,
    ]
    .map(|c| Ok(c.to_string()))
    .into();
    let (end, lines) = pump_plain(chunks).await;
    assert_eq!(end, End::ServerClosed);
    assert_eq!(
        lines,
        [
            "2026-11-22T16:00:00Z case_actor live=1 msg/s=- handling=- mailbox=0 restarts=0 \
             passivations=0 failures=0",
            "2026-11-22T16:00:00Z lifecycle case_actor restart 0f8c",
            "2026-11-22T16:00:01Z case_actor live=1 msg/s=34.0 handling=- mailbox=0 restarts=0 \
             passivations=0 failures=0",
        ]
    );
}

#[tokio::test]
async fn a_transport_error_is_a_drop_worth_reconnecting() {
    let chunks = vec![
        Ok(": hello\n\n".to_string()),
        Err(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "reset by peer",
        )),
    ];
    let (end, lines) = pump_plain(chunks).await;
    assert_eq!(end, End::Dropped("reset by peer".into()));
    assert!(lines.is_empty());
}

#[test]
fn backoff_waits_1_2_then_5_seconds_and_resets() {
    let mut b = Backoff::default();
    let waits: Vec<u64> = (0..5).map(|_| b.next_wait().as_secs()).collect();
    assert_eq!(waits, [1, 2, 5, 5, 5]);
    b.reset();
    assert_eq!(b.next_wait(), Duration::from_secs(1));
}

#[test]
fn stream_url_appends_the_path_and_rejects_nonsense() {
    let url = |s| stream_url(s).map(|u| u.to_string());
    assert_eq!(
        url("http://127.0.0.1:8080").ok().as_deref(),
        Some("http://127.0.0.1:8080/ops/stream")
    );
    assert_eq!(
        url("http://ops.example/casehub/").ok().as_deref(),
        Some("http://ops.example/casehub/ops/stream")
    );
    assert!(url("not a url").is_err());
    assert!(url("ftp://host").is_err());
}

#[test]
fn error_message_prefers_the_envelope() {
    let envelope = br#"{"success": false, "error": {"code": "UNAUTHORIZED",
        "message": "Invalid API key", "details": {}}, "timestamp": "2026-11-22T16:00:00Z"}"#;
    assert_eq!(error_message(envelope), "Invalid API key");
    assert_eq!(error_message(b"  Bad Gateway\n"), "Bad Gateway");
    assert_eq!(error_message(b""), "no error message");
}

#[test]
fn debug_output_hides_the_api_key() {
    let args = TailArgs {
        url: "http://127.0.0.1:8080".into(),
        api_key: "sekrit-admin-key".into(),
        plain: true,
    };
    assert!(!format!("{args:?}").contains("sekrit"));
}
