//! Outgoing webhooks end to end (CONTRACT §5) against a real local receiver that verifies both
//! signature forms with code written here from the contract, not casehub's signing module.
//! The receiver and the checks are shared with the fix-executor and secret-storage tests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::harness::*;

/// One request the receiver got.
#[derive(Clone, Debug)]
pub(crate) struct Got {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Got {
    pub(crate) fn header(&self, name: &str) -> String {
        self.headers[name].to_str().unwrap().to_string()
    }
    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Per path: what arrived, and how many leading requests to fail with which status.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    got: Arc<Mutex<HashMap<String, Vec<Got>>>>,
    /// Every request's path, in arrival order.
    arrivals: Arc<Mutex<Vec<String>>>,
    fail: Arc<Mutex<HashMap<String, (u32, u16)>>>,
    slow: Arc<Mutex<HashMap<String, Duration>>>,
}

impl Receiver {
    pub(crate) fn got(&self, path: &str) -> Vec<Got> {
        self.got.lock().get(path).cloned().unwrap_or_default()
    }
    /// The paths requested, in arrival order.
    pub(crate) fn arrivals(&self) -> Vec<String> {
        self.arrivals.lock().clone()
    }
    pub(crate) fn fail_next(&self, path: &str, times: u32, status: u16) {
        self.fail.lock().insert(path.to_string(), (times, status));
    }
    /// Answers on `path` only after `delay`.
    pub(crate) fn answer_after(&self, path: &str, delay: Duration) {
        self.slow.lock().insert(path.to_string(), delay);
    }
}

async fn receive(
    State(r): State<Receiver>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, [(&'static str, &'static str); 1]) {
    let delay = r.slow.lock().get(&path).copied();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    {
        let mut got = r.got.lock();
        got.entry(path.clone())
            .or_default()
            .push(Got { headers, body });
        r.arrivals.lock().push(path.clone());
    }
    let mut fail = r.fail.lock();
    match fail.get_mut(&path) {
        Some((n, status)) if *n > 0 => {
            *n -= 1;
            // Failures ask for a second's pause; policies clamp it to their own bounds.
            (
                StatusCode::from_u16(*status).unwrap(),
                [("retry-after", "1")],
            )
        }
        _ => (StatusCode::OK, [("x-receiver", "ok")]),
    }
}

pub(crate) async fn start_receiver() -> (String, Receiver) {
    let receiver = Receiver::default();
    let app = Router::new()
        .route("/{path}", post(receive))
        .with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, receiver)
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Both signature forms of CONTRACT §5, checked from their definitions.
pub(crate) fn assert_signed(got: &Got, secret: &str) {
    assert_eq!(
        got.header("x-webhook-signature"),
        hex::encode(mac(secret.as_bytes(), &got.body))
    );
    assert_standard_signed(got, secret);
}

/// One of the Standard Webhooks signatures is by `secret` (a rotated-out secret signs only
/// there, next to the current one), and the event header names the event.
pub(crate) fn assert_standard_signed(got: &Got, secret: &str) {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let signed = [
        got.header("webhook-id").as_bytes(),
        b".",
        got.header("webhook-timestamp").as_bytes(),
        b".",
        &got.body,
    ]
    .concat();
    let expected = format!("v1,{}", STANDARD.encode(mac(&key, &signed)));
    assert!(
        got.header("webhook-signature")
            .split(' ')
            .any(|s| s == expected),
        "no matching webhook-signature"
    );
    assert_eq!(
        got.header("x-webhook-event"),
        got.json()["event"].as_str().unwrap()
    );
}

pub(crate) async fn endpoint(
    app: &TestApp,
    url: String,
    events: Value,
    extra: Value,
) -> (String, String) {
    let mut body = json!({"url": url, "events": events});
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    let r = app
        .send(
            Method::POST,
            "/v1/webhooks/endpoints",
            Some(ADMIN_KEY),
            Some(body),
        )
        .await;
    assert_eq!(r.status.as_u16(), 201, "{}", r.body);
    (
        r.body["data"]["id"].as_str().unwrap().to_string(),
        r.body["data"]["secret"].as_str().unwrap().to_string(),
    )
}

/// The first page of endpoint `id`'s delivery log, newest first.
async fn delivery_log(app: &TestApp, id: &str) -> Value {
    app.send(
        Method::GET,
        &format!("/v1/webhooks/endpoints/{id}/deliveries"),
        Some(ADMIN_KEY),
        None,
    )
    .await
    .body
}

/// Waits until the newest delivery of endpoint `id` is in `state`; returns the log page.
async fn log_when(app: &TestApp, id: &str, state: &str) -> Value {
    eventually(Duration::from_secs(10), || async {
        let log = delivery_log(app, id).await;
        (log["data"][0]["state"] == json!(state)).then_some(log)
    })
    .await
}

/// Waits until endpoint `id` is disabled; returns it.
async fn disabled_endpoint(app: &TestApp, id: &str) -> Value {
    eventually(Duration::from_secs(10), || async {
        let r = app
            .send(
                Method::GET,
                &format!("/v1/webhooks/endpoints/{id}"),
                Some(ADMIN_KEY),
                None,
            )
            .await;
        (r.body["data"]["status"] == json!("disabled")).then_some(r.body)
    })
    .await
}

/// Lets the server deliver to this machine and look for due jobs every 20 ms.
pub(crate) fn deliver_locally(s: &mut casehub::Settings) {
    s.delivery.allow_private_targets = true;
    s.delivery.poll_interval = Duration::from_millis(20);
}

/// [`deliver_locally`], with three retries 50 ms apart.
fn retrying_fast(s: &mut casehub::Settings) {
    deliver_locally(s);
    s.delivery.retry_schedule = vec![Duration::from_millis(50); 3];
}

/// The `webhook-id`s the receiver got on `path`, in arrival order.
pub(crate) fn webhook_ids(rx: &Receiver, path: &str) -> Vec<String> {
    rx.got(path)
        .iter()
        .map(|g| g.header("webhook-id"))
        .collect()
}

/// Sets endpoint `id`'s status through the API.
pub(crate) async fn set_status(app: &TestApp, id: &str, status: &str) {
    let r = app
        .send(
            Method::PATCH,
            &format!("/v1/webhooks/endpoints/{id}"),
            Some(ADMIN_KEY),
            Some(json!({"status": status})),
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
}

pub(crate) fn events_of(got: &[Got]) -> Vec<String> {
    got.iter()
        .map(|g| g.json()["event"].as_str().unwrap().to_string())
        .collect()
}

/// [`events_of`] sorted: what a parallel endpoint received, which it may receive in any order
/// (CONTRACT §5 "`parallel` does not order"; the FIFO tests check order).
pub(crate) fn sorted_events_of(got: &[Got]) -> Vec<String> {
    let mut events = events_of(got);
    events.sort();
    events
}

/// Opens `cases` cases, one `case.created` each.
pub(crate) async fn intake_cases(app: &TestApp, cases: usize) {
    for i in 0..cases {
        app.intake(&format!(
            "Ticket {i}: the export button does nothing when I click it."
        ))
        .await;
    }
}

/// Seconds between the first and last `webhook-timestamp` the receiver got on `path`, and the
/// timestamps.
pub(crate) fn timestamp_spread(rx: &Receiver, path: &str) -> (i64, Vec<i64>) {
    let stamps: Vec<i64> = rx
        .got(path)
        .iter()
        .map(|g| g.header("webhook-timestamp").parse().unwrap())
        .collect();
    let spread = stamps.iter().max().unwrap() - stamps.iter().min().unwrap();
    (spread, stamps)
}

/// Waits until `check` holds, failing with `what` after 10 s.
pub(crate) async fn settle(what: &str, check: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(
            std::time::Instant::now() < deadline,
            "not within 10 s: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn events_reach_exactly_their_subscribers_signed_and_paused_ones_after_resume() {
    let (base, rx) = start_receiver().await;
    let app = spawn_app_with(deliver_locally).await;
    let (_, secret_a) = endpoint(&app, format!("{base}/a"), json!(["case.*"]), json!({})).await;
    let (_, secret_b) = endpoint(
        &app,
        format!("{base}/b"),
        json!(["review.completed"]),
        json!({}),
    )
    .await;
    let (paused, secret_c) = endpoint(
        &app,
        format!("{base}/c"),
        json!(["*"]),
        json!({"status": "paused"}),
    )
    .await;
    endpoint(
        &app,
        format!("{base}/d"),
        json!(["feedback.received"]),
        json!({}),
    )
    .await;

    let created = app
        .intake(
            "It would be great if the dashboard had a dark mode option; please add this feature.",
        )
        .await;
    let review = app
        .post(
            "/webhook/support/collaborative",
            json!({"case_id": created["case_id"], "customer_id": created["customer_id"]}),
        )
        .await
        .ok();
    app.get(&format!(
        "/webhook/support/review/{}/approve?reviewer=jane@company.com",
        review["review_id"].as_str().unwrap()
    ))
    .await
    .ok();

    settle("a gets every case.* event", || rx.got("a").len() == 4).await;
    settle("b gets review.completed", || rx.got("b").len() == 1).await;
    assert_eq!(
        sorted_events_of(&rx.got("a")),
        [
            "case.created",
            "case.escalated",
            "case.resolved",
            "case.updated"
        ]
    );
    assert_eq!(events_of(&rx.got("b")), ["review.completed"]);
    for g in rx.got("a") {
        assert_signed(&g, &secret_a);
        assert_eq!(g.json()["data"]["case_id"], created["case_id"]);
        assert!(g.header("user-agent").starts_with("casehub/"));
    }
    assert_signed(&rx.got("b")[0], &secret_b);
    assert!(rx.got("c").is_empty(), "a paused endpoint received");
    assert!(rx.got("d").is_empty(), "an unsubscribed endpoint received");

    // Resumed, the paused endpoint gets its whole queue.
    set_status(&app, &paused, "active").await;
    settle("c gets its queue", || rx.got("c").len() == 6).await;
    for g in rx.got("c") {
        assert_signed(&g, &secret_c);
    }
    assert!(rx.got("d").is_empty());
    app.stop().await;
}

/// An app sending to one endpoint at a time, and its endpoint at `path` (answering after
/// `delay`) draining a backlog of `cases`: 3 have arrived. Answers the endpoint's id and secret.
async fn draining(
    path: &str,
    delay: Duration,
    cases: usize,
) -> (TestApp, Receiver, String, String) {
    let (base, rx) = start_receiver().await;
    let app = spawn_app_with(|s| {
        deliver_locally(s);
        s.delivery.per_endpoint_concurrency = 1;
    })
    .await;
    rx.answer_after(path, delay);
    let (id, secret) = endpoint(
        &app,
        format!("{base}/{path}"),
        json!(["case.created"]),
        json!({"status": "paused"}),
    )
    .await;
    intake_cases(&app, cases).await;
    set_status(&app, &id, "active").await;
    settle("the drain starts", || rx.got(path).len() >= 3).await;
    (app, rx, id, secret)
}

/// An endpoint paused while its backlog drains stops at once (the dispatcher reads due jobs
/// ahead of their turn; none of those may go while it is paused), and once resumed it gets the
/// rest, every message exactly once.
#[tokio::test]
async fn an_endpoint_paused_mid_backlog_stops_at_once_and_resumes_with_the_rest_once_each() {
    let cases = 40;
    let (app, rx, id, _) = draining("drain", Duration::from_millis(40), cases).await;
    set_status(&app, &id, "paused").await;
    // What was in flight when the pause landed may still arrive; then nothing.
    let at_pause = rx.got("drain").len();
    tokio::time::sleep(Duration::from_millis(400)).await;
    let paused = rx.got("drain").len();
    assert!(
        paused <= at_pause + 2,
        "{} deliveries arrived while paused",
        paused - at_pause
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        rx.got("drain").len(),
        paused,
        "deliveries went on while paused"
    );
    assert!(paused < cases, "the backlog was gone before the pause");

    set_status(&app, &id, "active").await;
    settle("the rest arrives", || rx.got("drain").len() >= cases).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let ids = webhook_ids(&rx, "drain");
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), cases, "some message arrived twice");
    assert_eq!(unique.len(), cases);
    app.stop().await;
}

#[tokio::test]
async fn a_backlogged_endpoint_takes_turns_for_workers_with_the_others() {
    // One worker: an endpoint draining a backlog sends a run of jobs per turn, then the worker
    // goes back to the factory, so another endpoint's job waits at most one run.
    let (base, rx) = start_receiver().await;
    let app = spawn_app_with(|s| {
        deliver_locally(s);
        s.delivery.workers = 1;
    })
    .await;
    rx.answer_after("busy", Duration::from_millis(5));
    let paused = json!({"status": "paused"});
    let (busy, _) = endpoint(
        &app,
        format!("{base}/busy"),
        json!(["case.created"]),
        paused.clone(),
    )
    .await;
    let (other, _) = endpoint(
        &app,
        format!("{base}/other"),
        json!(["case.created"]),
        paused,
    )
    .await;
    let cases = 100;
    intake_cases(&app, cases).await;
    set_status(&app, &busy, "active").await;
    settle("the backlog starts", || !rx.got("busy").is_empty()).await;
    set_status(&app, &other, "active").await;
    let at_resume = rx.got("busy").len();
    settle("the other endpoint gets its turn", || {
        !rx.got("other").is_empty()
    })
    .await;
    let before_turn = rx
        .arrivals()
        .iter()
        .take_while(|path| *path != "other")
        .count();
    assert!(
        before_turn < at_resume + 40,
        "{} deliveries to the busy endpoint went before the other's first ({at_resume} at its resume)",
        before_turn
    );
    assert!(
        before_turn < cases,
        "the backlog was gone before the other's turn"
    );
    settle("both drain", || {
        rx.got("busy").len() >= cases && rx.got("other").len() >= cases
    })
    .await;
    app.stop().await;
}

/// Failures in the middle of a drain end the runs that met them; the failed jobs are retried
/// and every message arrives acknowledged exactly once, nothing twice.
#[tokio::test]
async fn failures_mid_drain_are_retried_and_nothing_goes_twice() {
    let (base, rx) = start_receiver().await;
    let app = spawn_app_with(retrying_fast).await;
    let (id, secret) = endpoint(
        &app,
        format!("{base}/flaky"),
        json!(["case.created"]),
        json!({"status": "paused"}),
    )
    .await;
    let cases = 100;
    let failures = 4;
    intake_cases(&app, cases).await;
    set_status(&app, &id, "active").await;
    settle("the drain starts", || rx.got("flaky").len() >= 20).await;
    rx.fail_next("flaky", failures, 503);
    settle("every message and the retries arrive", || {
        rx.got("flaky").len() >= cases + failures as usize
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = rx.got("flaky");
    assert_eq!(
        got.len(),
        cases + failures as usize,
        "a delivery went twice"
    );
    let unique: std::collections::HashSet<String> = webhook_ids(&rx, "flaky").into_iter().collect();
    assert_eq!(unique.len(), cases);
    for delivery in &got {
        assert_signed(delivery, &secret);
    }
    let health = app.send(Method::GET, "/api/health", None, None).await;
    assert_eq!(
        health.body["checks"]["delivery"]["backlog"],
        json!(0),
        "{}",
        health.body
    );
    app.stop().await;
}

/// A worker that panics mid-run (a bug in an attempt) holds neither its endpoint's only slot nor
/// the job it was on: the factory replaces the worker, the rest of the backlog goes on, and the
/// job goes again (on a shared store once its claim runs out, as when a node dies mid-attempt:
/// a 1 s timeout makes that 7 s), every message delivered once and logged.
#[tokio::test]
async fn a_worker_panicking_mid_run_frees_its_slot_and_its_job_goes_again() {
    let (base, rx) = start_receiver().await;
    let app = spawn_app_with(|s| {
        deliver_locally(s);
        s.delivery.per_endpoint_concurrency = 1;
        s.delivery.workers = 4;
        s.delivery.timeout_ms = 1000;
    })
    .await;
    let (id, _) = endpoint(
        &app,
        format!("{base}/panics"),
        json!(["case.created"]),
        json!({"status": "paused"}),
    )
    .await;
    let cases = 6;
    intake_cases(&app, cases).await;
    casehub_actors::testing::panic_on_attempt(&id, 3);
    set_status(&app, &id, "active").await;
    let log = eventually(Duration::from_secs(20), || async {
        let jobs = delivery_log(&app, &id).await["data"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        (jobs.len() == cases && jobs.iter().all(|j| j["state"] == json!("delivered")))
            .then_some(jobs)
    })
    .await;
    assert!(
        log.iter()
            .all(|j| j["attempts"].as_array().unwrap().len() == 1),
        "the panicked attempt was not sent, so every job went once: {log:?}"
    );
    let ids = webhook_ids(&rx, "panics");
    let unique: std::collections::HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), cases, "a message arrived twice");
    assert_eq!(unique.len(), cases);
    // The planted panic did happen: the factory replaced one worker.
    let spawned = metric(&app, "casehub_actor_spawns_total{kind=\"delivery_worker\"}").await;
    assert_eq!(spawned, 5.0, "four workers and one replacement");
    app.stop().await;
}

#[tokio::test]
async fn a_secret_rotated_mid_backlog_signs_the_rest() {
    let cases = 40;
    let (app, rx, id, old_secret) = draining("rotating", Duration::from_millis(20), cases).await;
    let new_secret = crate::secrets::rotate(&app, &id).await;
    let at_rotation = rx.got("rotating").len();
    settle("the rest arrives", || rx.got("rotating").len() >= cases).await;
    let got = rx.got("rotating");
    assert!(
        at_rotation + 2 < cases,
        "the backlog was gone before the rotation"
    );
    // What was in flight when the rotation landed may still carry the old secret alone; every
    // later delivery is signed with the new one (and, during the overlap, the old one too).
    for (i, delivery) in got.iter().enumerate() {
        assert_standard_signed(delivery, &old_secret);
        if i >= at_rotation + 2 {
            assert_signed(delivery, &new_secret);
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn retries_follow_the_schedule_log_every_attempt_and_replay_410_disables() {
    let (base, rx) = start_receiver().await;
    let app = spawn_app_with(retrying_fast).await;
    rx.fail_next("flaky", 2, 500);
    rx.fail_next("down", 100, 503);
    rx.fail_next("gone", 100, 410);
    let (flaky, _) = endpoint(
        &app,
        format!("{base}/flaky"),
        json!(["case.created"]),
        json!({}),
    )
    .await;
    let (down, _) = endpoint(
        &app,
        format!("{base}/down"),
        json!(["case.created"]),
        json!({"retry_policy": {"kind": "schedule", "delays": ["30ms"]}}),
    )
    .await;
    let (gone, _) = endpoint(
        &app,
        format!("{base}/gone"),
        json!(["case.created"]),
        json!({}),
    )
    .await;
    let (watcher, _) = endpoint(
        &app,
        format!("{base}/watcher"),
        json!(["endpoint.disabled"]),
        json!({}),
    )
    .await;
    let _ = watcher;
    app.intake("Our SSL certificate expired and browsers show a certificate error.")
        .await;

    settle("flaky delivered on the third attempt", || {
        rx.got("flaky").len() == 3
    })
    .await;
    let ids = webhook_ids(&rx, "flaky");
    assert!(
        ids.iter().all(|id| id == &ids[0]),
        "webhook-id changed across retries"
    );
    let log = log_when(&app, &flaky, "delivered").await;
    let entry = &log["data"][0];
    assert_eq!(entry["msg_id"], json!(ids[0]));
    assert_eq!(entry["attempt"], json!(3));
    let statuses: Vec<Value> = entry["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status_code"].clone())
        .collect();
    assert_eq!(statuses, [json!(500), json!(500), json!(200)]);
    assert!(entry["attempts"][0]["duration_ms"].is_number());

    // Down: one retry (its own policy), then failed, kept, and replayable.
    let failed = log_when(&app, &down, "failed").await;
    assert_eq!(failed["data"][0]["attempt"], json!(2));
    assert_eq!(rx.got("down").len(), 2);
    rx.fail_next("down", 0, 503);
    let msg = failed["data"][0]["msg_id"].as_str().unwrap();
    let replay = app
        .send(
            Method::POST,
            &format!("/v1/webhooks/deliveries/{msg}/retry"),
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(replay.status.as_u16(), 202, "{}", replay.body);
    settle("the replay arrives", || rx.got("down").len() == 3).await;
    let text = app.metrics_text().await;
    for series in [
        "casehub_delivery_attempts_total{outcome=\"delivered\"}",
        "casehub_delivery_attempts_total{outcome=\"rejected\"}",
        "casehub_delivery_attempt_seconds_count",
        "casehub_actors_live{kind=\"delivery_worker\"}",
    ] {
        assert!(text.contains(series), "{series} missing from /metrics");
    }

    // 410 Gone disables at once and tells the others.
    let disabled = disabled_endpoint(&app, &gone).await;
    assert!(
        disabled["data"]["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("410")
    );
    assert_eq!(rx.got("gone").len(), 1);
    settle("endpoint.disabled is delivered", || {
        rx.got("watcher").len() == 1
    })
    .await;
    assert_eq!(
        rx.got("watcher")[0].json()["data"]["endpoint_id"],
        json!(gone)
    );
    app.stop().await;
}

#[tokio::test]
async fn queued_deliveries_survive_kill_9_and_arrive_once_the_receiver_is_up() {
    let (base, rx) = start_receiver().await;
    rx.fail_next("crash", 1_000_000, 503);
    let store = TestStore::new();
    let env = [
        ("CASEHUB__DELIVERY__ALLOW_PRIVATE_TARGETS", "true"),
        ("CASEHUB__DELIVERY__POLL_INTERVAL", "20ms"),
        (
            "CASEHUB__DELIVERY__RETRY_SCHEDULE",
            "[\"100ms\",\"100ms\",\"100ms\",\"100ms\",\"100ms\",\"100ms\",\"100ms\",\"100ms\",\"100ms\",\"100ms\"]",
        ),
    ];
    let server = ServerProcess::start_with(&store, &env).await;
    let app = server.client();
    endpoint(
        &app,
        format!("{base}/crash"),
        json!(["case.created"]),
        json!({}),
    )
    .await;
    let mut created = Vec::new();
    for _ in 0..5 {
        created.push(
            app.intake("Our SSL certificate expired and browsers show a certificate error.")
                .await["case_id"]
                .clone(),
        );
    }
    settle("attempts reach the failing receiver", || {
        rx.got("crash").len() >= 5
    })
    .await;
    server.kill9();
    let before: std::collections::HashSet<String> = webhook_ids(&rx, "crash").into_iter().collect();

    rx.fail_next("crash", 0, 503);
    let _server = ServerProcess::start_with(&store, &env).await;
    settle(
        "every acknowledged event is delivered after the restart",
        || {
            let delivered: std::collections::HashSet<Value> = rx
                .got("crash")
                .iter()
                .skip_while(|g| g.json()["data"]["case_id"].is_null())
                .map(|g| g.json()["data"]["case_id"].clone())
                .collect();
            created.iter().all(|id| delivered.contains(id))
        },
    )
    .await;
    // The same message keeps its webhook-id across the crash.
    let after: std::collections::HashSet<String> = webhook_ids(&rx, "crash").into_iter().collect();
    assert!(before.iter().all(|id| after.contains(id)));
    assert_eq!(after.len(), 5, "one webhook-id per acknowledged event");
}

/// A server with two endpoints for `case.created`: a black hole (created first, so each event
/// reaches it first) whose attempts time out after `timeout_ms`, and `healthy` on a receiver;
/// then `cases` intakes.
async fn beside_a_black_hole(timeout_ms: u64, cases: usize) -> (TestApp, Receiver) {
    let (base, rx) = start_receiver().await;
    let hole_url = black_hole().await;
    let app = spawn_app_with(move |s| {
        deliver_locally(s);
        s.delivery.timeout_ms = timeout_ms;
    })
    .await;
    for url in [hole_url, format!("{base}/healthy")] {
        endpoint(&app, url, json!(["case.created"]), json!({})).await;
    }
    for _ in 0..cases {
        app.intake("Our SSL certificate expired and browsers show a certificate error.")
            .await;
    }
    (app, rx)
}

/// A URL whose server accepts connections and holds them, never answering.
pub(crate) async fn black_hole() -> String {
    let hole = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", hole.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = hole.accept().await {
            held.push(socket);
        }
    });
    url
}

#[tokio::test]
async fn a_black_hole_endpoint_does_not_delay_a_healthy_one() {
    let (app, rx) = beside_a_black_hole(30_000, 20).await;
    // Generous bound: the black hole holds 8 attempts for 30 s each; the healthy one is not held.
    let started = std::time::Instant::now();
    settle("the healthy endpoint gets all 20", || {
        rx.got("healthy").len() == 20
    })
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    // Shutdown abandons the black hole's attempts instead of waiting out their timeout.
    let stopping = std::time::Instant::now();
    app.stop().await;
    assert!(stopping.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_black_hole_backlog_wider_than_the_due_window_does_not_starve_a_healthy_endpoint() {
    // Every event reaches the black hole first: its due jobs, which it never takes, fill the
    // front of the due index (more than one scheduling window's worth).
    let (app, rx) = beside_a_black_hole(60_000, 150).await;
    settle("the healthy endpoint gets all 150", || {
        rx.got("healthy").len() == 150
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn slack_endpoints_get_a_colored_attachment_and_retry_after_is_honoured() {
    let (base, rx) = start_receiver().await;
    let app = spawn_app_with(deliver_locally).await;
    let (_, slack_secret) = endpoint(
        &app,
        format!("{base}/slack"),
        json!(["case.created"]),
        json!({"format": "slack"}),
    )
    .await;
    // The busy receiver asks for 1 s; the policy allows up to 2 s, so 1 s is honoured.
    rx.fail_next("busy", 1, 503);
    endpoint(
        &app,
        format!("{base}/busy"),
        json!(["case.created"]),
        json!({"retry_policy": {"kind": "schedule", "delays": ["50ms", "2s"]}}),
    )
    .await;
    let created = app
        .intake("Our SSL certificate expired and browsers show a certificate error.")
        .await;

    settle("slack message", || rx.got("slack").len() == 1).await;
    let got = &rx.got("slack")[0];
    let msg = got.json();
    assert!(msg["text"].as_str().unwrap().contains("case.created"));
    assert!(
        msg["text"]
            .as_str()
            .unwrap()
            .contains(created["case_id"].as_str().unwrap())
    );
    let attachment = &msg["attachments"][0];
    assert!(attachment["color"].is_string());
    assert_eq!(attachment["title"], json!("case.created"));
    assert!(
        attachment["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["title"] == json!("case_id"))
    );
    // Signed like every delivery (the event header names the event).
    assert_eq!(
        got.header("x-webhook-signature"),
        hex::encode(mac(slack_secret.as_bytes(), &got.body))
    );
    assert_eq!(got.header("x-webhook-event"), "case.created");

    settle("the busy receiver gets its retry", || {
        rx.got("busy").len() == 2
    })
    .await;
    let times: Vec<i64> = rx
        .got("busy")
        .iter()
        .map(|g| g.header("webhook-timestamp").parse().unwrap())
        .collect();
    assert!(times[1] - times[0] >= 1, "Retry-After ignored: {times:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_failing_endpoint_trips_its_circuit_then_one_probe_closes_it() {
    let (base, rx) = start_receiver().await;
    rx.fail_next("trip", 1_000, 500);
    let app = spawn_app_with(|s| {
        deliver_locally(s);
        s.delivery.circuit_threshold = 3;
        s.delivery.circuit_cooldown = Duration::from_millis(1500);
    })
    .await;
    let (id, _) = endpoint(
        &app,
        format!("{base}/trip"),
        json!(["case.created"]),
        json!({"retry_policy": {"kind": "schedule", "delays": ["20ms", "20ms", "20ms", "20ms", "20ms", "20ms"]}}),
    )
    .await;
    app.intake("Our SSL certificate expired and browsers show a certificate error.")
        .await;
    settle("three failures open the circuit", || {
        rx.got("trip").len() >= 3
    })
    .await;
    // Open: the retries that fall due are held back during the cool-down.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        rx.got("trip").len(),
        3,
        "the open circuit let a delivery through"
    );
    rx.fail_next("trip", 0, 500);
    settle("one probe after the cool-down", || {
        rx.got("trip").len() == 4
    })
    .await;
    let log = log_when(&app, &id, "delivered").await;
    assert_eq!(log["data"][0]["attempt"], json!(4));
    app.stop().await;
}

#[tokio::test]
async fn an_endpoint_failing_too_long_is_disabled_and_others_are_told() {
    let (base, rx) = start_receiver().await;
    rx.fail_next("dead", 1_000, 500);
    let app = spawn_app_with(|s| {
        deliver_locally(s);
        s.delivery.disable_after = Duration::from_millis(300);
        s.delivery.circuit_threshold = 1_000;
    })
    .await;
    let (dead, _) = endpoint(
        &app,
        format!("{base}/dead"),
        json!(["case.created"]),
        json!({"retry_policy": {"kind": "exponential", "base": "50ms", "factor": 1.0, "max_age": "1h"}}),
    )
    .await;
    endpoint(
        &app,
        format!("{base}/ops"),
        json!(["endpoint.disabled"]),
        json!({}),
    )
    .await;
    app.intake("Our SSL certificate expired and browsers show a certificate error.")
        .await;
    let disabled = disabled_endpoint(&app, &dead).await;
    assert!(
        disabled["data"]["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("without a success")
    );
    assert!(rx.got("dead").len() >= 2);
    settle("endpoint.disabled reaches the others", || {
        rx.got("ops").len() == 1
    })
    .await;
    assert_eq!(rx.got("ops")[0].json()["data"]["endpoint_id"], json!(dead));
    app.stop().await;
}

#[tokio::test]
async fn an_endpoint_rate_limit_spreads_its_deliveries() {
    let (base, rx) = start_receiver().await;
    let app = spawn_app_with(deliver_locally).await;
    endpoint(
        &app,
        format!("{base}/slow"),
        json!(["case.created"]),
        json!({"rate_limit": 4}),
    )
    .await;
    endpoint(
        &app,
        format!("{base}/fast"),
        json!(["case.created"]),
        json!({}),
    )
    .await;
    for _ in 0..12 {
        app.intake("Our SSL certificate expired and browsers show a certificate error.")
            .await;
    }
    settle("the unthrottled endpoint gets all 12", || {
        rx.got("fast").len() == 12
    })
    .await;
    settle("the throttled one gets all 12 too", || {
        rx.got("slow").len() == 12
    })
    .await;
    // 12 deliveries at 4 per second (burst of 4) cannot all fall in one second.
    let (spread, stamps) = timestamp_spread(&rx, "slow");
    assert!(
        spread >= 1,
        "12 deliveries within one second at 4/s: {stamps:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_fifo_endpoint_receives_strictly_in_order_while_failing() {
    let (base, rx) = start_receiver().await;
    rx.fail_next("fifo", 3, 500);
    let app = spawn_app_with(deliver_locally).await;
    endpoint(
        &app,
        format!("{base}/fifo"),
        json!(["case.created"]),
        json!({"ordering": "fifo",
               "retry_policy": {"kind": "schedule", "delays": ["30ms", "30ms", "30ms", "30ms"]}}),
    )
    .await;
    for _ in 0..6 {
        app.intake("Our SSL certificate expired and browsers show a certificate error.")
            .await;
    }
    settle("all six delivered", || rx.got("fifo").len() == 6 + 3).await;
    let ids = webhook_ids(&rx, "fifo");
    // Message ids sort by creation: in FIFO order the received sequence never goes back, and a
    // message is only retried, never overtaken, while it fails.
    assert!(
        ids.windows(2).all(|w| w[0] <= w[1]),
        "out of order: {ids:?}"
    );
    let mut distinct = ids.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 6);
    assert_eq!(
        ids.iter().filter(|id| **id == ids[0]).count(),
        4,
        "the first message takes the failures"
    );
    app.stop().await;
}

/// A FIFO endpoint whose first message fails with a backlog longer than one scheduling window
/// behind it: the retried head is due after every message queued behind it, and must still go
/// first (and then the rest, in order).
#[tokio::test]
async fn a_fifo_endpoint_retries_its_head_behind_a_long_backlog() {
    let (base, rx) = start_receiver().await;
    let app = spawn_app_with(deliver_locally).await;
    let (id, _) = endpoint(
        &app,
        format!("{base}/fifo"),
        json!(["case.created"]),
        json!({"ordering": "fifo", "status": "paused",
               "retry_policy": {"kind": "schedule", "delays": ["30ms", "30ms", "30ms"]}}),
    )
    .await;
    let cases = 80;
    for i in 0..cases {
        app.intake(&format!(
            "Ticket {i}: our SSL certificate expired and browsers complain."
        ))
        .await;
    }
    rx.fail_next("fifo", 2, 500);
    set_status(&app, &id, "active").await;
    settle("every message delivered", || {
        rx.got("fifo").len() == cases + 2
    })
    .await;
    let ids = webhook_ids(&rx, "fifo");
    assert!(
        ids.windows(2).all(|w| w[0] <= w[1]),
        "out of order: {ids:?}"
    );
    assert_eq!(ids.iter().filter(|id| **id == ids[0]).count(), 3);
    app.stop().await;
}

/// The value of one `/metrics` series (name and labels as exposed), 0 when it is absent.
async fn metric(app: &TestApp, series: &str) -> f64 {
    let text = app.metrics_text().await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.parse().unwrap())
}

/// How many times the dispatcher has asked the store where the outbox ends.
async fn outbox_end_calls(app: &TestApp) -> f64 {
    metric(app, "casehub_store_op_seconds_count{op=\"outbox_end\"}").await
}

#[tokio::test]
async fn events_from_before_any_endpoint_existed_are_passed_over_not_sent_later() {
    let (base, rx) = start_receiver().await;
    let app = spawn_app_with(deliver_locally).await;
    let early = app
        .intake("Our SSL certificate expired and browsers show a certificate warning.")
        .await;
    // Every dispatch cycle without endpoints asks where the outbox ends, then moves the cursor
    // there. The second call to finish after the intake answered started after its commit, so
    // once a third has finished, the cursor is past the early case's events.
    let answered = outbox_end_calls(&app).await;
    eventually(Duration::from_secs(10), || async {
        (outbox_end_calls(&app).await >= answered + 3.0).then_some(())
    })
    .await;

    endpoint(&app, format!("{base}/late"), json!(["*"]), json!({})).await;
    let late = app
        .intake("The password reset email never arrives in my inbox.")
        .await;
    settle("the late case's events arrive", || {
        !rx.got("late").is_empty()
    })
    .await;
    // Anything still on its way from the early case would arrive with the late one's.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let cases: Vec<Value> = rx
        .got("late")
        .iter()
        .map(|g| g.json()["data"]["case_id"].clone())
        .collect();
    assert!(cases.iter().all(|c| *c == late["case_id"]), "{cases:?}");
    assert_ne!(early["case_id"], late["case_id"]);
    app.stop().await;
}
