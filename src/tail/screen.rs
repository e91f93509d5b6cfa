//! The terminal view: a table with one row per actor kind, refreshed on every snapshot, and
//! below it the latest lifecycle events, newest last.
//!
//! [`Screen`] is the pure part (state in, lines out); [`TerminalOutput`] draws it with
//! crossterm on the alternate screen and restores the terminal when dropped, so an error, a
//! panic or Ctrl-C all leave the user's shell as it was.

use std::collections::VecDeque;
use std::io::{self, Stdout, Write};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use crossterm::cursor::{Hide, MoveTo, Show};
use crossterm::style::Print;
use crossterm::terminal::{self, Clear, ClearType, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{execute, queue};

use super::TailOutput;
use super::ops_event::{KindRow, Lifecycle, MalformedEvent};
use super::plain::{clean, millis, rate, timestamp};

/// How many lifecycle events stay on screen.
pub const RECENT_EVENTS: usize = 15;

/// Lifecycle bursts (thousands of spawns) would otherwise redraw the whole screen per event.
const MIN_REDRAW: Duration = Duration::from_millis(100);

/// Longest kind name shown in full; longer ones are cut so the columns stay aligned.
const KIND_WIDTH_MAX: usize = 32;

/// What the view shows, independent of any terminal.
#[derive(Debug, Clone)]
pub struct Screen {
    /// The latest connection notice; it names the endpoint.
    status: String,
    at: Option<DateTime<Utc>>,
    rows: Vec<KindRow>,
    recent: VecDeque<String>,
    skipped: u64,
}

impl Screen {
    /// An empty view of `endpoint`, waiting for the first snapshot.
    pub fn new(endpoint: &str) -> Self {
        Screen {
            status: format!("connecting to {endpoint}"),
            at: None,
            rows: Vec::new(),
            recent: VecDeque::with_capacity(RECENT_EVENTS),
            skipped: 0,
        }
    }

    /// Replaces the table with a new snapshot's rows.
    pub fn snapshot(&mut self, at: DateTime<Utc>, rows: &[KindRow]) {
        self.at = Some(at);
        self.rows = rows.to_vec();
    }

    /// Adds a lifecycle event, dropping the oldest past [`RECENT_EVENTS`].
    pub fn lifecycle(&mut self, event: &Lifecycle) {
        if self.recent.len() == RECENT_EVENTS {
            self.recent.pop_front();
        }
        self.recent.push_back(format!(
            "{}  {}  {}  {}",
            event.at.format("%H:%M:%S"),
            clean(&event.kind),
            clean(&event.event),
            clean(&event.id)
        ));
    }

    /// Sets the connection status shown in the header.
    pub fn status(&mut self, status: &str) {
        self.status = clean(status).into_owned();
    }

    /// Counts an event that could not be read.
    pub fn skipped(&mut self) {
        self.skipped += 1;
    }

    /// The screen as at most `height` lines of at most `width` characters. When the terminal
    /// is short the header and table win and the oldest lifecycle events go first.
    pub fn lines(&self, width: usize, height: usize) -> Vec<String> {
        let mut header = format!(
            "casehub tail  {}  {}",
            self.at.map_or_else(|| "-".to_string(), timestamp),
            self.status
        );
        if self.skipped > 0 {
            header.push_str(&format!("  ({} malformed skipped)", self.skipped));
        }
        let kind_width = self
            .rows
            .iter()
            .map(|r| r.kind.chars().count())
            .max()
            .unwrap_or(0)
            .clamp(4, KIND_WIDTH_MAX);
        let mut lines = vec![
            header,
            String::new(),
            format!(
                "{:<kind_width$} {:>7} {:>9} {:>10} {:>8} {:>9} {:>13} {:>9}",
                "KIND",
                "LIVE",
                "MSG/S",
                "HANDLING",
                "MAILBOX",
                "RESTARTS",
                "PASSIVATIONS",
                "FAILURES"
            ),
        ];
        lines.extend(self.rows.iter().map(|r| {
            let kind: String = clean(&r.kind).chars().take(kind_width).collect();
            format!(
                "{kind:<kind_width$} {:>7} {:>9} {:>10} {:>8} {:>9} {:>13} {:>9}",
                r.live,
                rate(r.messages_per_sec),
                millis(r.handling_ms),
                r.mailbox,
                r.restarts,
                r.passivations,
                r.failures
            )
        }));
        lines.push(String::new());
        lines.push(format!("lifecycle (last {RECENT_EVENTS})"));
        let room = height.saturating_sub(lines.len());
        let skip = self.recent.len().saturating_sub(room);
        lines.extend(self.recent.iter().skip(skip).cloned());
        lines.truncate(height);
        lines
            .into_iter()
            .map(|l| l.chars().take(width).collect())
            .collect()
    }
}

/// The view drawn on the terminal's alternate screen.
pub struct TerminalOutput {
    screen: Screen,
    out: Stdout,
    dirty: bool,
    last_draw: Option<Instant>,
}

impl TerminalOutput {
    /// Switches stdout to the alternate screen; dropping the value switches back.
    pub fn enter(endpoint: &str) -> io::Result<Self> {
        let mut out = io::stdout();
        execute!(out, EnterAlternateScreen, Hide)?;
        let mut view = TerminalOutput {
            screen: Screen::new(endpoint),
            out,
            dirty: false,
            last_draw: None,
        };
        view.draw()?;
        Ok(view)
    }

    fn draw(&mut self) -> io::Result<()> {
        // A terminal that cannot report its size (or reports 0x0, as some ptys do) still gets
        // a usable view.
        let (width, height) = terminal::size()
            .ok()
            .filter(|&(w, h)| w > 0 && h > 0)
            .unwrap_or((100, 40));
        let lines = self.screen.lines(usize::from(width), usize::from(height));
        let mut row: u16 = 0;
        for line in &lines {
            queue!(
                self.out,
                MoveTo(0, row),
                Print(line),
                Clear(ClearType::UntilNewLine)
            )?;
            row = row.saturating_add(1);
        }
        queue!(self.out, MoveTo(0, row), Clear(ClearType::FromCursorDown))?;
        self.out.flush()?;
        self.dirty = false;
        self.last_draw = Some(Instant::now());
        Ok(())
    }

    fn draw_soon(&mut self) -> io::Result<()> {
        self.dirty = true;
        match self.last_draw {
            Some(t) if t.elapsed() < MIN_REDRAW => Ok(()),
            _ => self.draw(),
        }
    }
}

impl TailOutput for TerminalOutput {
    fn snapshot(&mut self, at: DateTime<Utc>, rows: &[KindRow]) -> io::Result<()> {
        self.screen.snapshot(at, rows);
        self.draw()
    }

    fn lifecycle(&mut self, event: &Lifecycle) -> io::Result<()> {
        self.screen.lifecycle(event);
        self.draw_soon()
    }

    fn notice(&mut self, message: &str) -> io::Result<()> {
        self.screen.status(message);
        self.draw()
    }

    fn malformed(&mut self, _error: &MalformedEvent) -> io::Result<()> {
        self.screen.skipped();
        self.draw_soon()
    }

    fn tick(&mut self) -> io::Result<()> {
        if self.dirty { self.draw() } else { Ok(()) }
    }
}

impl Drop for TerminalOutput {
    fn drop(&mut self) {
        // Best effort: there is nowhere left to report a failure to restore.
        let _ = execute!(self.out, Show, LeaveAlternateScreen);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(kind: &str, rate: Option<f64>) -> KindRow {
        KindRow {
            kind: kind.into(),
            live: 12,
            messages_per_sec: rate,
            handling_ms: rate.map(|_| 0.42),
            mailbox: 0,
            restarts: 1,
            passivations: 3,
            failures: 1,
        }
    }

    fn event(n: usize) -> Lifecycle {
        Lifecycle {
            kind: "case_actor".into(),
            event: "spawn".into(),
            id: format!("case-{n}"),
            at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn table_has_a_row_per_kind_and_dashes_before_rates() {
        let mut s = Screen::new("http://127.0.0.1:8080");
        let at = chrono::DateTime::UNIX_EPOCH;
        s.snapshot(
            at,
            &[row("alert_monitor", None), row("case_actor", Some(34.0))],
        );
        let lines = s.lines(200, 50);
        assert!(lines[0].contains("1970-01-01T00:00:00Z"), "{}", lines[0]);
        let alert = &lines[3];
        let case = &lines[4];
        assert!(alert.starts_with("alert_monitor "), "{alert}");
        assert_eq!(alert.split_whitespace().nth(2), Some("-"));
        assert_eq!(
            case.split_whitespace().collect::<Vec<_>>(),
            ["case_actor", "12", "34.0", "0.42ms", "0", "1", "3", "1"]
        );
        assert!(lines.iter().all(|l| l.chars().count() <= 200));
    }

    #[test]
    fn only_the_latest_lifecycle_events_are_kept_newest_last() {
        let mut s = Screen::new("x");
        for n in 0..40 {
            s.lifecycle(&event(n));
        }
        let lines = s.lines(80, 100);
        let events: Vec<&String> = lines.iter().filter(|l| l.contains("case-")).collect();
        assert_eq!(events.len(), RECENT_EVENTS);
        assert!(events[0].ends_with("case-25"), "{}", events[0]);
        assert!(events[RECENT_EVENTS - 1].ends_with("case-39"));
    }

    #[test]
    fn a_small_terminal_keeps_the_table_and_the_newest_events() {
        let mut s = Screen::new("x");
        s.snapshot(chrono::DateTime::UNIX_EPOCH, &[row("case_actor", None)]);
        for n in 0..10 {
            s.lifecycle(&event(n));
        }
        s.skipped();
        let lines = s.lines(40, 8);
        assert_eq!(lines.len(), 8);
        assert!(lines.iter().all(|l| l.chars().count() <= 40));
        assert!(lines[3].starts_with("case_actor"));
        assert!(lines[7].ends_with("case-9"), "{:?}", lines);
        assert!(s.lines(200, 8)[0].contains("(1 malformed skipped)"));
    }
}
