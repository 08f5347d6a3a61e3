//! Everything that happens to a request before and after its handler: request ids and Graph's standard headers,
//! the request log with per-route counts and SharePoint resource units, the optional rate limit, and fault
//! injection by rule. Control API requests (`/_emulator/…`) are exempt from all of it.

use crate::Shared;
use crate::clock::http_date;
use crate::error::{GraphError, RequestMeta};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

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
    /// Every matching request after the first `n` (which pass untouched).
    AfterFirst { n: u64 },
}

/// The `Retry-After` a throttling answer carries.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RetryAfter {
    /// `Retry-After: N` (integer seconds, as Graph sends it).
    Seconds(u64),
    /// `Retry-After: <HTTP date>` N seconds after the emulator clock's now.
    HttpDate(u64),
    /// No header at all (the client must back off on its own).
    Omitted,
}

/// What a fault does instead of (or to) the normal answer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FaultAction {
    /// 429 or 503 with `Retry-After`, optionally with the `RateLimit-*` headers.
    Throttle {
        status: u16,
        retry_after: RetryAfter,
        #[serde(default)]
        rate_limit_headers: bool,
    },
    /// A 5xx (500 by default) with Graph's error body.
    ServerError {
        #[serde(default = "default_500")]
        status: u16,
    },
    /// 401 InvalidAuthenticationToken, as if the access token had been revoked.
    Unauthorized,
    /// The connection is closed without any answer.
    DropConnection,
    /// The normal answer's headers (with the full Content-Length) and half its body, then the connection closes.
    TruncateBody,
    /// The normal answer, after a real-time delay.
    Delay { millis: u64 },
    /// 410 Gone `resyncRequired` (with `code` in `innerError.code`) and a `Location` holding the token-less
    /// delta URL of the same scope, as Graph answers a delta token it can no longer serve. Graph sends it only
    /// on a delta request that carries a token (a nextLink or a deltaLink), so the rule passes over every other
    /// request without counting it as matched.
    ResyncRequired {
        #[serde(default)]
        code: crate::store::ResyncCode,
    },
}

impl FaultAction {
    /// Whether this action is one Graph could answer `method path?query` with.
    fn applies_to(&self, method: &str, path: &str, query: Option<&str>) -> bool {
        match self {
            FaultAction::ResyncRequired { .. } => {
                method.eq_ignore_ascii_case("GET") && delta_token_request(path, query)
            }
            _ => true,
        }
    }
}

/// A driveItem delta request that carries a token: `…/delta?token=…` or `…/delta(token='…')`.
fn delta_token_request(path: &str, query: Option<&str>) -> bool {
    let last = path.rsplit('/').next().unwrap_or("");
    if let Some(inner) = last.strip_prefix("delta(").and_then(|s| s.strip_suffix(')')) {
        return !inner.trim_start_matches("token=").trim_matches('\'').is_empty();
    }
    last == "delta" && query.is_some_and(|q| q.split('&').any(|kv| kv.starts_with("token=")))
}

/// The token-less delta URL of the scope a delta request addresses: where a fresh enumeration starts.
fn fresh_delta_url(graph_url: &str, path: &str) -> String {
    let path = path.strip_prefix("/v1.0").unwrap_or(path);
    let scope = path.rsplit_once('/').map_or(path, |(scope, _)| scope);
    format!("{graph_url}{scope}/delta")
}

fn default_500() -> u16 {
    500
}

fn default_any() -> String {
    "*".into()
}

/// A fault rule: which requests (method and path glob), when (trigger), how often at most (count), and what.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FaultRule {
    /// HTTP method, or `*`.
    #[serde(default = "default_any")]
    pub method: String,
    /// Path glob: `*` matches within one segment, `**` across segments, e.g. `/v1.0/drives/*/items/*/content`
    /// or `/_download/**`.
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
    pub fn after_first(mut self, n: u64) -> Self {
        self.trigger = FaultTrigger::AfterFirst { n };
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
    /// The path with ids replaced by `{id}`, e.g. `GET /v1.0/drives/{id}/root/delta`.
    pub route: String,
    pub status: u16,
    pub had_authorization: bool,
    /// The request's `User-Agent` header, if it had one (and it was valid text).
    #[serde(default)]
    pub user_agent: Option<String>,
    pub resource_units: u32,
    pub fault: Option<String>,
}

/// The request log: entries, per-route counts and the total of SharePoint resource units.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct RequestLog {
    pub entries: Vec<LogEntry>,
    pub counts: BTreeMap<String, u64>,
    pub resource_units: u64,
}

impl RequestLog {
    /// How many requests matched `route` (as in [`LogEntry::route`]).
    pub fn count(&self, route: &str) -> u64 {
        self.counts.get(route).copied().unwrap_or(0)
    }
}

/// A request to a download URL that carried an `Authorization` header (a client leaking its bearer token).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AuthorizationLeak {
    pub path: String,
    pub timestamp: DateTime<Utc>,
    pub scheme: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_key_replaces_ids_and_item_paths() {
        assert_eq!(
            route_key("GET", "/v1.0/drives/b!x/items/01AB/children"),
            "GET /v1.0/drives/{id}/items/{id}/children"
        );
        assert_eq!(
            route_key("GET", "/v1.0/me/drive/root:/A/B c.txt:/content"),
            "GET /v1.0/me/drive/root:{path}:/content"
        );
        assert_eq!(
            route_key("GET", "/v1.0/me/drive/root:/A/b.txt"),
            "GET /v1.0/me/drive/root:{path}"
        );
        assert_eq!(
            route_key("GET", "/v1.0/me/drive/sharedWithMe"),
            "GET /v1.0/me/drive/sharedWithMe"
        );
        assert_eq!(
            route_key("GET", "/v1.0/drives/d/root/delta(token='x')"),
            "GET /v1.0/drives/{id}/root/delta(…)"
        );
    }

    #[test]
    fn a_resync_fault_applies_only_to_delta_requests_with_a_token() {
        let resync = FaultAction::ResyncRequired {
            code: crate::store::ResyncCode::default(),
        };
        let delta = "/v1.0/drives/d/items/i/delta";
        assert!(resync.applies_to("GET", delta, Some("token=abc&$top=5")));
        assert!(resync.applies_to("GET", "/v1.0/drives/d/root/delta(token='x')", None));
        assert!(!resync.applies_to("GET", delta, None), "a fresh enumeration");
        assert!(!resync.applies_to("GET", delta, Some("$top=5")));
        assert!(!resync.applies_to("GET", "/v1.0/drives/d/items/i", Some("token=abc")));
        assert!(!resync.applies_to("GET", "/_download/x", None));
        assert!(FaultAction::Unauthorized.applies_to("GET", "/_download/x", None));
    }

    #[test]
    fn a_fresh_delta_url_drops_the_token_and_keeps_the_scope() {
        let g = "http://e/v1.0";
        assert_eq!(
            fresh_delta_url(g, "/v1.0/drives/d/items/i/delta"),
            "http://e/v1.0/drives/d/items/i/delta"
        );
        assert_eq!(
            fresh_delta_url(g, "/v1.0/drives/d/root/delta(token='x')"),
            "http://e/v1.0/drives/d/root/delta"
        );
    }

    #[test]
    fn glob_star_stays_within_a_segment_and_double_star_crosses() {
        assert!(glob_match(
            "/v1.0/drives/*/root/delta",
            "/v1.0/drives/b!abc/root/delta"
        ));
        assert!(!glob_match("/v1.0/drives/*", "/v1.0/drives/b!abc/root"));
        assert!(glob_match("/v1.0/**", "/v1.0/drives/b!abc/root"));
        assert!(glob_match("/_download/*", "/_download/abc.def"));
    }

    #[test]
    fn resource_units_follow_the_sharepoint_table() {
        assert_eq!(resource_units("GET", "/v1.0/drives/d/items/i", None), 1);
        assert_eq!(
            resource_units("GET", "/v1.0/drives/d/root/delta", Some("token=abc")),
            1
        );
        assert_eq!(resource_units("GET", "/v1.0/drives/d/root/delta", None), 2);
        assert_eq!(resource_units("GET", "/v1.0/drives/d/items/i/children", None), 2);
        assert_eq!(
            resource_units("GET", "/v1.0/drives/d/items/i/permissions", None),
            5
        );
        assert_eq!(
            resource_units("GET", "/v1.0/drives/d/items/i", Some("$expand=permissions")),
            5
        );
        assert_eq!(resource_units("GET", "/_download/x", None), 1);
        assert_eq!(resource_units("GET", "/v1.0/me/drive/sharedWithMe", None), 2);
        assert_eq!(resource_units("POST", "/common/oauth2/v2.0/token", None), 0);
    }
}

#[derive(Debug)]
pub(crate) struct RateLimit {
    per_second: u32,
    window: i64,
    used: u32,
}

#[derive(Debug)]
pub(crate) struct Traffic {
    pub faults: Vec<InstalledFault>,
    next_fault_id: u64,
    rng: StdRng,
    pub rate_limit: Option<RateLimit>,
    pub log: RequestLog,
    pub leaks: Vec<AuthorizationLeak>,
    pub notifications: Vec<crate::subscriptions::NotificationDelivery>,
    seed: u64,
}

impl Traffic {
    pub fn new(seed: u64) -> Self {
        Self {
            faults: Vec::new(),
            next_fault_id: 1,
            rng: StdRng::seed_from_u64(seed ^ 0x5eed_fa17),
            rate_limit: None,
            log: RequestLog::default(),
            leaks: Vec::new(),
            notifications: Vec::new(),
            seed,
        }
    }

    pub fn reset(&mut self) {
        *self = Self::new(self.seed);
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

    pub fn set_rate_limit(&mut self, per_second: Option<u32>) {
        self.rate_limit = per_second.map(|per_second| RateLimit {
            per_second,
            window: i64::MIN,
            used: 0,
        });
    }

    /// The action to apply to this request, if any.
    fn decide(
        &mut self,
        method: &str,
        path: &str,
        query: Option<&str>,
        now: DateTime<Utc>,
    ) -> Option<(String, FaultAction)> {
        if let Some(rl) = &mut self.rate_limit {
            let window = now.timestamp();
            if rl.window != window {
                rl.window = window;
                rl.used = 0;
            }
            rl.used += 1;
            if rl.used > rl.per_second {
                return Some((
                    "rate_limit".into(),
                    FaultAction::Throttle {
                        status: 429,
                        retry_after: RetryAfter::Seconds(1),
                        rate_limit_headers: true,
                    },
                ));
            }
        }
        for f in &mut self.faults {
            let r = &f.rule;
            if f.rule.count.is_some_and(|c| f.fired >= c) {
                continue;
            }
            if !(r.method == "*" || r.method.eq_ignore_ascii_case(method))
                || !glob_match(&r.route, path)
                || !r.action.applies_to(method, path, query)
            {
                continue;
            }
            f.matched += 1;
            let fire = match r.trigger {
                FaultTrigger::Always => true,
                FaultTrigger::EveryNth { n } => n > 0 && f.matched % n == 0,
                FaultTrigger::Probability { p } => p > 0.0 && self.rng.random_bool(p.clamp(0.0, 1.0)),
                FaultTrigger::AfterFirst { n } => f.matched > n,
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
    "v1.0",
    "me",
    "users",
    "drive",
    "drives",
    "root",
    "items",
    "children",
    "delta",
    "content",
    "permissions",
    "sites",
    "oauth2",
    "v2.0",
    "authorize",
    "token",
    "_download",
    "search",
    "sharedWithMe",
    "$metadata",
    "groups",
    "transitiveMembers",
    "microsoft.graph.user",
    "microsoft.graph.group",
];

/// The path with every non-literal segment replaced by `{id}` and a `:/path:` address replaced by `:{path}:`
/// (used for per-route counts), e.g. `GET /v1.0/me/drive/root:{path}:/children`.
pub fn route_key(method: &str, path: &str) -> String {
    let normalized = match path.find(':') {
        Some(a) => match path[a + 1..].find(':') {
            Some(b) => format!("{}:{{path}}:{}", &path[..a], &path[a + 1 + b + 1..]),
            None => format!("{}:{{path}}", &path[..a]),
        },
        None => path.to_string(),
    };
    let mut out = String::with_capacity(normalized.len());
    for seg in normalized.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        if LITERALS.contains(&seg) {
            out.push_str(seg);
        } else if seg.starts_with("delta(") {
            out.push_str("delta(…)");
        } else if let Some((head, tail)) = seg.split_once(':') {
            out.push_str(if LITERALS.contains(&head) { head } else { "{id}" });
            out.push(':');
            out.push_str(tail);
        } else {
            out.push_str("{id}");
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    format!("{method} {out}")
}

/// SharePoint resource units of a request: 1 single item, delta with token, download; 2 multi-item (children,
/// delta without token) and writes; 5 anything touching permissions; none for the directory (group members).
pub fn resource_units(method: &str, path: &str, query: Option<&str>) -> u32 {
    let q = query.unwrap_or("");
    if !(path.starts_with("/v1.0/") || path.starts_with("/_download/")) {
        return 0;
    }
    if path.contains("/permissions") || q.contains("expand=permissions") {
        return 5;
    }
    // The directory is not SharePoint: its requests cost no SharePoint resource units.
    if path.starts_with("/v1.0/groups/") && path.to_ascii_lowercase().contains("/transitivemembers") {
        return 0;
    }
    if method != "GET" && method != "HEAD" {
        return 2;
    }
    if path.starts_with("/_download/") || path.ends_with("/content") {
        return 1;
    }
    if path.contains("/delta") {
        let has_token = q.split('&').any(|kv| kv.starts_with("token=")) || path.contains("delta(token");
        return if has_token { 1 } else { 2 };
    }
    if path.ends_with("/children")
        || path.ends_with("/drives")
        || path.ends_with("/sites")
        || path.ends_with("/sharedWithMe")
    {
        return 2;
    }
    1
}

/// The log keeps at most this many entries (counts and resource units keep counting after that).
pub const MAX_LOG_ENTRIES: usize = 1_000_000;

/// Lets the fault middleware close the TCP connection a request came on.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionKill(pub CancellationToken);

fn throttle_response(
    status: u16,
    retry_after: &RetryAfter,
    rl_headers: bool,
    now: DateTime<Utc>,
    meta: &RequestMeta,
) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::TOO_MANY_REQUESTS);
    let mut err = if status == StatusCode::SERVICE_UNAVAILABLE {
        GraphError::new(
            status,
            "serviceNotAvailable",
            "The service is temporarily unavailable. Try again later.",
        )
    } else {
        GraphError::new(status, "activityLimitReached", "The request has been throttled")
            .with_inner("throttledRequest")
    };
    let secs = match retry_after {
        RetryAfter::Seconds(s) => {
            err = err.with_header(header::RETRY_AFTER, s.to_string());
            *s
        }
        RetryAfter::HttpDate(s) => {
            let at = now + chrono::Duration::seconds(i64::try_from(*s).unwrap_or(0));
            err = err.with_header(header::RETRY_AFTER, http_date(at));
            *s
        }
        RetryAfter::Omitted => 0,
    };
    if rl_headers {
        err = err
            .with_header(header::HeaderName::from_static("ratelimit-limit"), "1200")
            .with_header(header::HeaderName::from_static("ratelimit-remaining"), "0")
            .with_header(
                header::HeaderName::from_static("ratelimit-reset"),
                secs.to_string(),
            );
    }
    err.into_response_with(meta)
}

/// Cuts a response's body in half while keeping its full `Content-Length`, so the client sees a short read.
async fn truncate(resp: Response) -> Response {
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
    let half = bytes.slice(..bytes.len() / 2);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len().max(1)));
    // The pause lets hyper flush the headers and the first half before the error aborts the connection.
    let stream = futures::StreamExt::chain(
        futures::stream::iter(vec![Ok::<_, std::io::Error>(half)]),
        futures::stream::once(async {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "truncated by fault injection",
            ))
        }),
    );
    Response::from_parts(parts, Body::from_stream(stream))
}

fn insert_header(resp: &mut Response, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut()
            .insert(header::HeaderName::from_static(name), v);
    }
}

/// The middleware in front of every route.
pub(crate) async fn layer(State(shared): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path.starts_with("/_emulator") {
        return next.run(req).await;
    }
    let method = req.method().as_str().to_string();
    let query = req.uri().query().map(str::to_string);
    let auth_header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let now = shared.clock.now();
    let n = shared
        .request_counter
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let request_id = crate::ids::derived_guid(shared.seed, n);
    let client_request_id = req
        .headers()
        .get("client-request-id")
        .and_then(|v| v.to_str().ok())
        .map_or_else(|| request_id.clone(), str::to_string);
    let meta = RequestMeta {
        request_id,
        client_request_id,
        date: now,
    };
    req.extensions_mut().insert(meta.clone());
    let kill = req.extensions().get::<ConnectionKill>().cloned();

    let decision = {
        let mut t = shared.traffic.lock();
        if path.starts_with("/_download/")
            && let Some(a) = &auth_header
        {
            t.leaks.push(AuthorizationLeak {
                path: path.clone(),
                timestamp: now,
                scheme: a.split_whitespace().next().unwrap_or("").to_string(),
            });
        }
        t.decide(&method, &path, query.as_deref(), now)
    };

    let (fault_name, mut resp) = match decision {
        None => (None, next.run(req).await),
        Some((name, action)) => {
            let resp = match action {
                FaultAction::Throttle {
                    status,
                    retry_after,
                    rate_limit_headers,
                } => throttle_response(status, &retry_after, rate_limit_headers, now, &meta),
                FaultAction::ServerError { status } => GraphError::new(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                    "generalException",
                    "An unspecified error has occurred.",
                )
                .into_response_with(&meta),
                FaultAction::Unauthorized => {
                    GraphError::unauthorized("Access token has expired or is not yet valid.")
                        .into_response_with(&meta)
                }
                FaultAction::DropConnection => {
                    log_request(
                        &shared,
                        &meta,
                        &method,
                        &path,
                        query,
                        0,
                        auth_header.is_some(),
                        user_agent,
                        Some(name),
                    );
                    if let Some(k) = kill {
                        k.0.cancel();
                    }
                    return std::future::pending().await;
                }
                FaultAction::TruncateBody => truncate(next.run(req).await).await,
                FaultAction::Delay { millis } => {
                    tokio::time::sleep(std::time::Duration::from_millis(millis)).await;
                    next.run(req).await
                }
                FaultAction::ResyncRequired { code } => {
                    GraphError::resync_required(code, fresh_delta_url(&shared.graph_url, &path))
                        .into_response_with(&meta)
                }
            };
            (Some(name), resp)
        }
    };

    if path.starts_with("/v1.0") {
        insert_header(&mut resp, "request-id", &meta.request_id);
        insert_header(&mut resp, "client-request-id", &meta.client_request_id);
        insert_header(
            &mut resp,
            "x-ms-ags-diagnostic",
            r#"{"ServerInfo":{"DataCenter":"Emulator","Slice":"E","Ring":"1","ScaleUnit":"000","RoleInstance":"EMU000001"}}"#,
        );
        insert_header(&mut resp, "strict-transport-security", "max-age=31536000");
    }
    insert_header(&mut resp, "date", &http_date(now));
    let status = resp.status().as_u16();
    log_request(
        &shared,
        &meta,
        &method,
        &path,
        query,
        status,
        auth_header.is_some(),
        user_agent,
        fault_name,
    );
    resp
}

#[allow(clippy::too_many_arguments)]
fn log_request(
    shared: &Shared,
    meta: &RequestMeta,
    method: &str,
    path: &str,
    query: Option<String>,
    status: u16,
    had_authorization: bool,
    user_agent: Option<String>,
    fault: Option<String>,
) {
    let units = resource_units(method, path, query.as_deref());
    let route = route_key(method, path);
    let mut t = shared.traffic.lock();
    let seq = t.log.entries.len() as u64 + 1;
    *t.log.counts.entry(route.clone()).or_insert(0) += 1;
    t.log.resource_units += u64::from(units);
    if t.log.entries.len() < MAX_LOG_ENTRIES {
        t.log.entries.push(LogEntry {
            seq,
            timestamp: meta.date,
            method: method.to_string(),
            path: path.to_string(),
            query,
            route,
            status,
            had_authorization,
            user_agent,
            resource_units: units,
            fault,
        });
    }
}
