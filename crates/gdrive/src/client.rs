//! The Drive HTTP client: one place that sends requests, times them out, retries them and turns
//! answers into [`DatasourceError`]s (see [`crate::errors`] for what each answer means).
//!
//! * Rate limiting (429, or 403 with `rateLimitExceeded`/`userRateLimitExceeded`) and passing
//!   failures (408, 500, 502, 503, 504, timeouts, connection errors) back off exponentially with
//!   "equal jitter" from [`GDriveConfig::base_backoff`], truncated at
//!   [`GDriveConfig::max_retry_wait`] (Google's "truncated exponential backoff"), at most
//!   [`GDriveConfig::max_attempts`] attempts; then `Throttled` or `Transient`.
//! * A `Retry-After` (Drive does not document one; honoured when present) closes the datasource's
//!   throttle gate until then: every request of this datasource instance waits at the gate before
//!   it sends. Drive's per-project quota is shared by every user of the OAuth client, so one
//!   gate per instance is right for it; per-user limits (`userRateLimitExceeded`) come without
//!   `Retry-After` in practice and only back the one request off. A `Retry-After` longer than
//!   `max_retry_wait` is not waited for: the call returns `Throttled { retry_after }` at once.
//! * A 401 asks the [`TokenSource`] for a refresh once; a second 401 is `Unauthorized`.
//!
//! The gate, the backoff and the [`Sleeper`] are `kbsync_core::retry`'s, shared with the Graph
//! client. Tokens are never logged; only the path of a URL is.

use std::sync::Arc;

use bytes::Bytes;
use chrono::Utc;
use kbsync_core::datasource::{AccessToken, DatasourceError, TokenSource};
use kbsync_core::retry::{Gate, GateWaits, Refusal, Sleeper, WaitLimits, backoff, later};
use kbsync_core::{Clock, Random};
use kbsync_http::{Failure, read_limited, transport_failure};
use reqwest::header::ACCEPT;
use reqwest::{Response, StatusCode};
use serde::de::DeserializeOwned;
use tracing::{debug, warn};
use url::Url;

use crate::config::GDriveConfig;
use crate::errors::{Decision, GoogleErrorBody, decide};

/// Largest JSON answer read into memory (a page of 1000 files is well below 4 MB).
const MAX_JSON_BYTES: usize = 64 * 1024 * 1024;
/// Largest error body read (the rest is dropped).
const MAX_ERROR_BYTES: usize = 64 * 1024;

/// What the caller wants from a successful answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// The whole body, read within the request timeout (a failure while reading is retried).
    Body,
    /// The answer as soon as its headers arrive; the body is streamed by the caller.
    Head,
    /// Like `Head`, but a 400 or 403 with one of these reasons is [`Answer::Refused`], not an
    /// error: the caller has another way to get the content.
    HeadUnless(&'static [&'static str]),
}

enum Answer {
    Body(Bytes),
    Head(Response),
    /// Refused with one of the reasons of [`Want::HeadUnless`] (described).
    Refused(String),
}

pub(crate) struct DriveClient {
    http: reqwest::Client,
    pub(crate) config: GDriveConfig,
    sleeper: Arc<dyn Sleeper>,
    pub(crate) random: Arc<dyn Random>,
    pub(crate) clock: Arc<dyn Clock>,
    gate: Gate,
}

impl DriveClient {
    pub(crate) fn new(
        http: reqwest::Client,
        config: GDriveConfig,
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
            gate: Gate::default(),
        }
    }

    /// The API URL with `segments` appended (each percent-encoded as one path segment) and
    /// `query` set.
    pub(crate) fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Result<Url, DatasourceError> {
        let mut url = Url::parse(self.config.api_url.trim_end_matches('/')).map_err(|e| {
            DatasourceError::Permanent(format!("api_url {:?} is invalid: {e}", self.config.api_url))
        })?;
        {
            let mut path = url.path_segments_mut().map_err(|()| {
                DatasourceError::Permanent(format!("api_url {:?} cannot be a base URL", self.config.api_url))
            })?;
            path.pop_if_empty();
            for s in segments {
                path.push(s);
            }
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        Ok(url)
    }

    /// GET a Drive URL and parse its JSON answer.
    pub(crate) async fn get_json<T: DeserializeOwned>(
        &self,
        tokens: &dyn TokenSource,
        url: &Url,
    ) -> Result<T, DatasourceError> {
        let Answer::Body(bytes) = self.execute(tokens, url, Want::Body).await? else {
            return Err(DatasourceError::Permanent(
                "internal: a body was asked for".into(),
            ));
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            DatasourceError::Permanent(format!("unexpected answer from GET {}: {e}", url.path()))
        })
    }

    /// GET and return the answer once its headers arrived, for downloads.
    pub(crate) async fn get_head(
        &self,
        tokens: &dyn TokenSource,
        url: &Url,
    ) -> Result<Response, DatasourceError> {
        let Answer::Head(response) = self.execute(tokens, url, Want::Head).await? else {
            return Err(DatasourceError::Permanent(
                "internal: headers were asked for".into(),
            ));
        };
        Ok(response)
    }

    /// GET for a download, like [`get_head`](Self::get_head), unless Drive refuses it (400 or
    /// 403) with one of `reasons`: then `None`, and the caller reads the content another way.
    pub(crate) async fn get_head_unless(
        &self,
        tokens: &dyn TokenSource,
        url: &Url,
        reasons: &'static [&'static str],
    ) -> Result<Option<Response>, DatasourceError> {
        match self.execute(tokens, url, Want::HeadUnless(reasons)).await? {
            Answer::Head(response) => Ok(Some(response)),
            Answer::Refused(why) => {
                debug!(request.path = %url.path(), "refused: {why}");
                Ok(None)
            }
            Answer::Body(_) => Err(DatasourceError::Permanent(
                "internal: headers were asked for".into(),
            )),
        }
    }

    async fn execute(
        &self,
        tokens: &dyn TokenSource,
        url: &Url,
        want: Want,
    ) -> Result<Answer, DatasourceError> {
        let target = url.path().to_string();
        let max_attempts = self.config.max_attempts.max(1);
        let limits = WaitLimits {
            max_wait: self.config.max_retry_wait,
            budget: self.config.max_throttle_wait,
        };
        let mut token = tokens.access_token().await?;
        let mut refreshed = false;
        let mut attempt: u32 = 0;
        let mut waits = GateWaits::default();
        let mut throttled_at = None;
        loop {
            attempt += 1;
            let now = throttled_at.take().unwrap_or_else(|| self.clock.now());
            match self
                .gate
                .wait_open(
                    now,
                    &*self.clock,
                    &*self.sleeper,
                    &*self.random,
                    limits,
                    &mut waits,
                )
                .await
            {
                Ok(0) => {}
                Ok(n) => debug!(request.path = %target, waits = n, "waited at the throttle gate"),
                Err(Refusal::BeyondMaxWait { remaining } | Refusal::OutOfBudget { remaining }) => {
                    warn!(request.path = %target, retry_after_ms = remaining.as_millis() as u64, "throttled beyond what this request may wait");
                    return Err(DatasourceError::Throttled {
                        retry_after: remaining,
                    });
                }
            }
            let (why, wait, throttled) = match self.attempt(url, &token, want).await {
                Ok(answer) => return Ok(answer),
                Err(Failure::Fail(e)) => return Err(e),
                Err(Failure::Refresh) => {
                    if refreshed {
                        return Err(DatasourceError::Unauthorized(format!(
                            "GET {target} was refused again after a token refresh"
                        )));
                    }
                    debug!(request.path = %target, "access token refused; refreshing it once");
                    refreshed = true;
                    token = tokens.refresh(&token).await?;
                    attempt -= 1;
                    continue;
                }
                Err(Failure::Retry { why, wait, throttled }) => (why, wait, throttled),
            };
            if let Some(retry_after) = wait.filter(|w| !w.is_zero()) {
                // The service said when to come back: not a failed attempt, but bounded by the
                // request's throttle budget at the gate.
                attempt -= 1;
                if retry_after > self.config.max_retry_wait {
                    return Err(DatasourceError::Throttled { retry_after });
                }
                let now = self.clock.now();
                if self.gate.close_until(later(now, retry_after)) {
                    metrics::counter!("kbsync_gdrive_throttle_gate_closed_total").increment(1);
                }
                waits.last_closure = None;
                debug!(request.path = %target, retry_after_ms = retry_after.as_millis() as u64, "closing the throttle gate: {why}");
                throttled_at = Some(now);
                continue;
            }
            let delay = backoff(
                self.config.base_backoff,
                self.config.max_retry_wait,
                attempt,
                &*self.random,
            );
            if attempt >= max_attempts {
                warn!(request.path = %target, attempts = attempt, "giving up: {why}");
                return Err(if throttled {
                    DatasourceError::Throttled { retry_after: delay }
                } else {
                    DatasourceError::Transient(format!("GET {target} failed after {attempt} attempts: {why}"))
                });
            }
            debug!(request.path = %target, attempt, wait_ms = delay.as_millis() as u64, "retrying: {why}");
            self.sleeper.sleep(delay).await;
        }
    }

    async fn attempt(&self, url: &Url, token: &AccessToken, want: Want) -> Result<Answer, Failure> {
        let mut req = self.http.get(url.clone()).bearer_auth(token.secret());
        if want == Want::Body {
            req = req
                .header(ACCEPT, "application/json")
                .timeout(self.config.request_timeout);
        }
        let response = match tokio::time::timeout(self.config.request_timeout, req.send()).await {
            Err(_) => {
                metrics::counter!("kbsync_gdrive_requests_total", "status" => "timeout").increment(1);
                return Err(Failure::retry("the request timed out"));
            }
            Ok(Err(e)) => {
                metrics::counter!("kbsync_gdrive_requests_total", "status" => "connection_error")
                    .increment(1);
                return Err(transport_failure(e));
            }
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        metrics::counter!("kbsync_gdrive_requests_total", "status" => status.as_str().to_owned())
            .increment(1);
        if status.is_success() {
            return match want {
                Want::Head | Want::HeadUnless(_) => Ok(Answer::Head(response)),
                Want::Body => read_limited(response, MAX_JSON_BYTES).await.map(Answer::Body),
            };
        }
        let headers = response.headers().clone();
        let body = read_limited(response, MAX_ERROR_BYTES).await.unwrap_or_default();
        let parsed = GoogleErrorBody::parse(&body);
        if let Want::HeadUnless(reasons) = want
            && matches!(status.as_u16(), 400 | 403)
            && parsed.has_reason(reasons)
        {
            return Ok(Answer::Refused(parsed.describe(status)));
        }
        Err(classify(status, &headers, &parsed, self.clock.now()))
    }
}

fn classify(
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    parsed: &GoogleErrorBody,
    now: chrono::DateTime<Utc>,
) -> Failure {
    if status.is_redirection() {
        return Failure::Fail(DatasourceError::Permanent(format!(
            "unexpected redirect ({status}): the bearer token is not sent elsewhere"
        )));
    }
    match decide(status, headers, parsed, now) {
        Decision::Refresh => Failure::Refresh,
        Decision::Throttled { retry_after } => Failure::Retry {
            why: parsed.describe(status),
            wait: retry_after,
            throttled: true,
        },
        Decision::Retry { retry_after } => Failure::Retry {
            why: parsed.describe(status),
            wait: retry_after,
            throttled: false,
        },
        Decision::Fail(e) => Failure::Fail(e),
    }
}
