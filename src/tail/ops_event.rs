//! What `GET /ops/stream` sends (CONTRACT §7), parsed, and the per-kind table rows derived from
//! successive snapshots.
//!
//! Everything here is pure: an SSE event name and data in, typed events and rows out, so the
//! arithmetic is unit-tested without a server.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::Deserialize;

/// One actor kind's counters in a snapshot. Keys the server leaves out read as zero, so a kind
/// that reports only some counters still renders; keys this client does not know are ignored.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct KindCounters {
    pub live: u64,
    pub messages: u64,
    pub handling_seconds_sum: f64,
    pub handling_count: u64,
    pub mailbox: i64,
    pub restarts: u64,
    pub passivations: u64,
    pub failures: u64,
}

/// The `snapshot` event: cumulative counters per actor kind at `timestamp`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Snapshot {
    pub timestamp: DateTime<Utc>,
    /// Sorted by kind name; the set of kinds is open (newer servers add kinds).
    pub kinds: BTreeMap<String, KindCounters>,
}

/// The `lifecycle` event: one actor spawned, stopped, restarted, passivated or failed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Lifecycle {
    pub kind: String,
    /// `spawn`, `stop`, `restart`, `passivate`, `fail`, or a newer name shown as is.
    pub event: String,
    /// The case id or actor name.
    pub id: String,
    pub at: DateTime<Utc>,
}

/// One parsed stream event.
#[derive(Debug, Clone, PartialEq)]
pub enum OpsEvent {
    Snapshot(Snapshot),
    Lifecycle(Lifecycle),
}

/// An event whose data this client could not read; it is skipped, never fatal.
#[derive(Debug, Clone, PartialEq)]
pub struct MalformedEvent {
    /// The SSE event name.
    pub event: String,
    pub reason: String,
}

impl fmt::Display for MalformedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "skipped malformed {} event: {}", self.event, self.reason)
    }
}

/// Parses one SSE event. `Ok(None)` for event names this client does not know, so a newer
/// server can add events without breaking older clients.
pub fn parse(event: &str, data: &str) -> Result<Option<OpsEvent>, MalformedEvent> {
    let malformed = |e: serde_json::Error| MalformedEvent {
        event: event.to_string(),
        reason: e.to_string(),
    };
    match event {
        "snapshot" => serde_json::from_str(data)
            .map(|s| Some(OpsEvent::Snapshot(s)))
            .map_err(malformed),
        "lifecycle" => serde_json::from_str(data)
            .map(|l| Some(OpsEvent::Lifecycle(l)))
            .map_err(malformed),
        _ => Ok(None),
    }
}

/// One table row: a kind's gauges and totals, plus rates over the last snapshot interval.
#[derive(Debug, Clone, PartialEq)]
pub struct KindRow {
    pub kind: String,
    pub live: u64,
    /// Messages handled per second since the previous snapshot; `None` before there is one.
    pub messages_per_sec: Option<f64>,
    /// Mean handling time in milliseconds over the messages handled since the previous
    /// snapshot; `None` when there is no previous snapshot or no message was handled.
    pub handling_ms: Option<f64>,
    pub mailbox: i64,
    pub restarts: u64,
    pub passivations: u64,
    pub failures: u64,
}

/// Turns successive snapshots into rows; rates need the previous snapshot of the same
/// connection, so [`RateTracker::reset`] is called on every reconnect.
#[derive(Debug, Default)]
pub struct RateTracker {
    previous: Option<Snapshot>,
}

impl RateTracker {
    /// Rows for `snapshot`, sorted by kind name, with rates against the previous snapshot.
    pub fn observe(&mut self, snapshot: Snapshot) -> Vec<KindRow> {
        let rows = snapshot
            .kinds
            .iter()
            .map(|(kind, now)| {
                let before = self
                    .previous
                    .as_ref()
                    .and_then(|p| p.kinds.get(kind).map(|c| (p.timestamp, c)));
                let (messages_per_sec, handling_ms) = match before {
                    Some((then, c)) => interval_rates(then, c, snapshot.timestamp, now),
                    None => (None, None),
                };
                KindRow {
                    kind: kind.clone(),
                    live: now.live,
                    messages_per_sec,
                    handling_ms,
                    mailbox: now.mailbox,
                    restarts: now.restarts,
                    passivations: now.passivations,
                    failures: now.failures,
                }
            })
            .collect();
        self.previous = Some(snapshot);
        rows
    }

    /// Forgets the previous snapshot: after a reconnect the server may have restarted and its
    /// counters started over, so a difference across connections would be meaningless.
    pub fn reset(&mut self) {
        self.previous = None;
    }
}

/// Messages per second and mean handling milliseconds between two snapshots of one kind.
/// Time that did not move forward or counters that went down (a restarted server) give no
/// rate rather than a negative or infinite one.
fn interval_rates(
    then: DateTime<Utc>,
    before: &KindCounters,
    now_at: DateTime<Utc>,
    now: &KindCounters,
) -> (Option<f64>, Option<f64>) {
    let elapsed = (now_at - then).as_seconds_f64();
    let messages = now.messages.checked_sub(before.messages);
    let rate = match messages {
        Some(m) if elapsed > 0.0 => Some(m as f64 / elapsed),
        _ => None,
    };
    let handled = now.handling_count.checked_sub(before.handling_count);
    let spent = now.handling_seconds_sum - before.handling_seconds_sum;
    let handling = match handled {
        Some(n) if n > 0 && spent >= 0.0 => Some(spent / n as f64 * 1000.0),
        _ => None,
    };
    (rate, handling)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(at: &str, kinds: &str) -> Snapshot {
        let data = format!(r#"{{"timestamp": "{at}", "kinds": {kinds}}}"#);
        match parse("snapshot", &data) {
            Ok(Some(OpsEvent::Snapshot(s))) => s,
            other => panic!("not a snapshot: {other:?}"),
        }
    }

    fn case_actor(messages: u64, sum: f64, count: u64) -> String {
        format!(
            r#"{{"case_actor": {{"live": 12, "messages": {messages}, "handling_seconds_sum": {sum},
                "handling_count": {count}, "mailbox": 2, "restarts": 1, "passivations": 3,
                "failures": 1}}}}"#
        )
    }

    #[test]
    fn first_snapshot_has_gauges_but_no_rates() {
        let mut t = RateTracker::default();
        let rows = t.observe(snapshot("2026-11-22T16:00:00Z", &case_actor(100, 0.5, 100)));
        assert_eq!(
            rows,
            vec![KindRow {
                kind: "case_actor".into(),
                live: 12,
                messages_per_sec: None,
                handling_ms: None,
                mailbox: 2,
                restarts: 1,
                passivations: 3,
                failures: 1,
            }]
        );
    }

    #[test]
    fn rates_come_from_differences_over_the_snapshot_timestamps() {
        let mut t = RateTracker::default();
        t.observe(snapshot("2026-11-22T16:00:00Z", &case_actor(100, 0.5, 100)));
        // 2 s later: 68 more messages, 40 more handled taking 0.0168 s in all.
        let rows = t.observe(snapshot(
            "2026-11-22T16:00:02Z",
            &case_actor(168, 0.5168, 140),
        ));
        let rate = rows[0].messages_per_sec.expect("rate");
        let handling = rows[0].handling_ms.expect("handling");
        assert!((rate - 34.0).abs() < 1e-9, "{rate}");
        assert!((handling - 0.42).abs() < 1e-9, "{handling}");
    }

    #[test]
    fn no_handled_messages_means_no_mean_but_a_zero_rate() {
        let mut t = RateTracker::default();
        t.observe(snapshot("2026-11-22T16:00:00Z", &case_actor(100, 0.5, 100)));
        let rows = t.observe(snapshot("2026-11-22T16:00:01Z", &case_actor(100, 0.5, 100)));
        assert_eq!(rows[0].messages_per_sec, Some(0.0));
        assert_eq!(rows[0].handling_ms, None);
    }

    #[test]
    fn counters_going_down_or_time_standing_still_give_no_rate() {
        let mut t = RateTracker::default();
        t.observe(snapshot("2026-11-22T16:00:00Z", &case_actor(100, 0.5, 100)));
        let rows = t.observe(snapshot("2026-11-22T16:00:01Z", &case_actor(10, 0.1, 10)));
        assert_eq!(
            (rows[0].messages_per_sec, rows[0].handling_ms),
            (None, None)
        );
        let rows = t.observe(snapshot("2026-11-22T16:00:01Z", &case_actor(20, 0.2, 20)));
        assert_eq!(rows[0].messages_per_sec, None);
    }

    #[test]
    fn reset_forgets_the_previous_snapshot() {
        let mut t = RateTracker::default();
        t.observe(snapshot("2026-11-22T16:00:00Z", &case_actor(100, 0.5, 100)));
        t.reset();
        let rows = t.observe(snapshot("2026-11-22T16:00:01Z", &case_actor(200, 0.6, 200)));
        assert_eq!(rows[0].messages_per_sec, None);
    }

    #[test]
    fn unknown_kinds_render_sorted_and_missing_counters_read_as_zero() {
        let mut t = RateTracker::default();
        let kinds = r#"{"zeta_worker": {"live": 2, "brand_new_counter": 7},
                        "case_actor": {"live": 1}, "alert_monitor": {"live": 1, "messages": 5}}"#;
        t.observe(snapshot("2026-11-22T16:00:00Z", kinds));
        let kinds = r#"{"zeta_worker": {"live": 3}, "case_actor": {"live": 1},
                        "alert_monitor": {"live": 1, "messages": 9}, "newcomer": {"live": 4}}"#;
        let rows = t.observe(snapshot("2026-11-22T16:00:01Z", kinds));
        let names: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(
            names,
            ["alert_monitor", "case_actor", "newcomer", "zeta_worker"]
        );
        assert_eq!(rows[0].messages_per_sec, Some(4.0));
        // A kind that appears for the first time has no previous counters yet.
        assert_eq!(rows[2].messages_per_sec, None);
        assert_eq!((rows[3].live, rows[3].failures), (3, 0));
    }

    #[test]
    fn lifecycle_events_parse() {
        let data = r#"{"kind": "case_actor", "event": "restart", "id": "0f8c", "at": "2026-11-22T16:00:01.250Z"}"#;
        let Ok(Some(OpsEvent::Lifecycle(l))) = parse("lifecycle", data) else {
            panic!("not a lifecycle event");
        };
        assert_eq!(
            (l.kind.as_str(), l.event.as_str()),
            ("case_actor", "restart")
        );
        assert_eq!(l.id, "0f8c");
    }

    #[test]
    fn malformed_data_is_an_error_to_skip_and_unknown_events_are_ignored() {
        for (event, data) in [
            ("snapshot", "not json"),
            ("snapshot", r#"{"kinds": {}}"#),
            ("snapshot", r#"{"timestamp": "yesterday", "kinds": {}}"#),
            (
                "snapshot",
                r#"{"timestamp": "2026-11-22T16:00:00Z", "kinds": {"a": {"live": -1}}}"#,
            ),
            ("lifecycle", r#"{"kind": "case_actor"}"#),
            ("lifecycle", ""),
        ] {
            let err = parse(event, data).expect_err(data);
            assert_eq!(err.event, event);
            assert!(err.to_string().starts_with("skipped malformed"), "{err}");
        }
        assert_eq!(parse("message", "anything"), Ok(None));
        assert_eq!(parse("heartbeat", "{}"), Ok(None));
    }
}
