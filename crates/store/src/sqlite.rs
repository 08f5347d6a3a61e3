//! The SQLite store: the embedded default (one process, one file). Full-text search uses an
//! external-content FTS5 index over `chunks` with the `unicode61 remove_diacritics 2` tokenizer.

mod index_writer;

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kbsync_core::{DocumentId, SearchHit};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqliteConnection, SqlitePool, Transaction};

use self::index_writer::IndexWriter;

use crate::common::{self, map_migrate, map_sqlx};
use crate::{Backend, Reader, Result, SearchQuery, StoreError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a statement waits for another connection's write lock before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection type the shared `Store` code writes through.
type DbConnection = SqliteConnection;

/// A [`Store`](crate::Store) over one SQLite database file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Writes `complete_document` calls together (see [`index_writer`]).
    index_writer: IndexWriter,
}

impl SqliteStore {
    const BACKEND: Backend = Backend::Sqlite;
    /// SQLite serialises writers: one UPDATE is atomic.
    const CLAIM_DUE_SYNCS: &'static str = crate::shared::claim_due_syncs_sql!("");

    /// Opens (creating when missing) the database a `sqlite:` URL names, in WAL mode with foreign
    /// keys enforced. Does not run migrations: call [`Store::migrate`](crate::Store::migrate) or
    /// use [`connect`](crate::connect).
    pub async fn connect(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidUrl(e.to_string()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if !in_memory
            && let Some(parent) = options.get_filename().parent()
            && !parent.as_os_str().is_empty()
        {
            tokio::fs::create_dir_all(parent).await.map_err(|e| {
                StoreError::Unavailable(format!(
                    "cannot create the database directory {}: {e}",
                    parent.display()
                ))
            })?;
        }
        let pool_options = if in_memory {
            // An in-memory database lives as long as its one connection.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
        } else {
            SqlitePoolOptions::new().max_connections(8)
        };
        let pool = pool_options
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(Self::err)?;
        Ok(Self {
            index_writer: IndexWriter::new(pool.clone()),
            pool,
        })
    }

    fn err(e: sqlx::Error) -> StoreError {
        map_sqlx(Backend::Sqlite, e)
    }

    /// A transaction that takes the write lock up front, so it never fails half-way with
    /// SQLITE_BUSY when upgrading from a read.
    async fn begin_write(&self) -> Result<Transaction<'static, Sqlite>> {
        self.pool.begin_with("BEGIN IMMEDIATE").await.map_err(Self::err)
    }

    /// Queued and written together with other documents completed at the same time, in one
    /// transaction (see [`index_writer`]); returns once that transaction has committed.
    async fn complete_document_impl(
        &self,
        id: DocumentId,
        chunks: &[String],
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.index_writer
            .complete(id.to_string(), chunks.to_vec(), common::ms(now))
            .await
    }

    /// Inserts a document's chunks, numbered from 0 in order, in as few statements as the bind
    /// limit allows: FTS5 writes an index segment per statement, not per row.
    async fn insert_chunks(
        conn: &mut SqliteConnection,
        document_id: &str,
        kb_id: &str,
        chunks: &[String],
    ) -> Result<()> {
        index_writer::insert_chunk_rows(conn, &[(document_id, kb_id, chunks)]).await
    }

    async fn run_migrations(&self) -> Result<()> {
        // Several processes opening one file at once: a migration another process applied
        // between our listing and our attempt makes the attempt fail; the next round sees it.
        let mut attempt = 0;
        loop {
            match MIGRATOR.run(&self.pool).await {
                Ok(()) => return Ok(()),
                Err(e) if attempt < 3 => {
                    attempt += 1;
                    tracing::warn!(error = %e, attempt, "sqlite migration failed; retrying");
                }
                Err(e) => return Err(map_migrate(Backend::Sqlite, e)),
            }
        }
    }

    async fn ping_db(&self) -> Result<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(Self::err)?;
        Ok(())
    }

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

    async fn search_impl(&self, query: SearchQuery<'_>) -> Result<Vec<SearchHit>> {
        self.search_with_depth(query, common::SEARCH_DEPTH).await
    }

    /// Search ranking at most the `depth` newest matching chunks (see [`common::SEARCH_DEPTH`]).
    async fn search_with_depth(&self, query: SearchQuery<'_>, depth: i64) -> Result<Vec<SearchHit>> {
        let Some(expr) = common::fts5_match_expression(query.text) else {
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
                    .map(|s| common::clamp_chars(&common::collapse_whitespace(s), common::SNIPPET_MAX_CHARS))
                    .unwrap_or_default();
                Ok(SearchHit {
                    knowledge_id: common::parse_uuid(&kb_id)?,
                    document_id: common::parse_uuid(&id)?,
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
        qb.push(" AND c.kb_id IN (SELECT id FROM knowledge_bases WHERE owner_id = ")
            .push_bind(uid.clone())
            .push(" UNION SELECT kb_id FROM kb_grants WHERE user_id = ")
            .push_bind(uid)
            .push(")");
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

crate::shared::impl_store!(SqliteStore);

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use kbsync_core::{KbId, KbType, Role};
    use uuid::Uuid;

    use super::*;
    use kbsync_core::datasource::DatasourceKind;

    use crate::{NewDocument, NewKnowledgeBase, NewSource, NewUser, SourceKind, Store};

    /// A migrated store in a temporary directory (`file` below it) with one user's knowledge base.
    pub(super) async fn store_with_kb(file: &str) -> (tempfile::TempDir, SqliteStore, KbId) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join(file).display());
        let store = SqliteStore::connect(&url).await.unwrap();
        store.migrate().await.unwrap();
        let now = DateTime::UNIX_EPOCH;
        let owner = Uuid::new_v4();
        store
            .create_user(
                owner,
                NewUser {
                    email: "o@x.test".into(),
                    password_hash: "h".into(),
                    role: Role::User,
                },
                now,
            )
            .await
            .unwrap();
        let kb = Uuid::new_v4();
        store
            .create_kb(
                kb,
                NewKnowledgeBase {
                    name: "k".into(),
                    description: String::new(),
                    owner_id: owner,
                    kb_type: KbType::Local,
                },
                now,
            )
            .await
            .unwrap();
        (dir, store, kb)
    }

    async fn fts_integrity(store: &SqliteStore) {
        sqlx::query("INSERT INTO chunks_fts (chunks_fts, rank) VALUES ('integrity-check', 1)")
            .execute(&store.pool)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn fts_index_stays_consistent_through_replace_fail_and_cascading_deletes() {
        let (_dir, store, kb) = store_with_kb("sub/dir/kb.db").await;
        let now = DateTime::UNIX_EPOCH;
        let mut docs = Vec::new();
        for i in 0..3 {
            let id = Uuid::new_v4();
            store
                .create_document(
                    id,
                    NewDocument {
                        kb_id: kb,
                        name: format!("d{i}"),
                        path: format!("/d{i}"),
                        mime: "text/plain".into(),
                        size: 1,
                        content_hash: format!("{i:064}"),
                        source_item_id: None,
                        web_url: None,
                    },
                    now,
                )
                .await
                .unwrap();
            store
                .complete_document(id, &["alpha beta".into(), "gamma".into()], now)
                .await
                .unwrap();
            docs.push(id);
        }
        store
            .complete_document(docs[0], &["delta".into()], now)
            .await
            .unwrap();
        fts_integrity(&store).await;
        store.fail_document(docs[1], "broken", now).await.unwrap();
        fts_integrity(&store).await;
        store.delete_kb(kb).await.unwrap();
        fts_integrity(&store).await;
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH 'alpha'")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn fts_index_stays_consistent_when_a_source_is_deleted() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        let now = DateTime::UNIX_EPOCH;
        let owner = Uuid::new_v4();
        store
            .create_user(
                owner,
                NewUser {
                    email: "o@x.test".into(),
                    password_hash: "h".into(),
                    role: Role::User,
                },
                now,
            )
            .await
            .unwrap();
        let kb = Uuid::new_v4();
        store
            .create_kb(
                kb,
                NewKnowledgeBase {
                    name: "k".into(),
                    description: String::new(),
                    owner_id: owner,
                    kb_type: KbType::OneDrive,
                },
                now,
            )
            .await
            .unwrap();
        let mut sources = Vec::new();
        for s in 0..2 {
            let source = store
                .add_source(
                    Uuid::new_v4(),
                    NewSource {
                        kb_id: kb,
                        provider: DatasourceKind::OneDrive,
                        kind: SourceKind::Folder,
                        drive_id: "d".into(),
                        item_id: format!("folder{s}"),
                        name: "f".into(),
                        path: "/f".into(),
                    },
                    now,
                )
                .await
                .unwrap();
            for i in 0..3 {
                let (doc, _) = store
                    .upsert_source_document(
                        Uuid::new_v4(),
                        source.id,
                        NewDocument {
                            kb_id: kb,
                            name: format!("d{s}{i}"),
                            path: format!("/d{s}{i}"),
                            mime: "text/plain".into(),
                            size: 1,
                            content_hash: format!("{s}{i:063}"),
                            source_item_id: Some(format!("item{s}{i}")),
                            web_url: None,
                        },
                        now,
                    )
                    .await
                    .unwrap();
                store
                    .complete_document(doc.id, &[format!("alpha s{s}"), "gamma".into()], now)
                    .await
                    .unwrap();
            }
            sources.push(source.id);
        }
        store.delete_source(kb, sources[0]).await.unwrap();
        fts_integrity(&store).await;
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH 'alpha'")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(left, 3);
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH 's0'")
            .fetch_one(&store.pool)
            .await
            .unwrap();
        assert_eq!(left, 0);
    }

    #[tokio::test]
    async fn in_memory_database_keeps_its_data_across_calls() {
        let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
        store.migrate().await.unwrap();
        assert_eq!(store.count_users().await.unwrap(), 0);
    }
}
