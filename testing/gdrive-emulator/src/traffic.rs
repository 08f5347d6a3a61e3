//! What happens to a request around its handler: the request log and fault injection by rule. Control API
//! requests (`/_emulator/…`) are exempt from both.

use crate::Shared;
use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// When a rule fires among the requests it matches.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultTrigger {
    /// Every matching request.
    Always,
    /// The n-th, 2n-th, … matching request.
    EveryNth { n: u64 },
    /// Each matching request with this probability, drawn from the seeded generator.
    Probability { p: f64 },
}

/// What a fault answers instead of the normal answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultAction {
    /// Throttling: 403 `userRateLimitExceeded` / `rateLimitExceeded` (domain `usageLimits`) or 429
    /// `rateLimitExceeded`, with `Retry-After: N` when `retry_after` is set (Drive documents backoff only).
    Throttle {
        status: u16,
        reason: String,
        #[serde(default)]
        retry_after: Option<u64>,
    },
    /// A 5xx (500 `backendError` by default).
    ServerError {
        #[serde(default = "default_500")]
        status: u16,
    },
    /// 401 "Invalid Credentials", as if the access token had been revoked.
    Unauthorized,
    /// Any error in Google's shape (e.g. 403 `downloadQuotaExceeded`, 400 `invalid` on `pageToken`).
    Error {
        status: u16,
        reason: String,
        message: String,
        #[serde(default)]
        location: Option<String>,
    },
    /// The normal answer, after a real-time delay.
    Delay { millis: u64 },
}

fn default_500() -> u16 {
    500
}

fn default_any() -> String {
    "*".into()
}

impl FaultAction {
    /// 403 `userRateLimitExceeded`.
    pub fn user_rate_limit() -> Self {
        FaultAction::Throttle {
            status: 403,
            reason: "userRateLimitExceeded".into(),
            retry_after: None,
        }
    }
    /// 429 `rateLimitExceeded` with `Retry-After`.
    pub fn too_many_requests(retry_after: Option<u64>) -> Self {
        FaultAction::Throttle {
            status: 429,
            reason: "rateLimitExceeded".into(),
            retry_after,
        }
    }

    fn error(&self) -> Option<ApiError> {
        Some(match self {
            FaultAction::Throttle {
                status,
                reason,
                retry_after,
            } => {
                let message = match reason.as_str() {
                    "userRateLimitExceeded" => "User rate limit exceeded.",
                    "rateLimitExceeded" => "Rate Limit Exceeded",
                    _ => "Quota exceeded.",
                };
                let mut e = ApiError::new(
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::FORBIDDEN),
                    "usageLimits",
                    reason,
                    message,
                );
                e.retry_after = *retry_after;
                e
            }
            FaultAction::ServerError { status } => {
                let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let (reason, message) = match status.as_u16() {
                    503 => ("backendError", "The service is currently unavailable."),
                    502 => ("badGateway", "Bad Gateway"),
                    _ => ("backendError", "Backend Error"),
                };
                ApiError::new(status, "global", reason, message)
            }
            FaultAction::Unauthorized => ApiError::invalid_credentials(),
            FaultAction::Error {
                status,
                reason,
                message,
                location,
            } => {
                let mut e = ApiError::new(
                    StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST),
                    "global",
                    reason,
                    message.clone(),
                );
                if let Some(l) = location {
                    e = e.at(l, "parameter");
                }
                e
            }
            FaultAction::Delay { .. } => return None,
        })
    }
}

/// A fault rule: which requests (method and path glob), when (trigger), how often at most (count), and what.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultRule {
    /// HTTP method, or `*`.
    #[serde(default = "default_any")]
    pub method: String,
    /// Path glob: `*` matches within one segment, `**` across segments, e.g. `/drive/v3/files/*` or
    /// `/drive/v3/**`.
    pub route: String,
    pub trigger: FaultTrigger,
    /// Fire at most this many times (then the rule stays inert).
    #[serde(default)]
    pub count: Option<u64>,
    pub action: FaultAction,
}

impl FaultRule {
    /// A rule that fires on every request matching `method` and `route`.
    pub fn new(method: &str, route: &str, action: FaultAction) -> Self {
        Self {
            method: method.into(),
            route: route.into(),
            trigger: FaultTrigger::Always,
            count: None,
            action,
        }
    }
    pub fn times(mut self, n: u64) -> Self {
        self.count = Some(n);
        self
    }
    pub fn every_nth(mut self, n: u64) -> Self {
        self.trigger = FaultTrigger::EveryNth { n };
        self
    }
    pub fn probability(mut self, p: f64) -> Self {
        self.trigger = FaultTrigger::Probability { p };
        self
    }
}

/// A rule as installed, with its counters.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InstalledFault {
    pub id: u64,
    pub rule: FaultRule,
    pub matched: u64,
    pub fired: u64,
}

/// One logged request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogEntry {
    pub seq: u64,
    pub timestamp: DateTime<Utc>,
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// The path with ids replaced by `{id}`, e.g. `GET /drive/v3/files/{id}`.
    pub route: String,
    pub status: u16,
    pub had_authorization: bool,
    pub fault: Option<String>,
}

/// The request log and per-route counts.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct RequestLog {
    pub entries: Vec<LogEntry>,
    pub counts: BTreeMap<String, u64>,
}

impl RequestLog {
    /// How many requests matched `route` (as in [`LogEntry::route`]).
    pub fn count(&self, route: &str) -> u64 {
        self.counts.get(route).copied().unwrap_or(0)
    }
}

/// The log keeps at most this many entries (counts keep counting after that).
pub const MAX_LOG_ENTRIES: usize = 1_000_000;

#[derive(Debug)]
pub(crate) struct Traffic {
    pub faults: Vec<InstalledFault>,
    next_fault_id: u64,
    rng: StdRng,
    pub log: RequestLog,
}

impl Traffic {
    pub fn new(seed: u64) -> Self {
        Self {
            faults: Vec::new(),
            next_fault_id: 1,
            rng: StdRng::seed_from_u64(seed ^ 0x5eed_fa17),
            log: RequestLog::default(),
        }
    }

    pub fn add_fault(&mut self, rule: FaultRule) -> u64 {
        let id = self.next_fault_id;
        self.next_fault_id += 1;
        self.faults.push(InstalledFault {
            id,
            rule,
            matched: 0,
            fired: 0,
        });
        id
    }

    fn decide(&mut self, method: &str, path: &str) -> Option<(String, FaultAction)> {
        for f in &mut self.faults {
            let r = &f.rule;
            if r.count.is_some_and(|c| f.fired >= c)
                || !(r.method == "*" || r.method.eq_ignore_ascii_case(method))
                || !glob_match(&r.route, path)
            {
                continue;
            }
            f.matched += 1;
            let fire = match r.trigger {
                FaultTrigger::Always => true,
                FaultTrigger::EveryNth { n } => n > 0 && f.matched % n == 0,
                FaultTrigger::Probability { p } => p > 0.0 && self.rng.random_bool(p.clamp(0.0, 1.0)),
            };
            if fire {
                f.fired += 1;
                return Some((format!("fault#{}", f.id), r.action.clone()));
            }
        }
        None
    }
}

/// Glob over a path: `*` matches within one segment, `**` matches anything (including `/`).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match p.split_first() {
            None => t.is_empty(),
            Some((b'*', rest)) => {
                if let Some((b'*', rest2)) = rest.split_first() {
                    (0..=t.len()).any(|i| go(rest2, &t[i..]))
                } else {
                    let mut i = 0;
                    loop {
                        if go(rest, &t[i..]) {
                            return true;
                        }
                        if i >= t.len() || t[i] == b'/' {
                            return false;
                        }
                        i += 1;
                    }
                }
            }
            Some((c, rest)) => t
                .split_first()
                .is_some_and(|(tc, trest)| tc == c && go(rest, trest)),
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

const LITERALS: &[&str] = &[
    "drive",
    "v3",
    "about",
    "files",
    "export",
    "permissions",
    "changes",
    "startPageToken",
    "drives",
    "o",
    "oauth2",
    "v2",
    "auth",
    "token",
    "revoke",
];

/// The path with every non-literal segment replaced by `{id}`, e.g. `GET /drive/v3/files/{id}/export`.
pub fn route_key(method: &str, path: &str) -> String {
    let mut out = String::new();
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(if LITERALS.contains(&seg) { seg } else { "{id}" });
    }
    if out.is_empty() {
        out.push('/');
    }
    format!("{method} {out}")
}

/// The middleware in front of every route.
pub(crate) async fn layer(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/_emulator") {
        return next.run(req).await;
    }
    let method = req.method().as_str().to_string();
    let query = req.uri().query().map(str::to_string);
    let had_authorization = req.headers().contains_key(axum::http::header::AUTHORIZATION);
    let now = shared.clock.now();
    let decision = shared.traffic.lock().decide(&method, &path);
    let (fault, resp) = match decision {
        None => (None, next.run(req).await),
        Some((name, action)) => {
            let resp = match (&action, action.error()) {
                (FaultAction::Delay { millis }, _) => {
                    tokio::time::sleep(std::time::Duration::from_millis(*millis)).await;
                    next.run(req).await
                }
                (_, Some(e)) => e.into_response(),
                (_, None) => next.run(req).await,
            };
            (Some(name), resp)
        }
    };
    let status = resp.status().as_u16();
    let route = route_key(&method, &path);
    let mut t = shared.traffic.lock();
    let seq = t.log.entries.len() as u64 + 1;
    *t.log.counts.entry(route.clone()).or_insert(0) += 1;
    if t.log.entries.len() < MAX_LOG_ENTRIES {
        t.log.entries.push(LogEntry {
            seq,
            timestamp: now,
            method,
            path,
            query,
            route,
            status,
            had_authorization,
            fault,
        });
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_key_replaces_ids() {
        assert_eq!(
            route_key("GET", "/drive/v3/files/1abc/export"),
            "GET /drive/v3/files/{id}/export"
        );
        assert_eq!(
            route_key("GET", "/drive/v3/changes/startPageToken"),
            "GET /drive/v3/changes/startPageToken"
        );
    }

    #[test]
    fn glob_star_stays_within_a_segment_and_double_star_crosses() {
        assert!(glob_match("/drive/v3/files/*", "/drive/v3/files/1abc"));
        assert!(!glob_match("/drive/v3/files/*", "/drive/v3/files/1abc/export"));
        assert!(glob_match("/drive/v3/**", "/drive/v3/files/1abc/export"));
    }
}
