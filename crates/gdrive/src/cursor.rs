//! The change cursor: opaque to the engine, `gd1.` + base64url (no padding) of a small JSON
//! document that carries where the round stands.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kbsync_core::datasource::DatasourceError;
use serde::{Deserialize, Serialize};

const PREFIX: &str = "gd1.";

/// Where a round of changes stands.
///
/// * While `walk` is not empty, the next call lists the children of `walk[0]` (from `page`, a
///   `files.list` page token) and appends the folders it finds: a breadth-first enumeration of
///   the subtrees still to be listed (the whole source on the first round; folders that came into
///   the source later).
/// * Once `walk` is empty, the next call reads `changes.list` from `token`.
/// * `done`: `token` is a `newStartPageToken` (or, on the first round, the start page token
///   taken before the enumeration began): when `walk` is empty the round is complete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// The id of the source folder.
    pub scope: String,
    /// The `changes.list` page token to read next.
    pub token: String,
    #[serde(default)]
    pub done: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub walk: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
}

impl Cursor {
    pub fn encode(&self) -> Result<String, DatasourceError> {
        let json = serde_json::to_vec(self)
            .map_err(|e| DatasourceError::Permanent(format!("the change cursor cannot be written: {e}")))?;
        Ok(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(json)))
    }

    /// A cursor this datasource wrote; anything else (another version, a cursor of another
    /// datasource, a damaged one) means "enumerate afresh": `CursorExpired`.
    pub fn decode(text: &str) -> Result<Self, DatasourceError> {
        let expired = || DatasourceError::CursorExpired { restart: None };
        let body = text.strip_prefix(PREFIX).ok_or_else(expired)?;
        let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| expired())?;
        serde_json::from_slice(&json).map_err(|_| expired())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_cursor_round_trips_and_a_foreign_or_damaged_one_expires() {
        let c = Cursor {
            scope: "F".into(),
            token: "42".into(),
            done: true,
            walk: vec!["A".into(), "B".into()],
            page: Some("p'2".into()),
        };
        let text = c.encode().unwrap();
        assert!(text.starts_with("gd1.") && !text.contains('='), "{text}");
        assert_eq!(Cursor::decode(&text).unwrap(), c);
        for bad in [
            "https://graph.microsoft.com/v1.0/drives/x/delta",
            "gd1.%%%",
            "gd1.e30",
            "",
        ] {
            assert_eq!(
                Cursor::decode(bad),
                Err(DatasourceError::CursorExpired { restart: None }),
                "{bad}"
            );
        }
    }
}
