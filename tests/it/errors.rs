//! Every error of CONTRACT §1–3: code, status and envelope.

use reqwest::Method;
use serde_json::{Value, json};

use crate::harness::*;

const DESC: &str = "Our SSL certificate expired and browsers show a certificate error.";

fn fields(reply: &Reply) -> Vec<String> {
    reply.body["error"]["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn intake_validation_reports_every_field() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/webhook/support/intake",
            json!({"description": "short", "severity": "urgent"}),
        )
        .await;
    r.assert_error(400, "VALIDATION_ERROR");
    let f = fields(&r);
    for name in ["customer_email", "customer_name", "description", "severity"] {
        assert!(
            f.contains(&name.to_string()),
            "{name} not reported: {}",
            r.body
        );
    }

    let mut body = intake_body(DESC);
    body.as_object_mut().unwrap().remove("customer_email");
    let r = app.post("/webhook/support/intake", body).await;
    r.assert_error(400, "MISSING_FIELD");
    assert_eq!(r.body["error"]["details"]["field"], json!("customer_email"));

    let cases: Vec<(&str, Value)> = vec![
        ("customer_email", json!("not-an-email")),
        ("description", json!("too short")),
        ("description", json!("x".repeat(10_001))),
        ("severity", json!("urgent")),
        ("environment", json!("prod")),
        ("channel", json!("fax")),
        ("customer_id", json!("1234")),
        ("customer_name", json!(42)),
        ("metadata", json!([1, 2])),
    ];
    for (field, value) in cases {
        let mut body = intake_body(DESC);
        body[field] = value;
        let r = app.post("/webhook/support/intake", body).await;
        r.assert_error(400, "VALIDATION_ERROR");
        assert_eq!(fields(&r), [field], "{}", r.body);
    }
    // Exactly 10 and 10000 characters are accepted.
    for len in [10, 10_000] {
        let mut body = intake_body(DESC);
        body["description"] = json!("a".repeat(len));
        app.post("/webhook/support/intake", body).await.ok();
    }
    app.stop().await;
}

#[tokio::test]
async fn malformed_bodies_get_clear_errors() {
    let app = spawn_app().await;
    let raw = |body: Vec<u8>, content_type: &'static str| {
        app.client
            .post(format!("{}/webhook/support/intake", app.base))
            .header("X-API-Key", CLIENT_KEY)
            .header("Content-Type", content_type)
            .body(body)
            .send()
    };
    let status_code = |r: reqwest::Response| async move {
        let s = r.status().as_u16();
        let v: Value = r.json().await.unwrap();
        (s, v["error"]["code"].as_str().unwrap().to_string())
    };
    let cases: Vec<(Vec<u8>, &str, u16, &str)> = vec![
        (
            b"{\"customer_email\": ".to_vec(),
            "application/json",
            400,
            "INVALID_FORMAT",
        ),
        (
            b"[1,2,3]".to_vec(),
            "application/json",
            400,
            "INVALID_FORMAT",
        ),
        (
            vec![0xff, 0xfe, 0x00],
            "application/json",
            400,
            "INVALID_FORMAT",
        ),
        (
            b"{\"a\": 1e999999}".to_vec(),
            "application/json",
            400,
            "INVALID_FORMAT",
        ),
        (
            b"customer_email=a".to_vec(),
            "application/x-www-form-urlencoded",
            415,
            "UNSUPPORTED_MEDIA_TYPE",
        ),
        (b"{}".to_vec(), "text/plain", 415, "UNSUPPORTED_MEDIA_TYPE"),
        (
            vec![b' '; 10 * 1024 * 1024],
            "application/json",
            413,
            "PAYLOAD_TOO_LARGE",
        ),
    ];
    for (body, ct, status, code) in cases {
        let r = raw(body, ct).await.unwrap();
        assert_eq!(
            status_code(r).await,
            (status, code.to_string()),
            "content-type {ct}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn unknown_and_mismatched_cases_are_not_found() {
    let app = spawn_app().await;
    let unknown = "7d0a2a6e-2b8b-4f8e-9a55-0d6f0f0b7c11";
    app.get(&format!("/webhook/support/status/{unknown}"))
        .await
        .assert_error(404, "NOT_FOUND");
    let r = app.get("/webhook/support/status/not-a-uuid").await;
    r.assert_error(400, "INVALID_FORMAT");
    assert_eq!(r.body["error"]["details"]["field"], json!("case_id"));

    let created = app.intake(DESC).await;
    let id = created["case_id"].as_str().unwrap();
    app.post(
        "/webhook/support/self-service",
        json!({"case_id": id, "customer_id": unknown}),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    app.post(
        "/webhook/support/collaborative",
        json!({"case_id": id, "customer_id": unknown}),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    app.post(
        "/webhook/support/self-service",
        json!({"case_id": unknown, "customer_id": created["customer_id"]}),
    )
    .await
    .assert_error(404, "NOT_FOUND");
    app.post("/webhook/support/self-service", json!({"case_id": "x"}))
        .await
        .assert_error(400, "VALIDATION_ERROR");
    app.get("/webhook/support/review/rev-000000000000/approve?reviewer=a@b.c")
        .await
        .assert_error(404, "NOT_FOUND");
    app.get("/webhook/support/review/nope/approve?reviewer=a@b.c")
        .await
        .assert_error(400, "INVALID_FORMAT");
    app.get("/no/such/endpoint")
        .await
        .assert_error(404, "NOT_FOUND");
    app.send(
        Method::DELETE,
        "/webhook/support/intake",
        Some(CLIENT_KEY),
        None,
    )
    .await
    .assert_error(405, "METHOD_NOT_ALLOWED");
    app.stop().await;
}

#[tokio::test]
async fn actions_out_of_order_conflict() {
    let app = spawn_app().await;
    let created = app.intake(DESC).await;
    let id = created["case_id"].as_str().unwrap();
    let customer = created["customer_id"].clone();
    // Feedback on an open case.
    let r = app
        .get(&format!("/webhook/support/feedback/{id}?score=4"))
        .await;
    r.assert_error(409, "INVALID_STATE");
    assert_eq!(r.body["error"]["details"]["status"], json!("triaged"));
    // Approve before any offer.
    app.get(&format!("/webhook/support/approve/{id}?action=approve"))
        .await
        .assert_error(409, "INVALID_STATE");
    // Self-service twice.
    let body = json!({"case_id": id, "customer_id": customer});
    app.post("/webhook/support/self-service", body.clone())
        .await
        .ok();
    app.post("/webhook/support/self-service", body)
        .await
        .assert_error(409, "ALREADY_PROCESSED");
    // Approve twice.
    app.get(&format!("/webhook/support/approve/{id}?action=approve"))
        .await
        .ok();
    app.get(&format!("/webhook/support/approve/{id}?action=approve"))
        .await
        .assert_error(409, "ALREADY_PROCESSED");
    // Score out of range, then feedback twice.
    let resolved = crate::harness::eventually(std::time::Duration::from_secs(5), || async {
        let c = app.status(id).await;
        (c["status"] == json!("resolved")).then_some(c)
    })
    .await;
    assert_eq!(resolved["status"], json!("resolved"));
    for score in ["0", "6", "abc", "3.5"] {
        app.get(&format!("/webhook/support/feedback/{id}?score={score}"))
            .await
            .assert_error(400, "VALIDATION_ERROR");
    }
    app.get(&format!("/webhook/support/feedback/{id}"))
        .await
        .assert_error(400, "MISSING_FIELD");
    app.get(&format!("/webhook/support/feedback/{id}?score=1"))
        .await
        .ok();
    app.get(&format!("/webhook/support/feedback/{id}?score=5"))
        .await
        .assert_error(409, "ALREADY_PROCESSED");
    app.stop().await;
}
