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

#[tokio::test]
async fn json_logs_carry_the_request_id() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::TempDir::new().unwrap();
    let child = casehub()
        .env("CASEHUB__SERVER__BIND", format!("127.0.0.1:{port}"))
        .env("CASEHUB__STORE__DATA_DIR", dir.path())
        .env("CASEHUB__LOG__FORMAT", "json")
        .env_remove("RUST_LOG")
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let url = format!("http://127.0.0.1:{port}/api/health");
    let resp = eventually(std::time::Duration::from_secs(20), || async {
        client.get(&url).send().await.ok()
    })
    .await;
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert!(request_id.starts_with("REQ-"), "{request_id}");
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().unwrap();
    let logs = String::from_utf8_lossy(&out.stderr);
    let mut found = false;
    for line in logs.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        if line.contains(&request_id) {
            assert!(v["level"].is_string());
            found = true;
        }
    }
    assert!(found, "no log line names {request_id}:\n{logs}");
}
