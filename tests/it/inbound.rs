//! Inbound webhooks (CONTRACT §4): signed tickets on `POST /api/webhooks/receive` and the
//! contact form on `POST /api/widget/contact`. Signatures are computed here, from the contract's
//! definition, never with casehub's own signing code.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use casehub::settings::Secret;
use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::harness::{Reply, TestApp, spawn_app, spawn_app_with};

mod widget;

const RECEIVE: &str = "/api/webhooks/receive";
const CONTACT: &str = "/api/widget/contact";
const HEX_SECRET: &str = "inbound-test-secret";
/// `whsec_` + base64 of the 24 bytes `0x01..=0x18`.
const WHSEC_SECRET: &str = "whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcY";
const SUBJECT: &str = "Login page broken";
const MESSAGE: &str = "Since this morning nobody can sign in; the page shows a blank screen.";

fn hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

/// `X-Webhook-Signature` as seed 004 defines it: hex HMAC of the raw body, keyed by the secret.
fn hex_signature(secret: &str, body: &[u8]) -> String {
    hex::encode(hmac(secret.as_bytes(), &[body]))
}

/// A Standard Webhooks `v1,` signature, keyed by the base64 part of a `whsec_` secret.
fn standard_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ secret"))
        .expect("base64 secret");
    let ts = timestamp.to_string();
    let mac = hmac(&key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", STANDARD.encode(mac))
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A seed 004 ticket for `email`, as the bytes that are signed and sent.
fn ticket(email: &str) -> Vec<u8> {
    json!({"event": "ticket.create", "data": {
        "subject": SUBJECT, "message": MESSAGE, "customer_email": email,
        "customer_name": "Ann Smith", "priority": "High", "category": "Technical"}})
    .to_string()
    .into_bytes()
}

/// Standard Webhooks headers for `body`, sent `age` seconds ago.
fn standard_headers(id: &str, age: i64, body: &[u8]) -> Vec<(&'static str, String)> {
    let ts = now() - age;
    vec![
        ("webhook-id", id.to_string()),
        ("webhook-timestamp", ts.to_string()),
        (
            "webhook-signature",
            standard_signature(WHSEC_SECRET, id, ts, body),
        ),
    ]
}

/// POSTs `body` as JSON exactly as given, with `headers`.
async fn post_raw(app: &TestApp, path: &str, body: Vec<u8>, headers: &[(&str, String)]) -> Reply {
    let mut req = app
        .client
        .post(format!("{}{path}", app.base))
        .header("content-type", "application/json")
        .body(body);
    for (name, value) in headers {
        req = req.header(*name, value);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap_or_default();
    Reply {
        status,
        headers,
        body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

/// POSTs `body` to the receiver with its `X-Webhook-Signature` under [`HEX_SECRET`].
async fn send_hex_signed(app: &TestApp, body: Vec<u8>) -> Reply {
    let signature = hex_signature(HEX_SECRET, &body);
    post_raw(app, RECEIVE, body, &[("X-Webhook-Signature", signature)]).await
}

async fn spawn_signed(secret: &str) -> TestApp {
    let secret = secret.to_string();
    spawn_app_with(move |s| s.delivery.inbound_secret = Secret::new(secret)).await
}

/// The `field` names of a validation error.
fn failing_fields(reply: &Reply) -> Vec<String> {
    reply.body["error"]["details"]["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["field"].as_str().map(String::from))
        .collect()
}

/// How many `case.created` events the outbox holds.
async fn cases_created(app: &TestApp) -> usize {
    app.events()
        .await
        .iter()
        .filter(|e| e["event"] == json!("case.created"))
        .count()
}

#[tokio::test]
async fn a_hex_signed_ticket_creates_a_case() {
    let app = spawn_signed(HEX_SECRET).await;
    let body = ticket("ann@example.com");
    let signature = hex_signature(HEX_SECRET, &body);

    let answer = post_raw(&app, RECEIVE, body, &[("X-Webhook-Signature", signature)])
        .await
        .ok();

    for field in ["case_id", "customer_id", "status", "tracking_url"] {
        assert!(answer[field].is_string(), "{field} in {answer}");
    }
    assert!(answer["classification"]["category"].is_string(), "{answer}");
    let case = app
        .status(answer["case_id"].as_str().expect("case id"))
        .await;
    let description = case["description"].as_str().expect("description");
    assert!(description.contains(SUBJECT) && description.contains(MESSAGE));
    assert_eq!(case["channel"], json!("webhook"));
    assert_eq!(case["severity"], json!("high"));
    assert_eq!(case["customer_email"], json!("ann@example.com"));
    assert_eq!(case["metadata"]["category"], json!("Technical"));
    assert_eq!(case["metadata"]["event"], json!("ticket.create"));
    app.stop().await;
}

#[tokio::test]
async fn a_standard_webhooks_signed_ticket_creates_a_case() {
    let app = spawn_signed(WHSEC_SECRET).await;
    let body = ticket("bob@example.com");
    let headers = standard_headers("msg_standard_1", 0, &body);

    let answer = post_raw(&app, RECEIVE, body, &headers).await.ok();

    let case = app
        .status(answer["case_id"].as_str().expect("case id"))
        .await;
    assert_eq!(case["customer_email"], json!("bob@example.com"));
    assert_eq!(case["metadata"]["webhook_id"], json!("msg_standard_1"));
    app.stop().await;
}

#[tokio::test]
async fn bad_or_missing_signatures_are_refused() {
    let app = spawn_signed(WHSEC_SECRET).await;
    let body = ticket("eve@example.com");
    let other = ticket("mallory@example.com");
    let wrong_standard = standard_headers("msg_wrong", 0, &other);
    let attempts: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("no signature", vec![]),
        (
            "hex with another secret",
            vec![("X-Webhook-Signature", hex_signature("guess", &body))],
        ),
        (
            "hex of another body",
            vec![("X-Webhook-Signature", hex_signature(WHSEC_SECRET, &other))],
        ),
        ("standard of another body", wrong_standard),
        (
            "standard without its signature",
            standard_headers("msg_partial", 0, &body)[..2].to_vec(),
        ),
    ];
    for (what, headers) in attempts {
        let reply = post_raw(&app, RECEIVE, body.clone(), &headers).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
        reply.assert_error(401, "UNAUTHORIZED");
    }
    assert_eq!(cases_created(&app).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn stale_and_future_timestamps_are_refused() {
    let app = spawn_signed(WHSEC_SECRET).await;
    let body = ticket("old@example.com");
    for age in [600, -600] {
        let headers = standard_headers("msg_timing", age, &body);
        post_raw(&app, RECEIVE, body.clone(), &headers)
            .await
            .assert_error(401, "UNAUTHORIZED");
    }
    // The same signature scheme within the tolerance passes.
    let headers = standard_headers("msg_timing", 60, &body);
    post_raw(&app, RECEIVE, body, &headers).await.ok();
    app.stop().await;
}

#[tokio::test]
async fn a_repeated_webhook_id_is_acknowledged_without_a_second_case() {
    let app = spawn_signed(WHSEC_SECRET).await;
    let body = ticket("retry@example.com");
    // A sender's retry: same id, fresh timestamp and signature.
    let first = post_raw(
        &app,
        RECEIVE,
        body.clone(),
        &standard_headers("msg_retry", 5, &body),
    )
    .await
    .ok();
    let again = post_raw(
        &app,
        RECEIVE,
        body.clone(),
        &standard_headers("msg_retry", 0, &body),
    )
    .await
    .ok();
    assert_eq!(first["case_id"], again["case_id"]);
    assert_eq!(first["request_id"], again["request_id"]);

    // Two deliveries of one id racing each other still make one case.
    let racing = standard_headers("msg_race", 0, &body);
    let (a, b) = tokio::join!(
        post_raw(&app, RECEIVE, body.clone(), &racing),
        post_raw(&app, RECEIVE, body.clone(), &racing),
    );
    assert_eq!(a.ok()["case_id"], b.ok()["case_id"]);

    let case_id = first["case_id"].as_str().expect("case id");
    let created: Vec<String> = app
        .case_events(case_id)
        .await
        .into_iter()
        .filter(|e| e == "case.created")
        .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(cases_created(&app).await, 2);
    app.stop().await;
}

#[tokio::test]
async fn an_unknown_event_is_a_validation_error() {
    let app = spawn_signed(HEX_SECRET).await;
    let body = json!({"event": "ticket.delete", "data": {"subject": SUBJECT, "message": MESSAGE,
        "customer_email": "ann@example.com", "customer_name": "Ann"}})
    .to_string()
    .into_bytes();
    let reply = send_hex_signed(&app, body).await;
    reply.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(failing_fields(&reply), ["event"]);
    app.stop().await;
}

#[tokio::test]
async fn an_invalid_ticket_names_every_failing_field() {
    let app = spawn_signed(HEX_SECRET).await;
    let send = |data: Value| {
        let body = json!({"event": "ticket.create", "data": data});
        send_hex_signed(&app, body.to_string().into_bytes())
    };
    let reply = send(json!({"subject": SUBJECT, "message": MESSAGE, "priority": "whenever"})).await;
    reply.assert_error(400, "VALIDATION_ERROR");
    let mut fields = failing_fields(&reply);
    fields.sort();
    assert_eq!(fields, ["data.customer_email", "data.priority"]);

    let reply = send(json!({"subject": SUBJECT, "message": MESSAGE,
        "customer_email": "not an email"}))
    .await;
    reply.assert_error(400, "VALIDATION_ERROR");
    assert_eq!(failing_fields(&reply), ["data.customer_email"]);

    let reply = send(json!({"subject": SUBJECT, "message": MESSAGE})).await;
    reply.assert_error(400, "MISSING_FIELD");
    assert_eq!(
        reply.body["error"]["details"]["field"],
        json!("data.customer_email")
    );
    assert_eq!(cases_created(&app).await, 0);
    app.stop().await;
}

#[tokio::test]
async fn without_a_secret_unsigned_tickets_are_accepted_and_ids_still_dedupe() {
    let app = spawn_app().await;
    let body = ticket("open@example.com");
    let first = post_raw(&app, RECEIVE, body.clone(), &[]).await.ok();
    assert!(first["case_id"].is_string());
    let id = [("webhook-id", "msg_unsigned".to_string())];
    let a = post_raw(&app, RECEIVE, body.clone(), &id).await.ok();
    let b = post_raw(&app, RECEIVE, body, &id).await.ok();
    assert_eq!(a["case_id"], b["case_id"]);
    assert_ne!(a["case_id"], first["case_id"]);
    assert_eq!(cases_created(&app).await, 2);
    app.stop().await;
}

#[tokio::test]
async fn receive_rejects_bodies_like_every_json_endpoint() {
    let app = spawn_app_with(|s| s.server.body_limit = 1024).await;
    post_raw(&app, RECEIVE, b"{\"event\": ".to_vec(), &[])
        .await
        .assert_error(400, "INVALID_FORMAT");
    post_raw(&app, RECEIVE, vec![b' '; 4096], &[])
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");
    let reply = app
        .client
        .post(format!("{}{RECEIVE}", app.base))
        .header("content-type", "text/plain")
        .body(ticket("x@example.com"))
        .send()
        .await
        .expect("request");
    assert_eq!(reply.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    app.stop().await;
}
