//! `casehub tail` as a user runs it: the real binary following `/ops/stream` of a running
//! server. Its stdout is a pipe, so it prints plain lines.

use std::process::Stdio;
use std::time::Duration;

use reqwest::Method;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::time::{Instant, timeout_at};

use crate::harness::*;

const SSL: &str = "Our SSL certificate expired and browsers show a certificate error.";

/// `casehub tail` against `base` with `key`; killed if the test drops it.
fn tail(base: &str, key: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_casehub"));
    cmd.args(["tail", "--url", base, "--api-key", key])
        .env_remove("CASEHUB_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Kills `child` and returns what it wrote to stderr, for failure messages.
async fn stop(mut child: Child) -> String {
    let _ = child.kill().await;
    match child.wait_with_output().await {
        Ok(out) => String::from_utf8_lossy(&out.stderr).into_owned(),
        Err(e) => format!("<stderr unavailable: {e}>"),
    }
}

#[tokio::test]
async fn tail_prints_snapshots_and_the_restart_of_a_panicking_case_actor() {
    let app = spawn_app_with(|s| s.testing.fault_injection = true).await;
    let case = app.intake(SSL).await;
    let id = case["case_id"].as_str().expect("case id").to_string();

    let mut child = tail(&app.base, ADMIN_KEY)
        .spawn()
        .expect("start casehub tail");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut seen = Vec::new();
    let (mut snapshot, mut restart, mut injected) = (false, false, false);
    while !(snapshot && restart) {
        let line = match timeout_at(deadline, lines.next_line()).await {
            Ok(Ok(Some(line))) => line,
            outcome => {
                let stderr = stop(child).await;
                panic!(
                    "tail stopped short ({outcome:?}); stdout:\n{}\nstderr:\n{stderr}",
                    seen.join("\n")
                );
            }
        };
        snapshot |= line.contains(" case_actor live=") && line.contains(" msg/s=");
        restart |= line.contains(" lifecycle case_actor restart ");
        seen.push(line);
        // The first snapshot line shows tail is subscribed, so the restart cannot be missed.
        if snapshot && !injected {
            injected = true;
            app.send(
                Method::POST,
                &format!("/ops/faults/cases/{id}/panic"),
                Some(ADMIN_KEY),
                None,
            )
            .await
            .assert_error(500, "INTERNAL_ERROR");
        }
    }
    assert!(
        seen.iter().all(|l| !l.contains('\u{1b}')),
        "escape codes on a pipe: {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.contains("restart") && l.ends_with(&id)),
        "restart line names the case: {seen:?}"
    );
    stop(child).await;
    app.stop().await;
}

#[tokio::test]
async fn tail_with_a_wrong_or_non_admin_key_exits_non_zero_with_the_message() {
    let app = spawn_app().await;
    for key in ["wrong-key", CLIENT_KEY] {
        // The stream authenticates like every admin endpoint; its envelope message is the one
        // tail must show.
        let expected = app.send(Method::GET, "/ops/stream", Some(key), None).await;
        assert!(
            expected.status.is_client_error(),
            "{key}: {}",
            expected.status
        );
        let message = expected.body["error"]["message"]
            .as_str()
            .expect("envelope message")
            .to_string();

        let out = tokio::time::timeout(Duration::from_secs(10), tail(&app.base, key).output())
            .await
            .expect("tail exits promptly")
            .expect("run casehub tail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{key}: exited {:?}", out.status);
        assert!(stderr.contains(&message), "{key}: stderr: {stderr}");
        assert!(
            stderr.contains(expected.status.as_str()),
            "{key}: stderr: {stderr}"
        );
        assert!(out.stdout.is_empty(), "{key}: stdout: {:?}", out.stdout);
    }
    app.stop().await;
}
