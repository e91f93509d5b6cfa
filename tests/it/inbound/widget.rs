//! The contact form, `POST /api/widget/contact` (seed 001): widget keys, validation and CORS.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::{CONTACT, failing_fields, post_raw};
use crate::harness::{TestApp, spawn_app, spawn_app_with};

/// The development widget key of `config/default.toml`.
const WIDGET_KEY: &str = "dev-widget-key";

fn form(key: Option<&str>) -> Value {
    let mut body = json!({
        "name": "John Doe", "email": "john@example.com",
        "message": "I have a question about your product and its pricing.",
        "customFields": {"company": "Acme Corp", "phone": "+1-555-0123"},
    });
    if let Some(key) = key {
        body["apiKey"] = json!(key);
    }
    body
}

async fn send_form(
    app: &TestApp,
    body: Value,
    headers: &[(&str, String)],
) -> crate::harness::Reply {
    post_raw(app, CONTACT, body.to_string().into_bytes(), headers).await
}

#[tokio::test]
async fn a_contact_form_with_a_widget_key_creates_a_case() {
    let app = spawn_app().await;

    let answer = send_form(&app, form(Some(WIDGET_KEY)), &[]).await.ok();

    assert_eq!(
        answer["message"],
        json!("Thank you for contacting us. We will get back to you soon.")
    );
    assert!(answer["ticketNumber"].is_u64(), "{answer}");
    assert!(answer["tracking_url"].is_string(), "{answer}");
    let case = app
        .status(answer["ticketId"].as_str().expect("ticketId"))
        .await;
    assert_eq!(case["channel"], json!("portal"));
    assert_eq!(case["customer_name"], json!("John Doe"));
    assert_eq!(
        case["metadata"]["custom_fields"]["company"],
        json!("Acme Corp")
    );

    // The key may come as a header instead.
    let by_header = send_form(&app, form(None), &[("X-API-Key", WIDGET_KEY.into())])
        .await
        .ok();
    assert_ne!(by_header["ticketId"], answer["ticketId"]);
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_or_missing_widget_key_is_refused() {
    let app = spawn_app().await;
    send_form(&app, form(Some("not-a-widget-key")), &[])
        .await
        .assert_error(401, "UNAUTHORIZED");
    send_form(&app, form(None), &[])
        .await
        .assert_error(401, "UNAUTHORIZED");
    // A client API key is not a widget key.
    send_form(&app, form(Some(crate::harness::CLIENT_KEY)), &[])
        .await
        .assert_error(401, "UNAUTHORIZED");
    app.stop().await;
}

#[tokio::test]
async fn a_form_without_email_names_the_field() {
    let app = spawn_app().await;
    let mut body = form(Some(WIDGET_KEY));
    body.as_object_mut().expect("object").remove("email");
    let reply = send_form(&app, body, &[]).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(failing_fields(&reply), ["email"]);

    let mut body = form(Some(WIDGET_KEY));
    body["email"] = json!("nope");
    body["message"] = json!("short");
    let reply = send_form(&app, body, &[]).await;
    reply.assert_error(400, "VALIDATION_ERROR");
    let mut fields = failing_fields(&reply);
    fields.sort();
    assert_eq!(fields, ["email", "message"]);
    app.stop().await;
}

/// A CORS preflight for the contact form from `origin`.
async fn preflight(app: &TestApp, origin: &str) -> reqwest::Response {
    app.client
        .request(Method::OPTIONS, format!("{}{CONTACT}", app.base))
        .header("Origin", origin)
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .send()
        .await
        .expect("preflight")
}

#[tokio::test]
async fn any_origin_may_use_the_form_by_default() {
    let app = spawn_app().await;
    let origin = "https://shop.example.com";

    let reply = preflight(&app, origin).await;
    assert!(reply.status().is_success(), "{}", reply.status());
    assert_eq!(reply.headers()["access-control-allow-origin"], "*");
    let methods = reply.headers()["access-control-allow-methods"]
        .to_str()
        .expect("ascii");
    assert!(methods.contains("POST"), "{methods}");

    let reply = send_form(&app, form(Some(WIDGET_KEY)), &[("Origin", origin.into())]).await;
    assert_eq!(reply.headers["access-control-allow-origin"], "*");
    reply.ok();
    // Refusals carry the header too, so the page can read why.
    let reply = send_form(&app, form(Some("wrong")), &[("Origin", origin.into())]).await;
    assert_eq!(reply.headers["access-control-allow-origin"], "*");
    reply.assert_error(401, "UNAUTHORIZED");
    app.stop().await;
}

#[tokio::test]
async fn only_listed_origins_may_use_the_form_when_a_list_is_configured() {
    let app =
        spawn_app_with(|s| s.widget.allowed_origins = vec!["https://shop.example.com".into()])
            .await;

    let reply = preflight(&app, "https://shop.example.com").await;
    assert!(reply.status().is_success(), "{}", reply.status());
    assert_eq!(
        reply.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    let reply = preflight(&app, "https://evil.example.com").await;
    assert!(reply.headers().get("access-control-allow-origin").is_none());

    let listed = [("Origin", "https://shop.example.com".to_string())];
    let reply = send_form(&app, form(Some(WIDGET_KEY)), &listed).await;
    assert_eq!(
        reply.headers["access-control-allow-origin"],
        "https://shop.example.com"
    );
    reply.ok();
    let other = [("Origin", "https://evil.example.com".to_string())];
    send_form(&app, form(Some(WIDGET_KEY)), &other)
        .await
        .assert_error(403, "FORBIDDEN");
    // Without an Origin (a server posting the form) the key alone decides.
    send_form(&app, form(Some(WIDGET_KEY)), &[]).await.ok();
    app.stop().await;
}
