//! Business rules. Handlers call exactly one function here; nothing here knows about HTTP beyond
//! returning [`ApiError`](crate::error::ApiError).

pub mod accounts;
pub mod api_keys;
pub mod connections;
pub mod documents;
pub mod housekeeping;
pub mod knowledge;
pub mod oidc;
pub mod openwebui;
pub mod overview;
pub mod search;
pub mod sync;
pub mod sync_events;
pub mod tools;
pub mod users;
pub mod webhooks;

use kbsync_store::Page;

use crate::error::ApiError;

/// The largest page a list route returns.
pub const MAX_PAGE_SIZE: u32 = 200;
pub const DEFAULT_PAGE_SIZE: u32 = 50;

/// Validates optional `limit`/`offset` query values into a [`Page`].
pub fn page(limit: Option<u32>, offset: Option<u64>) -> Result<Page, ApiError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE_SIZE);
    if limit == 0 || limit > MAX_PAGE_SIZE {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_PAGE_SIZE}"),
        ));
    }
    Ok(Page {
        limit,
        offset: offset.unwrap_or(0),
    })
}

/// Trims a required text field and checks its length in characters.
pub fn required_text(field: &'static str, value: &str, max_chars: usize) -> Result<String, ApiError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    optional_text(field, trimmed, max_chars)
}

/// Checks an optional text field's length in characters and rejects control characters other
/// than newlines and tabs.
pub fn optional_text(field: &'static str, value: &str, max_chars: usize) -> Result<String, ApiError> {
    if value.chars().count() > max_chars {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {max_chars} characters"),
        ));
    }
    if value
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(ApiError::invalid(field, "must not contain control characters"));
    }
    Ok(value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_rejects_zero_and_oversized_limits_and_defaults_the_rest() {
        assert!(page(Some(0), None).is_err());
        assert!(page(Some(MAX_PAGE_SIZE + 1), None).is_err());
        assert_eq!(
            page(None, None).unwrap(),
            Page {
                limit: DEFAULT_PAGE_SIZE,
                offset: 0
            }
        );
    }

    #[test]
    fn required_text_trims_and_rejects_blank_long_and_control_characters() {
        assert_eq!(required_text("name", "  a  ", 5).unwrap(), "a");
        assert!(required_text("name", "   ", 5).is_err());
        assert!(required_text("name", "abcdef", 5).is_err());
        assert!(required_text("name", "a\u{0}b", 5).is_err());
    }
}
