//! Endpoint secrets at rest (`delivery.secret_key`, CONTRACT §5): with a key the stored record
//! never holds a secret, read raw (the redb file's bytes, or the Redis hash with `redis-cli`);
//! deliveries still verify; plaintext rows stored before a key was set keep working and are
//! sealed at the next start.

use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use casehub::settings::Secret;
use reqwest::Method;
use serde_json::json;

use crate::delivery::{
    assert_signed, assert_standard_signed, deliver_locally, endpoint, settle, start_receiver,
};
use crate::harness::*;

const SSL: &str = "Our SSL certificate expired and browsers show a certificate error.";

fn key() -> String {
    STANDARD.encode([9u8; 32])
}

fn with_key(s: &mut casehub::Settings) {
    deliver_locally(s);
    s.delivery.secret_key = Secret::new(key());
}

/// What the store holds for endpoint `id`, raw: the Redis hash field as stored, or every byte
/// of the redb file (so no copy anywhere in it escapes the check). Call with the server stopped.
fn raw_store(store: &TestStore, id: &str) -> Vec<u8> {
    match store {
        TestStore::Embedded(dir) => std::fs::read(dir.path().join("casehub.redb")).unwrap(),
        TestStore::Redis { server, prefix } => {
            let out = Command::new("redis-cli")
                .args(["-u", &server.url(), "--raw", "HGET"])
                .arg(format!("{prefix}endpoints"))
                .arg(id)
                .output()
                .expect("redis-cli");
            assert!(out.status.success());
            assert!(out.stdout.len() > 10, "no endpoint record for {id}");
            out.stdout
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Neither the secret nor its key part (the base64 after `whsec_`) is in `raw`.
fn assert_absent(raw: &[u8], secret: &str) {
    assert!(!contains(raw, secret), "the secret is stored in plaintext");
    assert!(!contains(raw, &secret["whsec_".len()..]));
}

/// Rotates endpoint `id`'s secret; answers the new one.
pub(crate) async fn rotate(app: &TestApp, id: &str) -> String {
    let r = app
        .send(
            Method::POST,
            &format!("/v1/webhooks/endpoints/{id}/rotate-secret"),
            Some(ADMIN_KEY),
            None,
        )
        .await;
    assert_eq!(r.status.as_u16(), 200, "{}", r.body);
    r.body["data"]["secret"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn with_a_key_no_secret_is_stored_and_deliveries_still_verify() {
    let (base, rx) = start_receiver().await;
    let store = TestStore::new();
    let app = spawn_on(&store, with_key).await;
    let (id, first) = endpoint(
        &app,
        format!("{base}/a"),
        json!(["case.created"]),
        json!({}),
    )
    .await;
    let second = rotate(&app, &id).await;
    app.intake(SSL).await;
    settle("the delivery arrives", || rx.got("a").len() == 1).await;
    // Signed with the new secret and, during the overlap, the rotated-out one.
    assert_signed(&rx.got("a")[0], &second);
    assert_standard_signed(&rx.got("a")[0], &first);
    app.stop().await;

    let raw = raw_store(&store, &id);
    assert!(contains(&raw, "enc:v1:"), "no sealed value stored");
    assert_absent(&raw, &first);
    assert_absent(&raw, &second);

    // After a restart with the same key the stored secrets still sign.
    let app = spawn_on(&store, with_key).await;
    app.intake(SSL).await;
    settle("the delivery after the restart arrives", || {
        rx.got("a").len() == 2
    })
    .await;
    assert_signed(&rx.got("a")[1], &second);
    app.stop().await;
}

#[tokio::test]
async fn plaintext_secrets_from_before_a_key_keep_working_and_get_sealed() {
    let (base, rx) = start_receiver().await;
    let store = TestStore::new();
    let app = spawn_on(&store, deliver_locally).await;
    let (id, secret) = endpoint(
        &app,
        format!("{base}/b"),
        json!(["case.created"]),
        json!({}),
    )
    .await;
    app.stop().await;
    // Without a key the secret is stored as it is (and the raw read would find it).
    assert!(contains(&raw_store(&store, &id), &secret));

    let app = spawn_on(&store, with_key).await;
    app.intake(SSL).await;
    settle("the delivery arrives", || rx.got("b").len() == 1).await;
    assert_signed(&rx.got("b")[0], &secret);
    app.stop().await;
    if let TestStore::Redis { .. } = store {
        // The start sealed it. (The redb file may keep the old plaintext in freed pages, so
        // only the Redis record is checked here; the test above covers a fresh redb file.)
        assert_absent(&raw_store(&store, &id), &secret);
    }

    // A start without the key refuses, naming the setting, instead of failing every delivery.
    let mut settings = test_settings();
    store.apply(&mut settings);
    let err = match casehub::Application::build(settings).await {
        Ok(_) => panic!("started without the key that sealed the secrets"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("delivery.secret_key"), "{err}");
}
