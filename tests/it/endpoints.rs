//! Webhook endpoint management (CONTRACT §5).

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

async fn admin(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Reply {
    app.send(method, path, Some(ADMIN_KEY), body).await
}

#[tokio::test]
async fn endpoint_crud_rotation_and_validation() {
    let app = spawn_app_with(|s| s.delivery.allow_private_targets = true).await;
    let created = admin(
        &app,
        Method::POST,
        "/v1/webhooks/endpoints",
        Some(
            json!({"url": "http://127.0.0.1:9/hook", "events": ["case.*", "review.completed"],
                    "description": "crm", "ordering": "fifo", "rate_limit": 5,
                    "retry_policy": {"kind": "schedule", "delays": ["1s", "5s"]}}),
        ),
    )
    .await;
    assert_eq!(created.status.as_u16(), 201, "{}", created.body);
    let data = &created.body["data"];
    let id = data["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("wh_") && id.len() == 29);
    let secret = data["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(&secret["whsec_".len()..])
        .unwrap();
    assert_eq!(raw.len(), 32);
    assert_eq!(data["status"], json!("active"));
    assert_eq!(data["format"], json!("json"));
    assert_eq!(data["ordering"], json!("fifo"));

    // The secret is never shown again.
    let one = admin(
        &app,
        Method::GET,
        &format!("/v1/webhooks/endpoints/{id}"),
        None,
    )
    .await;
    assert_eq!(one.status.as_u16(), 200);
    assert!(one.body["data"].get("secret").is_none());
    let list = admin(&app, Method::GET, "/v1/webhooks/endpoints", None).await;
    assert_eq!(list.body["data"].as_array().unwrap().len(), 1);
    assert!(list.body["data"][0].get("secret").is_none());

    let patched = admin(
        &app,
        Method::PATCH,
        &format!("/v1/webhooks/endpoints/{id}"),
        Some(json!({"status": "paused", "events": ["*"], "format": "slack"})),
    )
    .await;
    assert_eq!(patched.status.as_u16(), 200, "{}", patched.body);
    assert_eq!(patched.body["data"]["status"], json!("paused"));
    assert_eq!(patched.body["data"]["events"], json!(["*"]));
    assert_eq!(patched.body["data"]["description"], json!("crm"));

    let rotated = admin(
        &app,
        Method::POST,
        &format!("/v1/webhooks/endpoints/{id}/rotate-secret"),
        None,
    )
    .await;
    assert_eq!(rotated.status.as_u16(), 200);
    let new_secret = rotated.body["data"]["secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    assert!(rotated.body["data"]["secret_rotation_overlap_until"].is_string());

    let deleted = admin(
        &app,
        Method::DELETE,
        &format!("/v1/webhooks/endpoints/{id}"),
        None,
    )
    .await;
    assert_eq!(deleted.status.as_u16(), 204);
    assert_eq!(deleted.body, Value::Null);
    admin(
        &app,
        Method::DELETE,
        &format!("/v1/webhooks/endpoints/{id}"),
        None,
    )
    .await
    .assert_error(404, "NOT_FOUND");
    admin(
        &app,
        Method::GET,
        &format!("/v1/webhooks/endpoints/{id}"),
        None,
    )
    .await
    .assert_error(404, "NOT_FOUND");

    // Validation reports every field; only admins get in.
    let bad = admin(
        &app,
        Method::POST,
        "/v1/webhooks/endpoints",
        Some(
            json!({"url": "ftp://x", "events": ["Case.Created"], "status": "on",
                    "rate_limit": 0, "retry_policy": {"kind": "linear"}}),
        ),
    )
    .await;
    bad.assert_error(400, "VALIDATION_ERROR");
    let fields: Vec<&str> = bad.body["error"]["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    for f in ["url", "events", "status", "rate_limit", "retry_policy"] {
        assert!(fields.contains(&f), "{f} missing in {fields:?}");
    }
    admin(
        &app,
        Method::POST,
        "/v1/webhooks/endpoints",
        Some(json!({"events": ["*"]})),
    )
    .await
    .assert_error(400, "MISSING_FIELD");
    app.send(
        Method::POST,
        "/v1/webhooks/endpoints",
        Some(CLIENT_KEY),
        Some(json!({"url": "http://127.0.0.1:9/", "events": ["*"]})),
    )
    .await
    .assert_error(403, "FORBIDDEN");
    app.stop().await;
}

#[tokio::test]
async fn private_targets_are_refused_unless_allowed() {
    let app = spawn_app().await;
    for url in [
        "http://127.0.0.1/hook",
        "http://10.0.0.1/hook",
        "http://172.16.0.1/hook",
        "http://192.168.1.1/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[fc00::1]/hook",
        "http://localhost:8080/hook",
        "http://0.0.0.0/",
    ] {
        let r = admin(
            &app,
            Method::POST,
            "/v1/webhooks/endpoints",
            Some(json!({"url": url, "events": ["*"]})),
        )
        .await;
        r.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(
            r.body["error"]["details"]["fields"][0]["field"],
            json!("url"),
            "{url}"
        );
    }
    app.stop().await;
}
