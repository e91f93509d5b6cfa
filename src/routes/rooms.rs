//! Review rooms over WebSocket (CONTRACT §6): `GET /ws/rooms/{room}` and `GET /ops/rooms`.
//!
//! The handshake is checked before the upgrade, so a missing or bad token is a plain 401 and a
//! room the token does not cover a 403, both in the error envelope. After the upgrade each
//! connection is a reader and a writer: the reader hands frames to the room actor, the writer
//! drains the connection's bounded outgoing buffer, pings, and closes with the code the room or
//! the server asks for (4008 too slow, 1001 shutting down).

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use casehub_actors::rooms::protocol::{self, CLOSE_GOING_AWAY, CLOSE_INTERNAL};
use casehub_actors::rooms::{JoinRequest, Kick, Membership};
use casehub_actors::routing::valid_room;
use futures::{SinkExt, StreamExt};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Auth;
use crate::error::{ApiError, ApiResult};
use crate::extract::{ClientIp, QueryPairs};
use crate::openapi::{AdminErrors, ErrorEnvelope};
use crate::state::AppState;
use crate::ws::{Refusal, Socket, Upgrade, text_message};

/// How long a close frame may take to reach a peer that is not reading.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// At most this many queued frames are written with one flush.
const WRITE_BATCH: usize = 16;

/// Bytes gathered before a write happens without a flush, and the largest frame sent: longer
/// messages (a welcome in a busy room) go out in fragments of this size. A connection's write
/// buffer so stays within a few times this (gathered frames plus one, as `Vec` grows), however
/// large a welcome it once sent.
const WRITE_BUFFER: usize = 4 * 1024;

#[derive(IntoParams)]
#[into_params(parameter_in = Path)]
#[allow(dead_code)]
struct RoomPath {
    /// Room name: lowercase letters, digits and dashes.
    room: String,
}

#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct JoinQuery {
    /// Reviewer token (or `Authorization: Bearer`).
    token: Option<String>,
    /// Resume after this room seq (with `epoch`): the missed events are replayed first.
    since: Option<u64>,
    /// The epoch `since` belongs to (from the last welcome).
    epoch: Option<String>,
}

/// Where resuming starts.
fn resume_point(query: &QueryPairs) -> ApiResult<(Option<u64>, Option<String>)> {
    let since = match query.get("since").filter(|s| !s.is_empty()) {
        None => None,
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
            ApiError::invalid_format("since", "since must be a room seq (a whole number ≥ 0)")
        })?),
    };
    let epoch = match query.get("epoch").filter(|e| !e.is_empty()) {
        None => None,
        Some(e) if e.len() <= 64 && e.bytes().all(|b| b.is_ascii_alphanumeric()) => {
            Some(e.to_string())
        }
        Some(_) => {
            return Err(ApiError::invalid_format(
                "epoch",
                "epoch must be the alphanumeric epoch of a welcome",
            ));
        }
    };
    Ok((since, epoch))
}

/// Join a review room.
///
/// `GET /ws/rooms/{room}?token=…[&since=…&epoch=…]` upgrades to a WebSocket. The server sends
/// `welcome` first (pending reviews, presence, epoch, seq; `reset: true` when `since` could not
/// be resumed), then replayed and live `event` frames, `presence`, and `ack` / `error` answers
/// to the reviewer's `claim`, `release`, `approve`, `reject` and `edit` frames (see CONTRACT §6).
/// Close codes: 4008 the connection read too slowly (resume with `since`), 1001 the server is
/// shutting down.
#[utoipa::path(
    get,
    path = "/ws/rooms/{room}",
    tag = "rooms",
    operation_id = "join_room",
    params(RoomPath, JoinQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "`INVALID_FORMAT`: bad room name, `since` or `epoch`, or \
         not a WebSocket upgrade request", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`: no reviewer token, or an invalid or \
         expired one", body = ErrorEnvelope),
        (status = 403, description = "`FORBIDDEN`: the token does not cover this room",
         body = ErrorEnvelope),
        (status = 426, description = "`INVALID_FORMAT`: a WebSocket version other than 13 (the \
         `Sec-WebSocket-Version: 13` header names the one spoken)", body = ErrorEnvelope),
    ),
    security(("reviewer_token" = [])),
)]
pub async fn join(
    State(state): State<AppState>,
    Path(room): Path<String>,
    headers: HeaderMap,
    query: QueryPairs,
    upgrade: Upgrade,
) -> ApiResult<Response> {
    if !valid_room(&room) {
        return Err(ApiError::invalid_format(
            "room",
            "room must be 1-64 lowercase letters, digits or dashes",
        ));
    }
    let token = query
        .get("token")
        .filter(|t| !t.is_empty())
        .or_else(|| Auth::bearer(&headers))
        .ok_or_else(|| {
            ApiError::unauthorized(
                "A reviewer token is required (?token= or Authorization: Bearer)",
            )
        })?;
    let claims = state.auth.verify_reviewer(token)?;
    if !claims.may_enter(&room) {
        return Err(ApiError::forbidden(format!(
            "Your reviewer token does not cover room {room}"
        )));
    }
    let (since, epoch) = resume_point(&query)?;
    let max_frame = state.settings.rooms.max_frame;
    let config = WebSocketConfig::default()
        .max_message_size(Some(max_frame))
        .max_frame_size(Some(max_frame))
        // Small buffers: an idle connection should cost a few KiB, not the 128 KiB defaults.
        .read_buffer_size(4 * 1024)
        // Frames are gathered up to this size and written together (see `WRITE_BATCH`).
        .write_buffer_size(WRITE_BUFFER);
    let joining = Joining {
        room,
        reviewer: claims.sub,
        since,
        epoch,
    };
    upgrade
        .on_upgrade(config, move |socket| run(state, socket, joining))
        .map_err(|problem| {
            let error = ApiError::invalid_format(
                "upgrade",
                format!("this endpoint takes a WebSocket upgrade request ({problem})"),
            );
            match problem {
                Refusal::Malformed(_) => error,
                // RFC 6455 §4.2.2: name the version this server speaks.
                Refusal::Version => error
                    .with_status(axum::http::StatusCode::UPGRADE_REQUIRED)
                    .with_header(
                        axum::http::header::SEC_WEBSOCKET_VERSION,
                        axum::http::HeaderValue::from_static("13"),
                    ),
            }
        })
}

/// What the writer sends next.
enum Outgoing {
    Frame(Bytes),
    Ping,
}

struct Joining {
    room: String,
    reviewer: String,
    since: Option<u64>,
    epoch: Option<String>,
}

fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// Writes `frame`, fragmented when it is long; a fragmented message is flushed fragment by
/// fragment so the write buffer never holds more than one.
async fn feed<S>(sink: &mut S, frame: Bytes) -> Result<(), S::Error>
where
    S: futures::Sink<Message> + Unpin,
{
    let mut messages = text_message(frame, WRITE_BUFFER);
    if messages.len() == 1 {
        return sink.feed(messages.remove(0)).await;
    }
    for message in messages {
        sink.send(message).await?;
    }
    Ok(())
}

/// One reviewer connection, from join to close.
async fn run(state: AppState, socket: Socket, joining: Joining) {
    let settings = state.settings.rooms.clone();
    let (tx, mut rx) = mpsc::channel::<Bytes>(settings.outgoing_buffer);
    let (kick_tx, mut kick) = oneshot::channel::<Kick>();
    let (mut sink, mut stream) = socket.split();
    let request = JoinRequest {
        reviewer: joining.reviewer.clone(),
        since: joining.since,
        epoch: joining.epoch,
        tx: tx.clone(),
        kick: kick_tx,
    };
    let mut membership: Membership = match state.rooms.join(&joining.room, request).await {
        Ok(m) => m,
        Err(e) => {
            tracing::warn!(room = %joining.room, error = %e, "joining a room failed");
            let _ = tokio::time::timeout(
                CLOSE_TIMEOUT,
                sink.send(close(CLOSE_INTERNAL, "room unavailable; retry")),
            )
            .await;
            return;
        }
    };
    let Some(joined) = membership.take_joined() else {
        return;
    };
    tracing::debug!(room = %joining.room, reviewer = %joining.reviewer, "reviewer joined");

    let mut shutdown = state.shutdown.clone();
    let writer = async {
        let stopped = Kick {
            code: CLOSE_INTERNAL,
            reason: "room stopped",
        };
        let going_away = Kick {
            code: CLOSE_GOING_AWAY,
            reason: "server shutting down",
        };
        // One future for the whole connection, so waiting on shutdown registers with the watch
        // once rather than once per frame.
        let shutting_down = shutdown.wait_for(|down| *down);
        tokio::pin!(shutting_down);
        // Welcome and replay first; live frames queued meanwhile follow in order. A peer that
        // stops reading here is kicked (4008) like anywhere else.
        let welcome = async {
            for frame in std::iter::once(joined.welcome).chain(joined.replay) {
                feed(&mut sink, frame).await?;
            }
            sink.flush().await
        };
        let kicked = tokio::select! {
            biased;
            k = &mut kick => Some(k.unwrap_or(stopped)),
            _ = &mut shutting_down => Some(going_away),
            sent = welcome => match sent {
                Ok(()) => None,
                Err(_) => return,
            },
        };
        let mut ping = tokio::time::interval(settings.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.tick().await;
        let closing = if let Some(kick) = kicked {
            kick
        } else {
            loop {
                let outgoing = tokio::select! {
                    biased;
                    k = &mut kick => break k.unwrap_or(stopped),
                    _ = &mut shutting_down => break going_away,
                    // Before frames: a steady stream must not starve the pings (a client that
                    // only listens answers nothing else, and is dropped when it goes silent).
                    _ = ping.tick() => Outgoing::Ping,
                    frame = rx.recv() => match frame {
                        Some(frame) => Outgoing::Frame(frame),
                        None => return,
                    },
                };
                // Frames already queued behind this one go out in the same write: under a burst
                // (an escalation is two room events) a connection costs one syscall, not one per
                // frame. A peer that stops reading blocks the write; the room then kicks it (4008).
                let batch = async {
                    match outgoing {
                        Outgoing::Frame(frame) => feed(&mut sink, frame).await?,
                        Outgoing::Ping => sink.feed(Message::Ping(Bytes::new())).await?,
                    }
                    for _ in 1..WRITE_BATCH {
                        let Ok(frame) = rx.try_recv() else { break };
                        feed(&mut sink, frame).await?;
                    }
                    sink.flush().await
                };
                tokio::select! {
                    biased;
                    k = &mut kick => break k.unwrap_or(stopped),
                    sent = batch => if sent.is_err() { return; },
                }
            }
        };
        let _ = tokio::time::timeout(
            CLOSE_TIMEOUT,
            sink.send(close(closing.code, closing.reason)),
        )
        .await;
    };
    let reader = async {
        loop {
            let next = tokio::time::timeout(settings.idle_timeout, stream.next()).await;
            let message = match next {
                Err(_) => {
                    tracing::debug!(room = %joining.room, "dropping a silent connection");
                    return;
                }
                Ok(None) | Ok(Some(Err(_))) => return,
                Ok(Some(Ok(message))) => message,
            };
            match message {
                Message::Text(body) => match protocol::parse(body.as_str()) {
                    Ok(frame) => {
                        if !membership.client(frame) {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.try_send(e.frame());
                    }
                },
                Message::Binary(_) => {
                    let _ = tx.try_send(protocol::error(
                        &Value::Null,
                        "UNSUPPORTED_MEDIA_TYPE",
                        "frames are JSON text, not binary",
                    ));
                }
                Message::Close(_) => return,
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    };
    tokio::select! {
        _ = writer => {}
        _ = reader => {}
    }
    // Dropping the membership leaves the room: claims lapse, presence updates.
    drop(membership);
    tracing::debug!(room = %joining.room, reviewer = %joining.reviewer, "reviewer left");
}

/// The rooms running on this node.
#[derive(Serialize, ToSchema)]
pub struct RoomsView {
    pub success: bool,
    /// One entry per running room.
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<Value>,
}

/// Review rooms on this node.
///
/// `GET /ops/rooms` — admin: per room its epoch, seq, connections, reviewers present, pending
/// reviews and live claims.
#[utoipa::path(
    get,
    path = "/ops/rooms",
    tag = "ops",
    operation_id = "list_rooms",
    responses(
        (status = 200, description = "The running rooms", body = RoomsView),
        AdminErrors,
    ),
    security(("admin_key" = [])),
)]
pub async fn list(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
) -> ApiResult<impl IntoResponse> {
    state.auth.require_admin(&headers, ip)?;
    let rooms = state.rooms.info().await;
    Ok(Json(RoomsView {
        success: true,
        data: rooms.iter().map(|info| json!(info)).collect(),
    }))
}
