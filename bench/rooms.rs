//! The review-room load tool (issue 5, "Speed"): fan-out latency with many reviewers in one room,
//! and the server's resident memory per idle reviewer connection. `bench/rooms.sh` drives it
//! against casehub and against `rooms-baseline`; BENCHMARKS.md records the figures.
//!
//! ```text
//! rooms-load claims --ws ws://HOST:PORT [--http http://HOST:PORT] [options]
//!     room fan-out: a publisher connection claims and releases one pending review at a steady
//!     rate; each claim / release is one room event. Latency = the publisher's send of the frame
//!     → each receiver's receipt of that event (matched by seq).
//! rooms-load intake --ws ws://HOST:PORT --http http://HOST:PORT [options]
//!     end to end: POST /webhook/support/collaborative for fresh cases (created first) at a
//!     steady rate. Latency = POST sent → each receiver's receipt of `review.requested` for it;
//!     also `publish_*`: the room's publish time (the frame's `at`, in microseconds, by the
//!     wall clock) → each receipt.
//! rooms-load idle --ws ws://HOST:PORT --pid PID [--http …] [options]
//!     VmRSS of PID before and after opening --connections idle connections (each counted once
//!     its welcome arrived, then left to settle), divided by the number of connections.
//!
//! options: --room support-review  --receivers 1000  --rate 20 (events/s)  --duration 20 (s)
//!          --warmup 2 (s, published but not counted)  --connections 10000  --reviewers N
//!          (distinct reviewer identities, connection i is reviewer i mod N; default one per
//!          connection for the fan-out, 1 for idle)  --pending 0 (idle: reviews opened in the
//!          room first, so every welcome lists them)  --settle 5 (s)  --concurrency 64
//!          --label NAME (the target's name in the result line)
//! ```
//!
//! Every receiver checks that room seqs arrive gapless. All clients run in this one process, so
//! one monotonic clock times send and receipt. The last line on stdout is the result as
//! `key=value` pairs; progress goes to stderr. Tokens are minted with casehub's own
//! `Auth::mint_reviewer` from the settings in force (defaults + `CASEHUB__…` variables).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::stream::SplitStream;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, Semaphore, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

type Error = Box<dyn std::error::Error + Send + Sync>;
type Socket = WebSocketStream<TcpStream>;

/// How long one connection may take to open and get its welcome.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long receivers may take, after the last event was published, to receive it.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(20);
/// The intake used for the cases the end-to-end scenario escalates (a feature request: triage
/// leaves it open, so it can go to review).
const FEATURE: &str = "It would be great if the dashboard had a dark mode option and keyboard \
                       shortcuts; can you add this feature request?";

#[derive(Clone)]
struct Opts {
    scenario: String,
    ws: String,
    addr: SocketAddr,
    http: Option<String>,
    room: String,
    receivers: usize,
    rate: f64,
    duration: f64,
    warmup: f64,
    connections: usize,
    reviewers: Option<usize>,
    settle: f64,
    concurrency: usize,
    pid: Option<u32>,
    pending: usize,
    label: String,
}

fn usage() -> ! {
    eprintln!(
        "usage: rooms-load claims|intake|idle --ws ws://HOST:PORT [--http http://HOST:PORT] \
         [--pid PID] [--room R] [--receivers N] [--rate R] [--duration S] [--warmup S] \
         [--connections N] [--reviewers N] [--pending N] [--settle S] [--concurrency N] [--label NAME]"
    );
    std::process::exit(2)
}

async fn parse_opts() -> Result<Opts, Error> {
    let mut args = std::env::args().skip(1);
    let scenario = args.next().unwrap_or_else(|| usage());
    if !matches!(scenario.as_str(), "claims" | "intake" | "idle") {
        usage();
    }
    let mut values: HashMap<String, String> = HashMap::new();
    while let Some(key) = args.next() {
        let Some(name) = key.strip_prefix("--") else {
            usage()
        };
        let value = args.next().unwrap_or_else(|| usage());
        values.insert(name.to_string(), value);
    }
    let take = |name: &str| values.get(name).cloned();
    fn num<T: std::str::FromStr>(v: Option<String>, default: T) -> Result<T, Error> {
        match v {
            None => Ok(default),
            Some(s) => s.parse().map_err(|_| format!("not a number: {s}").into()),
        }
    }
    let ws = take("ws").unwrap_or_else(|| usage());
    let hostport = ws
        .trim_start_matches("ws://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let addr = tokio::net::lookup_host(&hostport)
        .await?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| format!("cannot resolve {hostport}"))?;
    Ok(Opts {
        label: take("label").unwrap_or_else(|| "casehub".into()),
        ws: ws.trim_end_matches('/').to_string(),
        addr,
        http: take("http").map(|h| h.trim_end_matches('/').to_string()),
        room: take("room").unwrap_or_else(|| "support-review".into()),
        receivers: num(take("receivers"), 1000)?,
        rate: num(take("rate"), 20.0)?,
        duration: num(take("duration"), 20.0)?,
        warmup: num(take("warmup"), 2.0)?,
        connections: num(take("connections"), 10_000)?,
        reviewers: take("reviewers").map(|r| num(Some(r), 1)).transpose()?,
        settle: num(take("settle"), 5.0)?,
        concurrency: num(take("concurrency"), 64)?,
        pid: take("pid").map(|p| num(Some(p), 0)).transpose()?,
        pending: num(take("pending"), 0)?,
        scenario,
    })
}

/// Raises this process's open-file limit to its hard limit (a connection is a descriptor).
fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct passed to them.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
        limit.rlim_cur
    }
}

/// Source addresses for `total` loopback connections: none (the kernel's choice) while they fit
/// in the ephemeral port range, else 127.0.0.2, 127.0.0.3, … with at most that many each.
struct Sources {
    per_address: Option<usize>,
}

impl Sources {
    fn plan(target: &SocketAddr, total: usize) -> Sources {
        let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().map(|n| n.parse::<usize>().ok());
                Some(it.next()??..=it.next()??)
            })
            .map(|r| r.end() - r.start() + 1)
            .unwrap_or(28_000);
        // Leave room for everything else on this machine.
        let budget = range.saturating_sub(2_000).max(1_000);
        let per_address = (target.ip().is_loopback() && total > budget).then_some(budget);
        if let Some(per) = per_address {
            eprintln!(
                "{total} connections exceed the port range budget {budget}: spreading over \
                 {} source addresses 127.0.0.2…",
                total.div_ceil(per)
            );
        }
        Sources { per_address }
    }

    fn source(&self, index: usize) -> Option<IpAddr> {
        let per = self.per_address?;
        let n = 2 + index / per;
        Some(IpAddr::V4(Ipv4Addr::new(
            127,
            0,
            (n / 256) as u8,
            (n % 256) as u8,
        )))
    }
}

fn client_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
}

/// Opens one room connection (TCP, then the WebSocket handshake).
async fn open(opts: &Opts, token: &str, source: Option<IpAddr>) -> Result<Socket, Error> {
    let socket = TcpSocket::new_v4()?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(opts.addr).await?;
    stream.set_nodelay(true)?;
    let url = format!("{}/ws/rooms/{}?token={token}", opts.ws, opts.room);
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(url, stream, Some(client_config())).await?;
    Ok(ws)
}

/// Reads frames until the welcome; returns it.
async fn welcome(ws: &mut Socket) -> Result<Value, Error> {
    while let Some(message) = ws.next().await {
        if let Message::Text(text) = message? {
            let frame: Value = serde_json::from_str(text.as_str())?;
            if frame["type"] == "welcome" {
                return Ok(frame);
            }
            return Err(format!("expected a welcome, got {frame}").into());
        }
    }
    Err("closed before the welcome".into())
}

/// Mints reviewer tokens with casehub's own code and the settings in force.
struct Tokens {
    auth: casehub::auth::Auth,
    room: String,
}

impl Tokens {
    fn new(room: &str) -> Result<Tokens, Error> {
        let settings = casehub::Settings::load(None).map_err(|e| e.to_string())?;
        Ok(Tokens {
            auth: casehub::auth::Auth::new(&settings),
            room: room.to_string(),
        })
    }

    fn mint(&self, reviewer: &str) -> String {
        let rooms = [self.room.clone()];
        self.auth
            .mint_reviewer(reviewer, &rooms, Duration::from_secs(8 * 3600))
    }
}

/// What one receiver saw.
#[derive(Default)]
struct Tally {
    events: u64,
    /// Times a seq did not follow the previous one.
    gaps: u64,
    /// Seqs skipped in those gaps.
    missed: u64,
    /// Seqs seen twice or out of order.
    repeated: u64,
    /// Why the connection ended before it was told to stop, if it did.
    closed: Option<String>,
    /// `review.claimed` / `review.released`: (seq, receipt).
    ops: Vec<(u64, Instant)>,
    /// `review.requested`: (case_id, receipt, receipt minus the frame's `at`, the room's
    /// publish time (microseconds), in ns by the wall clock, taken as the frame arrives).
    requested: Vec<(String, Instant, Option<u64>)>,
}

/// When receivers are done: `Some(seq)` once they have received `seq`; `force` at once.
#[derive(Clone, Copy, Default)]
struct Stop {
    after: Option<u64>,
    force: bool,
}

impl Stop {
    fn reached(&self, last: u64) -> bool {
        self.after.is_some_and(|s| last >= s)
    }
}

/// Receivers still to reach the last event. A receiver that reached it keeps its connection
/// (and keeps reading) until all have: closing early would make the room announce departures
/// to the receivers still waiting, and the measurement would include that.
struct Countdown {
    remaining: AtomicUsize,
    zero: Notify,
}

impl Countdown {
    fn new(n: usize) -> Arc<Countdown> {
        Arc::new(Countdown {
            remaining: AtomicUsize::new(n),
            zero: Notify::new(),
        })
    }

    fn finished(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.zero.notify_one();
        }
    }

    async fn wait(&self) {
        while self.remaining.load(Ordering::Acquire) > 0 {
            let _ = tokio::time::timeout(Duration::from_millis(100), self.zero.notified()).await;
        }
    }
}

/// What a receiver reads of a frame: borrowed, and nothing else decoded (the load tool shares
/// the cores with the server, so its own parsing is kept cheap).
#[derive(serde::Deserialize)]
struct EventFrame<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    seq: Option<u64>,
    event: Option<&'a str>,
    #[serde(borrow)]
    data: Option<EventData<'a>>,
    at: Option<&'a str>,
}

#[derive(serde::Deserialize)]
struct EventData<'a> {
    case_id: Option<&'a str>,
}

/// Reads a connection until forced to stop, recording room events and checking their seqs up
/// to the last event (after it, nothing is recorded).
async fn receive(
    mut ws: Socket,
    welcome_seq: u64,
    mut stop: watch::Receiver<Stop>,
    countdown: Arc<Countdown>,
) -> Tally {
    let mut t = Tally::default();
    let mut last = welcome_seq;
    let mut done = false;
    loop {
        let now = *stop.borrow_and_update();
        if now.force {
            break;
        }
        if !done && now.reached(last) {
            done = true;
            countdown.finished();
        }
        let message = tokio::select! {
            biased;
            changed = stop.changed() => {
                if changed.is_err() { break; }
                continue;
            }
            m = ws.next() => m,
        };
        let at = Instant::now();
        let wall = chrono::Utc::now();
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                t.closed = Some(format!("close {:?}", frame.map(|f| u16::from(f.code))));
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                t.closed = Some(e.to_string());
                break;
            }
            None => {
                t.closed = Some("end of stream".into());
                break;
            }
        };
        if done {
            continue;
        }
        let Ok(frame) = serde_json::from_str::<EventFrame>(text.as_str()) else {
            continue;
        };
        if frame.kind != "event" {
            continue;
        }
        let seq = frame.seq.unwrap_or(0);
        match seq.cmp(&(last + 1)) {
            std::cmp::Ordering::Equal => {}
            std::cmp::Ordering::Greater => {
                t.gaps += 1;
                t.missed += seq - last - 1;
            }
            std::cmp::Ordering::Less => t.repeated += 1,
        }
        last = last.max(seq);
        t.events += 1;
        match frame.event {
            Some("review.claimed" | "review.released") => t.ops.push((seq, at)),
            Some("review.requested") => {
                if let Some(case) = frame.data.and_then(|d| d.case_id) {
                    let lag = frame
                        .at
                        .and_then(|a| chrono::DateTime::parse_from_rfc3339(a).ok())
                        .and_then(|published| {
                            (wall - published.with_timezone(&chrono::Utc)).num_nanoseconds()
                        })
                        .map(|ns| ns.max(0) as u64);
                    t.requested.push((case.to_string(), at, lag));
                }
            }
            _ => {}
        }
    }
    if !done {
        countdown.finished();
    }
    let _ = ws.close(None).await;
    t
}

/// Opens `count` connections (at most `concurrency` handshakes at a time), each becoming a
/// receiver as soon as its welcome arrives. Reviewer `i` is `reviewer(i)`.
/// The `--receivers` of a latency scenario, joined: their stop signal, the countdown of those
/// still receiving, and their tasks.
async fn audience(
    opts: &Opts,
    tokens: &Arc<Tokens>,
) -> Result<
    (
        watch::Sender<Stop>,
        watch::Receiver<Stop>,
        Arc<Countdown>,
        Vec<JoinHandle<Tally>>,
    ),
    Error,
> {
    let (stop_tx, stop_rx) = watch::channel(Stop::default());
    let countdown = Countdown::new(opts.receivers);
    let distinct = opts.reviewers.unwrap_or(opts.receivers);
    let receivers =
        open_receivers(opts, tokens, opts.receivers, distinct, &stop_rx, &countdown).await?;
    Ok((stop_tx, stop_rx, countdown, receivers))
}

async fn open_receivers(
    opts: &Opts,
    tokens: &Arc<Tokens>,
    count: usize,
    distinct: usize,
    stop: &watch::Receiver<Stop>,
    countdown: &Arc<Countdown>,
) -> Result<Vec<JoinHandle<Tally>>, Error> {
    let sources = Arc::new(Sources::plan(&opts.addr, count + 16));
    let gate = Arc::new(Semaphore::new(opts.concurrency.max(1)));
    let started = Instant::now();
    let mut opening = Vec::with_capacity(count);
    let token_of: Vec<Arc<str>> = (0..distinct.min(count).max(1))
        .map(|i| Arc::from(tokens.mint(&format!("reviewer-{i:05}@bench.test"))))
        .collect();
    for i in 0..count {
        let opts = opts.clone();
        let gate = gate.clone();
        let sources = sources.clone();
        let token = token_of[i % token_of.len()].clone();
        let stop = stop.clone();
        let countdown = countdown.clone();
        opening.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await.expect("semaphore open");
            let opened = tokio::time::timeout(CONNECT_TIMEOUT, async {
                let mut ws = open(&opts, &token, sources.source(i)).await?;
                let w = welcome(&mut ws).await?;
                Ok::<_, Error>((ws, w["seq"].as_u64().unwrap_or(0)))
            })
            .await;
            drop(permit);
            match opened {
                Ok(Ok((ws, seq))) => Ok(tokio::spawn(receive(ws, seq, stop, countdown))),
                Ok(Err(e)) => Err(format!("connection {i}: {e}")),
                Err(_) => Err(format!(
                    "connection {i}: no welcome within {CONNECT_TIMEOUT:?}"
                )),
            }
        }));
    }
    let mut receivers = Vec::with_capacity(count);
    let mut failures = Vec::new();
    for (i, o) in opening.into_iter().enumerate() {
        match o.await? {
            Ok(r) => receivers.push(r),
            Err(e) => {
                countdown.finished();
                failures.push(e);
            }
        }
        if (i + 1) % 1000 == 0 {
            eprintln!("  {} connections open ({:.1?})", i + 1, started.elapsed());
        }
    }
    if !failures.is_empty() {
        return Err(format!(
            "{} of {count} connections failed, first: {}",
            failures.len(),
            failures[0]
        )
        .into());
    }
    eprintln!("{count} connections welcomed in {:.1?}", started.elapsed());
    Ok(receivers)
}

/// What the publisher's own connection saw (it is a member of the room too).
#[derive(Default)]
struct Seen {
    last: u64,
    /// Seqs of `review.claimed` / `review.released`, in order: the k-th is the k-th op.
    op_seqs: Vec<u64>,
    /// case_id → seq of its `review.requested`.
    requested: HashMap<String, u64>,
    acks: u64,
    errors: Vec<String>,
    closed: Option<String>,
}

/// Reads the monitor connection; once `done(&seen)` holds, reports the seq reached on `reached`.
async fn monitor(
    mut stream: SplitStream<Socket>,
    welcome_seq: u64,
    done: impl Fn(&Seen) -> bool + Send + 'static,
    reached: oneshot::Sender<u64>,
    mut stop: watch::Receiver<Stop>,
) -> Seen {
    let mut seen = Seen {
        last: welcome_seq,
        ..Seen::default()
    };
    let mut reached = Some(reached);
    loop {
        let message = tokio::select! {
            biased;
            _ = stop.changed() => break,
            m = stream.next() => m,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                seen.closed = Some(format!("close {:?}", frame.map(|f| u16::from(f.code))));
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                seen.closed = Some(e.to_string());
                break;
            }
            None => break,
        };
        let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        match frame["type"].as_str() {
            Some("ack") => seen.acks += 1,
            Some("error") => seen.errors.push(frame.to_string()),
            Some("event") => {
                let seq = frame["seq"].as_u64().unwrap_or(0);
                seen.last = seen.last.max(seq);
                match frame["event"].as_str() {
                    Some("review.claimed" | "review.released") => seen.op_seqs.push(seq),
                    Some("review.requested") => {
                        if let Some(case) = frame["data"]["case_id"].as_str() {
                            seen.requested.insert(case.to_string(), seq);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
        if reached.is_some() && done(&seen) {
            let _ = reached.take().map(|r| r.send(seen.last));
        }
    }
    seen
}

/// Latency percentiles over nanosecond samples.
struct Percentiles {
    n: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

fn percentiles(mut samples: Vec<u64>) -> Percentiles {
    samples.sort_unstable();
    let n = samples.len();
    let at = |q: f64| -> f64 {
        if n == 0 {
            return f64::NAN;
        }
        let i = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        samples[i] as f64 / 1e6
    };
    Percentiles {
        n,
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        p999: at(0.999),
        max: samples.last().map_or(f64::NAN, |&m| m as f64 / 1e6),
    }
}

/// The schedule: op k is sent at `start + k / rate`.
fn schedule(opts: &Opts) -> (usize, usize, Duration) {
    let period = Duration::from_secs_f64(1.0 / opts.rate);
    let warm = (opts.warmup * opts.rate).round() as usize;
    let total = warm + (opts.duration * opts.rate).round() as usize;
    (warm, total, period)
}

/// Lets the receivers run until each has received `last` (all of them, or the drain timeout).
async fn drain(stop_tx: &watch::Sender<Stop>, countdown: &Countdown, last: Option<u64>) {
    if last.is_none() {
        return;
    }
    stop_tx.send_modify(|s| s.after = last);
    if tokio::time::timeout(DRAIN_TIMEOUT, countdown.wait())
        .await
        .is_err()
    {
        eprintln!(
            "{} receivers did not reach seq {last:?} within {DRAIN_TIMEOUT:?}",
            countdown.remaining.load(Ordering::Acquire)
        );
    }
}

/// Stops every receiver at once and collects what they saw.
async fn finish(
    receivers: Vec<JoinHandle<Tally>>,
    stop_tx: &watch::Sender<Stop>,
) -> Result<Vec<Tally>, Error> {
    stop_tx.send_modify(|s| s.force = true);
    let mut tallies = Vec::with_capacity(receivers.len());
    for r in receivers {
        tallies.push(r.await?);
    }
    Ok(tallies)
}

/// Latencies of receipts against send times, and the delivery checks, as result fields.
fn report(
    opts: &Opts,
    tallies: &[Tally],
    samples: Vec<(usize, u64)>,
    expected: usize,
    extra: &[(&str, String)],
) {
    // Per event: its first receipt (the pipeline up to the first socket) and its last (the
    // whole fan-out).
    let mut first: HashMap<usize, u64> = HashMap::new();
    let mut last: HashMap<usize, u64> = HashMap::new();
    for &(k, ns) in &samples {
        first
            .entry(k)
            .and_modify(|f| *f = (*f).min(ns))
            .or_insert(ns);
        last.entry(k)
            .and_modify(|l| *l = (*l).max(ns))
            .or_insert(ns);
    }
    let head = percentiles(first.into_values().collect());
    let tail = percentiles(last.into_values().collect());
    let p = percentiles(samples.into_iter().map(|(_, ns)| ns).collect());
    let gaps: u64 = tallies.iter().map(|t| t.gaps).sum();
    let missed: u64 = tallies.iter().map(|t| t.missed).sum();
    let repeated: u64 = tallies.iter().map(|t| t.repeated).sum();
    let events: u64 = tallies.iter().map(|t| t.events).sum();
    let closed: Vec<&String> = tallies.iter().filter_map(|t| t.closed.as_ref()).collect();
    if let Some(first) = closed.first() {
        eprintln!("{} receivers closed early; first: {first}", closed.len());
    }
    let mut line = format!(
        "scenario={} target={} receivers={} rate={} duration={} warmup={} samples={} expected={} \
         p50_ms={:.3} p90_ms={:.3} p99_ms={:.3} p999_ms={:.3} max_ms={:.3} events={events} \
         gaps={gaps} missed={missed} repeated={repeated} closed={} first_p50_ms={:.3} \
         last_p50_ms={:.3} last_p99_ms={:.3}",
        opts.scenario,
        opts.label,
        tallies.len(),
        opts.rate,
        opts.duration,
        opts.warmup,
        p.n,
        expected,
        p.p50,
        p.p90,
        p.p99,
        p.p999,
        p.max,
        closed.len(),
        head.p50,
        tail.p50,
        tail.p99,
    );
    for (k, v) in extra {
        line.push_str(&format!(" {k}={v}"));
    }
    println!("{line}");
}

/// Connects the publisher / monitor connection (a reviewer of its own).
async fn join_monitor(opts: &Opts, tokens: &Tokens) -> Result<(Socket, Value), Error> {
    let mut ws = open(opts, &tokens.mint("publisher@bench.test"), None).await?;
    let w = welcome(&mut ws).await?;
    Ok((ws, w))
}

async fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    body: &Value,
) -> Result<Value, Error> {
    let answer = client
        .post(url)
        .header("X-API-Key", key)
        .json(body)
        .send()
        .await?;
    let status = answer.status();
    let body: Value = answer.json().await?;
    if !status.is_success() {
        return Err(format!("{url}: {status} {body}").into());
    }
    Ok(body)
}

/// Creates an intake case and opens its review; returns the review id.
async fn open_review(http: &str) -> Result<String, Error> {
    let client = http_client().await;
    let (case_id, customer_id) = create_case(&client, http, 0).await?;
    let review = post(
        &client,
        &format!("{http}/webhook/support/collaborative"),
        "dev-client-key",
        &json!({"case_id": case_id, "customer_id": customer_id}),
    )
    .await?;
    Ok(review["review_id"]
        .as_str()
        .ok_or("no review_id in the collaborative answer")?
        .to_string())
}

async fn create_case(
    client: &reqwest::Client,
    http: &str,
    i: usize,
) -> Result<(String, String), Error> {
    let created = post(
        client,
        &format!("{http}/webhook/support/intake"),
        "dev-client-key",
        &json!({
            "customer_email": format!("customer-{i}@bench.test"),
            "customer_name": "Bench Customer",
            "description": FEATURE,
            "severity": "medium",
            "product": "web-portal",
            "environment": "production",
        }),
    )
    .await?;
    let field = |name: &str| -> Result<String, Error> {
        Ok(created[name]
            .as_str()
            .ok_or_else(|| format!("no {name} in the intake answer: {created}"))?
            .to_string())
    };
    Ok((field("case_id")?, field("customer_id")?))
}

/// Creates `n` intake cases, 8 at a time; returns their (case_id, customer_id).
async fn create_cases(
    client: &reqwest::Client,
    http: &str,
    n: usize,
) -> Result<Vec<(String, String)>, Error> {
    let gate = Arc::new(Semaphore::new(8));
    let mut creating = Vec::with_capacity(n);
    for i in 0..n {
        let (client, http, gate) = (client.clone(), http.to_string(), gate.clone());
        creating.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore open");
            create_case(&client, &http, i).await
        }));
    }
    let mut cases = Vec::with_capacity(n);
    for c in creating {
        cases.push(c.await??);
    }
    Ok(cases)
}

/// Opens a review for each of `n` fresh cases, 8 at a time.
async fn open_reviews(http: &str, n: usize) -> Result<(), Error> {
    let client = http_client().await;
    let cases = create_cases(&client, http, n).await?;
    let gate = Arc::new(Semaphore::new(8));
    let url = format!("{http}/webhook/support/collaborative");
    let mut opening = Vec::with_capacity(n);
    for (case_id, customer_id) in cases {
        let (client, url, gate) = (client.clone(), url.clone(), gate.clone());
        opening.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.expect("semaphore open");
            let body = json!({"case_id": case_id, "customer_id": customer_id});
            post(&client, &url, "dev-client-key", &body).await
        }));
    }
    for o in opening {
        o.await??;
    }
    Ok(())
}

/// casehub's `room_append` latency histogram (`casehub_store_op_seconds`): sum, count and the
/// cumulative buckets, from `/metrics`.
#[derive(Default)]
struct AppendHistogram {
    sum: f64,
    count: f64,
    buckets: Vec<(f64, f64)>,
}

async fn append_histogram(http: Option<&str>) -> Option<AppendHistogram> {
    let client = http_client().await;
    let text = client
        .get(format!("{}/metrics", http?))
        .header("X-API-Key", "dev-admin-key")
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    let mut h = AppendHistogram::default();
    for line in text.lines() {
        if !line.contains("op=\"room_append\"") {
            continue;
        }
        let value: f64 = line.rsplit(' ').next()?.parse().ok()?;
        if line.starts_with("casehub_store_op_seconds_sum") {
            h.sum = value;
        } else if line.starts_with("casehub_store_op_seconds_count") {
            h.count = value;
        } else if let Some(le) = line.split("le=\"").nth(1) {
            let le = le.split('"').next()?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            h.buckets.push((le, value));
        }
    }
    Some(h)
}

/// Result fields for the room history writes made between two histogram readings: how many,
/// their mean and the bucket bound their 99th percentile falls under.
fn append_fields(
    before: Option<AppendHistogram>,
    after: Option<AppendHistogram>,
) -> [(&'static str, String); 3] {
    let (Some(b), Some(a)) = (before, after) else {
        return [
            ("room_appends", "-".into()),
            ("room_append_mean_ms", "-".into()),
            ("room_append_p99_le_ms", "-".into()),
        ];
    };
    let count = a.count - b.count;
    let mean = if count > 0.0 {
        (a.sum - b.sum) / count * 1e3
    } else {
        f64::NAN
    };
    let p99 = a
        .buckets
        .iter()
        .map(|&(le, n)| {
            let before = b
                .buckets
                .iter()
                .find(|(l, _)| *l == le)
                .map_or(0.0, |&(_, m)| m);
            (le, n - before)
        })
        .find(|&(_, n)| n >= 0.99 * count)
        .map_or(f64::NAN, |(le, _)| le * 1e3);
    [
        ("room_appends", format!("{count}")),
        ("room_append_mean_ms", format!("{mean:.3}")),
        ("room_append_p99_le_ms", format!("{p99:.1}")),
    ]
}

/// CPU time (user + system) a process has used, in seconds, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}

/// CPU used by the server (`--pid`) and by this tool over the publishing phase, per frame
/// delivered (room events × receivers).
struct CpuMeter {
    server: Option<(u32, f64)>,
    own: Option<f64>,
}

/// What a [`CpuMeter`] measured, in CPU seconds.
struct CpuUsed {
    server: Option<f64>,
    own: Option<f64>,
}

impl CpuMeter {
    fn start(pid: Option<u32>) -> CpuMeter {
        CpuMeter {
            server: pid.and_then(|p| Some((p, cpu_seconds(p)?))),
            own: cpu_seconds(std::process::id()),
        }
    }

    /// Read before the receivers disconnect (their departures are work of their own).
    fn stop(&self) -> CpuUsed {
        CpuUsed {
            server: self
                .server
                .and_then(|(pid, before)| Some(cpu_seconds(pid)? - before)),
            own: self
                .own
                .and_then(|before| Some(cpu_seconds(std::process::id())? - before)),
        }
    }
}

impl CpuUsed {
    fn fields(&self, frames: u64) -> [(&'static str, String); 2] {
        let per_frame = |used: Option<f64>| {
            used.filter(|_| frames > 0).map_or("-".to_string(), |s| {
                format!("{:.2}", s * 1e6 / frames as f64)
            })
        };
        [
            ("server_cpu_us_per_frame", per_frame(self.server)),
            ("load_cpu_us_per_frame", per_frame(self.own)),
        ]
    }
}

/// Scenario (a): room fan-out of claim / release events.
async fn claims(opts: &Opts) -> Result<(), Error> {
    let tokens = Arc::new(Tokens::new(&opts.room)?);
    let (mut publisher, w) = join_monitor(opts, &tokens).await?;
    let unclaimed = |w: &Value| -> Option<String> {
        w["pending"].as_array()?.iter().find_map(|p| {
            p["claimed_by"]
                .is_null()
                .then(|| p["review_id"].as_str().map(str::to_string))
                .flatten()
        })
    };
    let (review_id, welcome_seq) = match unclaimed(&w) {
        Some(id) => (id, w["seq"].as_u64().unwrap_or(0)),
        None => {
            let http = opts
                .http
                .as_deref()
                .ok_or("no unclaimed review pending and no --http to open one")?;
            drop(publisher);
            let id = open_review(http).await?;
            // Rejoin: the welcome lists it now.
            let (again, w) = join_monitor(opts, &tokens).await?;
            publisher = again;
            (id, w["seq"].as_u64().unwrap_or(0))
        }
    };
    eprintln!("publisher joined; claiming and releasing review {review_id}");

    let (stop_tx, stop_rx, countdown, receivers) = audience(opts, &tokens).await?;
    // Let the presence frames of the joins drain before measuring.
    tokio::time::sleep(Duration::from_secs_f64(opts.settle)).await;

    let (warm, mut total, period) = schedule(opts);
    total += total % 2; // end released
    let (mut sink, stream) = publisher.split();
    let (reached_tx, reached_rx) = oneshot::channel();
    let watcher = tokio::spawn(monitor(
        stream,
        welcome_seq,
        move |seen| seen.op_seqs.len() >= total,
        reached_tx,
        stop_rx.clone(),
    ));
    eprintln!(
        "publishing {total} claim/release events at {}/s ({warm} warm-up) to {} receivers",
        opts.rate, opts.receivers
    );
    let appends_before = append_histogram(opts.http.as_deref()).await;
    let cpu = CpuMeter::start(opts.pid);
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut sent = Vec::with_capacity(total);
    for k in 0..total {
        tokio::time::sleep_until(start + period * k as u32).await;
        let kind = if k % 2 == 0 { "claim" } else { "release" };
        let frame = json!({"type": kind, "ref": k, "review_id": review_id}).to_string();
        sent.push(Instant::now());
        sink.send(Message::Text(frame.into())).await?;
    }
    let last = tokio::time::timeout(DRAIN_TIMEOUT, reached_rx).await;
    drain(&stop_tx, &countdown, last.ok().and_then(Result::ok)).await;
    let used = cpu.stop();
    let appends_after = append_histogram(opts.http.as_deref()).await;
    let tallies = finish(receivers, &stop_tx).await?;
    let seen = watcher.await?;
    if !seen.errors.is_empty() {
        eprintln!(
            "{} error answers, first: {}",
            seen.errors.len(),
            seen.errors[0]
        );
    }
    if seen.op_seqs.len() != total {
        eprintln!(
            "the publisher saw {} of {total} events (closed: {:?})",
            seen.op_seqs.len(),
            seen.closed
        );
    }
    let op_of: HashMap<u64, usize> = seen
        .op_seqs
        .iter()
        .enumerate()
        .map(|(k, &seq)| (seq, k))
        .collect();
    let mut samples = Vec::with_capacity(tallies.len() * total);
    for t in &tallies {
        for (seq, at) in &t.ops {
            if let Some(&k) = op_of.get(seq)
                && k >= warm
            {
                samples.push((k, at.saturating_duration_since(sent[k]).as_nanos() as u64));
            }
        }
    }
    let appends = append_fields(appends_before, appends_after);
    let expected = tallies.len() * (total - warm);
    let mut extra = vec![
        ("published", total.to_string()),
        ("acks", seen.acks.to_string()),
        ("errors", seen.errors.len().to_string()),
    ];
    extra.extend(appends);
    extra.extend(used.fields(tallies.iter().map(|t| t.events).sum()));
    report(opts, &tallies, samples, expected, &extra);
    Ok(())
}

/// Scenario (b): end to end, POST collaborative → `review.requested` at every receiver.
async fn intake(opts: &Opts) -> Result<(), Error> {
    let http = opts
        .http
        .clone()
        .ok_or("the intake scenario needs --http")?;
    let tokens = Arc::new(Tokens::new(&opts.room)?);
    let (warm, total, period) = schedule(opts);

    eprintln!("creating {total} cases");
    let client = http_client().await;
    let cases = create_cases(&client, &http, total).await?;

    let (publisher, w) = join_monitor(opts, &tokens).await?;
    let (stop_tx, stop_rx, countdown, receivers) = audience(opts, &tokens).await?;
    tokio::time::sleep(Duration::from_secs_f64(opts.settle)).await;

    let (_sink, stream) = publisher.split();
    let wanted: Vec<String> = cases.iter().map(|(case, _)| case.clone()).collect();
    let (reached_tx, reached_rx) = oneshot::channel();
    let watcher = tokio::spawn(monitor(
        stream,
        w["seq"].as_u64().unwrap_or(0),
        move |seen| wanted.iter().all(|c| seen.requested.contains_key(c)),
        reached_tx,
        stop_rx.clone(),
    ));
    eprintln!(
        "escalating {total} cases at {}/s ({warm} warm-up) to {} receivers",
        opts.rate, opts.receivers
    );
    let url = format!("{http}/webhook/support/collaborative");
    let appends_before = append_histogram(Some(&http)).await;
    let cpu = CpuMeter::start(opts.pid);
    let start = tokio::time::Instant::now() + Duration::from_millis(50);
    let mut sent = Vec::with_capacity(total);
    let mut posts = Vec::with_capacity(total);
    for (k, (case_id, customer_id)) in cases.iter().enumerate() {
        tokio::time::sleep_until(start + period * k as u32).await;
        let body = json!({"case_id": case_id, "customer_id": customer_id});
        let (client, url) = (client.clone(), url.clone());
        let at = Instant::now();
        sent.push(at);
        posts.push(tokio::spawn(async move {
            let answer = post(&client, &url, "dev-client-key", &body).await;
            (answer.is_ok(), at.elapsed())
        }));
    }
    let mut http_samples = Vec::with_capacity(total);
    let mut http_failures = 0;
    for (k, p) in posts.into_iter().enumerate() {
        let (ok, took) = p.await?;
        if !ok {
            http_failures += 1;
        }
        if k >= warm {
            http_samples.push(took.as_nanos() as u64);
        }
    }
    let last = tokio::time::timeout(DRAIN_TIMEOUT, reached_rx).await;
    drain(&stop_tx, &countdown, last.ok().and_then(Result::ok)).await;
    let used = cpu.stop();
    let appends_after = append_histogram(Some(&http)).await;
    let tallies = finish(receivers, &stop_tx).await?;
    let seen = watcher.await?;
    let index: HashMap<&str, usize> = cases
        .iter()
        .enumerate()
        .map(|(k, (case, _))| (case.as_str(), k))
        .collect();
    let mut samples = Vec::with_capacity(tallies.len() * total);
    let mut published = Vec::with_capacity(tallies.len() * total);
    for t in &tallies {
        for (case, at, lag) in &t.requested {
            if let Some(&k) = index.get(case.as_str())
                && k >= warm
            {
                samples.push((k, at.saturating_duration_since(sent[k]).as_nanos() as u64));
                published.extend(*lag);
            }
        }
    }
    let h = percentiles(http_samples);
    let p = percentiles(published);
    let appends = append_fields(appends_before, appends_after);
    let expected = tallies.len() * (total - warm);
    let mut extra = vec![
        ("published", total.to_string()),
        ("requested_seen", seen.requested.len().to_string()),
        ("http_failures", http_failures.to_string()),
        ("http_p50_ms", format!("{:.3}", h.p50)),
        ("http_p99_ms", format!("{:.3}", h.p99)),
        ("publish_samples", p.n.to_string()),
        ("publish_p50_ms", format!("{:.3}", p.p50)),
        ("publish_p99_ms", format!("{:.3}", p.p99)),
        ("publish_max_ms", format!("{:.3}", p.max)),
    ];
    extra.extend(appends);
    extra.extend(used.fields(tallies.iter().map(|t| t.events).sum()));
    report(opts, &tallies, samples, expected, &extra);
    Ok(())
}

/// A process's resident set size in KiB (VmRSS) and its anonymous part (RssAnon).
fn rss_kib(pid: u32) -> Result<(u64, u64), Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64, Error> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("no {name} in /proc/{pid}/status").into())
    };
    Ok((field("VmRSS:")?, field("RssAnon:")?))
}

/// The room's connection count as casehub reports it on `/ops/rooms`.
async fn room_connections(http: &str, room: &str) -> Option<u64> {
    let client = http_client().await;
    let rooms: Value = client
        .get(format!("{http}/ops/rooms"))
        .header("X-API-Key", "dev-admin-key")
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    rooms["data"]
        .as_array()?
        .iter()
        .find(|r| r["room"] == room)?["connections"]
        .as_u64()
}

/// Scenario: RSS per idle connection.
async fn idle(opts: &Opts) -> Result<(), Error> {
    let pid = opts.pid.ok_or("the idle scenario needs --pid")?;
    let tokens = Arc::new(Tokens::new(&opts.room)?);
    if opts.pending > 0 {
        let http = opts.http.as_deref().ok_or("--pending needs --http")?;
        eprintln!("opening {} pending reviews", opts.pending);
        open_reviews(http, opts.pending).await?;
    }
    // One connection first, so the room (and its actor, with its pending reviews) exists before
    // the "before" figure. It keeps reading, like the others.
    let (first, welcome) = join_monitor(opts, &tokens).await?;
    let welcome_bytes = welcome.to_string().len();
    let (first_stop, first_rx) = watch::channel(Stop::default());
    let first = tokio::spawn(receive(
        first,
        welcome["seq"].as_u64().unwrap_or(0),
        first_rx,
        Countdown::new(1),
    ));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (before, before_anon) = rss_kib(pid)?;
    let own_before = rss_kib(std::process::id())?.0;
    let (stop_tx, stop_rx) = watch::channel(Stop::default());
    let countdown = Countdown::new(opts.connections);
    let distinct = opts.reviewers.unwrap_or(1);
    let receivers = open_receivers(
        opts,
        &tokens,
        opts.connections,
        distinct,
        &stop_rx,
        &countdown,
    )
    .await?;
    let (welcomed, welcomed_anon) = rss_kib(pid)?;
    tokio::time::sleep(Duration::from_secs_f64(opts.settle)).await;
    let (after, after_anon) = rss_kib(pid)?;
    let own_after = rss_kib(std::process::id())?.0;
    let counted = match &opts.http {
        Some(http) => room_connections(http, &opts.room)
            .await
            .map_or("?".into(), |c| c.to_string()),
        None => "-".into(),
    };
    let n = opts.connections as f64;
    let tallies = finish(receivers, &stop_tx).await?;
    first_stop.send_modify(|s| s.force = true);
    let _ = first.await;
    let closed = tallies.iter().filter(|t| t.closed.is_some()).count();
    println!(
        "scenario=idle target={} connections={} reviewers={} rss_before_kib={before} \
         rss_welcomed_kib={welcomed} rss_after_kib={after} per_conn_kib={:.2} \
         per_conn_welcomed_kib={:.2} anon_per_conn_kib={:.2} anon_welcomed_per_conn_kib={:.2} \
         server_counted={counted} closed={closed} client_per_conn_kib={:.2} pending={} \
         first_welcome_bytes={welcome_bytes}",
        opts.label,
        opts.connections,
        distinct.min(opts.connections),
        (after as f64 - before as f64) / n,
        (welcomed as f64 - before as f64) / n,
        (after_anon as f64 - before_anon as f64) / n,
        (welcomed_anon as f64 - before_anon as f64) / n,
        (own_after as f64 - own_before as f64) / n,
        opts.pending,
    );
    Ok(())
}

#[tokio::main]
async fn main() {
    let opts = match parse_opts().await {
        Ok(o) => o,
        Err(e) => {
            eprintln!("rooms-load: {e}");
            std::process::exit(2);
        }
    };
    let nofile = raise_nofile();
    let needed = opts.receivers.max(opts.connections) as u64 + 64;
    if (opts.scenario == "idle" && nofile < needed) || nofile < 1100 {
        eprintln!("rooms-load: warning: open-file limit {nofile} is low for this run");
    }
    let outcome = match opts.scenario.as_str() {
        "claims" => claims(&opts).await,
        "intake" => intake(&opts).await,
        _ => idle(&opts).await,
    };
    if let Err(e) = outcome {
        eprintln!("rooms-load {}: {e}", opts.scenario);
        std::process::exit(1);
    }
}
