//! The delivery benchmark's helpers (`bench/delivery.sh` drives them).
//!
//! `delivery-bench receiver ADDR HOLE_ADDR` runs a webhook receiver that answers `200` at once
//! and, per path, counts deliveries and measures event-to-delivery latency (arrival time, to the
//! microsecond, minus the envelope's `timestamp`, which has millisecond resolution: every sample
//! carries the same up-to-1 ms truncation, so two runs compare fairly), plus a black hole on
//! `HOLE_ADDR` that accepts connections and never answers. `GET /stats/{path}` answers `{count, first_ms, last_ms, per_second, p50_ms,
//! p99_ms, max_ms}`, `POST /reset` forgets everything, `GET /last/{path}` answers the last
//! request's headers and body (so wrk can replay the same signed payload), `GET /settled/{path}`
//! answers the count once deliveries there have stopped for 2 s.
//!
//! `delivery-bench drive HUB_URL RATE SECONDS` posts intakes at `RATE` per second for `SECONDS`,
//! each followed by the self-service offer for the new case, so every case records two events
//! (`case.created`, then `case.updated`). It prints how many cases were made.
//!
//! `delivery-bench replay LAST_URL TARGET_URL CONNS SECONDS` fetches a request the receiver kept
//! (`/last/{path}`) and POSTs it, headers and body as they are, to `TARGET_URL` from `CONNS`
//! concurrent loops on one reqwest client configured as casehub's sender (no redirects, a
//! timeout, a pool per host): what the HTTP client casehub sends with can do with no queue,
//! store or signing behind it. It prints `per_second=N`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};

/// What arrived on one path.
#[derive(Default)]
struct PathStats {
    first_ms: i64,
    last_ms: i64,
    /// Microseconds.
    latencies: Vec<i64>,
    last: Option<(HeaderMap, Bytes)>,
}

type Shared = Arc<std::sync::Mutex<HashMap<String, PathStats>>>;

fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

async fn receive(
    State(stats): State<Shared>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let arrived = now_us();
    let sent = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
        let ts = v["timestamp"].as_str()?.to_string();
        chrono::DateTime::parse_from_rfc3339(&ts)
            .ok()
            .map(|t| t.timestamp_micros())
    });
    let mut all = stats.lock().unwrap_or_else(|e| e.into_inner());
    let s = all.entry(path).or_default();
    if s.latencies.is_empty() {
        s.first_ms = arrived / 1000;
    }
    s.last_ms = arrived / 1000;
    s.latencies.push(sent.map_or(-1000, |t| arrived - t));
    s.last = Some((headers, body));
    StatusCode::OK
}

/// The `p`th percentile of `sorted` microseconds, in milliseconds.
fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    ms(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Microseconds as milliseconds, to the hundredth.
fn ms(us: i64) -> f64 {
    (us as f64 / 10.0).round() / 100.0
}

async fn stats(State(stats): State<Shared>, Path(path): Path<String>) -> axum::Json<Value> {
    let all = stats.lock().unwrap_or_else(|e| e.into_inner());
    let Some(s) = all.get(&path) else {
        return axum::Json(json!({"count": 0}));
    };
    let mut sorted = s.latencies.clone();
    sorted.sort_unstable();
    let count = sorted.len();
    let span_ms = (s.last_ms - s.first_ms).max(1);
    axum::Json(json!({
        "count": count,
        "first_ms": s.first_ms,
        "last_ms": s.last_ms,
        "per_second": (count.saturating_sub(1)) as f64 * 1000.0 / span_ms as f64,
        "p50_ms": percentile(&sorted, 50.0),
        "p90_ms": percentile(&sorted, 90.0),
        "p99_ms": percentile(&sorted, 99.0),
        "max_ms": ms(sorted.last().copied().unwrap_or(0)),
    }))
}

/// Answers once `path` has deliveries and none arrived for 2 s (at most 120 s), with the count:
/// the drain is over. One waiting request instead of polling `stats` (which sorts every
/// latency), so the harness takes no CPU from casehub while it drains.
async fn settled(State(stats): State<Shared>, Path(path): Path<String>) -> String {
    const QUIET_MS: i64 = 2000;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (count, last_ms) = {
            let all = stats.lock().unwrap_or_else(|e| e.into_inner());
            all.get(&path)
                .map_or((0, 0), |s| (s.latencies.len(), s.last_ms))
        };
        // Before the first delivery, look again shortly; after it, sleep until the quiet
        // period would end (a later arrival moves that, so look again then).
        let wait_ms = if count == 0 {
            100
        } else {
            QUIET_MS - (now_us() / 1000 - last_ms)
        };
        if (count > 0 && wait_ms <= 0) || tokio::time::Instant::now() >= deadline {
            return count.to_string();
        }
        let wake = tokio::time::Instant::now() + Duration::from_millis(wait_ms as u64);
        tokio::time::sleep_until(wake.min(deadline)).await;
    }
}

async fn last(State(stats): State<Shared>, Path(path): Path<String>) -> axum::Json<Value> {
    let all = stats.lock().unwrap_or_else(|e| e.into_inner());
    let Some((headers, body)) = all.get(&path).and_then(|s| s.last.clone()) else {
        return axum::Json(Value::Null);
    };
    let headers: HashMap<String, String> = headers
        .iter()
        .filter(|(k, _)| {
            let k = k.as_str();
            k.starts_with("webhook-")
                || k.starts_with("x-webhook-")
                || k == "content-type"
                || k == "user-agent"
        })
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    axum::Json(json!({"headers": headers, "body": String::from_utf8_lossy(&body)}))
}

async fn reset(State(stats): State<Shared>) -> StatusCode {
    stats.lock().unwrap_or_else(|e| e.into_inner()).clear();
    StatusCode::NO_CONTENT
}

async fn receiver(addr: &str, hole: &str) {
    let hole = tokio::net::TcpListener::bind(hole)
        .await
        .expect("bind black hole");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hole.accept().await {
            held.push(socket);
        }
    });
    let app = Router::new()
        .route("/stats/{path}", get(stats))
        .route("/last/{path}", get(last))
        .route("/settled/{path}", get(settled))
        .route("/reset", post(reset))
        .route("/{path}", post(receive))
        .with_state(Shared::default());
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .expect("bind receiver");
    axum::serve(listener, app).await.expect("serve");
}

const DESCRIPTION: &str = "Our SSL certificate expired yesterday and browsers now show a \
                           certificate error on our custom domain.";

async fn replay(last_url: &str, target: &str, conns: usize, seconds: u64) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .retry(reqwest::retry::never().max_retries_per_request(0))
        .pool_max_idle_per_host(conns.max(16))
        .build()
        .expect("reqwest client");
    let last: Value = client
        .get(last_url)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("GET the kept request")
        .json()
        .await
        .expect("the kept request as JSON");
    let mut headers = reqwest::header::HeaderMap::new();
    for (name, value) in last["headers"].as_object().expect("kept headers") {
        let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).expect("header name");
        let value = value
            .as_str()
            .unwrap_or_default()
            .parse()
            .expect("header value");
        headers.insert(name, value);
    }
    let body = Bytes::from(last["body"].as_str().unwrap_or_default().to_string());
    let sent = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let loops: Vec<_> = (0..conns)
        .map(|_| {
            let (client, headers, body) = (client.clone(), headers.clone(), body.clone());
            let (sent, failed, target) = (sent.clone(), failed.clone(), target.to_string());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    let answered = client
                        .post(&target)
                        .headers(headers.clone())
                        .body(body.clone())
                        .send()
                        .await;
                    match answered {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            sent.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for task in loops {
        let _ = task.await;
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "per_second={:.0} sent={} failed={}",
        sent.load(Ordering::Relaxed) as f64 / secs,
        sent.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
}

async fn drive(hub: &str, rate: u64, seconds: u64) {
    let client = reqwest::Client::new();
    let made = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(tokio::sync::Semaphore::new(512));
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..rate * seconds {
        tick.tick().await;
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let (client, hub) = (client.clone(), hub.to_string());
        let (made, failed) = (made.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            match one_case(&client, &hub).await {
                Some(()) => made.fetch_add(1, Ordering::Relaxed),
                None => failed.fetch_add(1, Ordering::Relaxed),
            };
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    println!(
        "cases={} failed={} seconds={:.1}",
        made.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}

/// Intake, then the self-service offer: two events.
async fn one_case(client: &reqwest::Client, hub: &str) -> Option<()> {
    let created: Value = client
        .post(format!("{hub}/webhook/support/intake"))
        .header("X-API-Key", "dev-client-key")
        .json(
            &json!({"customer_email": "john.doe@example.com", "customer_name": "John Doe",
                      "description": DESCRIPTION, "severity": "medium",
                      "product": "web-portal", "environment": "production"}),
        )
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let offered = client
        .post(format!("{hub}/webhook/support/self-service"))
        .header("X-API-Key", "dev-client-key")
        .json(&json!({"case_id": created["case_id"], "customer_id": created["customer_id"]}))
        .send()
        .await
        .ok()?;
    offered.status().is_success().then_some(())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).cloned().unwrap_or_default();
    match arg(1).as_str() {
        "receiver" => receiver(&arg(2), &arg(3)).await,
        "drive" => {
            let rate = arg(3).parse().expect("RATE");
            let seconds = arg(4).parse().expect("SECONDS");
            drive(&arg(2), rate, seconds).await
        }
        "replay" => {
            let conns = arg(4).parse().expect("CONNS");
            let seconds = arg(5).parse().expect("SECONDS");
            replay(&arg(2), &arg(3), conns, seconds).await
        }
        _ => {
            eprintln!(
                "usage: delivery-bench receiver ADDR HOLE_ADDR | drive HUB_URL RATE SECONDS \
                 | replay LAST_URL TARGET_URL CONNS SECONDS"
            );
            std::process::exit(2);
        }
    }
}
