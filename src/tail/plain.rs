//! Plain output: one line per kind per snapshot and one per lifecycle event, no escape codes,
//! flushed line by line so `casehub tail | grep restart` sees each event as it happens.
//!
//! The line formatting is pure; the terminal view reuses its number formats and sanitising.

use std::borrow::Cow;
use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat, Utc};

use super::TailOutput;
use super::ops_event::{KindRow, Lifecycle, MalformedEvent};

/// `2026-11-22T16:00:01Z`: the precision a one-second stream needs.
pub(super) fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Messages per second with one decimal, `-` before there is a rate.
pub(super) fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "-".to_string(), |r| format!("{r:.1}"))
}

/// Mean handling time in milliseconds, `-` when nothing was handled in the interval.
pub(super) fn millis(ms: Option<f64>) -> String {
    ms.map_or_else(|| "-".to_string(), |ms| format!("{ms:.2}ms"))
}

/// Kind names and ids come from the network; control characters in them could move the cursor
/// or recolour the user's terminal, so they are replaced before printing.
pub(super) fn clean(s: &str) -> Cow<'_, str> {
    if s.chars().any(char::is_control) {
        Cow::Owned(
            s.chars()
                .map(|c| if c.is_control() { '\u{fffd}' } else { c })
                .collect(),
        )
    } else {
        Cow::Borrowed(s)
    }
}

/// The plain line for one kind of one snapshot.
pub fn snapshot_line(at: DateTime<Utc>, row: &KindRow) -> String {
    format!(
        "{} {} live={} msg/s={} handling={} mailbox={} restarts={} passivations={} failures={}",
        timestamp(at),
        clean(&row.kind),
        row.live,
        rate(row.messages_per_sec),
        millis(row.handling_ms),
        row.mailbox,
        row.restarts,
        row.passivations,
        row.failures,
    )
}

/// The plain line for one lifecycle event.
pub fn lifecycle_line(event: &Lifecycle) -> String {
    format!(
        "{} lifecycle {} {} {}",
        timestamp(event.at),
        clean(&event.kind),
        clean(&event.event),
        clean(&event.id),
    )
}

/// Writes data lines to `out` and notices to stderr, so the data stays machine-readable.
pub struct PlainOutput<W: Write> {
    out: W,
}

impl<W: Write> PlainOutput<W> {
    /// Plain output onto `out` (stdout in the binary, a buffer in tests).
    pub fn new(out: W) -> Self {
        PlainOutput { out }
    }

    fn line(&mut self, line: &str) -> io::Result<()> {
        writeln!(self.out, "{line}")?;
        self.out.flush()
    }
}

impl<W: Write> TailOutput for PlainOutput<W> {
    fn snapshot(&mut self, at: DateTime<Utc>, rows: &[KindRow]) -> io::Result<()> {
        rows.iter()
            .try_for_each(|row| self.line(&snapshot_line(at, row)))
    }

    fn lifecycle(&mut self, event: &Lifecycle) -> io::Result<()> {
        self.line(&lifecycle_line(event))
    }

    fn notice(&mut self, message: &str) -> io::Result<()> {
        // Not `eprintln!`, which panics when stderr is gone; a lost notice is harmless.
        let _ = writeln!(io::stderr(), "casehub tail: {}", clean(message));
        Ok(())
    }

    fn malformed(&mut self, error: &MalformedEvent) -> io::Result<()> {
        self.notice(&error.to_string())
    }

    fn tick(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .expect("timestamp")
    }

    fn row(rate: Option<f64>, handling: Option<f64>) -> KindRow {
        KindRow {
            kind: "case_actor".into(),
            live: 12,
            messages_per_sec: rate,
            handling_ms: handling,
            mailbox: 0,
            restarts: 1,
            passivations: 3,
            failures: 1,
        }
    }

    #[test]
    fn snapshot_lines_follow_the_documented_shape() {
        assert_eq!(
            snapshot_line(at("2026-11-22T16:00:01.400Z"), &row(Some(34.0), Some(0.42))),
            "2026-11-22T16:00:01Z case_actor live=12 msg/s=34.0 handling=0.42ms mailbox=0 \
             restarts=1 passivations=3 failures=1"
        );
        assert_eq!(
            snapshot_line(at("2026-11-22T17:00:01+01:00"), &row(None, None)),
            "2026-11-22T16:00:01Z case_actor live=12 msg/s=- handling=- mailbox=0 \
             restarts=1 passivations=3 failures=1"
        );
    }

    #[test]
    fn lifecycle_lines_carry_kind_event_and_id_without_control_characters() {
        let event = Lifecycle {
            kind: "case_actor".into(),
            event: "restart".into(),
            id: "0f8c\u{1b}[2J".into(),
            at: at("2026-11-22T16:00:01Z"),
        };
        let line = lifecycle_line(&event);
        assert_eq!(
            line,
            "2026-11-22T16:00:01Z lifecycle case_actor restart 0f8c\u{fffd}[2J"
        );
    }

    #[test]
    fn plain_output_writes_one_line_per_kind_and_event() {
        let mut buf = Vec::new();
        let mut out = PlainOutput::new(&mut buf);
        let mut other = row(Some(1.0), None);
        other.kind = "alert_monitor".into();
        out.snapshot(at("2026-11-22T16:00:01Z"), &[other, row(None, None)])
            .expect("write");
        let text = String::from_utf8(buf).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains(" alert_monitor live=12 msg/s=1.0 "));
        assert!(lines[1].contains(" case_actor "));
        assert!(!text.contains('\u{1b}'));
    }
}
