//! Search on PostgreSQL: a `tsvector` column (configuration `simple`) with a GIN index. The store
//! folds text itself (Unicode decomposition, diacritics removed, lower case, split into words,
//! see `search_text`) before building the vector and the query, so matching ignores diacritics
//! without the `unaccent` extension and user text never reaches tsquery syntax.

use async_trait::async_trait;
use kbsync_core::SearchHit;
use sqlx::{Postgres, QueryBuilder};

use super::PostgresStore;
use crate::convert::parse_uuid;
use crate::search_text::{SNIPPET_MAX_CHARS, folded_query_words, snippet_around};
use crate::{Reader, Result, SEARCH_DEPTH, SearchQuery, SearchStore};

#[async_trait]
impl SearchStore for PostgresStore {
    async fn search(&self, query: SearchQuery<'_>) -> Result<Vec<SearchHit>> {
        self.search_with_depth(query, SEARCH_DEPTH).await
    }
}

impl PostgresStore {
    /// Search ranking at most the `depth` newest matching chunks the reader may read.
    async fn search_with_depth(&self, query: SearchQuery<'_>, depth: i64) -> Result<Vec<SearchHit>> {
        let terms = folded_query_words(query.text);
        if terms.is_empty() || query.limit == 0 {
            return Ok(Vec::new());
        }
        // Words are letters and digits only, so plainto_tsquery sees no operators: it ANDs them.
        let tsquery_text = terms.join(" ");
        // The matching chunks the reader may read, newest first and at most SEARCH_DEPTH of them
        // (the match-phase limit, see `SEARCH_DEPTH`: the planner either walks the
        // primary key backwards and stops after that many matches — a word in most chunks — or
        // takes the few matches from the GIN index and sorts them); they are ranked, reduced to
        // the best chunk per document, joined to documents and cut to the limit; only then is
        // the text of the returned chunks read.
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT t.id, t.kb_id, t.name, t.web_url, t.score, c.text FROM ( \
             SELECT d.id, d.kb_id, d.name, d.web_url, h.chunk_id, h.score FROM ( \
             SELECT DISTINCT ON (c.document_id) c.document_id, c.id AS chunk_id, \
             CAST(ts_rank_cd(c.tsv, plainto_tsquery('simple', ",
        );
        qb.push_bind(tsquery_text.clone());
        qb.push(
            ")) AS DOUBLE PRECISION) AS score FROM (SELECT c.id, c.document_id, c.tsv FROM chunks c \
             WHERE c.tsv @@ plainto_tsquery('simple', ",
        );
        qb.push_bind(tsquery_text);
        qb.push(")");
        if let Reader::User(user_id) = query.reader {
            let uid = user_id.to_string();
            // The whole knowledge base (owned, or a grant on it), or the document's access list.
            qb.push(" AND (c.kb_id IN (SELECT id FROM knowledge_bases WHERE owner_id = ")
                .push_bind(uid.clone())
                .push(" UNION SELECT kb_id FROM kb_grants WHERE user_id = ")
                .push_bind(uid.clone())
                .push(") OR c.acl_id IN (");
            crate::sql::access::push_readable_acls(&mut qb, &uid);
            qb.push("))");
        }
        if !query.kb_ids.is_empty() {
            let ids: Vec<String> = query.kb_ids.iter().map(ToString::to_string).collect();
            qb.push(" AND c.kb_id = ANY(").push_bind(ids).push(")");
        }
        qb.push(" ORDER BY c.id DESC LIMIT ").push_bind(depth.max(1));
        qb.push(
            ") c ORDER BY c.document_id, score DESC, c.id) h \
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
