//! `casehub tail`: follows `GET /ops/stream` (CONTRACT §7) and shows the actor system live.
//!
//! [`ops_event`] parses the stream and derives rates (pure), [`plain`] formats lines for pipes
//! and `--plain`, [`screen`] draws the refreshing table on a terminal. This file connects,
//! reconnects with a short backoff when an established connection drops, and routes each event
//! to the output chosen at start.

pub mod ops_event;
pub mod plain;
pub mod screen;

use std::error::Error as StdError;
use std::fmt;
use std::io::{self, IsTerminal};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, Utc};
use eventsource_stream::{EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{StatusCode, Url};

use ops_event::{KindRow, Lifecycle, MalformedEvent, OpsEvent, RateTracker};
use plain::PlainOutput;
use screen::TerminalOutput;

/// Waits between reconnects; the last one repeats until a connection delivers an event.
const BACKOFF: [Duration; 3] = [
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
];

/// The server sends a snapshot every second, so this much silence means a dead connection
/// (a half-open TCP socket would otherwise hang the view forever).
const SILENCE_TIMEOUT: Duration = Duration::from_secs(15);

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How often a view may redraw what it deferred during a burst of lifecycle events.
const TICK: Duration = Duration::from_millis(200);

/// `casehub tail` options.
#[derive(Clone, clap::Args)]
pub struct TailArgs {
    /// Base URL of the casehub server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// An admin API key, sent as X-API-Key.
    #[arg(long, env = "CASEHUB_API_KEY", hide_env_values = true)]
    pub api_key: String,
    /// Plain lines even when stdout is a terminal.
    #[arg(long)]
    pub plain: bool,
}

// By hand so the key never reaches a log or a panic message.
impl fmt::Debug for TailArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TailArgs")
            .field("url", &self.url)
            .field("api_key", &"<redacted>")
            .field("plain", &self.plain)
            .finish()
    }
}

/// Where followed events go: plain lines or the terminal view.
pub trait TailOutput {
    /// A snapshot's rows, sorted by kind name.
    fn snapshot(&mut self, at: DateTime<Utc>, rows: &[KindRow]) -> io::Result<()>;
    /// One lifecycle event.
    fn lifecycle(&mut self, event: &Lifecycle) -> io::Result<()>;
    /// A connection change: connected, lost, reconnecting.
    fn notice(&mut self, message: &str) -> io::Result<()>;
    /// An event that was skipped because its data could not be read.
    fn malformed(&mut self, error: &MalformedEvent) -> io::Result<()>;
    /// Called a few times a second so a view can draw what it deferred.
    fn tick(&mut self) -> io::Result<()>;
}

/// Follows the stream until the server ends it, Ctrl-C or SIGTERM (all `Ok`). A refused first
/// connection, a non-2xx answer (the error envelope's message) or a non-SSE answer is an error.
/// The terminal is restored before this returns.
pub async fn run(args: TailArgs) -> anyhow::Result<()> {
    let source = StreamSource::new(&args)?;
    let outcome = if !args.plain && io::stdout().is_terminal() {
        let mut out = TerminalOutput::enter(source.endpoint.as_str())?;
        until_interrupted(follow(&source, &mut out)).await
    } else {
        let mut out = PlainOutput::new(io::stdout());
        until_interrupted(follow(&source, &mut out)).await
    };
    match outcome {
        Ok(Some(End::ServerClosed)) => {
            eprintln!("casehub tail: the server ended the stream");
            Ok(())
        }
        Ok(_) => Ok(()),
        // `casehub tail | head` closing the pipe is a normal way to stop.
        Err(e) if is_broken_pipe(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `None` when interrupted.
async fn until_interrupted<T>(
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<Option<T>> {
    tokio::select! {
        r = work => r.map(Some),
        _ = crate::shutdown_signal() => Ok(None),
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<io::Error>()
            .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
    })
}

/// The endpoint and credentials to open the stream with.
struct StreamSource {
    client: reqwest::Client,
    endpoint: Url,
    api_key: String,
}

/// Why opening the stream failed.
enum OpenError {
    /// No answer: refused, timed out, reset.
    Unreachable(String),
    /// An answer that is not an event stream.
    Rejected {
        status: StatusCode,
        error: anyhow::Error,
    },
}

impl StreamSource {
    fn new(args: &TailArgs) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(SILENCE_TIMEOUT)
            .build()
            .context("building the HTTP client")?;
        Ok(StreamSource {
            client,
            endpoint: stream_url(&args.url)?,
            api_key: args.api_key.clone(),
        })
    }

    async fn open(&self) -> Result<reqwest::Response, OpenError> {
        let resp = self
            .client
            .get(self.endpoint.clone())
            .header("X-API-Key", &self.api_key)
            .header(ACCEPT, "text/event-stream")
            .send()
            .await
            // The endpoint is already in every message this ends up in.
            .map_err(|e| OpenError::Unreachable(describe(&e.without_url())))?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.bytes().await.unwrap_or_default();
            let error = anyhow!(
                "{} answered {status}: {}",
                self.endpoint,
                error_message(&body)
            );
            return Err(OpenError::Rejected { status, error });
        }
        let content_type = resp
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !content_type.starts_with("text/event-stream") {
            let error = anyhow!(
                "{} did not answer an event stream (content-type {content_type:?})",
                self.endpoint
            );
            return Err(OpenError::Rejected { status, error });
        }
        Ok(resp)
    }
}

/// `{base}/ops/stream`, keeping any path prefix a proxy puts the server under.
fn stream_url(base: &str) -> anyhow::Result<Url> {
    let url = Url::parse(&format!("{}/ops/stream", base.trim_end_matches('/')))
        .with_context(|| format!("invalid --url {base:?}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        bail!("invalid --url {base:?}: expected http:// or https://");
    }
    Ok(url)
}

/// The error envelope's message, or the start of whatever the server said instead.
fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
        .unwrap_or_else(|| {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            if text.is_empty() {
                "no error message".to_string()
            } else {
                plain::clean(text).chars().take(200).collect()
            }
        })
}

/// An error and its causes on one line ("error sending request: … Connection refused").
fn describe(e: &dyn StdError) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// Reconnect waits: 1 s, 2 s, then 5 s; back to 1 s once a connection delivers an event.
#[derive(Debug, Default)]
struct Backoff {
    attempt: usize,
}

impl Backoff {
    fn next_wait(&mut self) -> Duration {
        let wait = BACKOFF[self.attempt.min(BACKOFF.len() - 1)];
        self.attempt += 1;
        wait
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// How one connection's stream ended.
#[derive(Debug, PartialEq)]
enum End {
    /// The server closed it cleanly.
    ServerClosed,
    /// The transport failed; worth reconnecting.
    Dropped(String),
}

/// Opens the stream and pumps it into `out`, reconnecting after drops. Returns when the server
/// ends the stream; a failure before the first connection, or a 4xx or non-SSE answer at any
/// time, is an error.
async fn follow<O: TailOutput>(source: &StreamSource, out: &mut O) -> anyhow::Result<End> {
    let mut tracker = RateTracker::default();
    let mut backoff = Backoff::default();
    let mut connected_before = false;
    loop {
        let problem = match source.open().await {
            Ok(resp) => {
                let verb = if connected_before {
                    "reconnected"
                } else {
                    "connected"
                };
                out.notice(&format!("{verb} to {}", source.endpoint))?;
                connected_before = true;
                tracker.reset();
                match pump(resp.bytes_stream(), &mut tracker, out, &mut backoff).await? {
                    End::ServerClosed => return Ok(End::ServerClosed),
                    End::Dropped(reason) => format!("connection lost ({reason})"),
                }
            }
            // A server that is restarting refuses or answers 502/503 for a moment.
            Err(OpenError::Unreachable(reason)) if connected_before => {
                format!("cannot reach {} ({reason})", source.endpoint)
            }
            Err(OpenError::Rejected { status, error })
                if connected_before && status.is_server_error() =>
            {
                error.to_string()
            }
            Err(OpenError::Unreachable(reason)) => {
                bail!("cannot reach {} ({reason})", source.endpoint)
            }
            Err(OpenError::Rejected { error, .. }) => return Err(error),
        };
        let wait = backoff.next_wait();
        out.notice(&format!("{problem}; reconnecting in {}s", wait.as_secs()))?;
        tokio::time::sleep(wait).await;
    }
}

/// Feeds one connection's SSE bytes to `out` until it ends. Comments and keep-alives never
/// reach here (the SSE parser drops them); unknown events are ignored and malformed ones
/// skipped. Only a failing output is an error.
async fn pump<S, B, E, O>(
    bytes: S,
    tracker: &mut RateTracker,
    out: &mut O,
    backoff: &mut Backoff,
) -> anyhow::Result<End>
where
    S: Stream<Item = Result<B, E>> + Unpin,
    B: AsRef<[u8]>,
    E: StdError,
    O: TailOutput,
{
    let mut events = bytes.eventsource();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            next = events.next() => match next {
                None => return Ok(End::ServerClosed),
                Some(Err(EventStreamError::Transport(e))) => return Ok(End::Dropped(describe(&e))),
                // Bytes that are not SSE leave the parser in an unknown state: start over.
                Some(Err(e)) => return Ok(End::Dropped(e.to_string())),
                Some(Ok(event)) => {
                    backoff.reset();
                    deliver(&event.event, &event.data, tracker, out)?;
                }
            },
            _ = tick.tick() => out.tick()?,
        }
    }
}

/// Parses one event and hands it to `out`.
fn deliver<O: TailOutput>(
    event: &str,
    data: &str,
    tracker: &mut RateTracker,
    out: &mut O,
) -> io::Result<()> {
    match ops_event::parse(event, data) {
        Ok(Some(OpsEvent::Snapshot(snapshot))) => {
            let at = snapshot.timestamp;
            let rows = tracker.observe(snapshot);
            out.snapshot(at, &rows)
        }
        Ok(Some(OpsEvent::Lifecycle(event))) => out.lifecycle(&event),
        Ok(None) => Ok(()),
        Err(malformed) => out.malformed(&malformed),
    }
}

#[cfg(test)]
mod tests;
