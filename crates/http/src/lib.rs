//! The HTTP side that every datasource's client shares, below its own API's error vocabulary:
//! what one failed attempt means ([`Failure`]), failures below HTTP ([`transport_failure`]),
//! bounded reads of an answer ([`read_limited`]), `Retry-After` ([`retry_after`]) and download bodies checked against the
//! source's content hash as they stream ([`verified_stream`]).
//!
//! Retry timing (backoff, the throttle gate) is in [`kbsync_core::retry`]; how a status and body
//! map to a [`Failure`] is each datasource's own.

mod download;

use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use kbsync_core::datasource::DatasourceError;
use reqwest::header::{DATE, HeaderMap, RETRY_AFTER};

pub use download::{ContentHash, Expected, verified_stream};

/// Why one attempt failed and whether to try again.
#[derive(Debug)]
pub enum Failure {
    /// The access token was refused: refresh it (once) and repeat.
    Refresh,
    /// Retry after `wait` (`None`: exponential backoff). `throttled` answers wait at the
    /// throttle gate and do not count as attempts.
    Retry {
        why: String,
        wait: Option<Duration>,
        throttled: bool,
    },
    /// Give up now.
    Fail(DatasourceError),
}

impl Failure {
    /// A failure worth another attempt after the usual backoff.
    pub fn retry(why: impl Into<String>) -> Self {
        Failure::Retry {
            why: why.into(),
            wait: None,
            throttled: false,
        }
    }
}

/// A failure below HTTP: timeouts and connection trouble are retried; a request that cannot be
/// built never will be. The URL is stripped from the message (it may carry credentials).
pub fn transport_failure(e: reqwest::Error) -> Failure {
    if e.is_builder() {
        return Failure::Fail(DatasourceError::Permanent(e.without_url().to_string()));
    }
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "connection error"
    };
    Failure::retry(format!("{kind}: {}", error_chain(e)))
}

/// The error and its sources, without the URL.
pub fn error_chain(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut out = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `Retry-After` as a duration: integer or decimal seconds, or an HTTP date measured from the
/// answer's own `Date` header (so that clock skew between us and the server does not matter),
/// falling back to `now`. A date in the past means "now" (zero).
pub fn retry_after(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let raw = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = raw.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    if let Ok(secs) = raw.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).ok();
    }
    let at = httpdate::parse_http_date(raw).ok()?;
    let reference = headers
        .get(DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(|d| httpdate::parse_http_date(d).ok())
        .unwrap_or_else(|| SystemTime::from(now));
    Some(at.duration_since(reference).unwrap_or(Duration::ZERO))
}

/// The whole body of an answer, refused (permanently) once it grows past `limit` bytes.
pub async fn read_limited(mut response: reqwest::Response, limit: usize) -> Result<Bytes, Failure> {
    let mut buf = BytesMut::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if buf.len() + chunk.len() > limit {
                    return Err(Failure::Fail(DatasourceError::Permanent(format!(
                        "the answer is larger than {limit} bytes"
                    ))));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(buf.freeze()),
            Err(e) => return Err(transport_failure(e)),
        }
    }
}

#[cfg(test)]
mod tests;
