//! Search on PostgreSQL: a `tsvector` column (configuration `simple`) with a GIN index finds the
//! candidates; the store ranks them (`rank.rs`). The store folds text itself (Unicode
//! decomposition, diacritics removed, lower case, split into words, see `search_text`) before
//! building the vector and the query, so matching ignores diacritics without the `unaccent`
//! extension and user text never reaches tsquery syntax: each word or phrase becomes its own
//! `phraseto_tsquery`, and they are combined with `||` and `&&`.

use async_trait::async_trait;
use kbsync_core::{Passage, SearchHit};
use sqlx::{Postgres, QueryBuilder};

use super::PostgresStore;
use crate::rank::{Candidate, Scorer};
use crate::search::{NeighbourRow, attach_neighbours, hits, passage_rows};
use crate::search_text::{ParsedQuery, folded_words};
use crate::{Reader, Result, RetrieveQuery, SEARCH_DEPTH, SearchQuery, SearchStore};

#[async_trait]
impl SearchStore for PostgresStore {
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
            let docs: Vec<String> = rows.iter().map(|r| r.id.clone()).collect();
            let lows: Vec<i64> = rows.iter().map(|r| r.ordinal - n).collect();
            let highs: Vec<i64> = rows.iter().map(|r| r.ordinal + n).collect();
            sqlx::query_as::<_, NeighbourRow>(
                "SELECT c.document_id, c.ordinal, c.text FROM chunks c \
                 JOIN UNNEST($1::TEXT[], $2::BIGINT[], $3::BIGINT[]) AS w (document_id, low, high) \
                 ON c.document_id = w.document_id AND c.ordinal BETWEEN w.low AND w.high",
            )
            .bind(docs)
            .bind(lows)
            .bind(highs)
            .fetch_all(&self.pool)
            .await
            .map_err(Self::err)?
        };
        attach_neighbours(rows, neighbours, query.neighbours)
    }
}

/// `phraseto_tsquery('simple', …)` of folded words (one word, or a phrase).
fn push_tsquery(qb: &mut QueryBuilder<Postgres>, words: &[String]) {
    qb.push("phraseto_tsquery('simple', ")
        .push_bind(words.join(" "))
        .push(")");
}

/// What a chunk must match: every phrase, and any word.
fn push_matching(qb: &mut QueryBuilder<Postgres>, q: &ParsedQuery) {
    qb.push("(");
    for phrase in &q.phrases {
        push_tsquery(qb, phrase);
        qb.push(" && ");
    }
    qb.push("(");
    let alternatives: Vec<&[String]> = q
        .phrases
        .first()
        .map(Vec::as_slice)
        .into_iter()
        .chain(q.words.iter().map(std::slice::from_ref))
        .collect();
    for (i, alt) in alternatives.iter().enumerate() {
        if i > 0 {
            qb.push(" || ");
        }
        push_tsquery(qb, alt);
    }
    qb.push("))");
}

/// The alternatives of a query: each word with every phrase (`Some(word)`), or the phrases
/// alone (`None`, also when there are words: the first phrase is an alternative of its own).
fn alternatives(q: &ParsedQuery) -> Vec<Option<&String>> {
    q.words
        .iter()
        .map(Some)
        .chain((!q.phrases.is_empty()).then_some(None))
        .collect()
}

/// One alternative (see [`alternatives`]) as a tsquery.
fn push_alternative(qb: &mut QueryBuilder<Postgres>, q: &ParsedQuery, word: Option<&String>) {
    qb.push("(");
    let mut first = true;
    for phrase in &q.phrases {
        if !first {
            qb.push(" && ");
        }
        push_tsquery(qb, phrase);
        first = false;
    }
    if let Some(word) = word {
        if !first {
            qb.push(" && ");
        }
        push_tsquery(qb, std::slice::from_ref(word));
    }
    qb.push(")");
}

/// ` AND …` for the chunks the reader may read (owned or granted knowledge base, or the
/// document's access list) and, when given, among `kb_ids`. `c` is `chunks`.
fn push_readable(qb: &mut QueryBuilder<Postgres>, query: &SearchQuery<'_>) {
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
        let ids: Vec<String> = query.kb_ids.iter().map(ToString::to_string).collect();
        qb.push(" AND c.kb_id = ANY(").push_bind(ids).push(")");
    }
}

impl PostgresStore {
    /// Whether more than `depth` readable chunks match `expr` (pushed by `push`).
    async fn matches_more_than(
        &self,
        query: &SearchQuery<'_>,
        depth: i64,
        push: impl FnOnce(&mut QueryBuilder<Postgres>),
    ) -> Result<bool> {
        let mut qb: QueryBuilder<Postgres> =
            QueryBuilder::new("SELECT COUNT(*) FROM (SELECT 1 FROM chunks c WHERE c.tsv @@ ");
        push(&mut qb);
        push_readable(&mut qb, query);
        qb.push(" LIMIT ").push_bind(depth.max(1) + 1).push(") x");
        let n: i64 = qb
            .build_query_scalar()
            .fetch_one(&self.pool)
            .await
            .map_err(Self::err)?;
        Ok(n > depth.max(1))
    }

    /// The chunks a query ranks (the query parsed for ranking, and the chunks); `None` when it
    /// has no words or asks for nothing.
    ///
    /// The match-phase limit: the `depth` newest matching chunks the reader may read are ranked
    /// (the planner either walks the primary key backwards and stops after that many matches —
    /// a word in most chunks — or takes the few matches from the GIN index and sorts them). When
    /// there are more, the limit applies per alternative (each word of the query): the
    /// alternatives that match at most `depth` readable chunks (rare words) are ranked in full,
    /// so that "budget zebra" finds the one old chunk about zebras however many newer ones
    /// mention budgets.
    async fn candidates(
        &self,
        query: &SearchQuery<'_>,
        depth: i64,
    ) -> Result<Option<(ParsedQuery, Vec<Candidate>)>> {
        let q = ParsedQuery::parse(query.text, folded_words);
        if q.is_empty() || query.limit == 0 {
            return Ok(None);
        }
        let depth = depth.max(1);
        let mut rows = self
            .walk(query, None, Some(depth + 1), |qb| push_matching(qb, &q))
            .await?;
        if rows.len() > usize::try_from(depth).unwrap_or(usize::MAX)
            && let Some(floor) = rows.pop().map(|r| r.chunk_id)
        {
            tracing::debug!(
                depth,
                "search matched more chunks than its depth: the newest are ranked"
            );
            let alts = alternatives(&q);
            let mut rare = Vec::new();
            if alts.len() >= 2 {
                for alt in alts {
                    if !self
                        .matches_more_than(query, depth, |qb| push_alternative(qb, &q, alt))
                        .await?
                    {
                        rare.push(alt);
                    }
                }
            }
            if !rare.is_empty() {
                let older = self
                    .walk(query, Some(floor), None, |qb| {
                        qb.push("(");
                        for (i, alt) in rare.iter().enumerate() {
                            if i > 0 {
                                qb.push(" || ");
                            }
                            push_alternative(qb, &q, *alt);
                        }
                        qb.push(")");
                    })
                    .await?;
                rows.extend(older);
            }
        }
        Ok(Some((q, rows)))
    }

    /// The readable chunks matching the tsquery pushed by `push`, newest first, at or below a
    /// chunk id and at most `limit` when given, with their documents.
    async fn walk(
        &self,
        query: &SearchQuery<'_>,
        at_or_below: Option<i64>,
        limit: Option<i64>,
        push: impl FnOnce(&mut QueryBuilder<Postgres>),
    ) -> Result<Vec<Candidate>> {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(concat!(
            "WITH cand AS MATERIALIZED (SELECT c.id, c.document_id, c.kb_id, c.ordinal, c.text, ",
            "c.start_offset, c.end_offset FROM chunks c WHERE c.tsv @@ "
        ));
        push(&mut qb);
        if let Some(at) = at_or_below {
            qb.push(" AND c.id <= ").push_bind(at);
        }
        push_readable(&mut qb, query);
        qb.push(" ORDER BY c.id DESC");
        if let Some(limit) = limit {
            qb.push(" LIMIT ").push_bind(limit);
        }
        qb.push(concat!(
            ") SELECT cand.id AS chunk_id, cand.document_id, cand.kb_id, d.name, d.path, d.web_url, ",
            "cand.ordinal, cand.text, cand.start_offset, cand.end_offset, ",
            "(d.status = 'processed' AND NOT EXISTS (SELECT 1 FROM sources s ",
            "WHERE s.id = d.source_id AND s.revoked_at IS NOT NULL)) AS servable ",
            "FROM cand JOIN documents d ON d.id = cand.document_id ORDER BY cand.id DESC"
        ));
        qb.build_query_as().fetch_all(&self.pool).await.map_err(Self::err)
    }
}
