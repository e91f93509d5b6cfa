//! The delivery sender against a real local HTTP receiver that verifies both signature forms
//! with code written here from the contract's definition (not the crate's signing module).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use casehub_actors::delivery::sender::Sender;
use casehub_actors::delivery::{Endpoint, EventPattern};
use chrono::Utc;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;

/// What the receiver saw of each request.
#[derive(Debug, Clone)]
struct Seen {
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
}

fn mac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).unwrap();
    m.update(data);
    m.finalize().into_bytes().to_vec()
}

/// Verifies a delivery as a receiver would, from CONTRACT §5.
fn verify(seen: &Seen, secret: &str) -> (bool, bool) {
    let h = |n: &str| seen.headers[n].to_str().unwrap().to_string();
    let hex_ok = h("x-webhook-signature") == hex::encode(mac(secret.as_bytes(), &seen.body));
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let signed = format!(
        "{}.{}.{}",
        h("webhook-id"),
        h("webhook-timestamp"),
        String::from_utf8_lossy(&seen.body)
    );
    let expected = format!("v1,{}", STANDARD.encode(mac(&key, signed.as_bytes())));
    let std_ok = h("webhook-signature").split(' ').any(|s| s == expected);
    (hex_ok, std_ok)
}

async fn record(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    r.seen.lock().push(Seen { headers, body });
    (StatusCode::OK, "ok")
}

async fn start(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

fn endpoint(url: String) -> Endpoint {
    Endpoint::new(url, vec![EventPattern::All], Utc::now())
}

#[tokio::test]
async fn signed_delivery_verifies_in_both_forms_and_across_rotation() {
    let receiver = Receiver::default();
    let base = start(
        Router::new()
            .route("/hook", post(record))
            .with_state(receiver.clone()),
    )
    .await;
    let sender = Sender::new(Duration::from_secs(5), true).unwrap();
    let mut ep = endpoint(format!("{base}/hook"));
    let body = br#"{"event":"case.created","data":{"case_id":"x"}}"#;
    let out = sender
        .send(&ep, "msg_01TEST", "case.created", body.to_vec(), Utc::now())
        .await;
    assert!(out.delivered(), "{out:?}");
    assert_eq!(out.snippet.as_deref(), Some("ok"));
    let seen = receiver.seen.lock()[0].clone();
    assert_eq!(verify(&seen, &ep.secret), (true, true));
    assert_eq!(seen.headers["webhook-id"], "msg_01TEST");
    assert_eq!(seen.headers["x-webhook-event"], "case.created");
    assert_eq!(seen.headers["content-type"], "application/json");
    assert!(
        seen.headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("casehub/")
    );
    let ts: i64 = seen.headers["webhook-timestamp"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((Utc::now().timestamp() - ts).abs() <= 5);
    assert_eq!(&seen.body[..], body);

    // After rotation both the new and the old secret verify the Standard Webhooks header.
    let old = ep.secret.clone();
    ep.rotate_secret(Utc::now());
    sender
        .send(&ep, "msg_02TEST", "case.created", body.to_vec(), Utc::now())
        .await;
    let seen = receiver.seen.lock()[1].clone();
    assert_eq!(
        seen.headers["webhook-signature"]
            .to_str()
            .unwrap()
            .split(' ')
            .count(),
        2
    );
    assert!(verify(&seen, &ep.secret).1);
    assert!(verify(&seen, &old).1);
}

#[tokio::test]
async fn private_targets_refused_redirects_not_followed_retry_after_read_timeouts() {
    let receiver = Receiver::default();
    let router = Router::new()
        .route("/hook", post(record))
        .route(
            "/redirect",
            post(|| async { (StatusCode::FOUND, [("location", "/hook")], "") }),
        )
        .route(
            "/busy",
            post(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [("retry-after", "3")],
                    "busy",
                )
            }),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .with_state(receiver.clone());
    let base = start(router).await;
    let port = base.rsplit(':').next().unwrap().to_string();
    let body = b"{}";

    let guarded = Sender::new(Duration::from_secs(5), false).unwrap();
    for url in [
        format!("{base}/hook"),
        format!("http://localhost:{port}/hook"),
    ] {
        let out = guarded
            .send(&endpoint(url.clone()), "m", "e", body.to_vec(), Utc::now())
            .await;
        assert!(
            out.status.is_none() && out.error.is_some(),
            "{url}: {out:?}"
        );
    }
    assert!(
        receiver.seen.lock().is_empty(),
        "a refused target was contacted"
    );

    let open = Sender::new(Duration::from_millis(300), true).unwrap();
    let out = open
        .send(
            &endpoint(format!("{base}/redirect")),
            "m",
            "e",
            body.to_vec(),
            Utc::now(),
        )
        .await;
    assert_eq!(out.status, Some(302));
    assert!(!out.delivered());
    assert!(receiver.seen.lock().is_empty(), "the redirect was followed");

    let out = open
        .send(
            &endpoint(format!("{base}/busy")),
            "m",
            "e",
            body.to_vec(),
            Utc::now(),
        )
        .await;
    assert_eq!(out.status, Some(503));
    assert_eq!(out.retry_after, Some(Duration::from_secs(3)));
    assert_eq!(out.snippet.as_deref(), Some("busy"));

    let out = open
        .send(
            &endpoint(format!("{base}/slow")),
            "m",
            "e",
            body.to_vec(),
            Utc::now(),
        )
        .await;
    assert_eq!(out.error.as_deref(), Some("timed out"));
}
