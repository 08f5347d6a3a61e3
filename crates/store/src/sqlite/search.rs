//! Search on SQLite: an external-content FTS5 index over `chunks` (`unicode61 remove_diacritics 2`
//! tokenizer, so FTS5 folds diacritics and case itself), ranked with bm25.

use std::collections::HashMap;

use async_trait::async_trait;
use kbsync_core::SearchHit;
use sqlx::{QueryBuilder, Sqlite};

use super::SqliteStore;
use crate::convert::parse_uuid;
use crate::search_text::{SNIPPET_MAX_CHARS, clamp_chars, collapse_whitespace, fts5_match_expression};
use crate::{Reader, Result, SEARCH_DEPTH, SearchQuery, SearchStore};

#[async_trait]
impl SearchStore for SqliteStore {
    async fn search(&self, query: SearchQuery<'_>) -> Result<Vec<SearchHit>> {
        self.search_with_depth(query, SEARCH_DEPTH).await
    }
}

impl SqliteStore {
    /// The best `limit` documents for the match expression with their best chunk and its
    /// score, readable by the reader, over the matches above `floor` (every match without one).
    /// FTS5 drives the plan (CROSS JOIN fixes the join order): each match is joined to its chunk
    /// row by primary key and filtered by knowledge base; the best chunk per document is kept;
    /// documents are joined last, leaving out those not processed or of a revoked source.
    async fn ranked_rows(
        &self,
        expr: &str,
        query: &SearchQuery<'_>,
        floor: Option<i64>,
    ) -> Result<Vec<RankedRow>> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "WITH hits AS MATERIALIZED (SELECT chunks_fts.rowid AS chunk_id, c.document_id AS document_id, \
             bm25(chunks_fts) AS rank FROM chunks_fts CROSS JOIN chunks c ON c.id = chunks_fts.rowid \
             WHERE chunks_fts MATCH ",
        );
        qb.push_bind(expr.to_owned());
        if let Some(floor) = floor {
            qb.push(" AND chunks_fts.rowid > ").push_bind(floor);
        }
        push_readable(&mut qb, query);
        qb.push(
            "), best AS (SELECT document_id, chunk_id, MIN(rank) AS rank FROM hits \
             GROUP BY document_id) \
             SELECT d.id, d.kb_id, d.name, d.web_url, b.chunk_id, -b.rank AS score \
             FROM best b CROSS JOIN documents d ON d.id = b.document_id \
             WHERE d.status = 'processed' AND NOT EXISTS (SELECT 1 FROM sources s \
             WHERE s.id = d.source_id AND s.revoked_at IS NOT NULL) ORDER BY b.rank, d.id LIMIT ",
        );
        qb.push_bind(i64::from(query.limit));
        qb.build_query_as().fetch_all(&self.pool).await.map_err(Self::err)
    }

    /// Search ranking at most the `depth` newest matching chunks (see [`SEARCH_DEPTH`]).
    async fn search_with_depth(&self, query: SearchQuery<'_>, depth: i64) -> Result<Vec<SearchHit>> {
        let Some(expr) = fts5_match_expression(query.text) else {
            return Ok(Vec::new());
        };
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        // Match-phase limit: when the reader may read more than `depth` matching chunks, only
        // the `depth` newest of those (highest rowid) are ranked. FTS5 walks the doclist newest
        // first; each match's chunk is looked up by primary key and kept when its knowledge base
        // is readable (and among `kb_ids`); the walk stops at the (depth + 1)th readable match,
        // whose rowid is the floor. Chunks the reader cannot read never count towards the depth
        // (as on PostgreSQL). Below the limit (the usual case) the ranking is exact.
        let mut fq: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT chunks_fts.rowid FROM chunks_fts");
        if filters_kbs(&query) {
            fq.push(" CROSS JOIN chunks c ON c.id = chunks_fts.rowid");
        }
        fq.push(" WHERE chunks_fts MATCH ");
        fq.push_bind(expr.clone());
        push_readable(&mut fq, &query);
        fq.push(" ORDER BY chunks_fts.rowid DESC LIMIT 1 OFFSET ");
        fq.push_bind(depth.max(1));
        let floor: Option<i64> = fq
            .build_query_scalar()
            .fetch_optional(&self.pool)
            .await
            .map_err(Self::err)?;
        if floor.is_some() {
            tracing::debug!(
                depth,
                "search matched more chunks than its depth: the newest are ranked"
            );
        }
        // The readable matches above the floor (at most `depth`, all of them below the limit)
        // are ranked with bm25, reduced to the best chunk per document and joined to documents.
        // bm25 is computed only for rows that passed the access filter.
        let rows = self.ranked_rows(&expr, &query, floor).await?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }

        let mut sq: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT rowid, snippet(chunks_fts, 0, '', '', '…', 24) FROM chunks_fts \
             WHERE chunks_fts MATCH ",
        );
        sq.push_bind(expr);
        sq.push(" AND rowid IN (");
        let mut list = sq.separated(", ");
        for row in &rows {
            list.push_bind(row.4);
        }
        sq.push(")");
        let snippets: HashMap<i64, String> = sq
            .build_query_as::<(i64, String)>()
            .fetch_all(&self.pool)
            .await
            .map_err(Self::err)?
            .into_iter()
            .collect();

        rows.into_iter()
            .map(|(id, kb_id, name, web_url, chunk_id, score)| {
                let snippet = snippets
                    .get(&chunk_id)
                    .map(|s| clamp_chars(&collapse_whitespace(s), SNIPPET_MAX_CHARS))
                    .unwrap_or_default();
                Ok(SearchHit {
                    knowledge_id: parse_uuid(&kb_id)?,
                    document_id: parse_uuid(&id)?,
                    name,
                    snippet,
                    score,
                    web_url,
                })
            })
            .collect()
    }
}

/// Whether a search is narrowed to some knowledge bases (a user's readable ones, or `kb_ids`).
fn filters_kbs(query: &SearchQuery<'_>) -> bool {
    matches!(query.reader, Reader::User(_)) || !query.kb_ids.is_empty()
}

/// ` AND c.kb_id IN …` for the knowledge bases the reader may read (owned, or any grant) and,
/// when given, `kb_ids`; nothing for an admin searching everything. `c` is `chunks`.
fn push_readable(qb: &mut QueryBuilder<Sqlite>, query: &SearchQuery<'_>) {
    if let Reader::User(user_id) = query.reader {
        let uid = user_id.to_string();
        // The whole knowledge base (owned, or a grant on it), or the document's access list.
        qb.push(" AND (c.kb_id IN (SELECT id FROM knowledge_bases WHERE owner_id = ")
            .push_bind(uid.clone())
            .push(" UNION SELECT kb_id FROM kb_grants WHERE user_id = ")
            .push_bind(uid.clone())
            .push(") OR c.acl_id IN (");
        crate::sql::access::push_readable_acls(qb, &uid);
        qb.push("))");
    }
    if !query.kb_ids.is_empty() {
        qb.push(" AND c.kb_id IN (");
        let mut list = qb.separated(", ");
        for kb in query.kb_ids {
            list.push_bind(kb.to_string());
        }
        qb.push(")");
    }
}

/// (document id, knowledge base id, name, web URL, best chunk id, score).
type RankedRow = (String, String, String, Option<String>, i64, f64);
