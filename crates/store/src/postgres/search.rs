//! Search on PostgreSQL: a `tsvector` column (configuration `simple`) with a GIN index. The store
//! folds text itself (Unicode decomposition, diacritics removed, lower case, split into words,
//! see `search_text`) before building the vector and the query, so matching ignores diacritics
//! without the `unaccent` extension and user text never reaches tsquery syntax: each word or
//! phrase becomes its own `phraseto_tsquery`, and they are combined with `||` and `&&`.
//!
//! PostgreSQL's own ranking functions know nothing of how common a word is (`ts_rank` counts how
//! often the query's words occur; `ts_rank_cd` counts covers, stretches of text that satisfy the
//! query, weighted by how short they are). So the score is computed in the query, BM25-like: each
//! query word (or phrase) a chunk holds adds its inverse document frequency, measured over the
//! matching chunks the reader may read (at most [`SEARCH_DEPTH`] of them: corpus-wide counts would
//! cost a scan of each word's posting list), `ln(1 + (N - df + 0.5) / (df + 0.5))`; the sum is
//! multiplied by `1 + tf / (1 + tf)` with `tf = ts_rank_cd` (more occurrences count, with
//! saturation) and by the boosts of `search_text` (every word, the typed phrase).

use async_trait::async_trait;
use kbsync_core::{Passage, SearchHit};
use sqlx::{Postgres, QueryBuilder};

use super::PostgresStore;
use crate::convert::parse_uuid;
use crate::search::{NeighbourRow, PassageRow, attach_neighbours};
use crate::search_text::{
    ALL_WORDS_BOOST, PHRASE_BOOST, ParsedQuery, SNIPPET_MAX_CHARS, folded_words, snippet_around,
};
use crate::{Reader, Result, RetrieveQuery, SEARCH_DEPTH, SearchQuery, SearchStore};

#[async_trait]
impl SearchStore for PostgresStore {
    async fn search(&self, query: SearchQuery<'_>) -> Result<Vec<SearchHit>> {
        self.search_with_depth(query, SEARCH_DEPTH).await
    }

    async fn retrieve(&self, query: RetrieveQuery<'_>) -> Result<Vec<Passage>> {
        let search = query.as_search();
        let parsed = ParsedQuery::parse(search.text, folded_words);
        if parsed.is_empty() || search.limit == 0 {
            return Ok(Vec::new());
        }
        let rare = self.rare_alternatives(&parsed, &search, SEARCH_DEPTH).await?;
        let mut qb = scored_hits(&parsed, &search, SEARCH_DEPTH, &rare);
        qb.push(
            " SELECT d.id, d.kb_id, d.name, d.path, d.web_url, h.score, c.ordinal, c.text, \
             c.start_offset, c.end_offset \
             FROM scored h JOIN documents d ON d.id = h.document_id \
             JOIN chunks c ON c.id = h.chunk_id \
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

/// `WITH cand AS (…), weights AS (…), scored AS (…)`: the matching chunks the reader may read,
/// newest first and at most `depth` of them (the match-phase limit, see `SEARCH_DEPTH`: the
/// planner either walks the primary key backwards and stops after that many matches — a word in
/// most chunks — or takes the few matches from the GIN index and sorts them), plus every match
/// of the `rare` alternatives (see [`PostgresStore::rare_alternatives`]); each query word's
/// weight over them, and each chunk's score (see the module docs).
fn scored_hits(
    q: &ParsedQuery,
    query: &SearchQuery<'_>,
    depth: i64,
    rare: &[Option<&String>],
) -> QueryBuilder<Postgres> {
    let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
        "WITH cand AS MATERIALIZED ((SELECT c.id, c.document_id, c.tsv FROM chunks c WHERE c.tsv @@ ",
    );
    push_matching(&mut qb, q);
    push_readable(&mut qb, query);
    qb.push(" ORDER BY c.id DESC LIMIT ").push_bind(depth.max(1));
    qb.push(")");
    if !rare.is_empty() {
        qb.push(" UNION (SELECT c.id, c.document_id, c.tsv FROM chunks c WHERE c.tsv @@ (");
        for (i, alt) in rare.iter().enumerate() {
            if i > 0 {
                qb.push(" || ");
            }
            push_alternative(&mut qb, q, *alt);
        }
        qb.push(")");
        push_readable(&mut qb, query);
        qb.push(")");
    }
    // The weighed terms: the words, and the phrases (one word each is fine too).
    let terms: Vec<String> = q
        .words
        .iter()
        .cloned()
        .chain(q.phrases.iter().map(|p| p.join(" ")))
        .collect();
    qb.push("), terms AS (SELECT u.t, phraseto_tsquery('simple', u.t) AS q FROM UNNEST(")
        .push_bind(terms)
        .push(
            "::TEXT[]) AS u (t)), total AS (SELECT COUNT(*)::FLOAT8 AS n FROM cand), \
         weights AS (SELECT t.t, LN(1.0 + ((SELECT n FROM total) - COUNT(c.id)::FLOAT8 + 0.5) \
         / (COUNT(c.id)::FLOAT8 + 0.5)) AS idf \
         FROM terms t LEFT JOIN cand c ON c.tsv @@ t.q GROUP BY t.t), \
         scored AS (SELECT c.id AS chunk_id, c.document_id, \
         CAST((SELECT COALESCE(SUM(w.idf), 0.0) FROM weights w \
         WHERE c.tsv @@ phraseto_tsquery('simple', w.t)) \
         * (1.0 + r.tf / (1.0 + r.tf))",
        );
    if let Some(words) = q.boost_all_words() {
        qb.push(" * (CASE WHEN c.tsv @@ plainto_tsquery('simple', ")
            .push_bind(words.join(" "))
            .push(format!(") THEN {:.3} ELSE 1.0 END)", 1.0 + ALL_WORDS_BOOST));
    }
    if let Some(phrase) = q.boost_phrase() {
        qb.push(" * (CASE WHEN c.tsv @@ ");
        push_tsquery(&mut qb, phrase);
        qb.push(format!(" THEN {:.3} ELSE 1.0 END)", 1.0 + PHRASE_BOOST));
    }
    qb.push(" AS DOUBLE PRECISION) AS score FROM cand c CROSS JOIN LATERAL (SELECT ts_rank_cd(c.tsv, ");
    push_matching(&mut qb, q);
    qb.push(")::FLOAT8 AS tf) r)");
    qb
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

    /// The match-phase limit applies per alternative (each word of the query): when the query
    /// as a whole matches more than `depth` readable chunks, the alternatives that match at most
    /// `depth` (rare words) are ranked in full, so that "budget zebra" finds the one old chunk
    /// about zebras however many newer ones mention budgets. Empty when no limit applies.
    async fn rare_alternatives<'q>(
        &self,
        q: &'q ParsedQuery,
        query: &SearchQuery<'_>,
        depth: i64,
    ) -> Result<Vec<Option<&'q String>>> {
        let alts = alternatives(q);
        if alts.len() < 2
            || !self
                .matches_more_than(query, depth, |qb| push_matching(qb, q))
                .await?
        {
            return Ok(Vec::new());
        }
        tracing::debug!(
            depth,
            "search matched more chunks than its depth: the newest are ranked, and rare words in full"
        );
        let mut rare = Vec::new();
        for alt in alts {
            if !self
                .matches_more_than(query, depth, |qb| push_alternative(qb, q, alt))
                .await?
            {
                rare.push(alt);
            }
        }
        Ok(rare)
    }

    /// Search ranking at most the `depth` newest matching chunks the reader may read.
    async fn search_with_depth(&self, query: SearchQuery<'_>, depth: i64) -> Result<Vec<SearchHit>> {
        let parsed = ParsedQuery::parse(query.text, folded_words);
        if parsed.is_empty() || query.limit == 0 {
            return Ok(Vec::new());
        }
        let terms: Vec<String> = parsed
            .words
            .iter()
            .chain(parsed.phrases.iter().flatten())
            .cloned()
            .collect();
        // The scored chunks are reduced to the best chunk per document, joined to documents
        // and cut to the limit; only then is the text of the returned chunks read.
        let rare = self.rare_alternatives(&parsed, &query, depth).await?;
        let mut qb = scored_hits(&parsed, &query, depth, &rare);
        qb.push(
            " SELECT t.id, t.kb_id, t.name, t.web_url, t.score, c.text FROM ( \
             SELECT d.id, d.kb_id, d.name, d.web_url, h.chunk_id, h.score FROM ( \
             SELECT DISTINCT ON (s.document_id) s.document_id, s.chunk_id, s.score FROM scored s \
             ORDER BY s.document_id, s.score DESC, s.chunk_id) h \
             JOIN documents d ON d.id = h.document_id \
             WHERE d.status = 'processed' AND NOT EXISTS (SELECT 1 FROM sources s \
             WHERE s.id = d.source_id AND s.revoked_at IS NOT NULL) \
             ORDER BY h.score DESC, d.id LIMIT ",
        );
        qb.push_bind(i64::from(query.limit));
        qb.push(") t JOIN chunks c ON c.id = t.chunk_id ORDER BY t.score DESC, t.id");
        let rows: Vec<(String, String, String, Option<String>, f64, String)> = qb
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(Self::err)?;
        rows.into_iter()
            .map(|(id, kb_id, name, web_url, score, text)| {
                Ok(SearchHit {
                    knowledge_id: parse_uuid(&kb_id)?,
                    document_id: parse_uuid(&id)?,
                    name,
                    snippet: snippet_around(&text, &terms, SNIPPET_MAX_CHARS),
                    score,
                    web_url,
                })
            })
            .collect()
    }
}
