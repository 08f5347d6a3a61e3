//! Full-text search over the chunks of processed documents, filtered by access inside the query.
//! Its SQL differs per database (`sqlite/search.rs`: FTS5; `postgres/search.rs`: `tsvector`); the
//! text handling both share is in `search_text.rs`.

use async_trait::async_trait;
use kbsync_core::{KbId, SearchHit};

use crate::{Reader, Result};

/// Search's match-phase limit: a query that matches more chunks than this ranks only the newest
/// `SEARCH_DEPTH` of them (by chunk id, i.e. the most recently indexed), so its cost stays bounded
/// however large the index grows; a query that matches fewer (the usual case: any word that is
/// not in a large share of all chunks) is ranked exactly. Words that occur in most chunks carry
/// little weight in BM25 anyway; the newest chunks are the ones a sync has just brought in. The
/// size is set by PostgreSQL's cost: ranking a match reads its stored `tsvector` (~5–10 µs on the
/// benchmark machine), so 2,000 matches keep a common word near 15 ms (10,000 took ~130 ms).
pub const SEARCH_DEPTH: i64 = 2_000;

#[derive(Debug, Clone)]
pub struct SearchQuery<'a> {
    pub text: &'a str,
    pub reader: Reader,
    /// Restrict to these knowledge bases (still filtered by access); empty means all readable.
    pub kb_ids: &'a [KbId],
    pub limit: u32,
}

/// Search, one interface over SQLite FTS5 and PostgreSQL full-text search.
#[async_trait]
pub trait SearchStore: Send + Sync {
    /// Full-text search over processed documents of the knowledge bases the reader may read
    /// (optionally narrowed to `kb_ids`), leaving out documents of a source marked revoked. One
    /// hit per document (its best chunk), best first. The query is plain user text: it is never
    /// interpreted as query syntax.
    async fn search(&self, query: SearchQuery<'_>) -> Result<Vec<SearchHit>>;
}
