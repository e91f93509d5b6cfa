//! WebSocket upgrades on tokio-tungstenite directly.
//!
//! axum's wrapper hides tungstenite's frames, and the rooms need them: tungstenite's write buffer
//! keeps the capacity of the largest frame it ever held, so a welcome listing many pending
//! reviews and a big presence list, sent as one frame, would pin tens of KiB to every connection
//! for its whole life. Sent as fragments of a few KiB (RFC 6455 §5.4; every client reassembles
//! them), a connection's buffer stays within a small multiple of the fragment size instead.

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// An upgraded server-side connection.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// A WebSocket upgrade request, or why the request is not one. It never rejects, so a handler
/// can check authentication first and report a bad upgrade in the error envelope afterwards.
pub struct Upgrade(Result<Pending, Refusal>);

/// Why a request cannot be upgraded (RFC 6455 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not a well-formed opening handshake: answer 400.
    Malformed(&'static str),
    /// A WebSocket version other than 13: answer 426 with `Sec-WebSocket-Version: 13`.
    Version,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Malformed(why) => f.write_str(why),
            Refusal::Version => f.write_str("Sec-WebSocket-Version must be 13"),
        }
    }
}

struct Pending {
    key: HeaderValue,
    on_upgrade: OnUpgrade,
}

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        Ok(Upgrade(pending(parts)))
    }
}

fn pending(parts: &mut Parts) -> Result<Pending, Refusal> {
    use Refusal::Malformed;
    if parts.method != Method::GET {
        return Err(Malformed("a WebSocket upgrade must be a GET"));
    }
    let headers = &parts.headers;
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return Err(Malformed("the Connection header must include upgrade"));
    }
    if !has_token(headers, header::UPGRADE, "websocket") {
        return Err(Malformed("the Upgrade header must be websocket"));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        return Err(Refusal::Version);
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .cloned()
        .ok_or(Malformed("the Sec-WebSocket-Key header is missing"))?;
    if !valid_key(key.as_bytes()) {
        return Err(Malformed(
            "Sec-WebSocket-Key must be 16 bytes in base64 (24 characters)",
        ));
    }
    let on_upgrade = parts
        .extensions
        .remove::<OnUpgrade>()
        .ok_or(Malformed("this connection cannot be upgraded"))?;
    Ok(Pending { key, on_upgrade })
}

/// A nonce of 16 bytes in base64 (RFC 6455 §4.1).
fn valid_key(key: &[u8]) -> bool {
    use base64::Engine;
    key.len() == 24
        && base64::engine::general_purpose::STANDARD
            .decode(key)
            .is_ok_and(|nonce| nonce.len() == 16)
}

/// Whether the comma-separated header `name` lists `token` (case-insensitively).
fn has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

impl Upgrade {
    /// Answers `101 Switching Protocols` and, once hyper hands the connection over, runs `serve`
    /// on it in a task of its own. Errs with the reason when the request is not an upgrade.
    pub fn on_upgrade<F, Fut>(self, config: WebSocketConfig, serve: F) -> Result<Response, Refusal>
    where
        F: FnOnce(Socket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Pending { key, on_upgrade } = self.0?;
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let io = TokioIo::new(upgraded);
                    serve(WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await)
                        .await;
                }
                Err(e) => tracing::debug!(error = %e, "WebSocket upgrade failed"),
            }
        });
        let response = Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(
                header::SEC_WEBSOCKET_ACCEPT,
                derive_accept_key(key.as_bytes()),
            )
            .body(Body::empty());
        // The header values are ASCII the code above produced; the builder cannot fail on them.
        response.map_err(|_| Refusal::Malformed("cannot build the upgrade response"))
    }
}

/// The messages that send `text` (serialised JSON, so valid UTF-8): itself when it fits in
/// `fragment` bytes, otherwise a text frame and continuation frames of at most `fragment` bytes
/// each, the last one final. (A fragment boundary may fall inside a UTF-8 sequence; the
/// receiver validates the reassembled message, RFC 6455 §5.6.)
pub fn text_message(text: Bytes, fragment: usize) -> Vec<Message> {
    let fragment = fragment.max(1);
    if text.len() <= fragment {
        return vec![Message::Text(
            Utf8Bytes::try_from(text).unwrap_or_else(|_| Utf8Bytes::from_static("{}")),
        )];
    }
    if std::str::from_utf8(&text).is_err() {
        // Never sent: fragments are not checked by the codec the way a text message is.
        return vec![Message::Text(Utf8Bytes::from_static("{}"))];
    }
    let count = text.len().div_ceil(fragment);
    (0..count)
        .map(|i| {
            let chunk = text.slice(i * fragment..((i + 1) * fragment).min(text.len()));
            let opcode = if i == 0 { Data::Text } else { Data::Continue };
            Message::Frame(Frame::message(chunk, OpCode::Data(opcode), i + 1 == count))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payloads(messages: &[Message]) -> Vec<(bool, bool, Vec<u8>)> {
        messages
            .iter()
            .map(|m| match m {
                Message::Frame(f) => (
                    f.header().opcode == OpCode::Data(Data::Continue),
                    f.header().is_final,
                    f.payload().to_vec(),
                ),
                Message::Text(t) => (false, true, t.as_bytes().to_vec()),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    #[test]
    fn short_text_is_one_message() {
        let m = text_message(Bytes::from_static(b"{\"a\":1}"), 16);
        assert_eq!(payloads(&m), vec![(false, true, b"{\"a\":1}".to_vec())]);
        assert!(matches!(m[0], Message::Text(_)));
    }

    #[test]
    fn long_text_is_fragmented_in_order_and_only_the_last_is_final() {
        let text = "é".repeat(10); // 20 bytes; 6-byte fragments split inside characters
        let m = text_message(Bytes::from(text.clone()), 6);
        let p = payloads(&m);
        assert_eq!(p.len(), 4);
        assert_eq!(
            p.iter().map(|(c, f, _)| (*c, *f)).collect::<Vec<_>>(),
            vec![(false, false), (true, false), (true, false), (true, true)]
        );
        let joined: Vec<u8> = p.into_iter().flat_map(|(_, _, b)| b).collect();
        assert_eq!(joined, text.into_bytes());
    }

    #[test]
    fn invalid_utf8_is_never_sent_whole_or_in_fragments() {
        for len in [4, 40] {
            let mut bytes = vec![b'a'; len];
            bytes[1] = 0xff;
            let m = text_message(Bytes::from(bytes), 16);
            assert!(matches!(m.as_slice(), [Message::Text(t)] if t.as_str() == "{}"));
        }
    }

    #[test]
    fn a_text_of_exactly_one_fragment_is_not_split() {
        let m = text_message(Bytes::from_static(b"123456"), 6);
        assert!(matches!(m.as_slice(), [Message::Text(_)]));
    }
}
