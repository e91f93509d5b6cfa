//! Crash safety under load (kill -9 at arbitrary moments) and Redis outages: nothing that was
//! acknowledged is lost, and casehub recovers by itself.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::harness::*;

const SSL: &str = "Our SSL certificate expired and browsers show a certificate error.";

/// Fires intakes from `workers` concurrent loops until aborted; records acknowledged case ids.
fn load(
    base: &str,
    workers: usize,
    acked: Arc<Mutex<Vec<String>>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..workers)
        .map(|_| {
            let url = format!("{base}/webhook/support/intake");
            let acked = acked.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                loop {
                    let sent = client
                        .post(&url)
                        .header("X-API-Key", CLIENT_KEY)
                        .json(&intake_body(SSL))
                        .send()
                        .await;
                    let Ok(resp) = sent else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    if resp.status().as_u16() != 200 {
                        continue;
                    }
                    if let Ok(body) = resp.json::<Value>().await {
                        acked
                            .lock()
                            .push(body["case_id"].as_str().unwrap().to_string());
                    }
                }
            })
        })
        .collect()
}

async fn assert_all_present(app: &TestApp, acked: &[String]) {
    let created: std::collections::HashSet<String> = app
        .events()
        .await
        .into_iter()
        .filter(|e| e["event"] == json!("case.created"))
        .map(|e| e["data"]["case_id"].as_str().unwrap().to_string())
        .collect();
    for id in acked {
        let case = app.status(id).await;
        assert_eq!(case["status"], json!("triaged"), "case {id}");
        assert!(created.contains(id), "case.created missing for {id}");
    }
}

#[tokio::test]
async fn kill_9_under_load_loses_nothing_acknowledged() {
    let store = TestStore::new();
    let acked = Arc::new(Mutex::new(Vec::new()));
    // Kill at different moments of the load: early, mid and late.
    for pause_ms in [150u64, 420, 290] {
        let server = ServerProcess::start(&store).await;
        let before = acked.lock().len();
        let workers = load(&server.base, 12, acked.clone());
        // The load must be under way (a slow, busy machine starts slower), then the kill lands
        // at a different moment each round.
        eventually(Duration::from_secs(60), || async {
            (acked.lock().len() >= before + 5).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        server.kill9();
        for w in workers {
            w.abort();
        }
    }
    let acked = acked.lock().clone();
    assert!(
        acked.len() > 10,
        "the load made too few cases: {}",
        acked.len()
    );
    let server = ServerProcess::start(&store).await;
    assert_all_present(&server.client(), &acked).await;
}

#[tokio::test]
async fn redis_outage_answers_503_and_recovers_by_itself() {
    let mut store = TestStore::new();
    if store.redis().is_none() {
        // This suite runs on the embedded store; use a Redis one for this test anyway.
        store = TestStore::Redis {
            server: casehub_actors::testing::RedisServer::start(),
            prefix: "outage:".into(),
        };
    }
    let app = spawn_on(&store, |s| s.store.timeout = Duration::from_millis(300)).await;
    let acked = Arc::new(Mutex::new(Vec::new()));
    let workers = load(&app.base, 4, acked.clone());
    eventually(Duration::from_secs(60), || async {
        (acked.lock().len() >= 3).then_some(())
    })
    .await;

    store.redis().unwrap().stop();
    let before_outage = acked.lock().len();
    for _ in 0..5 {
        let started = std::time::Instant::now();
        let r = app.post("/webhook/support/intake", intake_body(SSL)).await;
        r.assert_error(503, "SERVICE_UNAVAILABLE");
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    // A step for a case this node does not host needs its lease first: refused as promptly.
    let started = std::time::Instant::now();
    let r = app
        .post(
            "/webhook/support/self-service",
            json!({"case_id": uuid::Uuid::new_v4(), "customer_id": uuid::Uuid::new_v4()}),
        )
        .await;
    r.assert_error(503, "SERVICE_UNAVAILABLE");
    assert!(started.elapsed() < Duration::from_secs(3));
    let health = app.get_anon("/api/health").await;
    assert_eq!(health.status.as_u16(), 503);
    assert_eq!(health.body["status"], json!("unhealthy"));
    assert_eq!(health.body["checks"]["redis"]["status"], json!("unhealthy"));
    // Acknowledgements stop while Redis is down (one in flight at the stop may still land).
    assert!(acked.lock().len() <= before_outage + 4);

    store.redis().unwrap().restart();
    eventually(Duration::from_secs(10), || async {
        let r = app.post("/webhook/support/intake", intake_body(SSL)).await;
        (r.status.as_u16() == 200).then_some(())
    })
    .await;
    let health = app.get_anon("/api/health").await;
    assert_eq!(health.body["checks"]["redis"]["status"], json!("healthy"));
    assert!(health.body["checks"]["redis"]["latencyMs"].is_number());
    for w in workers {
        w.abort();
    }
    let acked = acked.lock().clone();
    assert_all_present(&app, &acked).await;
    app.stop().await;
}
