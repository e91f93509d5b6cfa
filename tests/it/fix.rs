//! The automated-fix executor (CONTRACT §3 approve): a real local receiver plays the executor
//! and verifies each fix request's signatures with the test's own code (`delivery::assert_signed`).

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use crate::delivery::{
    assert_signed, endpoint, settle, sorted_events_of, start_receiver, webhook_ids,
};
use crate::harness::*;

/// The certificate solution of the knowledge base has an automated fix.
const SSL: &str = "Our SSL certificate expired yesterday and browsers now show a certificate \
                   error on our custom domain. How do we renew it?";

fn executor_secret() -> String {
    format!("whsec_{}", STANDARD.encode([42u8; 32]))
}

/// Points the server at the executor `url`; retries are quick.
pub(crate) fn with_executor(url: &str) -> impl FnOnce(&mut casehub::Settings) + '_ {
    move |s| {
        s.delivery.fix_executor_url = url.to_string();
        s.delivery.fix_executor_secret = casehub::settings::Secret::new(executor_secret());
        s.delivery.poll_interval = Duration::from_millis(20);
        s.delivery.retry_schedule = vec![Duration::from_millis(50); 2];
    }
}

/// Intake, self-service offer (with an automated fix) and the customer's approval; returns the
/// case id and the approval answer.
pub(crate) async fn approved_case(app: &TestApp) -> (String, Value) {
    let created = app.intake(SSL).await;
    let id = created["case_id"].as_str().unwrap().to_string();
    let offered = app
        .post(
            "/webhook/support/self-service",
            json!({"case_id": id, "customer_id": created["customer_id"]}),
        )
        .await
        .ok();
    assert_eq!(offered["solution"]["automated_fix_available"], json!(true));
    let approved = app
        .get_anon(&path_of(&offered["links"]["approve"]))
        .await
        .ok();
    (id, approved)
}

async fn wait_status(app: &TestApp, id: &str, want: &str) -> Value {
    eventually(Duration::from_secs(10), || async {
        let case = app.status(id).await;
        (case["status"] == json!(want)).then_some(case)
    })
    .await
}

fn history(case: &Value) -> Vec<String> {
    case["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn an_acknowledged_fix_resolves_the_case_as_automated() {
    let (base, rx) = start_receiver().await;
    let url = format!("{base}/fix");
    let app = spawn_app_with(|s| {
        with_executor(&url)(s);
        s.delivery.allow_private_targets = true;
    })
    .await;
    // A webhook endpoint subscribed to everything never sees the fix request.
    endpoint(&app, format!("{base}/all"), json!(["*"]), json!({})).await;

    let (id, approved) = approved_case(&app).await;
    assert_eq!(approved["status"], json!("executing"));

    let resolved = wait_status(&app, &id, "resolved").await;
    assert_eq!(resolved["resolution_type"], json!("self-service-automated"));
    assert_eq!(
        history(&resolved),
        ["new", "triaged", "in_progress", "executing", "resolved"]
    );
    let got = rx.got("fix");
    assert_eq!(got.len(), 1);
    assert_signed(&got[0], &executor_secret());
    let request = got[0].json();
    assert_eq!(request["event"], json!("fix.requested"));
    assert_eq!(request["data"]["case_id"], json!(id));
    assert!(request["data"]["solution"]["id"].is_string());
    assert!(
        request["data"]["solution"]["solution_steps"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(
        app.case_events(&id).await,
        [
            "case.created",
            "case.updated",
            "case.updated",
            "fix.requested",
            "case.resolved"
        ]
    );
    settle("the * endpoint gets the case events", || {
        rx.got("all").len() == 4
    })
    .await;
    assert_eq!(
        sorted_events_of(&rx.got("all")),
        [
            "case.created",
            "case.resolved",
            "case.updated",
            "case.updated"
        ]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_fix_that_keeps_failing_opens_a_review() {
    let (base, rx) = start_receiver().await;
    rx.fail_next("fix", 1_000_000, 500);
    // The executor is trusted configuration: it is reached on loopback although private
    // targets are not allowed for webhook endpoints here.
    let url = format!("{base}/fix");
    let app = spawn_app_with(with_executor(&url)).await;

    let (id, approved) = approved_case(&app).await;
    assert_eq!(approved["status"], json!("executing"));

    let case = wait_status(&app, &id, "pending_review").await;
    // The first attempt and the two retries of the schedule, one webhook-id throughout.
    let ids = webhook_ids(&rx, "fix");
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| i == &ids[0]));
    for got in rx.got("fix") {
        assert_signed(&got, &executor_secret());
    }
    assert_eq!(
        history(&case),
        [
            "new",
            "triaged",
            "in_progress",
            "executing",
            "pending_review"
        ]
    );
    assert!(case["resolution_type"].is_null());
    let review = &case["review"];
    let reason = review["reason"].as_str().unwrap();
    assert!(
        reason.contains("automated fix failed") && reason.contains("500"),
        "{reason}"
    );
    assert_eq!(
        app.case_events(&id).await,
        [
            "case.created",
            "case.updated",
            "case.updated",
            "fix.requested",
            "case.escalated",
            "review.requested"
        ]
    );
    // The review takes over as for a rejected solution.
    let review_id = review["review_id"].as_str().unwrap();
    app.get(&format!(
        "/webhook/support/review/{review_id}/approve?reviewer=jane@company.com"
    ))
    .await
    .ok();
    let resolved = wait_status(&app, &id, "resolved").await;
    assert_eq!(resolved["resolution_type"], json!("collaborative"));
    app.stop().await;
}

#[tokio::test]
async fn without_an_executor_approval_resolves_as_manual() {
    let app = spawn_app().await;
    let (id, approved) = approved_case(&app).await;
    assert_eq!(approved["status"], json!("executing"));
    let resolved = wait_status(&app, &id, "resolved").await;
    assert_eq!(resolved["resolution_type"], json!("self-service-manual"));
    assert!(
        !app.case_events(&id)
            .await
            .contains(&"fix.requested".to_string())
    );
    app.stop().await;
}

#[tokio::test]
async fn a_queued_fix_request_survives_a_restart() {
    let (base, rx) = start_receiver().await;
    rx.fail_next("fix", 1_000_000, 503);
    let url = format!("{base}/fix");
    let store = TestStore::new();
    let slow_retries = |s: &mut casehub::Settings| {
        with_executor(&url)(s);
        s.delivery.retry_schedule = vec![Duration::from_millis(200); 50];
    };
    let app = spawn_on(&store, slow_retries).await;
    let (id, _) = approved_case(&app).await;
    settle("the executor is tried", || !rx.got("fix").is_empty()).await;
    app.stop().await;

    // The request queued before the restart is sent by the next process.
    let app = spawn_on(&store, slow_retries).await;
    assert_eq!(app.status(&id).await["status"], json!("executing"));
    let tried = rx.got("fix").len();
    settle("the executor is tried again after the restart", || {
        rx.got("fix").len() > tried
    })
    .await;
    rx.fail_next("fix", 0, 503);
    let resolved = wait_status(&app, &id, "resolved").await;
    assert_eq!(resolved["resolution_type"], json!("self-service-automated"));
    let ids = webhook_ids(&rx, "fix");
    assert!(ids.iter().all(|i| i == &ids[0]), "one webhook-id: {ids:?}");
    app.stop().await;
}
