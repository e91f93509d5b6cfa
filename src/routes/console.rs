//! `GET /console` (CONTRACT §6): the reviewer console, one self-contained page.
//!
//! The page (`console.html`, compiled in) carries its own CSS and JavaScript and fetches nothing
//! but the room WebSocket on this host. Its Content-Security-Policy allows exactly its one
//! inline `<script>` and one inline `<style>` by their SHA-256 hashes, so an injected script or
//! inline handler would not run even if some text ever escaped the page's escaping. The page
//! needs no credentials: the reviewer's token only ever travels on the WebSocket.

use std::sync::LazyLock;

use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderMap, HeaderValue, header::HOST};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

/// The page, as served.
const PAGE: &str = include_str!("console.html");

/// The policy without its `connect-src`, which names the request's host (see [`policy`]).
static BASE_POLICY: LazyLock<String> = LazyLock::new(|| {
    let script = inline_hash(PAGE, "<script>", "</script>");
    let style = inline_hash(PAGE, "<style>", "</style>");
    format!(
        "default-src 'none'; script-src '{script}'; style-src '{style}'; img-src 'self' data:; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
});

/// `'sha256-…'` of the text between the page's one `open` and `close` tag.
fn inline_hash(page: &str, open: &str, close: &str) -> String {
    let start = page.find(open).map(|i| i + open.len());
    let end = page.rfind(close);
    let body = match (start, end) {
        (Some(s), Some(e)) if s <= e => &page[s..e],
        _ => "",
    };
    format!(
        "sha256-{}",
        STANDARD.encode(Sha256::digest(body.as_bytes()))
    )
}

/// The full policy. `connect-src 'self'` covers same-origin `ws:`/`wss:` in current browsers;
/// the explicit `ws://host wss://host` covers older ones. The host is only echoed when it is a
/// plain `name[:port]` or `[v6][:port]`, so a forged `Host` cannot add a directive.
fn policy(headers: &HeaderMap) -> String {
    let host = headers.get(HOST).and_then(|h| h.to_str().ok()).filter(|h| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    });
    match host {
        Some(h) => format!("{}; connect-src 'self' ws://{h} wss://{h}", *BASE_POLICY),
        None => format!("{}; connect-src 'self'", *BASE_POLICY),
    }
}

/// The reviewer console.
///
/// `GET /console` — no credentials; a page where a reviewer pastes (or carries as
/// `?token=…&room=…`) a reviewer token, then works the room's pending reviews live over
/// `GET /ws/rooms/{room}`.
#[utoipa::path(
    get,
    path = "/console",
    tag = "reviews",
    responses(
        (status = 200, description = "The reviewer console: one HTML page with inline CSS and \
         JavaScript", content_type = "text/html; charset=utf-8", body = String),
    ),
)]
pub async fn page(headers: HeaderMap) -> Response {
    let csp = HeaderValue::from_str(&policy(&headers))
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'none'"));
    (
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (CONTENT_SECURITY_POLICY, csp),
            (CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            // The token may arrive in the query; never pass the URL on.
            (REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
            (X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
        ],
        PAGE,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_one_inline_script_and_style_and_no_inline_handlers() {
        assert_eq!(PAGE.matches("<script>").count(), 1);
        assert_eq!(PAGE.matches("<style>").count(), 1);
        // Inline handlers and external resources would be refused by the policy.
        for banned in [
            " onclick=",
            " onload=",
            " onerror=",
            "src=\"http",
            "href=\"http",
        ] {
            assert!(!PAGE.contains(banned), "console.html contains {banned}");
        }
        assert!(
            !PAGE.contains("innerHTML"),
            "console.html must not use innerHTML"
        );
    }

    #[test]
    fn the_policy_hashes_the_inline_code_and_only_echoes_a_plain_host() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("127.0.0.1:8080"));
        let p = policy(&headers);
        assert!(p.contains(&format!("'{}'", inline_hash(PAGE, "<script>", "</script>"))));
        assert!(p.ends_with("connect-src 'self' ws://127.0.0.1:8080 wss://127.0.0.1:8080"));

        headers.insert(HOST, HeaderValue::from_static("evil; script-src *"));
        assert!(policy(&headers).ends_with("connect-src 'self'"));
    }
}
