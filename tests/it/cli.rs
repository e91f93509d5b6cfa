//! The binary's command line: settings layering and the token subcommand.

use std::process::Command;

use serde_json::json;

use crate::harness::*;

fn casehub() -> Command {
    Command::new(env!("CARGO_BIN_EXE_casehub"))
}

#[test]
fn invalid_settings_fail_at_start_naming_the_key() {
    let dir = tempfile::TempDir::new().unwrap();
    let file = dir.path().join("bad.toml");
    std::fs::write(&file, "[cases]\nidle_timeout = \"whenever\"\n").unwrap();
    let out = casehub().arg("--config").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("cases.idle_timeout"), "stderr: {err}");

    let out = casehub()
        .env("CASEHUB__RATE_LIMITS__INTAKE", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("rate_limits.intake"));

    let out = casehub()
        .env("CASEHUB__SERVER__BIND", "0.0.0.0:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("allow_dev_secrets"));

    let out = casehub()
        .arg("--config")
        .arg(dir.path().join("missing.toml"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn minted_reviewer_tokens_are_accepted() {
    let app = spawn_app().await;
    let created = app
        .intake("Our SSL certificate expired and browsers show a certificate error.")
        .await;
    let review = app
        .post(
            "/webhook/support/collaborative",
            json!({"case_id": created["case_id"], "customer_id": created["customer_id"]}),
        )
        .await
        .ok();
    let out = casehub()
        .args([
            "token",
            "--reviewer",
            "jane@company.com",
            "--rooms",
            "support-review",
            "--ttl",
            "1h",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let review_id = review["review_id"].as_str().unwrap();
    let r = app
        .client
        .get(format!(
            "{}/webhook/support/review/{review_id}/reject",
            app.base
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let listed = app
        .client
        .get(format!("{}/v1/cases?status=escalated", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status().as_u16(), 200);
    let body: serde_json::Value = listed.json().await.unwrap();
    assert_eq!(body["data"][0]["case_id"], created["case_id"]);
    app.stop().await;
}
