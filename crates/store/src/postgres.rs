//! The PostgreSQL store: for several instances sharing one database. Full-text search uses a
//! `tsvector` column (configuration `simple`) with a GIN index. The store folds text itself
//! (Unicode decomposition, diacritics removed, lower case, split into words) before building the
//! vector and the query, so matching ignores diacritics without the `unaccent` extension and
//! user text never reaches tsquery syntax.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kbsync_core::{DocumentId, SearchHit};
use sqlx::postgres::PgConnection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgPool, Postgres, QueryBuilder, Transaction};

use crate::common::{self, map_migrate, map_sqlx};
use crate::{Backend, Reader, Result, SearchQuery, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// How long taking a connection (including opening one) may last before the database counts as
/// unavailable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection type the shared `Store` code writes through.
type DbConnection = PgConnection;

/// The most chunk text one INSERT carries (a document with more is inserted in several).
const MAX_INSERT_BYTES: usize = 16 * 1024 * 1024;

/// A [`Store`](crate::Store) over a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    const BACKEND: Backend = Backend::Postgres;
    /// Concurrent claimers skip the rows another one has locked.
    const CLAIM_DUE_SYNCS: &'static str = crate::shared::claim_due_syncs_sql!(" FOR UPDATE SKIP LOCKED");

    /// Connects to the database a `postgres://` URL names. Fails with
    /// [`StoreError::Unavailable`] within a few seconds when it cannot be reached. Does not run
    /// migrations: call [`Store::migrate`](crate::Store::migrate) or use [`connect`](crate::connect).
    pub async fn connect(url: &str) -> Result<Self> {
        let options = Self::parse(url)?;
        Self::connect_with(options, 10).await
    }

    /// Connects like [`connect`](Self::connect), but keeps every table in `schema` (created when
    /// missing; `search_path` is set on every connection). For tests, which each take their own
    /// schema in one database, and for deployments that share a database with other software.
    ///
    /// `schema` must be a plain lower-case identifier (`[a-z_][a-z0-9_]*`, at most 63 bytes).
    pub async fn connect_in_schema(url: &str, schema: &str) -> Result<Self> {
        let valid = !schema.is_empty()
            && schema.len() <= 63
            && schema
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !schema.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(StoreError::InvalidUrl(format!(
                "schema name {schema:?} must match [a-z_][a-z0-9_]* (at most 63 bytes)"
            )));
        }
        let options = Self::parse(url)?;
        let mut conn = tokio::time::timeout(ACQUIRE_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| StoreError::Unavailable("timed out connecting to PostgreSQL".to_owned()))?
            .map_err(Self::err)?;
        let created = sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE SCHEMA IF NOT EXISTS {schema}"
        )))
        .execute(&mut conn)
        .await;
        match created {
            Ok(_) => {}
            // Two connections creating the same schema at once: the loser sees a unique violation.
            Err(e) if e.as_database_error().is_some_and(|d| d.is_unique_violation()) => {}
            Err(e) => return Err(Self::err(e)),
        }
        let _ = conn.close().await;
        Self::connect_with(options.options([("search_path", schema)]), 5).await
    }

    fn parse(url: &str) -> Result<PgConnectOptions> {
        PgConnectOptions::from_str(url).map_err(|e| StoreError::InvalidUrl(e.to_string()))
    }

    async fn connect_with(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(Self::err)?;
        Ok(Self { pool })
    }

    fn err(e: sqlx::Error) -> StoreError {
        map_sqlx(Backend::Postgres, e)
    }

    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(Self::err)
    }

    /// One transaction per document: PostgreSQL has concurrent writers, and its index has no
    /// per-commit cost like FTS5's segments.
    async fn complete_document_impl(
        &self,
        id: DocumentId,
        chunks: &[String],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        Self::write_completed_document(&mut tx, &id.to_string(), chunks, common::ms(now)).await?;
        tx.commit().await.map_err(Self::err)
    }

    /// Inserts a document's chunks, numbered from 0 in order, in one statement (UNNEST of three
    /// arrays) per [`MAX_INSERT_BYTES`] of text: one statement for any ordinary document, and a
    /// bounded message for a huge one.
    ///
    /// One statement is faster than one INSERT per chunk only when the driver sets TCP_NODELAY:
    /// sqlx 0.9.0 does not (0.9.1 does again), and a message larger than the socket's send
    /// buffer (~16 KiB, so a document of ~8 chunks) then waits ~40 ms for the server's delayed
    /// ACK (docs/benchmarks.md, scenario 1).
    async fn insert_chunks(
        conn: &mut PgConnection,
        document_id: &str,
        kb_id: &str,
        chunks: &[String],
    ) -> Result<()> {
        let mut start = 0;
        while start < chunks.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < chunks.len() && (end == start || bytes + chunks[end].len() <= MAX_INSERT_BYTES) {
                bytes += chunks[end].len();
                end += 1;
            }
            let batch = &chunks[start..end];
            let ordinals: Vec<i64> = (start..end)
                .map(|i| i64::try_from(i).unwrap_or(i64::MAX))
                .collect();
            // PostgreSQL text cannot hold NUL characters.
            let texts: Vec<String> = batch.iter().map(|t| t.replace('\0', "")).collect();
            let folded: Vec<String> = batch.iter().map(|t| common::folded_words(t).join(" ")).collect();
            sqlx::query(
                "INSERT INTO chunks (document_id, kb_id, ordinal, text, tsv) \
                 SELECT $1, $2, u.ordinal, u.text, to_tsvector('simple', u.folded) \
                 FROM UNNEST($3::BIGINT[], $4::TEXT[], $5::TEXT[]) AS u (ordinal, text, folded)",
            )
            .bind(document_id)
            .bind(kb_id)
            .bind(ordinals)
            .bind(texts)
            .bind(folded)
            .execute(&mut *conn)
            .await
            .map_err(Self::err)?;
            start = end;
        }
        Ok(())
    }

    /// sqlx's migrator holds a PostgreSQL advisory lock (keyed by the database name) while it
    /// applies migrations, so instances starting together apply each migration once.
    async fn run_migrations(&self) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(Self::err)?;
        // `run_direct` is `run` on a connection we hold (sqlx's own workaround for a lifetime
        // limitation of `run(&mut conn)` in Send futures).
        let result = MIGRATOR.run_direct(None, &mut *conn, false).await;
        if let Err(e) = result {
            // A failed run can leave the session's advisory lock held: close the connection
            // rather than return it to the pool.
            let _ = conn.detach().close().await;
            return Err(map_migrate(Backend::Postgres, e));
        }
        Ok(())
    }

    async fn ping_db(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(Self::err)?;
        Ok(())
    }

    async fn search_impl(&self, query: SearchQuery<'_>) -> Result<Vec<SearchHit>> {
        self.search_with_depth(query, common::SEARCH_DEPTH).await
    }

    /// Search ranking at most the `depth` newest matching chunks the reader may read.
    async fn search_with_depth(&self, query: SearchQuery<'_>, depth: i64) -> Result<Vec<SearchHit>> {
        let terms = common::folded_query_words(query.text);
        if terms.is_empty() || query.limit == 0 {
            return Ok(Vec::new());
        }
        // Words are letters and digits only, so plainto_tsquery sees no operators: it ANDs them.
        let tsquery_text = terms.join(" ");
        // The matching chunks the reader may read, newest first and at most SEARCH_DEPTH of them
        // (the match-phase limit, see `common::SEARCH_DEPTH`: the planner either walks the
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
            qb.push(" AND c.kb_id IN (SELECT id FROM knowledge_bases WHERE owner_id = ")
                .push_bind(uid.clone())
                .push(" UNION SELECT kb_id FROM kb_grants WHERE user_id = ")
                .push_bind(uid)
                .push(")");
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
                    knowledge_id: common::parse_uuid(&kb_id)?,
                    document_id: common::parse_uuid(&id)?,
                    name,
                    snippet: common::snippet_around(&text, &terms, common::SNIPPET_MAX_CHARS),
                    score,
                    web_url,
                })
            })
            .collect()
    }
}

crate::shared::impl_store!(PostgresStore);
