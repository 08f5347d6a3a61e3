//! Permission-aware full-text search.

use kbsync_core::{KbId, SearchHit, User};
use kbsync_store::{Reader, SearchQuery};

use crate::{AppState, error::ApiError};

pub const DEFAULT_LIMIT: u32 = 10;
pub const MAX_LIMIT: u32 = 100;
const MAX_QUERY_CHARS: usize = 1000;

pub async fn search(
    state: &AppState,
    user: &User,
    text: &str,
    kb_ids: &[KbId],
    limit: Option<u32>,
) -> Result<Vec<SearchHit>, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ApiError::invalid("q", "must not be empty"));
    }
    if text.chars().count() > MAX_QUERY_CHARS {
        return Err(ApiError::invalid(
            "q",
            format!("must be at most {MAX_QUERY_CHARS} characters"),
        ));
    }
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {MAX_LIMIT}"),
        ));
    }
    #[expect(clippy::disallowed_methods, reason = "measures the search's real duration")]
    let started = std::time::Instant::now();
    let hits = state
        .store
        .search(SearchQuery {
            text,
            reader: Reader::of(user),
            kb_ids,
            limit,
        })
        .await?;
    metrics::histogram!("kbsync_search_seconds").record(started.elapsed().as_secs_f64());
    Ok(hits)
}
