//! Per-caller, per-endpoint rate limits of CONTRACT §8, with the three `X-RateLimit-*` headers
//! on every response of a limited endpoint and `429 RATE_LIMITED` past the limit.
//!
//! Each endpoint group has a keyed GCRA limiter (governor): a burst of `limit` requests,
//! replenished evenly over a minute. The key is the caller's API key fingerprint when a valid key
//! is presented, else the client address, so unknown keys cannot grow the key space.
//!
//! Nodes sharing a Redis share the limits: the same GCRA runs there (one script per request,
//! the caller's theoretical arrival time in a key that expires once replenished), so a caller
//! spread over several nodes by a load balancer gets the contract's limit, not one per node. If
//! Redis does not answer, the node's own limiter decides.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{Quota, RateLimiter};
use serde_json::json;

use casehub_actors::cluster::{Allowance, Cluster};

use crate::auth::Auth;
use crate::error::ApiError;
use crate::settings::RateLimitSettings;
use crate::state::{AppState, client_ip};

/// The limited endpoint groups of seed 000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Group {
    Intake,
    SelfService,
    Approve,
    Feedback,
    Collaborative,
    Review,
}

type Limiter = RateLimiter<
    String,
    governor::state::keyed::DefaultKeyedStateStore<String>,
    DefaultClock,
    StateInformationMiddleware,
>;

struct GroupLimiter {
    limit: u32,
    limiter: Limiter,
}

/// All group limiters. Cheap to share.
pub struct RateLimits {
    enabled: bool,
    groups: Vec<(Group, GroupLimiter)>,
    clock: DefaultClock,
    /// When nodes share the store, where the shared limits live.
    cluster: Cluster,
}

/// What a check found.
enum Verdict {
    Allowed { remaining: u32 },
    Limited { wait: Duration },
}

const X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

impl RateLimits {
    /// Limiters for the configured per-minute limits (shared when `cluster` is).
    pub fn new(settings: &RateLimitSettings, cluster: Cluster) -> Arc<Self> {
        let make = |group, limit: u32| {
            let per_minute = NonZeroU32::new(limit.max(1)).expect("at least one");
            let limiter = RateLimiter::keyed(Quota::per_minute(per_minute))
                .with_middleware::<StateInformationMiddleware>();
            (group, GroupLimiter { limit, limiter })
        };
        Arc::new(RateLimits {
            enabled: settings.enabled,
            groups: vec![
                make(Group::Intake, settings.intake),
                make(Group::SelfService, settings.self_service),
                make(Group::Approve, settings.approve),
                make(Group::Feedback, settings.feedback),
                make(Group::Collaborative, settings.collaborative),
                make(Group::Review, settings.review),
            ],
            clock: DefaultClock::default(),
            cluster,
        })
    }

    fn group(&self, group: Group) -> &GroupLimiter {
        &self
            .groups
            .iter()
            .find(|(g, _)| *g == group)
            .expect("every group has a limiter")
            .1
    }

    /// Takes one request from `key`'s allowance in `group`: `Ok(headers)` or `Err(429)`.
    pub async fn check(
        &self,
        group: Group,
        key: &str,
    ) -> Result<Vec<(HeaderName, HeaderValue)>, ApiError> {
        let g = self.group(group);
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let per_request = Duration::from_secs(60) / g.limit.max(1);
        let verdict = match self.shared_check(group, g, key, per_request).await {
            Some(verdict) => verdict,
            None => self.local_check(g, key),
        };
        match verdict {
            Verdict::Allowed { remaining } => {
                let refill = per_request * (g.limit - remaining.min(g.limit));
                Ok(headers(
                    g.limit,
                    remaining,
                    now_unix + refill.as_secs().max(1),
                ))
            }
            Verdict::Limited { wait } => {
                let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let mut err = ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    "Too many requests",
                )
                .with_details(json!({
                    "limit": g.limit,
                    "window": "1 minute",
                    "retry_after": retry_after,
                }))
                .with_header(
                    axum::http::header::RETRY_AFTER,
                    HeaderValue::from(retry_after),
                );
                for (name, value) in headers(g.limit, 0, now_unix + retry_after) {
                    err = err.with_header(name, value);
                }
                Err(err)
            }
        }
    }

    fn local_check(&self, g: &GroupLimiter, key: &str) -> Verdict {
        match g.limiter.check_key(&key.to_string()) {
            Ok(snapshot) => Verdict::Allowed {
                remaining: snapshot.remaining_burst_capacity(),
            },
            Err(not_until) => Verdict::Limited {
                wait: not_until.wait_time_from(self.clock.now()),
            },
        }
    }

    /// The shared verdict, when nodes share the store and it answers.
    async fn shared_check(
        &self,
        group: Group,
        g: &GroupLimiter,
        key: &str,
        per_request: Duration,
    ) -> Option<Verdict> {
        let name = format!("{group:?}:{key}");
        match self
            .cluster
            .take_allowance(&name, per_request, g.limit)
            .await
        {
            Ok(Some(Allowance::Allowed { remaining })) => Some(Verdict::Allowed { remaining }),
            Ok(Some(Allowance::Limited { wait })) => Some(Verdict::Limited { wait }),
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(error = %e, "shared rate limit unavailable; this node's decides");
                None
            }
        }
    }

    /// Forgets callers that have fully replenished (bounded memory).
    pub fn sweep(&self) {
        for (_, g) in &self.groups {
            g.limiter.retain_recent();
        }
    }
}

fn headers(limit: u32, remaining: u32, reset: u64) -> Vec<(HeaderName, HeaderValue)> {
    vec![
        (X_LIMIT, HeaderValue::from(limit)),
        (X_REMAINING, HeaderValue::from(remaining)),
        (X_RESET, HeaderValue::from(reset)),
    ]
}

/// The rate-limit key: a valid API key's fingerprint, else the client address.
fn caller_key(auth: &Auth, headers: &HeaderMap, path: &str, ip: IpAddr) -> String {
    let path_key = path
        .strip_prefix("/webhook/support/intake/")
        .filter(|k| !k.contains('/'));
    Auth::presented_key(headers, path_key)
        .and_then(|k| auth.lookup(k))
        .map(|caller| caller.fingerprint)
        .unwrap_or_else(|| format!("ip-{ip}"))
}

/// Middleware for one group: answers 429 past the limit, else adds the headers to the response.
pub async fn enforce(
    State((state, group)): State<(AppState, Group)>,
    request: Request,
    next: Next,
) -> Response {
    if !state.limits.enabled {
        return next.run(request).await;
    }
    let ip = client_ip(request.extensions());
    let key = caller_key(&state.auth, request.headers(), request.uri().path(), ip);
    match state.limits.check(group, &key).await {
        Err(err) => err.into_response(),
        Ok(headers) => {
            let mut response = next.run(request).await;
            for (name, value) in headers {
                response.headers_mut().insert(name, value);
            }
            response
        }
    }
}
