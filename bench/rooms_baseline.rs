//! The review-room benchmark baseline: a minimal tokio-tungstenite broadcast server with no
//! casehub logic, so `rooms-load` can report casehub's fan-out latency and memory per connection
//! next to what the same WebSocket library costs on its own, in the same run.
//!
//! It speaks just enough of the room protocol (CONTRACT §6) for the load tool: every connection
//! gets `{"type":"welcome","seq",…,"pending":[one review]}`; a `claim` or `release` frame becomes
//! the next numbered `event` (`review.claimed` / `review.released`), fanned out to every
//! connection through a bounded per-connection buffer (256 frames, like casehub's default), and
//! an `ack` to its sender. One hub task owns the members and the seq, as casehub's room actor
//! does; one task per connection reads and writes. No tokens, no presence, no store, no pings.
//!
//! Usage: rooms-baseline [ADDR] (default 127.0.0.1:18091)

use std::collections::HashMap;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// Frames queued per connection at most (casehub's `rooms.outgoing_buffer` default).
const OUTGOING_BUFFER: usize = 256;
/// The one review every welcome lists as pending.
const REVIEW_ID: &str = "rev_baseline";

enum HubMsg {
    Join(u64, mpsc::Sender<Utf8Bytes>, oneshot::Sender<Utf8Bytes>),
    Leave(u64),
    Publish {
        conn: u64,
        event: &'static str,
        reference: Value,
        review_id: String,
    },
}

async fn hub(mut inbox: mpsc::UnboundedReceiver<HubMsg>) {
    let mut seq: u64 = 0;
    let mut members: HashMap<u64, mpsc::Sender<Utf8Bytes>> = HashMap::new();
    while let Some(msg) = inbox.recv().await {
        match msg {
            HubMsg::Join(conn, tx, reply) => {
                let welcome = json!({
                    "type": "welcome",
                    "room": "baseline",
                    "seq": seq,
                    "pending": [{"review_id": REVIEW_ID, "claimed_by": null}],
                    "presence": [],
                });
                members.insert(conn, tx);
                let _ = reply.send(welcome.to_string().into());
            }
            HubMsg::Leave(conn) => {
                members.remove(&conn);
            }
            HubMsg::Publish {
                conn,
                event,
                reference,
                review_id,
            } => {
                seq += 1;
                let frame: Utf8Bytes = json!({
                    "type": "event",
                    "seq": seq,
                    "event": event,
                    "data": {
                        "review_id": review_id,
                        "case_id": "00000000-0000-0000-0000-000000000000",
                        "reviewer": "publisher@bench.test",
                        "expires_at": "2026-01-01T00:00:00.000Z",
                    },
                    "at": "2026-01-01T00:00:00.000Z",
                })
                .to_string()
                .into();
                if let Some(tx) = members.get(&conn) {
                    let ack = json!({"type": "ack", "ref": reference, "result": {}});
                    let _ = tx.try_send(ack.to_string().into());
                }
                // A full or closed buffer drops the member, as casehub's 4008 does.
                members.retain(|_, tx| tx.try_send(frame.clone()).is_ok());
            }
        }
    }
}

async fn connection(stream: TcpStream, conn: u64, hub: mpsc::UnboundedSender<HubMsg>) {
    let _ = stream.set_nodelay(true);
    // The buffer sizes casehub's room endpoint uses, so the memory comparison is like for like.
    let config = WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024));
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (tx, mut rx) = mpsc::channel::<Utf8Bytes>(OUTGOING_BUFFER);
    let (reply, welcome) = oneshot::channel();
    if hub.send(HubMsg::Join(conn, tx, reply)).is_err() {
        return;
    }
    let Ok(welcome) = welcome.await else { return };
    let (mut sink, mut stream) = ws.split();
    let writer = async {
        if sink.send(Message::Text(welcome)).await.is_err() {
            return;
        }
        while let Some(frame) = rx.recv().await {
            if sink.send(Message::Text(frame)).await.is_err() {
                return;
            }
        }
    };
    let reader = async {
        while let Some(Ok(message)) = stream.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            let Ok(frame) = serde_json::from_str::<Value>(text.as_str()) else {
                continue;
            };
            let event = match frame["type"].as_str() {
                Some("claim") => "review.claimed",
                Some("release") => "review.released",
                _ => continue,
            };
            let publish = HubMsg::Publish {
                conn,
                event,
                reference: frame["ref"].clone(),
                review_id: frame["review_id"].as_str().unwrap_or(REVIEW_ID).to_string(),
            };
            if hub.send(publish).is_err() {
                return;
            }
        }
    };
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
    }
    let _ = hub.send(HubMsg::Leave(conn));
}

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18091".to_string());
    let listener = TcpListener::bind(&addr)
        .await
        .expect("bind the rooms baseline");
    let (hub_tx, hub_rx) = mpsc::unbounded_channel();
    tokio::spawn(hub(hub_rx));
    let mut next: u64 = 0;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of file descriptors or similar: back off instead of spinning.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        next += 1;
        tokio::spawn(connection(stream, next, hub_tx.clone()));
    }
}
