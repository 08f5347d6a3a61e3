//! Entry points for fuzzing what kbsync reads from Graph before it trusts it: the cargo-fuzz
//! targets (`fuzz/`, nightly) and the bounded property runs on stable
//! (`tests/datasource/fuzz_properties.rs`) call these same functions. Not part of the crate's API.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::header::{DATE, HeaderMap, HeaderValue, RETRY_AFTER};

use crate::errors::retry_after;
use crate::mapping::{browse_entry, remote_item, remote_permission, sharing_changed};
use crate::model::{DriveItem, Page, Permission};

/// The fixed "now" the fuzzed headers are read against.
pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_772_355_600, 0).unwrap_or_default()
}

/// `Retry-After` (and, when given, `Date`) as raw header bytes, read as the Graph client reads
/// them. Bytes no header can carry are left out, as an HTTP stack would refuse them.
pub fn retry_after_header(value: &[u8], date: Option<&[u8]>) -> Option<Duration> {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_bytes(value) {
        headers.insert(RETRY_AFTER, v);
    }
    if let Some(Ok(d)) = date.map(HeaderValue::from_bytes) {
        headers.insert(DATE, d);
    }
    retry_after(&headers, now())
}

/// The `retry_after` fuzz target: a `Date` header after the first newline, if any.
pub fn retry_after_input(data: &[u8]) -> Option<Duration> {
    match data.iter().position(|b| *b == b'\n') {
        Some(i) => retry_after_header(&data[..i], Some(&data[i + 1..])),
        None => retry_after_header(data, None),
    }
}

/// What a delta page's bytes came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeltaOutcome {
    /// Not a page (the client answers an error).
    Refused,
    /// A page of this many items, each mapped; `next` tells whether it links on (`nextLink` or
    /// `deltaLink`), which the client requires.
    Mapped { items: usize, linked: bool },
}

/// A delta page's bytes, parsed and mapped as `changes` and the picker map them.
pub fn delta_page(bytes: &[u8]) -> DeltaOutcome {
    let Ok(page) = serde_json::from_slice::<Page<DriveItem>>(bytes) else {
        return DeltaOutcome::Refused;
    };
    for item in &page.value {
        let _ = remote_item(item, "drive", Some("scope"));
        let _ = remote_item(item, "drive", None);
        let _ = browse_entry(item, Some("drive"));
        let _ = browse_entry(item, None);
        let _ = sharing_changed(item);
    }
    DeltaOutcome::Mapped {
        items: page.value.len(),
        linked: page.next_link.is_some() || page.delta_link.is_some(),
    }
}

/// A permission's bytes, parsed and mapped as the permission listing maps them; `None` when
/// they are not a permission.
pub fn permission(bytes: &[u8]) -> Option<usize> {
    let p = serde_json::from_slice::<Permission>(bytes).ok()?;
    Some(remote_permission(&p, "drive").principals.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_entry_points_read_what_graph_sends() {
        assert_eq!(retry_after_input(b"7"), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after_input(b"Sun, 01 Mar 2026 09:00:30 GMT\nSun, 01 Mar 2026 09:00:00 GMT"),
            Some(Duration::from_secs(30))
        );
        assert_eq!(retry_after_input(b"\xff"), None);
        assert_eq!(delta_page(b"{"), DeltaOutcome::Refused);
        assert_eq!(
            delta_page(br#"{"value": [{"id": "a", "name": "a.txt", "file": {}}], "@odata.deltaLink": "x"}"#),
            DeltaOutcome::Mapped {
                items: 1,
                linked: true
            }
        );
        assert_eq!(permission(b"[]"), None);
    }
}
