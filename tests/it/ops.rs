//! Operations (CONTRACT §7): /metrics, /ops/actors, /ops/stream, health, shutdown with streams.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use reqwest::Method;
use serde_json::json;

use crate::harness::*;

const SSL: &str = "Our SSL certificate expired and browsers show a certificate error.";

/// Parses Prometheus text exposition strictly: every sample line must be
/// `name{label="value",…} number`; returns `name{labels}` → value.
fn parse_prometheus(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            assert!(
                line.is_empty()
                    || line.starts_with("# HELP ")
                    || line.starts_with("# TYPE ")
                    || line == "# EOF",
                "bad comment line: {line}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("sample has a value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name in {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unterminated labels in {line}");
        }
        out.insert(series.to_string(), value);
    }
    out
}

async fn scrape(app: &TestApp) -> HashMap<String, f64> {
    let r = app
        .client
        .get(format!("{}/metrics", app.base))
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    parse_prometheus(&r.text().await.unwrap())
}

fn get(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_parse_and_move_with_traffic() {
    let clock = casehub_actors::clock::ManualClock::new(chrono::Utc::now());
    let app = spawn_app_with_clock(
        |s| {
            s.testing.fault_injection = true;
            s.cases.passivation_sweep = Duration::from_millis(10);
        },
        clock.clone(),
    )
    .await;
    app.get_anon("/metrics")
        .await
        .assert_error(401, "UNAUTHORIZED");
    app.get("/metrics").await.assert_error(403, "FORBIDDEN");
    let before = scrape(&app).await;

    let created = app.intake(SSL).await;
    let id = created["case_id"].as_str().unwrap();
    app.post(
        "/webhook/support/self-service",
        json!({"case_id": id, "customer_id": created["customer_id"]}),
    )
    .await
    .ok();
    app.send(
        Method::POST,
        &format!("/ops/faults/cases/{id}/panic"),
        Some(ADMIN_KEY),
        None,
    )
    .await
    .assert_error(500, "INTERNAL_ERROR");
    let after = eventually(Duration::from_secs(5), || async {
        let m = scrape(&app).await;
        (get(&m, "casehub_actor_restarts_total{kind=\"case_actor\"}") >= 1.0).then_some(m)
    })
    .await;
    let delta = |series: &str| get(&after, series) - get(&before, series);
    assert_eq!(delta("casehub_events_total{event=\"case.created\"}"), 1.0);
    assert_eq!(
        delta("casehub_case_transitions_total{to=\"in_progress\"}"),
        1.0
    );
    assert_eq!(delta("casehub_case_transitions_total{to=\"triaged\"}"), 1.0);
    assert_eq!(
        delta("casehub_actor_failures_total{kind=\"case_actor\"}"),
        1.0
    );
    assert!(delta("casehub_actor_messages_total{kind=\"case_actor\"}") >= 2.0);
    assert!(
        delta(
            "casehub_http_requests_total{route=\"/webhook/support/intake\",method=\"POST\",status=\"200\"}"
        ) == 1.0
    );
    assert!(
        get(
            &after,
            "casehub_http_request_duration_seconds_count{route=\"/webhook/support/intake\",method=\"POST\"}"
        ) >= 1.0
    );
    assert!(get(&after, "casehub_store_op_seconds_count{op=\"commit\"}") >= 2.0);
    assert_eq!(
        get(&after, "casehub_actors_live{kind=\"case_supervisor\"}"),
        16.0
    );

    clock.advance(Duration::from_secs(600));
    eventually(Duration::from_secs(5), || async {
        let m = scrape(&app).await;
        (get(&m, "casehub_actor_passivations_total{kind=\"case_actor\"}") >= 1.0
            && get(&m, "casehub_actors_live{kind=\"case_actor\"}") == 0.0)
            .then_some(())
    })
    .await;
    app.stop().await;
}

/// Reads SSE text from `resp` until `done` accepts the accumulated text, or panics at `deadline`.
async fn read_sse_until(
    resp: reqwest::Response,
    deadline: Duration,
    done: impl Fn(&str) -> bool,
) -> String {
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    let result = tokio::time::timeout(deadline, async {
        while let Some(chunk) = body.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
            if done(&seen) {
                return;
            }
        }
    })
    .await;
    assert!(
        result.is_ok(),
        "stream did not show what was expected; saw:\n{seen}"
    );
    seen
}

#[tokio::test]
async fn ops_stream_sends_snapshots_and_lifecycle_events() {
    let app = spawn_app_with(|s| s.testing.fault_injection = true).await;
    let created = app.intake(SSL).await;
    let id = created["case_id"].as_str().unwrap().to_string();
    let denied = app
        .client
        .get(format!("{}/ops/stream", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status().as_u16(), 401);
    let resp = app
        .client
        .get(format!("{}/ops/stream", app.base))
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let app_ref = &app;
    let inject = async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        app_ref
            .send(
                Method::POST,
                &format!("/ops/faults/cases/{id}/panic"),
                Some(ADMIN_KEY),
                None,
            )
            .await;
    };
    let (seen, _) = tokio::join!(
        read_sse_until(resp, Duration::from_secs(10), |s| {
            s.contains("event: snapshot") && s.contains("\"event\":\"restart\"")
        }),
        inject
    );
    let snapshot = seen
        .split("\n\n")
        .find(|block| block.contains("event: snapshot"))
        .unwrap();
    let data = snapshot
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap();
    let parsed: serde_json::Value = serde_json::from_str(data).unwrap();
    assert!(parsed["kinds"]["case_actor"]["live"].is_number());
    assert!(seen.contains("event: lifecycle"));
    app.stop().await;
}

#[tokio::test]
async fn health_get_and_head() {
    let app = spawn_app().await;
    let r = app.get_anon("/api/health").await;
    assert_eq!(r.status.as_u16(), 200);
    let b = &r.body;
    assert_eq!(b["status"], json!("healthy"));
    assert!(b["version"].is_string());
    assert!(b["uptime"].as_f64().unwrap() >= 0.0);
    assert_eq!(b["checks"]["store"]["status"], json!("healthy"));
    assert!(b["checks"]["store"]["latencyMs"].is_number());
    assert!(b["checks"]["redis"]["status"].is_string());
    assert!(b["checks"]["actors"]["status"].is_string());
    assert_eq!(b["checks"]["delivery"]["backlog"], json!(0));
    assert!(b["timestamp"].as_str().unwrap().ends_with('Z'));
    let head = app
        .client
        .head(format!("{}/api/health", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert!(head.bytes().await.unwrap().is_empty());
    app.stop().await;
}

#[tokio::test]
async fn sigterm_ends_open_streams_and_exits_zero() {
    let store = TestStore::new();
    let server = ServerProcess::start(&store).await;
    let client = server.client();
    let resp = client
        .client
        .get(format!("{}/ops/stream", client.base))
        .header("X-API-Key", ADMIN_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let reader = tokio::spawn(async move {
        let mut body = resp.bytes_stream();
        while let Some(Ok(_)) = body.next().await {}
    });
    assert_eq!(server.terminate(), Some(0));
    tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the stream ended with the server")
        .unwrap();
}

async fn alerts(app: &TestApp) -> Vec<serde_json::Value> {
    app.events()
        .await
        .into_iter()
        .filter(|e| e["event"] == json!("alert.triggered"))
        .collect()
}

async fn alert_monitor_handled(app: &TestApp) -> u64 {
    app.admin_get("/ops/actors").await.body["kinds"]["alert_monitor"]["messages"]
        .as_u64()
        .unwrap_or(0)
}

#[tokio::test]
async fn five_intakes_of_one_subcategory_raise_exactly_one_alert() {
    let app = spawn_app().await;
    let mut body = intake_body(SSL);
    body.as_object_mut().unwrap().remove("product");
    for n in 1..=5 {
        app.post("/webhook/support/intake", body.clone()).await.ok();
        if n < 5 {
            eventually(Duration::from_secs(5), || async {
                (alert_monitor_handled(&app).await == n).then_some(())
            })
            .await;
            assert!(alerts(&app).await.is_empty(), "alert after only {n} cases");
        }
    }
    let raised = eventually(Duration::from_secs(5), || async {
        let a = alerts(&app).await;
        (!a.is_empty()).then_some(a)
    })
    .await;
    assert_eq!(raised.len(), 1);
    let data = &raised[0]["data"];
    assert!(data["alert_id"].as_str().unwrap().starts_with("alt_"));
    assert_eq!(data["severity"], json!("warning"));
    assert!(
        data["description"]
            .as_str()
            .unwrap()
            .contains("5 cases of configuration/ssl-certificates")
    );
    // A sixth inside the cool-down raises nothing.
    app.post("/webhook/support/intake", body).await.ok();
    eventually(Duration::from_secs(5), || async {
        (alert_monitor_handled(&app).await == 6).then_some(())
    })
    .await;
    assert_eq!(alerts(&app).await.len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_and_keeps_them() {
    let store = TestStore::new();
    let server = ServerProcess::start(&store).await;
    let base = server.base.clone();
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let url = format!("{base}/webhook/support/intake");
        tasks.push(tokio::spawn(async move {
            let resp = reqwest::Client::new()
                .post(url)
                .header("X-API-Key", CLIENT_KEY)
                .json(&intake_body(SSL))
                .send()
                .await;
            match resp {
                // Accepted before the stop: it must complete with a full answer.
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body: serde_json::Value = r.json().await.expect("complete body");
                    Some((status, body))
                }
                // Not accepted: the listener was already closed.
                Err(e) => {
                    assert!(e.is_connect() || e.is_request(), "unexpected error: {e}");
                    None
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(server.terminate(), Some(0));
    let mut acked = Vec::new();
    for t in tasks {
        if let Some((status, body)) = t.await.unwrap() {
            assert!(status == 200 || status == 503, "{status}: {body}");
            if status == 200 {
                acked.push(body["case_id"].as_str().unwrap().to_string());
            }
        }
    }
    let server = ServerProcess::start(&store).await;
    let app = server.client();
    for id in &acked {
        assert_eq!(app.status(id).await["status"], json!("triaged"));
    }
}
