//! Google's error answers: parsing the body, reading `Retry-After`, and deciding what the client
//! does next.
//!
//! Google's body is `{"error":{"code","message","errors":[{"domain","reason","message",
//! "location","locationType"}]}}`. A 403 is both "slow down" and "no", so 403s are told apart by
//! `reason`:
//!
//! | answer | decision |
//! |---|---|
//! | 401 | refresh the token once, then `Unauthorized` |
//! | 403/429 `rateLimitExceeded`, `userRateLimitExceeded`; any 429 | throttled: wait `Retry-After` when given, else back off |
//! | 400 `invalid` at `pageToken`; 410 | `CursorExpired { restart: None }` |
//! | 403 `insufficientFilePermissions`, `appNotAuthorizedToFile`, `domainPolicy`, `teamDriveMembershipRequired`, `notFound`, `insufficientPermissions`; 404 | `NotFound` (the reason in the message) |
//! | other 403s (`fileNotDownloadable`, `cannotDownloadAbusiveFile`, `exportSizeLimitExceeded`, `downloadQuotaExceeded`, `quotaExceeded`, `dailyLimitExceeded`, …) | `Permanent` (the reason in the message) |
//! | 408, 500, 502, 503, 504 | retried with backoff (a `Retry-After` is honoured) |
//! | other 5xx | `Transient` |
//! | anything else | `Permanent` |

use std::time::Duration;

use chrono::{DateTime, Utc};
use kbsync_core::datasource::DatasourceError;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

/// How many entries of `errors[]` are read.
const MAX_ERRORS: usize = 16;

/// Reasons that mean "slow down" (Drive "Resolve errors": 403 and 429 usage limits).
const THROTTLE_REASONS: &[&str] = &["rateLimitExceeded", "userRateLimitExceeded"];

/// 403 reasons that mean the caller may not see or read this item: for the engine, the item is
/// gone for these credentials.
const DENIED_REASONS: &[&str] = &[
    "insufficientFilePermissions",
    "insufficientPermissions",
    "appNotAuthorizedToFile",
    "domainPolicy",
    "teamDriveMembershipRequired",
    "notFound",
];

/// What Drive answers a download (`alt=media`) or an export of an id that has no content of its
/// own, such as a shortcut (400 or 403): the datasource then reads the id's metadata and follows
/// it (see [`crate::GoogleDrive`]'s `download`).
pub const NOT_CONTENT_REASONS: &[&str] = &["fileNotDownloadable", "fileNotExportable", "badRequest"];

/// One entry of Google's `errors[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorEntry {
    pub reason: Option<String>,
    pub location: Option<String>,
}

/// The parts of a Google error body the client uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoogleErrorBody {
    pub message: Option<String>,
    pub errors: Vec<ErrorEntry>,
}

impl GoogleErrorBody {
    /// Parses Google's error shape; anything else gives an empty body (the status alone then
    /// decides).
    pub fn parse(body: &[u8]) -> Self {
        let Ok(v) = serde_json::from_slice::<Value>(body) else {
            return Self::default();
        };
        let Some(error) = v.get("error").filter(|e| e.is_object()) else {
            return Self::default();
        };
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
        Self {
            message: text(error, "message"),
            errors: error
                .get("errors")
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .take(MAX_ERRORS)
                        .map(|e| ErrorEntry {
                            reason: text(e, "reason"),
                            location: text(e, "location"),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The first reason, if any.
    pub fn reason(&self) -> Option<&str> {
        self.errors.iter().find_map(|e| e.reason.as_deref())
    }

    pub(crate) fn has_reason(&self, reasons: &[&str]) -> bool {
        self.errors
            .iter()
            .filter_map(|e| e.reason.as_deref())
            .any(|r| reasons.contains(&r))
    }

    /// Whether Google refused a page token (`invalid` at location `pageToken`).
    pub fn rejects_page_token(&self) -> bool {
        self.errors.iter().any(|e| {
            e.location
                .as_deref()
                .is_some_and(|l| l.eq_ignore_ascii_case("pageToken"))
        })
    }

    /// `status: reason: message` for error texts (messages are for humans; never keyed on).
    pub fn describe(&self, status: StatusCode) -> String {
        let reason = self.reason().unwrap_or(status.as_str());
        match &self.message {
            Some(m) => format!("{status}: {reason}: {m}"),
            None => format!("{status}: {reason}"),
        }
    }
}

/// What to do about one error answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// 401: refresh the access token (once) and repeat.
    Refresh,
    /// Rate limited: wait `retry_after` when given, else back off, and repeat.
    Throttled { retry_after: Option<Duration> },
    /// A passing failure: back off (or wait `retry_after` when given) and repeat.
    Retry { retry_after: Option<Duration> },
    /// Give up with this error.
    Fail(DatasourceError),
}

/// Decides what an error answer means.
pub fn decide(
    status: StatusCode,
    headers: &HeaderMap,
    body: &GoogleErrorBody,
    now: DateTime<Utc>,
) -> Decision {
    let what = body.describe(status);
    let code = status.as_u16();
    if code == 401 {
        return Decision::Refresh;
    }
    if code == 429 || (code == 403 && body.has_reason(THROTTLE_REASONS)) {
        return Decision::Throttled {
            retry_after: retry_after(headers, now),
        };
    }
    if code == 410 || (code == 400 && body.rejects_page_token()) {
        return Decision::Fail(DatasourceError::CursorExpired { restart: None });
    }
    match code {
        403 if body.has_reason(DENIED_REASONS) => Decision::Fail(DatasourceError::NotFound(what)),
        403 => Decision::Fail(DatasourceError::Permanent(what)),
        404 => Decision::Fail(DatasourceError::NotFound(what)),
        408 | 500 | 502 | 503 | 504 => Decision::Retry {
            retry_after: retry_after(headers, now),
        },
        500..=599 => Decision::Fail(DatasourceError::Transient(what)),
        _ => Decision::Fail(DatasourceError::Permanent(what)),
    }
}

/// `Retry-After` as a duration ([`kbsync_http::retry_after`]). Drive does not document the header;
/// it is honoured when present.
pub use kbsync_http::retry_after;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use reqwest::header::{DATE, HeaderValue, RETRY_AFTER};

    fn now() -> DateTime<Utc> {
        "2026-03-01T09:00:00Z".parse().unwrap()
    }

    fn body(status: u16, reason: &str, location: Option<&str>) -> GoogleErrorBody {
        let mut e = serde_json::json!({"domain": "global", "reason": reason, "message": "m"});
        if let Some(l) = location {
            e["location"] = l.into();
            e["locationType"] = "parameter".into();
        }
        let v = serde_json::json!({"error": {"code": status, "message": "Human text", "errors": [e]}});
        GoogleErrorBody::parse(v.to_string().as_bytes())
    }

    fn decide_on(status: u16, reason: &str, location: Option<&str>, headers: &HeaderMap) -> Decision {
        decide(
            StatusCode::from_u16(status).unwrap(),
            headers,
            &body(status, reason, location),
            now(),
        )
    }

    #[test]
    fn a_403_is_throttling_or_denial_by_its_reason() {
        let none = HeaderMap::new();
        assert_eq!(
            decide_on(403, "userRateLimitExceeded", None, &none),
            Decision::Throttled { retry_after: None }
        );
        assert_eq!(
            decide_on(403, "rateLimitExceeded", None, &none),
            Decision::Throttled { retry_after: None }
        );
        match decide_on(403, "insufficientFilePermissions", None, &none) {
            Decision::Fail(DatasourceError::NotFound(m)) => {
                assert!(m.contains("insufficientFilePermissions"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        match decide_on(403, "exportSizeLimitExceeded", None, &none) {
            Decision::Fail(DatasourceError::Permanent(m)) => {
                assert!(m.contains("exportSizeLimitExceeded"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        match decide_on(403, "downloadQuotaExceeded", None, &none) {
            Decision::Fail(DatasourceError::Permanent(m)) => {
                assert!(m.contains("downloadQuotaExceeded"), "{m}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_rejected_page_token_or_a_410_expires_the_cursor_and_other_400s_are_permanent() {
        let none = HeaderMap::new();
        let expired = Decision::Fail(DatasourceError::CursorExpired { restart: None });
        assert_eq!(decide_on(400, "invalid", Some("pageToken"), &none), expired);
        assert_eq!(decide_on(410, "deleted", None, &none), expired);
        assert!(matches!(
            decide_on(400, "invalid", Some("q"), &none),
            Decision::Fail(DatasourceError::Permanent(_))
        ));
    }

    #[test]
    fn retry_after_is_read_in_seconds_or_as_a_date_and_429_and_5xx_are_retried() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            decide_on(429, "rateLimitExceeded", None, &h),
            Decision::Throttled {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(
            decide_on(503, "backendError", None, &h),
            Decision::Retry {
                retry_after: Some(Duration::from_secs(7))
            }
        );
        let mut d = HeaderMap::new();
        d.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Sun, 01 Mar 2026 09:00:30 GMT"),
        );
        d.insert(DATE, HeaderValue::from_static("Sun, 01 Mar 2026 09:00:00 GMT"));
        assert_eq!(retry_after(&d, now()), Some(Duration::from_secs(30)));
        assert_eq!(
            decide(
                StatusCode::BAD_GATEWAY,
                &HeaderMap::new(),
                &GoogleErrorBody::parse(b"<html>"),
                now()
            ),
            Decision::Retry { retry_after: None }
        );
        assert_eq!(
            decide(
                StatusCode::UNAUTHORIZED,
                &HeaderMap::new(),
                &GoogleErrorBody::default(),
                now()
            ),
            Decision::Refresh
        );
    }
}
