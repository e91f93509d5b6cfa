//! One signed HTTP attempt (CONTRACT §5 "Every delivery carries"): headers, signatures, a
//! per-attempt timeout, no redirects, and the SSRF guard applied to the addresses the connection
//! actually uses. Name resolution goes through [`GuardedResolver`], so the checked addresses are
//! the ones reqwest connects to (pinned: no second lookup a DNS rebinding could change).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER, USER_AGENT};

use super::endpoint::Endpoint;
use super::signing::{body_signature, standard_header};
use super::ssrf::is_forbidden;

/// The longest response snippet kept in the delivery log.
pub const SNIPPET_MAX: usize = 1024;

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// The HTTP status, when a response arrived.
    pub status: Option<u16>,
    /// Why no (acceptable) response arrived: timeout, connection error, refused address.
    pub error: Option<String>,
    pub duration: Duration,
    /// The start of the response body, at most [`SNIPPET_MAX`] bytes, cut on a char boundary.
    pub snippet: Option<String>,
    /// `Retry-After` on a 429 or 503, in seconds form or HTTP date.
    pub retry_after: Option<Duration>,
}

impl Outcome {
    /// A 2xx acknowledges the delivery.
    pub fn delivered(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Resolves names and refuses every forbidden address unless private targets are allowed.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || !is_forbidden(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no permitted address").into());
            }
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

/// An endpoint URL ready for attempts, or why no attempt can go there.
#[derive(Debug, Clone)]
pub struct Target(Result<reqwest::Url, String>);

/// Sends attempts. Cheap to clone (one connection pool).
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("allow_private", &self.allow_private)
            .finish()
    }
}

fn cut(text: &str, max: usize) -> String {
    match text
        .char_indices()
        .take_while(|(i, c)| i + c.len_utf8() <= max)
        .last()
    {
        Some((i, c)) => text[..i + c.len_utf8()].to_string(),
        None => String::new(),
    }
}

fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let raw = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = DateTime::parse_from_rfc2822(raw).ok()?;
    (at.with_timezone(&Utc) - now).to_std().ok()
}

impl Sender {
    /// A sender with a per-attempt `timeout`.
    pub fn new(timeout: Duration, allow_private: bool) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            // The queue retries on its own schedule. reqwest's default retry layer would copy
            // every request (headers, extensions) in case it retries a protocol NACK.
            .retry(reqwest::retry::never().max_retries_per_request(0))
            .dns_resolver(Arc::new(GuardedResolver { allow_private }))
            .pool_max_idle_per_host(16)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Sender {
            client,
            allow_private,
        })
    }

    /// Where attempts to `url` go: parsed, and an IP literal checked against the SSRF guard
    /// (names are checked when they resolve). A run of attempts to one endpoint parses once.
    pub fn target(&self, url: &str) -> Target {
        let url = match reqwest::Url::parse(url) {
            Ok(url) => url,
            Err(e) => return Target(Err(format!("invalid endpoint URL: {e}"))),
        };
        // IP literals never reach the resolver, so check them here.
        let literal = url
            .host_str()
            .and_then(|h| h.trim_matches(['[', ']']).parse::<IpAddr>().ok());
        if literal.is_some_and(|ip| !self.allow_private && is_forbidden(ip)) {
            return Target(Err("the endpoint's address is not a public address".into()));
        }
        Target(Ok(url))
    }

    /// One attempt of `body` (already rendered for the endpoint's format) to `endpoint`.
    pub async fn send(
        &self,
        endpoint: &Endpoint,
        msg_id: &str,
        event: &str,
        body: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Outcome {
        let target = self.target(&endpoint.url);
        self.send_to(&target, endpoint, msg_id, event, body, now)
            .await
    }

    /// [`send`](Self::send) to a `target` made by [`target`](Self::target) from the endpoint's
    /// URL.
    pub async fn send_to(
        &self,
        target: &Target,
        endpoint: &Endpoint,
        msg_id: &str,
        event: &str,
        body: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Outcome {
        let started = Instant::now();
        let failed = |error: String| Outcome {
            status: None,
            error: Some(error),
            duration: started.elapsed(),
            snippet: None,
            retry_after: None,
        };
        let url = match &target.0 {
            Ok(url) => url.clone(),
            Err(refused) => return failed(refused.clone()),
        };
        let timestamp = now.timestamp();
        let secrets = endpoint.signing_secrets(now);
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let agent = concat!("casehub/", env!("CARGO_PKG_VERSION"));
        headers.insert(USER_AGENT, HeaderValue::from_static(agent));
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.insert(name, v);
            }
        };
        put("x-webhook-event", event.to_string());
        put(
            "x-webhook-signature",
            body_signature(&endpoint.secret, &body),
        );
        put("webhook-id", msg_id.to_string());
        put("webhook-timestamp", timestamp.to_string());
        put(
            "webhook-signature",
            standard_header(&secrets, msg_id, timestamp, &body),
        );
        let sent = self
            .client
            .post(url)
            .headers(headers)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return failed("timed out".into()),
            Err(e) => return failed(format!("connection failed: {}", root_cause(&e))),
        };
        let status = response.status().as_u16();
        let retry = if status == 429 || status == 503 {
            retry_after(response.headers(), now)
        } else {
            None
        };
        let text = response
            .bytes()
            .await
            .map(|b| String::from_utf8_lossy(&b[..b.len().min(SNIPPET_MAX * 4)]).into_owned())
            .unwrap_or_default();
        Outcome {
            status: Some(status),
            error: None,
            duration: started.elapsed(),
            snippet: (!text.is_empty()).then(|| cut(&text, SNIPPET_MAX)),
            retry_after: retry,
        }
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_cut_on_char_boundaries() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("abc", 10), "abc");
        assert_eq!(cut(&"é".repeat(1000), SNIPPET_MAX).len(), 1024);
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let now = Utc::now();
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        let later = (now + chrono::Duration::seconds(30)).to_rfc2822();
        h.insert(RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&h, now).unwrap();
        assert!((29..=30).contains(&d.as_secs()));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }
}
