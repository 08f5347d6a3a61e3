//! Graph's error answers: parsing the body, reading `Retry-After`, and deciding what the client
//! does next. Decisions key on the HTTP status (a 429 has been seen with `code: accessDenied`);
//! codes only matter for the resync family, which may sit at any depth of the
//! `innerError`/`innererror` chain.

use std::time::Duration;

use chrono::{DateTime, Utc};
use kbsync_core::datasource::DatasourceError;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION};
use serde_json::Value;

/// How deep the `innerError` chain is walked.
const MAX_DEPTH: usize = 16;

/// The parts of a Graph error body the client uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GraphErrorBody {
    /// Codes from the outermost (`error.code`) to the innermost.
    pub codes: Vec<String>,
    pub message: Option<String>,
}

impl GraphErrorBody {
    /// Parses `{"error":{"code","message","innerError"|"innererror":{…}}}`; anything else gives
    /// an empty body (the status alone then decides).
    pub fn parse(body: &[u8]) -> Self {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return Self::default();
        };
        let Some(error) = v.get("error") else {
            return Self::default();
        };
        let mut out = Self {
            codes: Vec::new(),
            message: error.get("message").and_then(Value::as_str).map(str::to_string),
        };
        let mut node = Some(error);
        let mut depth = 0;
        while let Some(n) = node {
            if depth >= MAX_DEPTH {
                break;
            }
            if let Some(code) = n.get("code").and_then(Value::as_str) {
                out.codes.push(code.to_string());
            }
            node = n.as_object().and_then(|o| {
                o.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("innererror"))
                    .map(|(_, v)| v)
            });
            depth += 1;
        }
        out
    }

    /// Whether any code asks for a full re-enumeration (`resync*`, `syncStateNotFound`).
    pub fn asks_for_resync(&self) -> bool {
        self.codes.iter().any(|c| {
            let c = c.to_ascii_lowercase();
            c.starts_with("resync") || c == "syncstatenotfound"
        })
    }

    /// `code: message` for error texts (messages are for humans; never keyed on).
    pub fn describe(&self, status: StatusCode) -> String {
        let code = self
            .codes
            .first()
            .map_or_else(|| status.as_str().to_string(), Clone::clone);
        match &self.message {
            Some(m) => format!("{status}: {code}: {m}"),
            None => format!("{status}: {code}"),
        }
    }
}

/// What to do about one error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// 401: refresh the access token (once) and repeat.
    Refresh,
    /// 429/503: wait `retry_after` when given, else back off, and repeat.
    Throttled { retry_after: Option<Duration> },
    /// 5xx (500/502/504/509) or 408: back off exponentially and repeat.
    Retry,
    /// Give up with this error.
    Fail(DatasourceError),
}

/// Decides what an error answer means. `authenticated` is false for pre-authenticated download
/// URLs, where 401/403 mean "that URL is no longer valid", not "your token is".
pub fn decide(
    status: StatusCode,
    headers: &HeaderMap,
    body: &GraphErrorBody,
    authenticated: bool,
    now: DateTime<Utc>,
) -> Decision {
    let what = body.describe(status);
    if status == StatusCode::UNAUTHORIZED {
        return if authenticated {
            Decision::Refresh
        } else {
            Decision::Fail(DatasourceError::Unauthorized(format!(
                "the download URL was refused: {what}"
            )))
        };
    }
    if status == StatusCode::GONE || body.asks_for_resync() {
        let restart = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        return Decision::Fail(DatasourceError::CursorExpired { restart });
    }
    match status.as_u16() {
        403 | 404 => Decision::Fail(DatasourceError::NotFound(what)),
        429 | 503 => Decision::Throttled {
            retry_after: retry_after(headers, now),
        },
        408 | 500 | 502 | 504 | 509 => Decision::Retry,
        423 => Decision::Fail(DatasourceError::Transient(what)),
        501 => Decision::Fail(DatasourceError::Permanent(what)),
        500..=599 => Decision::Fail(DatasourceError::Transient(what)),
        _ => Decision::Fail(DatasourceError::Permanent(what)),
    }
}

/// Whether the text of a `NotFound` [`decide`] made describes a 403 (it starts with the status,
/// as [`GraphErrorBody::describe`] writes it), as opposed to a 404.
pub fn is_forbidden(not_found: &str) -> bool {
    not_found.starts_with("403 ")
}

/// `Retry-After` as a duration ([`kbsync_http::retry_after`]).
pub use kbsync_http::retry_after;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use reqwest::header::HeaderValue;

    fn now() -> DateTime<Utc> {
        "2025-03-01T09:00:00Z".parse().unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn both_innererror_spellings_are_walked_to_the_innermost_code() {
        let a = GraphErrorBody::parse(
            br#"{"error":{"code":"resyncRequired","message":"m","innerError":{"code":"resyncChangesApplyDifferences"}}}"#,
        );
        assert_eq!(a.codes, ["resyncRequired", "resyncChangesApplyDifferences"]);
        let b = GraphErrorBody::parse(
            br#"{"error":{"code":"invalidRequest","innererror":{"code":"x","innererror":{"code":"syncStateNotFound"}}}}"#,
        );
        assert_eq!(b.codes, ["invalidRequest", "x", "syncStateNotFound"]);
        assert!(b.asks_for_resync());
    }

    #[test]
    fn a_resync_code_at_any_depth_means_cursor_expired_whatever_the_status() {
        let body = GraphErrorBody::parse(
            br#"{"error":{"code":"invalidRequest","innerError":{"code":"generalException","innerError":{"code":"resyncUploadDifferences"}}}}"#,
        );
        let d = decide(
            StatusCode::BAD_REQUEST,
            &headers(&[("location", "https://g/v1.0/drives/d/root/delta")]),
            &body,
            true,
            now(),
        );
        assert_eq!(
            d,
            Decision::Fail(DatasourceError::CursorExpired {
                restart: Some("https://g/v1.0/drives/d/root/delta".into())
            })
        );
    }

    #[test]
    fn gone_without_a_body_is_cursor_expired_without_restart() {
        let d = decide(
            StatusCode::GONE,
            &HeaderMap::new(),
            &GraphErrorBody::default(),
            true,
            now(),
        );
        assert_eq!(
            d,
            Decision::Fail(DatasourceError::CursorExpired { restart: None })
        );
    }

    #[test]
    fn throttling_keys_on_status_not_on_code() {
        let body = GraphErrorBody::parse(
            br#"{"error":{"code":"accessDenied","message":"Too Many Requests","innerError":{"code":"throttledRequest"}}}"#,
        );
        let d = decide(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "31")]),
            &body,
            true,
            now(),
        );
        assert_eq!(
            d,
            Decision::Throttled {
                retry_after: Some(Duration::from_secs(31))
            }
        );
    }

    #[test]
    fn statuses_map_to_what_the_caller_does_next() {
        let e = GraphErrorBody::default();
        let h = HeaderMap::new();
        assert_eq!(
            decide(StatusCode::UNAUTHORIZED, &h, &e, true, now()),
            Decision::Refresh
        );
        assert!(matches!(
            decide(StatusCode::UNAUTHORIZED, &h, &e, false, now()),
            Decision::Fail(DatasourceError::Unauthorized(_))
        ));
        for s in [403, 404] {
            assert!(matches!(
                decide(StatusCode::from_u16(s).unwrap(), &h, &e, true, now()),
                Decision::Fail(DatasourceError::NotFound(_))
            ));
        }
        for s in [408, 500, 502, 504, 509] {
            assert_eq!(
                decide(StatusCode::from_u16(s).unwrap(), &h, &e, true, now()),
                Decision::Retry,
                "{s}"
            );
        }
        assert!(matches!(
            decide(StatusCode::BAD_REQUEST, &h, &e, true, now()),
            Decision::Fail(DatasourceError::Permanent(_))
        ));
    }

    #[test]
    fn a_not_found_made_from_a_403_is_told_apart_from_one_made_from_a_404() {
        let body = GraphErrorBody::parse(
            br#"{"error":{"code":"Authorization_RequestDenied","message":"Insufficient privileges to complete the operation."}}"#,
        );
        let text = |status: u16| match decide(
            StatusCode::from_u16(status).unwrap(),
            &HeaderMap::new(),
            &body,
            true,
            now(),
        ) {
            Decision::Fail(DatasourceError::NotFound(why)) => why,
            other => panic!("{other:?}"),
        };
        assert!(is_forbidden(&text(403)));
        assert!(!is_forbidden(&text(404)));
    }
}
