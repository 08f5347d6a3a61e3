//! The Graph HTTP client: one place that sends requests, times them out, retries them and turns
//! answers into [`DatasourceError`]s.
//!
//! * 429 and 503 with `Retry-After` (seconds, decimals or an HTTP date) close the tenant's
//!   throttle gate until then (see [`crate::throttle`]): this request and every other request of
//!   the tenant wait at the gate before they send again. The wait is the full `Retry-After` plus a
//!   small jitter, uniform in `[0, min(5 % of the wait, 250 ms))`, so that the waiting requests
//!   do not all arrive in the same millisecond while none comes back much later than asked.
//! * A `Retry-After` (or a closed gate) longer than [`GraphConfig::max_retry_wait`] is not waited
//!   for: the call returns `Throttled { retry_after }` at once, so the engine can reschedule.
//! * 408, 500, 502, 504, 509, timeouts, connection errors and throttling without `Retry-After`
//!   back off exponentially with "equal jitter" from [`GraphConfig::base_backoff`]; that request
//!   alone waits.
//! * A 401 asks the [`TokenSource`] for a refresh once; a second 401 is `Unauthorized`.
//! * Failures are bounded by [`GraphConfig::max_attempts`]; throttled answers with `Retry-After`
//!   do not count as attempts but by the time one request waited on throttling (at its gate),
//!   [`GraphConfig::max_throttle_wait`].
//!
//! Waiting goes through a [`Sleeper`], "now" through a [`Clock`] and jitter through a [`Random`],
//! so tests record the waits instead of sleeping. Tokens are never logged, and neither are URLs
//! (pre-authenticated download URLs are credentials themselves); only the path of Graph URLs is.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use kbsync_core::datasource::{AccessToken, DatasourceError, TokenSource};
use kbsync_core::retry::{GateWaits, Refusal, WaitLimits, backoff, later};
use kbsync_core::{Clock, Random};
use kbsync_http::{Failure, read_limited, transport_failure};
use reqwest::header::{ACCEPT, HeaderMap, USER_AGENT};
use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;
use tracing::{debug, warn};
use url::Url;

use crate::config::GraphConfig;
use crate::errors::{Decision, GraphErrorBody, decide};
use crate::throttle::{Gate, Gates};

/// Largest JSON answer read into memory (a delta page of 1000 items is a few MB).
const MAX_JSON_BYTES: usize = 64 * 1024 * 1024;
/// Largest error body read (the rest is dropped).
const MAX_ERROR_BYTES: usize = 64 * 1024;

pub use kbsync_core::retry::{Sleeper, TokioSleeper};

/// Who may see a request's credentials.
#[derive(Clone, Copy)]
pub(crate) enum Auth<'a> {
    /// A Graph request: `Authorization: Bearer …` from the token source, waiting at the gate of
    /// the token's tenant.
    Bearer(&'a dyn TokenSource),
    /// A pre-authenticated download URL: no `Authorization` header at all. It waits at the gate
    /// of the request that handed the URL out.
    Anonymous(&'a Arc<Gate>),
}

/// What the caller wants from a successful answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// The whole body, read within the request timeout (a failure while reading is retried).
    Body,
    /// The answer as soon as its headers arrive (2xx or 3xx); the body is streamed by the caller.
    Head,
}

/// What a request sends besides its URL and credentials.
#[derive(Clone, Copy)]
pub(crate) struct Call<'a> {
    pub method: &'a reqwest::Method,
    /// A JSON body (POST, PATCH).
    pub body: Option<&'a serde_json::Value>,
    /// A `Prefer` request header.
    pub prefer: Option<&'a str>,
}

impl Call<'_> {
    pub(crate) const GET: Call<'static> = Call {
        method: &reqwest::Method::GET,
        body: None,
        prefer: None,
    };
}

/// A successful answer.
pub(crate) enum Answer {
    Body(Bytes),
    Head(Response),
}

/// An answer's headers, and the throttle gate its request went through (for requests that
/// follow from it, such as the download a `/content` redirect points to).
pub(crate) struct Head {
    pub response: Response,
    pub gate: Arc<Gate>,
}

pub(crate) struct GraphClient {
    http: reqwest::Client,
    pub(crate) config: GraphConfig,
    sleeper: Arc<dyn Sleeper>,
    pub(crate) random: Arc<dyn Random>,
    pub(crate) clock: Arc<dyn Clock>,
    gates: Gates,
}

impl GraphClient {
    pub(crate) fn new(
        http: reqwest::Client,
        config: GraphConfig,
        sleeper: Arc<dyn Sleeper>,
        random: Arc<dyn Random>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            http,
            config,
            sleeper,
            random,
            clock,
            gates: Gates::default(),
        }
    }

    /// The base URL with `segments` appended (each percent-encoded as one path segment).
    pub(crate) fn url(&self, segments: &[&str]) -> Result<Url, DatasourceError> {
        let mut url = self.base()?;
        {
            let mut path = url.path_segments_mut().map_err(|()| {
                DatasourceError::Permanent(format!(
                    "graph_url {:?} cannot be a base URL",
                    self.config.graph_url
                ))
            })?;
            path.pop_if_empty();
            for s in segments {
                path.push(s);
            }
        }
        Ok(url)
    }

    fn base(&self) -> Result<Url, DatasourceError> {
        Url::parse(self.config.graph_url.trim_end_matches('/')).map_err(|e| {
            DatasourceError::Permanent(format!("graph_url {:?} is invalid: {e}", self.config.graph_url))
        })
    }

    /// A link the service handed out (nextLink, deltaLink, a 410's Location), followed verbatim.
    /// It must point at the configured Graph origin: the bearer token goes nowhere else.
    pub(crate) fn service_link(&self, link: &str) -> Result<Url, DatasourceError> {
        let url = Url::parse(link)
            .map_err(|e| DatasourceError::Permanent(format!("the service link is not a URL: {e}")))?;
        if url.origin() != self.base()?.origin() {
            return Err(DatasourceError::Permanent(format!(
                "refusing to send credentials to {}, which is not the configured Graph origin",
                url.origin().ascii_serialization()
            )));
        }
        Ok(url)
    }

    /// GET a Graph URL and parse its JSON answer.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        tokens: &dyn TokenSource,
        url: &Url,
    ) -> Result<T, DatasourceError> {
        self.get_json_preferring(tokens, url, None).await
    }

    /// [`Client::get_json`] with a `Prefer` request header.
    pub(crate) async fn get_json_preferring<T: DeserializeOwned>(
        &self,
        tokens: &dyn TokenSource,
        url: &Url,
        prefer: Option<&str>,
    ) -> Result<T, DatasourceError> {
        let call = Call { prefer, ..Call::GET };
        self.send_json(tokens, url, call).await
    }

    /// Sends `call` to a Graph URL and parses its JSON answer.
    pub(crate) async fn send_json<T: DeserializeOwned>(
        &self,
        tokens: &dyn TokenSource,
        url: &Url,
        call: Call<'_>,
    ) -> Result<T, DatasourceError> {
        let bytes = self.send(tokens, url, call).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            DatasourceError::Permanent(format!(
                "unexpected answer from {} {}: {e}",
                call.method,
                url.path()
            ))
        })
    }

    /// Sends `call` to a Graph URL and returns its body (empty for a 204).
    pub(crate) async fn send(
        &self,
        tokens: &dyn TokenSource,
        url: &Url,
        call: Call<'_>,
    ) -> Result<Bytes, DatasourceError> {
        match self.execute(Auth::Bearer(tokens), url, Want::Body, call).await?.0 {
            Answer::Body(bytes) => Ok(bytes),
            Answer::Head(_) => Err(DatasourceError::Permanent(
                "internal: a body was asked for".into(),
            )),
        }
    }

    /// GET and return the answer once its headers arrived (2xx or 3xx), for redirects and
    /// downloads.
    pub(crate) async fn get_head(&self, auth: Auth<'_>, url: &Url) -> Result<Head, DatasourceError> {
        match self.execute(auth, url, Want::Head, Call::GET).await? {
            (Answer::Head(response), gate) => Ok(Head { response, gate }),
            (Answer::Body(_), _) => Err(DatasourceError::Permanent(
                "internal: headers were asked for".into(),
            )),
        }
    }

    /// Where requests are logged: the path of Graph URLs, never a download URL.
    fn loggable(auth: Auth<'_>, url: &Url) -> String {
        match auth {
            Auth::Bearer(_) => url.path().to_string(),
            Auth::Anonymous(_) => "<download URL>".to_string(),
        }
    }

    /// The throttle gate a request waits at: its token's tenant's, or the one it was given.
    fn gate(&self, auth: Auth<'_>, token: Option<&AccessToken>) -> Arc<Gate> {
        match auth {
            Auth::Anonymous(gate) => gate.clone(),
            Auth::Bearer(_) => self.gates.for_token(token, self.clock.now()),
        }
    }

    /// Sends a request until it succeeds or must fail; returns the answer and the gate the
    /// request went through.
    async fn execute(
        &self,
        auth: Auth<'_>,
        url: &Url,
        want: Want,
        call: Call<'_>,
    ) -> Result<(Answer, Arc<Gate>), DatasourceError> {
        let target = Self::loggable(auth, url);
        let max_attempts = self.config.max_attempts.max(1);
        let mut token: Option<AccessToken> = match auth {
            Auth::Bearer(tokens) => Some(tokens.access_token().await?),
            Auth::Anonymous(_) => None,
        };
        let mut gate = self.gate(auth, token.as_ref());
        let mut refreshed = false;
        let mut attempt: u32 = 0;
        let mut throttled_answers: u32 = 0;
        let mut waits = GateWaits::default();
        // When this request's own answer closed the gate: its wait counts from that answer.
        let mut throttled_at: Option<DateTime<Utc>> = None;
        loop {
            attempt += 1;
            let now = throttled_at.take().unwrap_or_else(|| self.clock.now());
            self.wait_at_gate(&gate, now, &target, &mut waits).await?;
            let failure = match self.attempt(url, token.as_ref(), want, auth, call).await {
                Ok(answer) => return Ok((answer, gate)),
                Err(f) => f,
            };
            let (why, wait, throttled) = match failure {
                Failure::Fail(e) => return Err(e),
                Failure::Retry { why, wait, throttled } => (why, wait, throttled),
                Failure::Refresh => {
                    let (Auth::Bearer(tokens), Some(rejected)) = (auth, token.as_ref()) else {
                        return Err(DatasourceError::Permanent(
                            "internal: refresh without a token".into(),
                        ));
                    };
                    if refreshed {
                        return Err(DatasourceError::Unauthorized(format!(
                            "{} {target} was refused again after a token refresh",
                            call.method
                        )));
                    }
                    debug!(request.path = %target, "access token refused; refreshing it once");
                    refreshed = true;
                    token = Some(tokens.refresh(rejected).await?);
                    gate = self.gate(auth, token.as_ref());
                    // A refresh is not a failed attempt: repeat at once.
                    attempt -= 1;
                    continue;
                }
            };
            if throttled && let Some(retry_after) = wait.filter(|w| !w.is_zero()) {
                // Not a failed attempt: the service said when to come back. (Throttling without
                // `Retry-After`, e.g. a bare 503, or with `Retry-After: 0`, still counts as an
                // attempt.) The whole tenant waits, this request at the top of the loop.
                attempt -= 1;
                throttled_answers += 1;
                let now = self.clock.now();
                if gate.close_until(later(now, retry_after)) {
                    metrics::counter!("kbsync_graph_throttle_gate_closed_total").increment(1);
                }
                // A throttled answer always costs this request a wait, even when its clock says
                // the closure it waited out is still in force (a clock that does not move).
                waits.last_closure = None;
                if retry_after > self.config.max_retry_wait {
                    debug!(request.path = %target, retry_after_ms = retry_after.as_millis() as u64, "throttled beyond the retry cap");
                    return Err(DatasourceError::Throttled { retry_after });
                }
                debug!(
                    request.path = %target, throttled = throttled_answers,
                    retry_after_ms = retry_after.as_millis() as u64, "throttled: closing the tenant's gate: {why}"
                );
                throttled_at = Some(now);
                continue;
            }
            let delay = self.backoff(attempt);
            if attempt >= max_attempts {
                warn!(request.path = %target, attempts = attempt, "giving up: {why}");
                return Err(if throttled {
                    DatasourceError::Throttled { retry_after: delay }
                } else {
                    DatasourceError::Transient(format!(
                        "{} {target} failed after {attempt} attempts: {why}",
                        call.method
                    ))
                });
            }
            debug!(
                request.path = %target,
                attempt,
                wait_ms = delay.as_millis() as u64,
                "retrying: {why}"
            );
            self.sleeper.sleep(delay).await;
        }
    }

    /// Waits while `gate` is closed (looking first at `now`), plus the small jitter, and again if
    /// it closed for longer meanwhile. `Throttled` instead of a wait beyond
    /// [`GraphConfig::max_retry_wait`], or beyond what is left of the request's
    /// [`GraphConfig::max_throttle_wait`].
    async fn wait_at_gate(
        &self,
        gate: &Gate,
        now: DateTime<Utc>,
        target: &str,
        waits: &mut GateWaits,
    ) -> Result<(), DatasourceError> {
        let limits = WaitLimits {
            max_wait: self.config.max_retry_wait,
            budget: self.config.max_throttle_wait,
        };
        let waited = waits.total;
        match gate
            .wait_open(now, &*self.clock, &*self.sleeper, &*self.random, limits, waits)
            .await
        {
            Ok(0) => Ok(()),
            Ok(n) => {
                debug!(
                    request.path = %target, waits = n, wait_ms = (waits.total - waited).as_millis() as u64,
                    "the tenant was throttled: waited at its gate"
                );
                metrics::counter!("kbsync_graph_throttle_waits_total").increment(u64::from(n));
                Ok(())
            }
            Err(Refusal::BeyondMaxWait { remaining }) => {
                debug!(request.path = %target, retry_after_ms = remaining.as_millis() as u64, "the tenant is throttled beyond the retry cap");
                Err(DatasourceError::Throttled {
                    retry_after: remaining,
                })
            }
            Err(Refusal::OutOfBudget { remaining }) => {
                warn!(
                    request.path = %target, waited_ms = waits.total.as_millis() as u64,
                    "giving up: the tenant is still throttled"
                );
                Err(DatasourceError::Throttled {
                    retry_after: remaining,
                })
            }
        }
    }

    /// One request, classified.
    async fn attempt(
        &self,
        url: &Url,
        token: Option<&AccessToken>,
        want: Want,
        auth: Auth<'_>,
        call: Call<'_>,
    ) -> Result<Answer, Failure> {
        let mut req = self
            .http
            .request(call.method.clone(), url.clone())
            .header(USER_AGENT, &self.config.user_agent);
        if let Some(prefer) = call.prefer {
            req = req.header("Prefer", prefer);
        }
        if let Some(body) = call.body {
            req = req.json(body);
        }
        if want == Want::Body {
            req = req
                .header(ACCEPT, "application/json")
                .timeout(self.config.request_timeout);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t.secret());
        }
        let response = match tokio::time::timeout(self.config.request_timeout, req.send()).await {
            Err(_) => {
                metrics::counter!("kbsync_graph_requests_total", "status" => "timeout").increment(1);
                return Err(Failure::retry("the request timed out"));
            }
            Ok(Err(e)) => {
                metrics::counter!("kbsync_graph_requests_total", "status" => "connection_error").increment(1);
                return Err(transport_failure(e));
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        metrics::counter!("kbsync_graph_requests_total", "status" => status.as_str().to_owned()).increment(1);
        if status.is_success() || status.is_redirection() {
            return match want {
                Want::Head => Ok(Answer::Head(response)),
                Want::Body => match read_limited(response, MAX_JSON_BYTES).await {
                    Ok(bytes) => Ok(Answer::Body(bytes)),
                    Err(e) => Err(e),
                },
            };
        }
        let headers = response.headers().clone();
        // A failed read of an error body only loses the details; the status still decides.
        let body = read_limited(response, MAX_ERROR_BYTES).await.unwrap_or_default();
        Err(self.classify(status, &headers, &body, auth))
    }

    fn classify(&self, status: StatusCode, headers: &HeaderMap, body: &[u8], auth: Auth<'_>) -> Failure {
        let parsed = GraphErrorBody::parse(body);
        let authenticated = matches!(auth, Auth::Bearer(_));
        match decide(status, headers, &parsed, authenticated, self.clock.now()) {
            Decision::Refresh => Failure::Refresh,
            Decision::Throttled { retry_after } => Failure::Retry {
                why: parsed.describe(status),
                wait: retry_after,
                throttled: true,
            },
            Decision::Retry => Failure::Retry {
                why: parsed.describe(status),
                wait: None,
                throttled: false,
            },
            Decision::Fail(e) => Failure::Fail(e),
        }
    }

    /// Exponential backoff with "equal jitter": half the step for sure, half at random.
    fn backoff(&self, attempt: u32) -> Duration {
        backoff(
            self.config.base_backoff,
            self.config.max_retry_wait,
            attempt,
            &*self.random,
        )
    }
}
