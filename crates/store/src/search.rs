//! Full-text search over the chunks of processed documents, filtered by access inside the query.
//! Finding the candidates differs per database (`sqlite/search.rs`: FTS5; `postgres/search.rs`:
//! `tsvector`); the text handling both share is in `search_text.rs`, and the ranking, done by the
//! store over the candidates' text so that both databases rank alike, in `rank.rs`.
//!
//! A query is plain text in natural language: its words are alternatives (a chunk matches when it
//! holds any of them), common English stop words are dropped, and chunks rank higher the more and
//! the rarer query words they hold; a chunk holding every word ranks higher still, and one holding
//! the words as typed, as a phrase, higher again. Text in double quotes is a phrase every match
//! must contain as written. See `search_text::ParsedQuery`.

use async_trait::async_trait;
use kbsync_core::{KbId, Passage, SearchHit};

use crate::convert::parse_uuid;
use crate::rank::{Scored, best_chunks, best_per_document};
use crate::search_text::{ParsedQuery, SNIPPET_MAX_CHARS, snippet_around};
use crate::{Reader, Result};

/// Search's match-phase limit: a query that matches more chunks than this ranks only the newest
/// `SEARCH_DEPTH` of them (by chunk id, i.e. the most recently indexed), so its cost stays bounded
/// however large the index grows; a query that matches fewer (the usual case: any word that is
/// not in a large share of all chunks) is ranked exactly. Words that occur in most chunks carry
/// little weight in BM25 anyway; the newest chunks are the ones a sync has just brought in. The
/// size bounds what a query reads: each candidate's text is read and scored (see `rank.rs`).
pub const SEARCH_DEPTH: i64 = 2_000;

#[derive(Debug, Clone)]
pub struct SearchQuery<'a> {
    pub text: &'a str,
    pub reader: Reader,
    /// Restrict to these knowledge bases (still filtered by access); empty means all readable.
    pub kb_ids: &'a [KbId],
    pub limit: u32,
}

/// A retrieval: ranked passages (whole chunks) rather than one hit per document.
#[derive(Debug, Clone)]
pub struct RetrieveQuery<'a> {
    pub text: &'a str,
    pub reader: Reader,
    /// Restrict to these knowledge bases (still filtered by access); empty means all readable.
    pub kb_ids: &'a [KbId],
    /// The most passages returned.
    pub top_k: u32,
    /// Chunks of context returned on each side of a passage (0: none).
    pub neighbours: u32,
}

impl<'a> RetrieveQuery<'a> {
    /// The same match and access filter as a search.
    pub(crate) fn as_search(&self) -> SearchQuery<'a> {
        SearchQuery {
            text: self.text,
            reader: self.reader,
            kb_ids: self.kb_ids,
            limit: self.top_k,
        }
    }
}

/// Search, one interface over SQLite FTS5 and PostgreSQL full-text search.
#[async_trait]
pub trait SearchStore: Send + Sync {
    /// Full-text search over processed documents of the knowledge bases the reader may read
    /// (optionally narrowed to `kb_ids`), leaving out documents of a source marked revoked. One
    /// hit per document (its best chunk), best first. The query is plain user text: it is never
    /// interpreted as query syntax.
    async fn search(&self, query: SearchQuery<'_>) -> Result<Vec<SearchHit>>;

    /// The best chunks for the query over the same documents as [`SearchStore::search`] (same
    /// matching, ranking, access filter and [`SEARCH_DEPTH`]), best first, several per document
    /// when they rank so; each with its full text, character offsets, and `neighbours` chunks of
    /// context on each side when asked for.
    async fn retrieve(&self, query: RetrieveQuery<'_>) -> Result<Vec<Passage>>;
}

/// A passage before its neighbours are attached: document id, knowledge base id, name, path,
/// web URL, score, chunk ordinal, text, start and end offsets.
#[derive(Debug)]
pub(crate) struct PassageRow {
    pub id: String,
    pub kb_id: String,
    pub name: String,
    pub path: String,
    pub web_url: Option<String>,
    pub score: f64,
    pub ordinal: i64,
    pub text: String,
    pub start_offset: Option<i64>,
    pub end_offset: Option<i64>,
}

/// Search's hits: the best chunk of each document among `scored` (best first), at most `limit`,
/// with a snippet around the first query word.
pub(crate) fn hits(scored: Vec<Scored>, q: &ParsedQuery, limit: u32) -> Result<Vec<SearchHit>> {
    let terms: Vec<String> = q
        .words
        .iter()
        .chain(q.phrases.iter().flatten())
        .cloned()
        .collect();
    best_per_document(scored, usize::try_from(limit).unwrap_or(usize::MAX))
        .into_iter()
        .map(|s| {
            Ok(SearchHit {
                knowledge_id: parse_uuid(&s.chunk.kb_id)?,
                document_id: parse_uuid(&s.chunk.document_id)?,
                snippet: snippet_around(&s.chunk.text, &terms, SNIPPET_MAX_CHARS),
                name: s.chunk.name,
                score: s.score,
                web_url: s.chunk.web_url,
            })
        })
        .collect()
}

/// Retrieval's passages: the best `limit` chunks among `scored` (best first).
pub(crate) fn passage_rows(scored: Vec<Scored>, limit: u32) -> Vec<PassageRow> {
    best_chunks(scored, usize::try_from(limit).unwrap_or(usize::MAX))
        .into_iter()
        .map(|s| PassageRow {
            id: s.chunk.document_id,
            kb_id: s.chunk.kb_id,
            name: s.chunk.name,
            path: s.chunk.path,
            web_url: s.chunk.web_url,
            score: s.score,
            ordinal: s.chunk.ordinal,
            text: s.chunk.text,
            start_offset: s.chunk.start_offset,
            end_offset: s.chunk.end_offset,
        })
        .collect()
}

/// A chunk near a passage: document id, ordinal, text.
pub(crate) type NeighbourRow = (String, i64, String);

/// The passages of `rows` (in order) with, when `neighbours > 0`, the text of up to that many
/// chunks on each side taken from `near` (chunks of the same documents, any order).
pub(crate) fn attach_neighbours(
    rows: Vec<PassageRow>,
    near: Vec<NeighbourRow>,
    neighbours: u32,
) -> Result<Vec<Passage>> {
    use std::collections::BTreeMap;

    use crate::convert::{parse_uuid, to_u64};

    let mut by_doc: std::collections::HashMap<String, BTreeMap<i64, String>> = Default::default();
    for (doc, ordinal, text) in near {
        by_doc.entry(doc).or_default().insert(ordinal, text);
    }
    let n = i64::from(neighbours);
    rows.into_iter()
        .map(|row| {
            let (before, after) = if neighbours == 0 {
                (None, None)
            } else {
                let chunks = by_doc.get(&row.id);
                let texts = |range: std::ops::Range<i64>| -> Vec<String> {
                    chunks
                        .map(|c| c.range(range).map(|(_, t)| t.clone()).collect())
                        .unwrap_or_default()
                };
                (
                    Some(texts(row.ordinal - n..row.ordinal)),
                    Some(texts(row.ordinal + 1..row.ordinal + 1 + n)),
                )
            };
            Ok(Passage {
                knowledge_id: parse_uuid(&row.kb_id)?,
                document_id: parse_uuid(&row.id)?,
                name: row.name,
                path: row.path,
                web_url: row.web_url,
                score: row.score,
                chunk_index: to_u64(row.ordinal)?,
                text: row.text,
                start: row.start_offset.map(to_u64).transpose()?,
                end: row.end_offset.map(to_u64).transpose()?,
                before,
                after,
            })
        })
        .collect()
}
