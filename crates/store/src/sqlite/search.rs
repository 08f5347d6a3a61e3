//! Search on SQLite: an external-content FTS5 index over `chunks` (`unicode61 remove_diacritics 2`
//! tokenizer, so FTS5 folds diacritics and case itself) finds the candidates, newest first; the
//! store ranks them (`rank.rs`). FTS5's own `bm25()` is not used: it counts each query word's
//! matches over the whole index on every query.

use async_trait::async_trait;
use kbsync_core::{Passage, SearchHit};
use sqlx::{QueryBuilder, Sqlite};

use super::SqliteStore;
use crate::rank::{Candidate, Scorer};
use crate::search::{NeighbourRow, attach_neighbours, hits, passage_rows};
use crate::search_text::{ParsedQuery, folded_words, fts5_query};
use crate::{Reader, Result, RetrieveQuery, SEARCH_DEPTH, SearchQuery, SearchStore};

#[async_trait]
impl SearchStore for SqliteStore {
    async fn search(&self, query: SearchQuery<'_>) -> Result<Vec<SearchHit>> {
        let Some((parsed, candidates)) = self.candidates(&query, SEARCH_DEPTH).await? else {
            return Ok(Vec::new());
        };
        hits(Scorer::new(&parsed).rank(candidates), &parsed, query.limit)
    }

    async fn retrieve(&self, query: RetrieveQuery<'_>) -> Result<Vec<Passage>> {
        let search = query.as_search();
        let Some((parsed, candidates)) = self.candidates(&search, SEARCH_DEPTH).await? else {
            return Ok(Vec::new());
        };
        let rows = passage_rows(Scorer::new(&parsed).rank(candidates), search.limit);
        let neighbours = if query.neighbours == 0 || rows.is_empty() {
            Vec::new()
        } else {
            let n = i64::from(query.neighbours);
            let mut nq: QueryBuilder<Sqlite> =
                QueryBuilder::new("SELECT document_id, ordinal, text FROM chunks WHERE ");
            for (i, row) in rows.iter().enumerate() {
                if i > 0 {
                    nq.push(" OR ");
                }
                nq.push("(document_id = ")
                    .push_bind(row.id.clone())
                    .push(" AND ordinal BETWEEN ")
                    .push_bind(row.ordinal - n)
                    .push(" AND ")
                    .push_bind(row.ordinal + n)
                    .push(")");
            }
            nq.build_query_as::<NeighbourRow>()
                .persistent(false)
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?
        };
        attach_neighbours(rows, neighbours, query.neighbours)
    }
}

impl SqliteStore {
    /// The chunks a query ranks (the query parsed for ranking, and the chunks); `None` when it
    /// has no words or asks for nothing.
    ///
    /// The match-phase limit: when the reader may read more than `depth` matching chunks, only
    /// the `depth` newest of them (highest rowid) are ranked. FTS5 walks the doclist newest first;
    /// each match's chunk is looked up by primary key and kept when its knowledge base or access
    /// list is readable (and among `kb_ids`); the walk stops after the (depth + 1)th readable
    /// match, whose rowid is the floor. Chunks the reader cannot read never count towards the
    /// depth (as on PostgreSQL). Below the limit (the usual case) every match is ranked.
    ///
    /// The limit applies per alternative (each word of the query): when the query as a whole
    /// matches more than `depth` chunks, an alternative that matches at most `depth` (a rare
    /// word) is still ranked in full, so that "budget zebra" finds the one old chunk about
    /// zebras however many newer ones mention budgets.
    async fn candidates(
        &self,
        query: &SearchQuery<'_>,
        depth: i64,
    ) -> Result<Option<(ParsedQuery, Vec<Candidate>)>> {
        let Some(fq) = fts5_query(query.text) else {
            return Ok(None);
        };
        if query.limit == 0 {
            return Ok(None);
        }
        let depth = depth.max(1);
        let mut rows = self.walk(&fq.matching, query, None, Some(depth + 1)).await?;
        if rows.len() > usize::try_from(depth).unwrap_or(usize::MAX)
            && let Some(floor) = rows.pop().map(|r| r.chunk_id)
        {
            tracing::debug!(
                depth,
                "search matched more chunks than its depth: the newest are ranked"
            );
            if fq.alternatives.len() >= 2 {
                let mut rare = Vec::new();
                for alt in &fq.alternatives {
                    if !self.matches_more_than(alt, query, depth).await? {
                        rare.push(format!("({alt})"));
                    }
                }
                if !rare.is_empty() {
                    rows.extend(self.walk(&rare.join(" OR "), query, Some(floor), None).await?);
                }
            }
        }
        Ok(Some((ParsedQuery::parse(query.text, folded_words), rows)))
    }

    /// The readable matches of the FTS5 expression `expr`, newest first, at or below a rowid
    /// and at most `limit` when given. FTS5 drives the plan (CROSS JOIN fixes the join order):
    /// each match is joined to its chunk row by primary key and filtered by access there, and
    /// only the kept ones are joined to their document.
    async fn walk(
        &self,
        expr: &str,
        query: &SearchQuery<'_>,
        at_or_below: Option<i64>,
        limit: Option<i64>,
    ) -> Result<Vec<Candidate>> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(concat!(
            "SELECT c.id AS chunk_id, c.document_id, c.kb_id, d.name, d.path, d.web_url, c.ordinal, ",
            "c.text, c.start_offset, c.end_offset, (d.status = 'processed' AND NOT EXISTS ",
            "(SELECT 1 FROM sources s WHERE s.id = d.source_id AND s.revoked_at IS NOT NULL)) AS servable ",
            "FROM chunks_fts CROSS JOIN chunks c ON c.id = chunks_fts.rowid ",
            "CROSS JOIN documents d ON d.id = c.document_id WHERE chunks_fts MATCH "
        ));
        qb.push_bind(expr.to_owned());
        if let Some(at) = at_or_below {
            qb.push(" AND chunks_fts.rowid <= ").push_bind(at);
        }
        push_readable(&mut qb, query);
        qb.push(" ORDER BY chunks_fts.rowid DESC");
        if let Some(limit) = limit {
            qb.push(" LIMIT ").push_bind(limit);
        }
        qb.build_query_as().fetch_all(&self.pool).await.map_err(Self::err)
    }

    /// Whether more than `depth` readable chunks match the FTS5 expression `expr`.
    async fn matches_more_than(&self, expr: &str, query: &SearchQuery<'_>, depth: i64) -> Result<bool> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT chunks_fts.rowid FROM chunks_fts");
        if filters_kbs(query) {
            qb.push(" CROSS JOIN chunks c ON c.id = chunks_fts.rowid");
        }
        qb.push(" WHERE chunks_fts MATCH ");
        qb.push_bind(expr.to_owned());
        push_readable(&mut qb, query);
        qb.push(" ORDER BY chunks_fts.rowid DESC LIMIT 1 OFFSET ");
        qb.push_bind(depth.max(1));
        let beyond: Option<i64> = qb
            .build_query_scalar()
            .fetch_optional(&self.pool)
            .await
            .map_err(Self::err)?;
        Ok(beyond.is_some())
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
