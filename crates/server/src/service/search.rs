//! Permission-aware full-text search, and retrieval of passages for RAG clients.

use kbsync_core::{KbId, Passage, SearchHit, User};
use kbsync_store::{Reader, RetrieveQuery, SearchQuery};

use crate::{AppState, error::ApiError};

pub const DEFAULT_LIMIT: u32 = 10;
pub const MAX_LIMIT: u32 = 100;
const MAX_QUERY_CHARS: usize = 1000;
/// Passages a retrieval returns unless asked for another number.
pub const DEFAULT_TOP_K: u32 = 8;
pub const MAX_TOP_K: u32 = 50;
/// Chunks of context on each side of a passage a retrieval may ask for.
pub const MAX_NEIGHBOURS: u32 = 3;

/// The query text, trimmed; 400 when empty or too long.
fn checked_query(text: &str) -> Result<&str, ApiError> {
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
    Ok(text)
}

/// The best passages (whole chunks) for `text` among the documents `user` may read, optionally
/// narrowed to `kb_ids`: `top_k` of them (default [`DEFAULT_TOP_K`], at most [`MAX_TOP_K`]),
/// each with `neighbours` chunks of context on each side (default 0, at most
/// [`MAX_NEIGHBOURS`]).
pub async fn retrieve(
    state: &AppState,
    user: &User,
    text: &str,
    kb_ids: &[KbId],
    top_k: Option<u32>,
    neighbours: Option<u32>,
) -> Result<Vec<Passage>, ApiError> {
    let text = checked_query(text)?;
    let top_k = top_k.unwrap_or(DEFAULT_TOP_K);
    if top_k == 0 || top_k > MAX_TOP_K {
        return Err(ApiError::invalid(
            "top_k",
            format!("must be between 1 and {MAX_TOP_K}"),
        ));
    }
    let neighbours = neighbours.unwrap_or(0);
    if neighbours > MAX_NEIGHBOURS {
        return Err(ApiError::invalid(
            "neighbours",
            format!("must be between 0 and {MAX_NEIGHBOURS}"),
        ));
    }
    #[expect(clippy::disallowed_methods, reason = "measures the retrieval's real duration")]
    let started = std::time::Instant::now();
    let passages = state
        .store
        .retrieve(RetrieveQuery {
            text,
            reader: Reader::of(user),
            kb_ids,
            top_k,
            neighbours,
        })
        .await?;
    metrics::histogram!("kbsync_retrieve_seconds").record(started.elapsed().as_secs_f64());
    Ok(passages)
}

pub async fn search(
    state: &AppState,
    user: &User,
    text: &str,
    kb_ids: &[KbId],
    limit: Option<u32>,
) -> Result<Vec<SearchHit>, ApiError> {
    search_as(state, Reader::of(user), text, kb_ids, limit).await
}

/// [`search`] for a reader rather than a signed-in user: the operator's `kbsync search` reads
/// as [`Reader::Admin`].
pub async fn search_as(
    state: &AppState,
    reader: Reader,
    text: &str,
    kb_ids: &[KbId],
    limit: Option<u32>,
) -> Result<Vec<SearchHit>, ApiError> {
    let text = checked_query(text)?;
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
            reader,
            kb_ids,
            limit,
        })
        .await?;
    metrics::histogram!("kbsync_search_seconds").record(started.elapsed().as_secs_f64());
    Ok(hits)
}
