//! Both paths of the case lifecycle (CONTRACT §3), with history and outbox events.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::harness::*;

const SSL: &str = "Our SSL certificate expired yesterday and browsers now show a certificate \
                   error on our custom domain. How do we renew it?";
const FEATURE: &str = "It would be great if the dashboard had a dark mode option and \
                       keyboard shortcuts; can you add this feature request?";

fn statuses(case: &Value) -> Vec<String> {
    case["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["status"].as_str().unwrap().to_string())
        .collect()
}

async fn wait_status(app: &TestApp, id: &str, want: &str) -> Value {
    eventually(std::time::Duration::from_secs(5), || async {
        let case = app.status(id).await;
        (case["status"] == json!(want)).then_some(case)
    })
    .await
}

#[tokio::test]
async fn self_service_path_runs_to_closed() {
    let app = spawn_app().await;
    let created = app.intake(SSL).await;
    assert_eq!(created["status"], json!("triaged"));
    let c = &created["classification"];
    assert_eq!(c["category"], json!("configuration"));
    assert_eq!(c["subcategory"], json!("ssl-certificates"));
    assert_eq!(c["resolution_path"], json!("self-service"));
    for field in ["priority", "confidence", "estimated_complexity"] {
        assert!(
            !c[field].is_null(),
            "classification.{field} missing: {created}"
        );
    }
    assert!(created["request_id"].as_str().unwrap().starts_with("REQ-"));
    assert!(created["tracking_url"].as_str().unwrap().contains("token="));
    let id = created["case_id"].as_str().unwrap().to_string();
    let customer = created["customer_id"].clone();

    let offered = app
        .post(
            "/webhook/support/self-service",
            json!({"case_id": id, "customer_id": customer}),
        )
        .await
        .ok();
    assert_eq!(offered["status"], json!("in_progress"));
    assert_eq!(offered["resolution"]["solution_provided"], json!(true));
    let steps = offered["solution"]["solution_steps"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(offered["resolution"]["steps_count"], json!(steps));
    assert!(steps > 0);

    // The customer follows the signed approve link, with no API key.
    let approve = path_of(&offered["links"]["approve"]);
    let approved = app.get_anon(&approve).await.ok();
    assert_eq!(approved["action"], json!("approve"));
    assert_eq!(approved["status"], json!("executing"));

    let resolved = wait_status(&app, &id, "resolved").await;
    assert_eq!(resolved["resolution_type"], json!("self-service-manual"));
    assert!(
        resolved["resolution_time_minutes"]
            .as_i64()
            .is_some_and(|m| m >= 0)
    );
    let feedback = format!(
        "{}&score=5&comment=Great%20service",
        path_of(&resolved["links"]["feedback"])
    );
    let fb = app.get_anon(&feedback).await.ok();
    assert_eq!(fb["feedback_received"], json!(true));
    assert_eq!(fb["message"], json!("Thank you for your feedback!"));

    let closed = app.status(&id).await;
    assert_eq!(closed["status"], json!("closed"));
    assert_eq!(closed["satisfaction_score"], json!(5));
    assert_eq!(
        statuses(&closed),
        [
            "new",
            "triaged",
            "in_progress",
            "executing",
            "resolved",
            "closed"
        ]
    );
    assert_eq!(
        app.case_events(&id).await,
        [
            "case.created",
            "case.updated",
            "case.updated",
            "case.resolved",
            "feedback.received",
            "case.updated"
        ]
    );
    // A second approval of the same offer is refused.
    app.get_anon(&approve)
        .await
        .assert_error(409, "ALREADY_PROCESSED");
    app.stop().await;
}

async fn collaborative_case(app: &TestApp) -> (String, String) {
    let created = app.intake(FEATURE).await;
    let id = created["case_id"].as_str().unwrap().to_string();
    let review = app
        .post(
            "/webhook/support/collaborative",
            json!({"case_id": id, "customer_id": created["customer_id"], "urgency": "urgent",
                   "additional_context": "Customer is on the enterprise plan"}),
        )
        .await
        .ok();
    assert_eq!(review["status"], json!("pending_review"));
    assert_eq!(review["assigned_channel"], json!("#support-review"));
    assert_eq!(review["estimated_review_time"], json!("Within 30 minutes"));
    let review_id = review["review_id"].as_str().unwrap().to_string();
    assert!(review_id.starts_with("rev-") && review_id.len() >= 16);
    (id, review_id)
}

#[tokio::test]
async fn collaborative_review_approve_resolves() {
    let app = spawn_app().await;
    let (id, review_id) = collaborative_case(&app).await;
    let acted = app
        .get(&format!(
            "/webhook/support/review/{review_id}/approve?reviewer=jane@company.com&comments=Looks%20good"
        ))
        .await
        .ok();
    assert_eq!(acted["action"], json!("approve"));
    assert_eq!(acted["status"], json!("delivering"));
    assert_eq!(acted["case_id"], json!(id));
    let resolved = wait_status(&app, &id, "resolved").await;
    assert_eq!(resolved["resolution_type"], json!("collaborative"));
    assert_eq!(resolved["review"]["reviewer"], json!("jane@company.com"));
    assert_eq!(
        statuses(&resolved),
        ["new", "triaged", "pending_review", "delivering", "resolved"]
    );
    assert_eq!(
        app.case_events(&id).await,
        [
            "case.created",
            "case.escalated",
            "review.requested",
            "review.completed",
            "case.updated",
            "case.resolved"
        ]
    );
    app.get(&format!(
        "/webhook/support/review/{review_id}/reject?reviewer=bob@company.com"
    ))
    .await
    .assert_error(409, "ALREADY_PROCESSED");
    app.stop().await;
}

#[tokio::test]
async fn collaborative_review_edit_and_reject() {
    let app = spawn_app().await;
    let (edited_id, review_id) = collaborative_case(&app).await;
    let edited = app
        .post(
            &format!("/webhook/support/review/{review_id}/edit"),
            json!({"reviewer": "jane@company.com", "edited_solution": "Use the beta toggle in Settings > Appearance.",
                   "edit_reason": "Added clarification on step 3"}),
        )
        .await
        .ok();
    assert_eq!(edited["action"], json!("edit"));
    let resolved = wait_status(&app, &edited_id, "resolved").await;
    assert_eq!(
        resolved["review"]["edited_solution"],
        json!("Use the beta toggle in Settings > Appearance.")
    );

    let (rejected_id, review_id) = collaborative_case(&app).await;
    let rejected = app
        .get(&format!("/webhook/support/review/{review_id}/reject?reviewer=jane@company.com&comments=Needs%20engineering"))
        .await
        .ok();
    assert_eq!(rejected["status"], json!("escalated"));
    let case = app.status(&rejected_id).await;
    assert_eq!(case["status"], json!("escalated"));
    assert_eq!(case["review"]["status"], json!("rejected"));
    let events = app.case_events(&rejected_id).await;
    assert_eq!(events.last().unwrap(), "case.escalated");
    assert!(events.contains(&"review.completed".to_string()));
    app.stop().await;
}

#[tokio::test]
async fn critical_intake_opens_a_review_at_once() {
    let app = spawn_app().await;
    let mut body =
        intake_body("Production is completely down: every API call returns 500 since the deploy.");
    body["severity"] = json!("critical");
    let created = app.post("/webhook/support/intake", body).await.ok();
    assert_eq!(created["status"], json!("pending_review"));
    assert_eq!(created["classification"]["priority"], json!("critical"));
    assert!(created["review_id"].as_str().unwrap().starts_with("rev-"));
    let id = created["case_id"].as_str().unwrap();
    assert_eq!(
        app.case_events(id).await,
        ["case.created", "case.escalated", "review.requested"]
    );
    let case = app.status(id).await;
    assert_eq!(statuses(&case), ["new", "triaged", "pending_review"]);
    assert_eq!(case["escalated"], json!(true));
    app.stop().await;
}

#[tokio::test]
async fn customer_rejecting_the_solution_opens_a_review() {
    let app = spawn_app().await;
    let created = app.intake(SSL).await;
    let id = created["case_id"].as_str().unwrap();
    let offered = app
        .post(
            "/webhook/support/self-service",
            json!({"case_id": id, "customer_id": created["customer_id"]}),
        )
        .await
        .ok();
    let rejected = app
        .get_anon(&path_of(&offered["links"]["reject"]))
        .await
        .ok();
    assert_eq!(rejected["status"], json!("pending_review"));
    assert!(rejected["review_id"].as_str().unwrap().starts_with("rev-"));
    // Re-offering is forced from escalated only; pending_review is not eligible.
    app.post(
        "/webhook/support/self-service",
        json!({"case_id": id, "customer_id": created["customer_id"], "force": true}),
    )
    .await
    .assert_error(409, "INVALID_STATE");
    app.stop().await;
}

#[tokio::test]
async fn idempotency_key_returns_the_same_case_once() {
    let app = spawn_app().await;
    let send = |key: &'static str| {
        app.client
            .post(format!("{}/webhook/support/intake", app.base))
            .header("X-API-Key", CLIENT_KEY)
            .header("Idempotency-Key", key)
            .json(&intake_body(SSL))
            .send()
    };
    let (a, b) = tokio::join!(send("order-42"), send("order-42"));
    let a: Value = a.unwrap().json().await.unwrap();
    let b: Value = b.unwrap().json().await.unwrap();
    let c: Value = send("order-42").await.unwrap().json().await.unwrap();
    assert_eq!(a["case_id"], b["case_id"]);
    assert_eq!(a, c);
    let other: Value = send("order-43").await.unwrap().json().await.unwrap();
    assert_ne!(other["case_id"], a["case_id"]);
    let created: Vec<Value> = app
        .events()
        .await
        .into_iter()
        .filter(|e| e["event"] == json!("case.created"))
        .collect();
    assert_eq!(created.len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn cases_list_newest_first_with_cursor() {
    let app = spawn_app().await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let c = app.intake(&format!("{SSL} (case number {i})")).await;
        ids.push(c["case_id"].as_str().unwrap().to_string());
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = app
            .admin_get(&format!("/v1/cases?limit=2&cursor={cursor}"))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        for c in page.body["data"].as_array().unwrap() {
            seen.push(c["case_id"].as_str().unwrap().to_string());
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);
    let triaged = app.admin_get("/v1/cases?status=resolved").await;
    assert_eq!(triaged.body["data"], json!([]));
    app.stop().await;
}
