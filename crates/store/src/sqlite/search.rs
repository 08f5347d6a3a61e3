//! Search on SQLite: an external-content FTS5 index over `chunks` (`unicode61 remove_diacritics 2`
//! tokenizer, so FTS5 folds diacritics and case itself), ranked with FTS5's `bm25()`: the query
//! words' inverse document frequency over the whole index, term frequency with saturation, and
//! chunk length normalisation. The boosts of `search_text` (every word, the typed phrase)
//! multiply it.

use std::collections::HashMap;

use async_trait::async_trait;
use kbsync_core::{Passage, SearchHit};
use sqlx::{QueryBuilder, Sqlite};

use super::SqliteStore;
use crate::convert::parse_uuid;
use crate::search::{NeighbourRow, PassageRow, attach_neighbours};
use crate::search_text::{
    ALL_WORDS_BOOST, Fts5Query, PHRASE_BOOST, SNIPPET_MAX_CHARS, clamp_chars, collapse_whitespace, fts5_query,
};
use crate::{Reader, Result, RetrieveQuery, SEARCH_DEPTH, SearchQuery, SearchStore};

#[async_trait]
impl SearchStore for SqliteStore {
    async fn search(&self, query: SearchQuery<'_>) -> Result<Vec<SearchHit>> {
        self.search_with_depth(query, SEARCH_DEPTH).await
    }

    async fn retrieve(&self, query: RetrieveQuery<'_>) -> Result<Vec<Passage>> {
        let search = query.as_search();
        let Some(fq) = fts5_query(search.text) else {
            return Ok(Vec::new());
        };
        if search.limit == 0 {
            return Ok(Vec::new());
        }
        let window = self.depth_window(&fq, &search, SEARCH_DEPTH).await?;
        let mut qb = scored_hits(&fq, &search, &window);
        qb.push(
            " SELECT d.id, d.kb_id, d.name, d.path, d.web_url, h.score, c.ordinal, c.text, \
             c.start_offset, c.end_offset \
             FROM scored h CROSS JOIN documents d ON d.id = h.document_id \
             CROSS JOIN chunks c ON c.id = h.chunk_id \
             WHERE d.status = 'processed' AND NOT EXISTS (SELECT 1 FROM sources s \
             WHERE s.id = d.source_id AND s.revoked_at IS NOT NULL) \
             ORDER BY h.score DESC, h.chunk_id DESC LIMIT ",
        );
        qb.push_bind(i64::from(search.limit));
        let rows: Vec<PassageRow> = qb
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(Self::err)?;
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

/// Which matches are ranked (see [`SqliteStore::depth_window`]).
struct Window {
    /// Only matches above this rowid, unless they match `rare`; `None`: every match.
    floor: Option<i64>,
    /// The alternatives with at most `SEARCH_DEPTH` readable matches, all of which are ranked.
    rare: Option<String>,
}

/// `WITH hits AS (…), scored AS (…)`: the readable chunks matching the query within `window`, with
/// their score (bm25 times the boosts). bm25 and the boosts are computed only for rows that passed
/// the access filter. FTS5 drives the plan (CROSS JOIN fixes the join order): each match is
/// joined to its chunk row by primary key and filtered by knowledge base. A boost looks up the
/// chunk's rowid in a second FTS5 query (a seek, not a scan).
fn scored_hits(fq: &Fts5Query, query: &SearchQuery<'_>, window: &Window) -> QueryBuilder<Sqlite> {
    // Without a floor every match is ranked; with one, the matches above it, and (a second
    // branch: an OR next to MATCH is refused by SQLite) the rare alternatives' matches below it.
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("WITH hits AS MATERIALIZED (");
    push_hits_branch(&mut qb, fq, query, window.floor.map(|f| (">", f)), None);
    if let (Some(floor), Some(rare)) = (window.floor, &window.rare) {
        qb.push(" UNION ALL ");
        push_hits_branch(&mut qb, fq, query, Some(("<=", floor)), Some(rare));
    }
    qb.push("), scored AS (SELECT h.chunk_id, h.document_id, h.base");
    for (expr, boost) in [(&fq.all_words, ALL_WORDS_BOOST), (&fq.phrase, PHRASE_BOOST)] {
        if let Some(expr) = expr {
            qb.push(" * (CASE WHEN EXISTS (SELECT 1 FROM chunks_fts WHERE chunks_fts MATCH ")
                .push_bind(expr.clone())
                .push(" AND chunks_fts.rowid = h.chunk_id) THEN ")
                .push(format!("{:.3}", 1.0 + boost))
                .push(" ELSE 1.0 END)");
        }
    }
    qb.push(" AS score FROM hits h)");
    qb
}

/// One branch of `hits`: the readable matches of the query with their bm25, optionally on one
/// side of a rowid and among the matches of `among`.
fn push_hits_branch(
    qb: &mut QueryBuilder<Sqlite>,
    fq: &Fts5Query,
    query: &SearchQuery<'_>,
    rowid: Option<(&'static str, i64)>,
    among: Option<&String>,
) {
    qb.push(
        "SELECT chunks_fts.rowid AS chunk_id, c.document_id AS document_id, \
         -bm25(chunks_fts) AS base FROM chunks_fts CROSS JOIN chunks c ON c.id = chunks_fts.rowid \
         WHERE chunks_fts MATCH ",
    );
    qb.push_bind(fq.matching.clone());
    if let Some((op, at)) = rowid {
        qb.push(format!(" AND chunks_fts.rowid {op} ")).push_bind(at);
    }
    if let Some(among) = among {
        qb.push(" AND chunks_fts.rowid IN (SELECT rowid FROM chunks_fts WHERE chunks_fts MATCH ")
            .push_bind(among.clone())
            .push(")");
    }
    push_readable(qb, query);
}

impl SqliteStore {
    /// The match-phase limit: when the reader may read more than `depth` matching chunks, only
    /// the `depth` newest of those (highest rowid) are ranked. FTS5 walks the doclist newest
    /// first; each match's chunk is looked up by primary key and kept when its knowledge base
    /// is readable (and among `kb_ids`); the walk stops at the (depth + 1)th readable match,
    /// whose rowid is the floor. Chunks the reader cannot read never count towards the depth
    /// (as on PostgreSQL). Below the limit (the usual case) there is no floor and the ranking is
    /// exact.
    ///
    /// The limit applies per alternative (each word of the query): when the query as a whole
    /// matches more than `depth` chunks, an alternative that matches at most `depth` (a rare
    /// word) is still ranked in full, so that "budget zebra" finds the one old chunk about
    /// zebras however many newer ones mention budgets.
    async fn depth_window(&self, fq: &Fts5Query, query: &SearchQuery<'_>, depth: i64) -> Result<Window> {
        let floor = self.depth_floor(&fq.matching, query, depth).await?;
        if floor.is_none() || fq.alternatives.len() < 2 {
            return Ok(Window { floor, rare: None });
        }
        let mut rare = Vec::new();
        for alt in &fq.alternatives {
            if self.depth_floor(alt, query, depth).await?.is_none() {
                rare.push(format!("({alt})"));
            }
        }
        Ok(Window {
            floor,
            rare: (!rare.is_empty()).then(|| rare.join(" OR ")),
        })
    }

    /// The rowid of the (depth + 1)th newest readable match of `expr`, if it has that many.
    async fn depth_floor(&self, expr: &str, query: &SearchQuery<'_>, depth: i64) -> Result<Option<i64>> {
        let mut fq_sql: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT chunks_fts.rowid FROM chunks_fts");
        if filters_kbs(query) {
            fq_sql.push(" CROSS JOIN chunks c ON c.id = chunks_fts.rowid");
        }
        fq_sql.push(" WHERE chunks_fts MATCH ");
        fq_sql.push_bind(expr.to_owned());
        push_readable(&mut fq_sql, query);
        fq_sql.push(" ORDER BY chunks_fts.rowid DESC LIMIT 1 OFFSET ");
        fq_sql.push_bind(depth.max(1));
        let floor: Option<i64> = fq_sql
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
        Ok(floor)
    }

    /// Search ranking at most the `depth` newest matching chunks (see [`SEARCH_DEPTH`]).
    async fn search_with_depth(&self, query: SearchQuery<'_>, depth: i64) -> Result<Vec<SearchHit>> {
        let Some(fq) = fts5_query(query.text) else {
            return Ok(Vec::new());
        };
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let window = self.depth_window(&fq, &query, depth).await?;
        // The readable matches above the floor are scored, reduced to the best chunk per
        // document (SQLite takes the bare column `chunk_id` from the row with the MAX), and
        // joined to documents last, leaving out those not processed or of a revoked source.
        let mut qb = scored_hits(&fq, &query, &window);
        qb.push(
            ", best AS (SELECT document_id, chunk_id, MAX(score) AS score FROM scored \
             GROUP BY document_id) \
             SELECT d.id, d.kb_id, d.name, d.web_url, b.chunk_id, b.score \
             FROM best b CROSS JOIN documents d ON d.id = b.document_id \
             WHERE d.status = 'processed' AND NOT EXISTS (SELECT 1 FROM sources s \
             WHERE s.id = d.source_id AND s.revoked_at IS NOT NULL) ORDER BY b.score DESC, d.id LIMIT ",
        );
        qb.push_bind(i64::from(query.limit));
        let rows: Vec<RankedRow> = qb
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(Self::err)?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }

        let mut sq: QueryBuilder<Sqlite> = QueryBuilder::new(
            "SELECT rowid, snippet(chunks_fts, 0, '', '', '…', 24) FROM chunks_fts \
             WHERE chunks_fts MATCH ",
        );
        sq.push_bind(fq.matching.clone());
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
