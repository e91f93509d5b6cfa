//! Durability and supervision: restarts (clean and kill -9), panics, passivation.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use casehub_actors::clock::ManualClock;

use crate::harness::*;

const SSL: &str = "Our SSL certificate expired and browsers show a certificate error.";

/// Creates cases in several states; returns (id, status, history length).
async fn cases_in_several_states(app: &TestApp) -> Vec<(String, Value, usize)> {
    let triaged = app.intake(SSL).await;
    let in_progress = app.intake(SSL).await;
    app.post(
        "/webhook/support/self-service",
        json!({"case_id": in_progress["case_id"], "customer_id": in_progress["customer_id"]}),
    )
    .await
    .ok();
    let review = app.intake(SSL).await;
    app.post(
        "/webhook/support/collaborative",
        json!({"case_id": review["case_id"], "customer_id": review["customer_id"]}),
    )
    .await
    .ok();
    let mut out = Vec::new();
    for c in [triaged, in_progress, review] {
        let id = c["case_id"].as_str().unwrap().to_string();
        let view = app.status(&id).await;
        out.push((
            id,
            view["status"].clone(),
            view["history"].as_array().unwrap().len(),
        ));
    }
    out
}

#[tokio::test]
async fn cases_survive_a_clean_restart() {
    let store = TestStore::new();
    let app = spawn_on(&store, |_| {}).await;
    let before = cases_in_several_states(&app).await;
    let events_before = app.events().await.len();
    app.stop().await;
    let app = spawn_on(&store, |_| {}).await;
    for (id, status, history) in &before {
        let view = app.status(id).await;
        assert_eq!(&view["status"], status);
        assert_eq!(view["history"].as_array().unwrap().len(), *history);
    }
    assert_eq!(app.events().await.len(), events_before);
    app.stop().await;
}

#[tokio::test]
async fn cases_survive_kill_9() {
    let store = TestStore::new();
    let server = ServerProcess::start(&store).await;
    let before = cases_in_several_states(&server.client()).await;
    let events_before = server.client().events().await.len();
    server.kill9();
    let server = ServerProcess::start(&store).await;
    let app = server.client();
    for (id, status, history) in &before {
        let view = app.status(id).await;
        assert_eq!(&view["status"], status, "case {id}");
        assert_eq!(view["history"].as_array().unwrap().len(), *history);
    }
    assert_eq!(app.events().await.len(), events_before);
    // And it keeps working.
    app.intake(SSL).await;
}

#[tokio::test]
async fn sigterm_exits_cleanly_and_keeps_everything() {
    let store = TestStore::new();
    let server = ServerProcess::start(&store).await;
    let before = cases_in_several_states(&server.client()).await;
    assert_eq!(server.terminate(), Some(0));
    let server = ServerProcess::start(&store).await;
    let app = server.client();
    for (id, status, _) in &before {
        assert_eq!(&app.status(id).await["status"], status);
    }
}

#[tokio::test]
async fn a_panicking_case_actor_restarts_from_its_snapshot() {
    let app = spawn_app_with(|s| s.testing.fault_injection = true).await;
    let victim = app.intake(SSL).await;
    let bystander = app.intake(SSL).await;
    let id = victim["case_id"].as_str().unwrap();
    let r = app
        .send(
            Method::POST,
            &format!("/ops/faults/cases/{id}/panic"),
            Some(ADMIN_KEY),
            None,
        )
        .await;
    r.assert_error(500, "INTERNAL_ERROR");
    let text = r.body.to_string();
    assert!(
        !text.contains("panic") && !text.contains("injected"),
        "leaks: {text}"
    );
    // Restarted, from its snapshot, and usable.
    let stats = eventually(Duration::from_secs(5), || async {
        let s = app.admin_get("/ops/actors").await.body["kinds"]["case_actor"].clone();
        (s["restarts"] == json!(1)).then_some(s)
    })
    .await;
    assert_eq!(stats["failures"], json!(1));
    assert_eq!(app.status(id).await["status"], json!("triaged"));
    app.post(
        "/webhook/support/self-service",
        json!({"case_id": id, "customer_id": victim["customer_id"]}),
    )
    .await
    .ok();
    assert_eq!(
        app.status(bystander["case_id"].as_str().unwrap()).await["status"],
        json!("triaged")
    );
    app.stop().await;
}

#[tokio::test]
async fn fault_hook_is_off_by_default() {
    let app = spawn_app().await;
    let c = app.intake(SSL).await;
    let id = c["case_id"].as_str().unwrap();
    app.send(
        Method::POST,
        &format!("/ops/faults/cases/{id}/panic"),
        Some(ADMIN_KEY),
        None,
    )
    .await
    .assert_error(404, "NOT_FOUND");
    app.stop().await;
}

/// The case actors' counters from `/ops/actors` (live, spawns, passivations, …).
pub(crate) async fn case_actors(app: &TestApp) -> Value {
    let ops = app
        .send(Method::GET, "/ops/actors", Some(ADMIN_KEY), None)
        .await;
    assert_eq!(ops.status.as_u16(), 200, "{}", ops.body);
    ops.body["kinds"]["case_actor"].clone()
}

#[tokio::test]
async fn idle_case_actors_passivate_and_rehydrate() {
    let clock = ManualClock::new(chrono::Utc::now());
    let app = spawn_app_with_clock(
        |s| {
            s.cases.idle_timeout = Duration::from_secs(300);
            s.cases.passivation_sweep = Duration::from_millis(10);
        },
        clock.clone(),
    )
    .await;
    let mut cases = Vec::new();
    for _ in 0..4 {
        cases.push(app.intake(SSL).await);
    }
    // Nothing is idle yet by the injected clock, however long real time passes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(case_actors(&app).await["live"], json!(4));
    assert_eq!(case_actors(&app).await["passivations"], json!(0));
    clock.advance(Duration::from_secs(301));
    let stats = eventually(Duration::from_secs(5), || async {
        let s = case_actors(&app).await;
        (s["live"] == json!(0)).then_some(s)
    })
    .await;
    assert_eq!(stats["passivations"], json!(4));
    // The next command rehydrates each case from its snapshot.
    for case in &cases {
        let id = case["case_id"].as_str().unwrap();
        assert_eq!(app.status(id).await["status"], json!("triaged"));
        let offered = app
            .post(
                "/webhook/support/self-service",
                json!({"case_id": id, "customer_id": case["customer_id"]}),
            )
            .await
            .ok();
        assert_eq!(offered["status"], json!("in_progress"));
        assert_eq!(app.status(id).await["status"], json!("in_progress"));
    }
    assert!(case_actors(&app).await["spawns"].as_u64().unwrap() >= 8);
    app.stop().await;
}

#[tokio::test]
async fn live_case_actors_stay_within_max_active_and_passivated_cases_still_answer() {
    // A long idle timeout on a frozen clock: only the cap can passivate anything.
    let clock = ManualClock::new(chrono::Utc::now());
    let app = spawn_app_with_clock(
        |s| {
            s.cases.shards = 2;
            s.cases.max_active = 8;
            s.cases.idle_timeout = Duration::from_secs(3600);
        },
        clock,
    )
    .await;
    let mut ids = Vec::new();
    for _ in 0..30 {
        let c = app.intake(SSL).await;
        ids.push(c["case_id"].as_str().unwrap().to_string());
    }
    // Two shards of at most four each; a retired actor may still be finishing its drain.
    let settled = eventually(Duration::from_secs(5), || async {
        let s = case_actors(&app).await;
        (s["live"].as_u64().unwrap() <= 8).then_some(s)
    })
    .await;
    assert!(settled["passivations"].as_u64().unwrap() >= 22, "{settled}");
    // Every case, passivated or not, still answers with its state.
    for id in &ids {
        assert_eq!(app.status(id).await["status"], json!("triaged"));
    }
    eventually(Duration::from_secs(5), || async {
        (case_actors(&app).await["live"].as_u64().unwrap() <= 8).then_some(())
    })
    .await;
    app.stop().await;
}

#[tokio::test]
async fn a_case_passivated_between_approve_and_finish_still_resolves() {
    // One live actor in all: every intake below evicts whichever case was used before it, so
    // approved cases are passivated while their finishing step is still to come.
    let app = spawn_app_with(|s| {
        s.cases.shards = 1;
        s.cases.max_active = 1;
    })
    .await;
    let mut approved = Vec::new();
    for _ in 0..6 {
        let created = app.intake(SSL).await;
        let id = created["case_id"].as_str().unwrap().to_string();
        let body = json!({"case_id": id, "customer_id": created["customer_id"]});
        let offered = app.post("/webhook/support/self-service", body).await.ok();
        let approve = path_of(&offered["links"]["approve"]);
        let (answer, _, _, _) = tokio::join!(
            app.get_anon(&approve),
            app.intake(SSL),
            app.intake(SSL),
            app.intake(SSL)
        );
        assert_eq!(answer.ok()["status"], json!("executing"));
        approved.push(id);
    }
    // Watched in the outbox, not through the cases: a status read would rehydrate the case,
    // and rehydration finishes it too, hiding a finishing step that was lost.
    for id in &approved {
        eventually(Duration::from_secs(5), || async {
            let events = app.case_events(id).await;
            events.iter().any(|e| e == "case.resolved").then_some(())
        })
        .await;
    }
    app.stop().await;
}

#[tokio::test]
async fn overload_is_refused_with_503_not_queued_without_bound() {
    let app = spawn_app_with(|s| s.cases.max_in_flight = 1).await;
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let client = app.client.clone();
        let url = format!("{}/webhook/support/intake", app.base);
        tasks.push(tokio::spawn(async move {
            let r = client
                .post(url)
                .header("X-API-Key", CLIENT_KEY)
                .json(&intake_body(SSL))
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }));
    }
    let mut accepted = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let (status, body) = t.await.unwrap();
        match status {
            200 => accepted.push(body["case_id"].as_str().unwrap().to_string()),
            503 => {
                assert_eq!(body["error"]["code"], json!("SERVICE_UNAVAILABLE"));
                refused += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(!accepted.is_empty());
    assert!(
        refused > 0,
        "24 concurrent intakes with room for one should refuse some"
    );
    for id in &accepted {
        assert_eq!(app.status(id).await["case_id"], json!(id));
    }
    app.stop().await;
}
