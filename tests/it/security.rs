//! Authentication (CONTRACT §2) and rate limits (§8).

use reqwest::Method;
use serde_json::json;

use crate::harness::*;

const DESC: &str = "Our SSL certificate expired and browsers show a certificate error.";

#[tokio::test]
async fn api_keys_in_header_or_path() {
    let app = spawn_app().await;
    let path = "/webhook/support/intake";
    app.send(Method::POST, path, None, Some(intake_body(DESC)))
        .await
        .assert_error(401, "UNAUTHORIZED");
    app.send(
        Method::POST,
        path,
        Some("wrong-key-123"),
        Some(intake_body(DESC)),
    )
    .await
    .assert_error(401, "UNAUTHORIZED");
    app.send(
        Method::POST,
        &format!("{path}/{CLIENT_KEY}"),
        None,
        Some(intake_body(DESC)),
    )
    .await
    .ok();
    app.send(
        Method::POST,
        &format!("{path}/not-the-key"),
        None,
        Some(intake_body(DESC)),
    )
    .await
    .assert_error(401, "UNAUTHORIZED");
    // Admin endpoints need the admin role.
    app.get("/v1/cases").await.assert_error(403, "FORBIDDEN");
    app.get_anon("/ops/actors")
        .await
        .assert_error(401, "UNAUTHORIZED");
    app.admin_get("/ops/actors").await;
    // Health needs nothing.
    assert_eq!(app.get_anon("/api/health").await.status.as_u16(), 200);
    app.stop().await;
}

#[tokio::test]
async fn link_tokens_are_checked() {
    let app = spawn_app().await;
    let created = app.intake(DESC).await;
    let id = created["case_id"].as_str().unwrap();
    let offered = app
        .post(
            "/webhook/support/self-service",
            json!({"case_id": id, "customer_id": created["customer_id"]}),
        )
        .await
        .ok();
    let approve = path_of(&offered["links"]["approve"]);
    let reject = path_of(&offered["links"]["reject"]);
    // No token, a forged token, and the reject token used to approve: all 403.
    app.get_anon(&format!("/webhook/support/approve/{id}?action=approve"))
        .await
        .assert_error(403, "FORBIDDEN");
    app.get_anon(&format!(
        "/webhook/support/approve/{id}?action=approve&token=forged"
    ))
    .await
    .assert_error(403, "FORBIDDEN");
    let reject_token = reject.split("token=").nth(1).unwrap();
    app.get_anon(&format!(
        "/webhook/support/approve/{id}?action=approve&token={reject_token}"
    ))
    .await
    .assert_error(403, "FORBIDDEN");
    // The status page accepts the tracking token only for its own case.
    let tracking = path_of(&created["tracking_url"]);
    assert_eq!(
        app.get_anon(&tracking).await.ok()["data"]["case_id"],
        json!(id)
    );
    let other = app.intake(DESC).await;
    let other_id = other["case_id"].as_str().unwrap();
    let token = tracking.split("token=").nth(1).unwrap();
    app.get_anon(&format!("/webhook/support/status/{other_id}?token={token}"))
        .await
        .assert_error(403, "FORBIDDEN");
    app.get_anon(&format!("/webhook/support/status/{other_id}"))
        .await
        .assert_error(401, "UNAUTHORIZED");
    app.get_anon(&approve).await.ok();
    app.stop().await;
}

#[tokio::test]
async fn reviewer_tokens_act_on_their_rooms_only() {
    let app = spawn_app().await;
    let created = app.intake(DESC).await;
    let review = app
        .post(
            "/webhook/support/collaborative",
            json!({"case_id": created["case_id"], "customer_id": created["customer_id"]}),
        )
        .await
        .ok();
    let review_id = review["review_id"].as_str().unwrap();
    let settings = test_settings();
    let auth = casehub::auth::Auth::new(&settings);
    let hour = std::time::Duration::from_secs(3600);
    let elsewhere = auth.mint_reviewer("eve@company.com", &["billing-review".into()], hour);
    let jane = auth.mint_reviewer("jane@company.com", &["support-review".into()], hour);
    let call = |token: String| {
        app.client
            .get(format!(
                "{}/webhook/support/review/{review_id}/approve",
                app.base
            ))
            .bearer_auth(token)
            .send()
    };
    let r = call(elsewhere).await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = call("not.a.jwt".into()).await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = call(jane).await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let case = app.status(created["case_id"].as_str().unwrap()).await;
    assert_eq!(case["review"]["reviewer"], json!("jane@company.com"));
    app.stop().await;
}

#[tokio::test]
async fn rate_limit_answers_429_with_headers() {
    let app = spawn_app_with(|s| s.rate_limits.intake = 3).await;
    for remaining in [2, 1, 0] {
        let r = app.post("/webhook/support/intake", intake_body(DESC)).await;
        assert_eq!(r.status.as_u16(), 200);
        assert_eq!(r.headers["x-ratelimit-limit"], "3");
        assert_eq!(
            r.headers["x-ratelimit-remaining"],
            remaining.to_string().as_str()
        );
        let reset: u64 = r.headers["x-ratelimit-reset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(reset > chrono::Utc::now().timestamp() as u64 - 1);
    }
    let r = app.post("/webhook/support/intake", intake_body(DESC)).await;
    r.assert_error(429, "RATE_LIMITED");
    assert_eq!(r.body["error"]["details"]["limit"], json!(3));
    assert_eq!(r.body["error"]["details"]["window"], json!("1 minute"));
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(r.body["error"]["details"]["retry_after"], json!(retry));
    assert_eq!(r.headers["x-ratelimit-remaining"], "0");
    // Another caller (the admin key) has its own allowance.
    let other = app
        .send(
            Method::POST,
            "/webhook/support/intake",
            Some(ADMIN_KEY),
            Some(intake_body(DESC)),
        )
        .await;
    assert_eq!(other.status.as_u16(), 200);
    app.stop().await;
}

#[tokio::test]
async fn ip_allowlist_refuses_other_addresses() {
    let app = spawn_app_with(|s| s.auth.ip_allowlist = vec!["10.20.0.0/16".into()]).await;
    app.post("/webhook/support/intake", intake_body(DESC))
        .await
        .assert_error(403, "FORBIDDEN");
    app.stop().await;
    let app = spawn_app_with(|s| s.auth.ip_allowlist = vec!["127.0.0.0/8".into()]).await;
    app.post("/webhook/support/intake", intake_body(DESC))
        .await
        .ok();
    app.stop().await;
}
