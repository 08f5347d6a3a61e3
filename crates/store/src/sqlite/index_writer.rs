//! Group commit of [`DocumentStore::complete_document`](crate::DocumentStore::complete_document) on SQLite.
//!
//! FTS5 keeps the terms of the rows a transaction indexes in memory and writes them out as a new
//! index segment when the transaction commits and whenever a savepoint opens, which includes the
//! statement savepoint SQLite takes for every INSERT (the index is written by a trigger) after the
//! first write of a transaction. It then merges the small segments in the background of later
//! writes. With one transaction per document and one INSERT per chunk, every chunk became a
//! segment of its own, and writing and merging those segments was most of the cost of indexing
//! (docs/benchmarks.md, "Where the time goes").
//!
//! So the calls are queued, and one writer task at a time takes every document waiting and
//! writes them in one transaction: the status updates first, then all their chunks in as few
//! INSERT statements as the bind limit allows, so that one segment holds many documents. Each
//! caller gets its own result, and only once the transaction holding its document has
//! committed. A document that cannot be written (it was deleted meanwhile: `NotFound`) fails
//! alone; when anything else fails, the batch is written again one document per savepoint, so
//! that the failure reaches its own caller only. SQLite admits one writer at a time anyway:
//! callers that used to wait for the write lock now wait for the batch.
//!
//! FTS5's own settings stay at their defaults (automerge 4, crisismerge 16, usermerge 4, pgsz
//! 4050). Measured with this writer (docs/benchmarks.md, scenario 1, 2026-12-06): automerge 8
//! or 16, crisismerge 64, pgsz 8000 or 16000 and hashsize 8 MiB changed indexing throughput by
//! less than run-to-run noise once a segment holds a whole batch; with one document per
//! transaction, automerge 16 with crisismerge 64 indexed ~35 % faster but left more segments
//! and made one- and two-word queries about twice as slow. usermerge only tunes the explicit
//! 'merge' command, which kbsync never runs. None of them changes what a search returns.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use kbsync_core::Chunk;
use sqlx::{Acquire, QueryBuilder, Sqlite, SqliteConnection, SqlitePool, Transaction};
use tokio::sync::oneshot;

use super::SqliteStore;
use crate::{Result, StoreError};

/// The most documents one transaction writes.
const MAX_BATCH_DOCUMENTS: usize = 256;
/// The most chunk text one transaction writes (a larger document is written alone), so that a
/// batch holds the write lock for a fraction of a second and other writers never wait long.
const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// The most rows of one INSERT: six bind parameters each, under SQLite's limit of 32,766.
const MAX_INSERT_ROWS: usize = 1_000;
/// The most chunk text one INSERT carries. FTS5 flushes its pending terms at 1 MiB anyway.
const MAX_INSERT_BYTES: usize = 4 * 1024 * 1024;
/// The most document ids in one `IN (…)` list.
const MAX_IN_LIST: usize = 500;

/// A completed document waiting to be written, and where its result goes.
struct Job {
    doc_id: String,
    chunks: Vec<Chunk>,
    now_ms: i64,
    done: oneshot::Sender<Result<()>>,
}

impl Job {
    fn text_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.text.len()).sum()
    }
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Job>,
    /// A writer task runs; it takes whatever is waiting before it stops.
    writing: bool,
}

/// The queue of completed documents, and the one writer task at a time that empties it.
#[derive(Clone)]
pub(super) struct IndexWriter {
    pool: SqlitePool,
    queue: Arc<Mutex<Queue>>,
}

impl fmt::Debug for IndexWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let q = lock(&self.queue);
        f.debug_struct("IndexWriter")
            .field("waiting", &q.waiting.len())
            .field("writing", &q.writing)
            .finish()
    }
}

impl IndexWriter {
    pub(super) fn new(pool: SqlitePool) -> Self {
        Self {
            pool,
            queue: Arc::default(),
        }
    }

    /// Queues the document and waits until the transaction that holds it has committed.
    pub(super) async fn complete(&self, doc_id: String, chunks: Vec<Chunk>, now_ms: i64) -> Result<()> {
        let (done, result) = oneshot::channel();
        let start_writer = {
            let mut q = lock(&self.queue);
            q.waiting.push_back(Job {
                doc_id,
                chunks,
                now_ms,
                done,
            });
            !std::mem::replace(&mut q.writing, true)
        };
        if start_writer {
            let writer = write_queued(self.queue.clone(), self.pool.clone());
            match tokio::runtime::Handle::try_current() {
                // A task of its own, so that a caller who stops waiting (a cancelled sync) never
                // abandons the documents of the others halfway.
                Ok(runtime) => drop(runtime.spawn(writer)),
                Err(_) => writer.await,
            }
        }
        result.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the index writer stopped before the document was written".to_owned(),
            ))
        })
    }
}

fn lock(queue: &Mutex<Queue>) -> MutexGuard<'_, Queue> {
    // Nothing panics while holding the lock; a poisoned queue is still consistent.
    queue.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes batches until nothing waits.
async fn write_queued(queue: Arc<Mutex<Queue>>, pool: SqlitePool) {
    let mut running = Running {
        queue: queue.clone(),
        finished: false,
    };
    loop {
        let batch = {
            let mut q = lock(&queue);
            let batch = take_batch(&mut q.waiting);
            if batch.is_empty() {
                q.writing = false;
                running.finished = true;
                return;
            }
            batch
        };
        let results = write_batch(&pool, &batch).await;
        for (job, result) in batch.into_iter().zip(results) {
            // The caller may have stopped waiting; its document is written all the same.
            let _ = job.done.send(result);
        }
    }
}

/// Marks the writer stopped if its task ends early (its runtime shuts down): the documents
/// still waiting are dropped, so their callers get an error instead of waiting for ever, and a
/// later call starts a new writer.
struct Running {
    queue: Arc<Mutex<Queue>>,
    finished: bool,
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.finished {
            let orphans = {
                let mut q = lock(&self.queue);
                q.writing = false;
                std::mem::take(&mut q.waiting)
            };
            drop(orphans);
        }
    }
}

/// The documents the next transaction writes, oldest first: at least one, and more up to the
/// batch limits. A document queued again while its first call waits goes into a later batch,
/// so the calls take effect in order.
fn take_batch(waiting: &mut VecDeque<Job>) -> Vec<Job> {
    let mut batch = Vec::new();
    let mut ids = HashSet::new();
    let mut bytes = 0;
    while let Some(next) = waiting.front() {
        let size = next.text_bytes();
        let full =
            batch.len() >= MAX_BATCH_DOCUMENTS || (!batch.is_empty() && bytes + size > MAX_BATCH_BYTES);
        if full || ids.contains(&next.doc_id) {
            break;
        }
        let Some(job) = waiting.pop_front() else { break };
        bytes += size;
        ids.insert(job.doc_id.clone());
        batch.push(job);
    }
    batch
}

/// Writes the batch in one transaction; one result per job, in order. A result is `Ok` only
/// when the commit succeeded.
async fn write_batch(pool: &SqlitePool, jobs: &[Job]) -> Vec<Result<()>> {
    let mut tx = match pool.begin_with("BEGIN IMMEDIATE").await {
        Ok(tx) => tx,
        Err(e) => return all_failed(jobs.len(), &SqliteStore::err(e)),
    };
    let written = match write_together(&mut tx, jobs).await {
        Ok(Some(results)) => Ok(results),
        Ok(None) => write_one_by_one(&mut tx, jobs).await,
        Err(broken) => Err(broken),
    };
    let results = match written {
        Ok(results) => results,
        Err(broken) => return all_failed(jobs.len(), &broken),
    };
    match tx.commit().await {
        Ok(()) => results,
        Err(e) => {
            let e = SqliteStore::err(e);
            results
                .into_iter()
                .map(|r| r.and_then(|()| Err(copy(&e))))
                .collect()
        }
    }
}

/// The batch in one savepoint, all chunks in as few INSERTs as possible. `Ok(None)` when
/// something failed (and was rolled back) that is not a document being gone; `Err` when the
/// savepoint could not even be rolled back (the transaction is lost).
async fn write_together(
    tx: &mut Transaction<'static, Sqlite>,
    jobs: &[Job],
) -> Result<Option<Vec<Result<()>>>> {
    let mut savepoint = Acquire::begin(&mut *tx).await.map_err(SqliteStore::err)?;
    match write_together_in(&mut savepoint, jobs).await {
        Ok(results) => {
            savepoint.commit().await.map_err(SqliteStore::err)?;
            Ok(Some(results))
        }
        Err(e) => {
            tracing::debug!(error = %e, documents = jobs.len(), "batched index write failed; writing one by one");
            savepoint.rollback().await.map_err(SqliteStore::err)?;
            Ok(None)
        }
    }
}

async fn write_together_in(conn: &mut SqliteConnection, jobs: &[Job]) -> Result<Vec<Result<()>>> {
    let mut results = Vec::with_capacity(jobs.len());
    let mut found: Vec<(&str, String, &[Chunk])> = Vec::with_capacity(jobs.len());
    for job in jobs {
        let kb_id: Option<String> = sqlx::query_scalar(
            "UPDATE documents SET status = 'processed', error = NULL, updated_at = $2, \
             strikes = 0, strike_content = NULL, quarantined_at = NULL WHERE id = $1 RETURNING kb_id",
        )
        .bind(&job.doc_id)
        .bind(job.now_ms)
        .fetch_optional(&mut *conn)
        .await
        .map_err(SqliteStore::err)?;
        match kb_id {
            Some(kb_id) => {
                found.push((&job.doc_id, kb_id, &job.chunks));
                results.push(Ok(()));
            }
            None => results.push(Err(StoreError::NotFound)),
        }
    }
    for ids in found.chunks(MAX_IN_LIST) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("DELETE FROM chunks WHERE document_id IN (");
        let mut list = qb.separated(", ");
        for (doc_id, _, _) in ids {
            list.push_bind(*doc_id);
        }
        qb.push(")");
        qb.build()
            .persistent(false)
            .execute(&mut *conn)
            .await
            .map_err(SqliteStore::err)?;
    }
    let mut docs: Vec<(&str, &str, &[Chunk])> = Vec::with_capacity(found.len());
    for (doc_id, kb_id, chunks) in &found {
        docs.push((doc_id, kb_id, chunks));
    }
    insert_chunk_rows(conn, &docs).await?;
    Ok(results)
}

/// Each document in a savepoint of its own: a failure is its caller's only. `Err` when a
/// savepoint could not be rolled back (the transaction is lost).
async fn write_one_by_one(tx: &mut Transaction<'static, Sqlite>, jobs: &[Job]) -> Result<Vec<Result<()>>> {
    let mut results = Vec::with_capacity(jobs.len());
    for job in jobs {
        let mut savepoint = Acquire::begin(&mut *tx).await.map_err(SqliteStore::err)?;
        match SqliteStore::write_completed_document(&mut savepoint, &job.doc_id, &job.chunks, job.now_ms)
            .await
        {
            Ok(()) => {
                savepoint.commit().await.map_err(SqliteStore::err)?;
                results.push(Ok(()));
            }
            Err(e) => {
                savepoint.rollback().await.map_err(SqliteStore::err)?;
                results.push(Err(e));
            }
        }
    }
    Ok(results)
}

/// Inserts the chunks of several documents, each numbered from 0 in order, in INSERTs of up to
/// [`MAX_INSERT_ROWS`] rows and [`MAX_INSERT_BYTES`] of text.
pub(super) async fn insert_chunk_rows(
    conn: &mut SqliteConnection,
    docs: &[(&str, &str, &[Chunk])],
) -> Result<()> {
    let mut statement: Vec<ChunkRow<'_>> = Vec::new();
    let mut bytes = 0;
    for &(doc_id, kb_id, chunks) in docs {
        for (ordinal, chunk) in chunks.iter().enumerate() {
            bytes += chunk.text.len();
            statement.push(ChunkRow {
                doc_id,
                kb_id,
                ordinal: i64::try_from(ordinal).unwrap_or(i64::MAX),
                chunk,
            });
            if statement.len() >= MAX_INSERT_ROWS || bytes >= MAX_INSERT_BYTES {
                insert_statement(conn, &statement).await?;
                statement.clear();
                bytes = 0;
            }
        }
    }
    if !statement.is_empty() {
        insert_statement(conn, &statement).await?;
    }
    // Chunks carry their document's access list (search filters on it).
    for &(doc_id, _, chunks) in docs {
        if !chunks.is_empty() {
            sqlx::query(
                "UPDATE chunks SET acl_id = (SELECT d.acl_id FROM documents d WHERE d.id = $1) \
                 WHERE document_id = $1",
            )
            .bind(doc_id)
            .execute(&mut *conn)
            .await
            .map_err(SqliteStore::err)?;
        }
    }
    Ok(())
}

/// One row of an INSERT into `chunks`.
struct ChunkRow<'a> {
    doc_id: &'a str,
    kb_id: &'a str,
    ordinal: i64,
    chunk: &'a Chunk,
}

async fn insert_statement(conn: &mut SqliteConnection, rows: &[ChunkRow<'_>]) -> Result<()> {
    let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
        "INSERT INTO chunks (document_id, kb_id, ordinal, text, start_offset, end_offset) ",
    );
    qb.push_values(rows, |mut row, r| {
        let span = r.chunk.span;
        row.push_bind(r.doc_id)
            .push_bind(r.kb_id)
            .push_bind(r.ordinal)
            .push_bind(r.chunk.text.as_str())
            .push_bind(span.map(|s| offset(s.start)))
            .push_bind(span.map(|s| offset(s.end)));
    });
    // The statement's text depends on the row count: not worth a place in the statement cache.
    qb.build()
        .persistent(false)
        .execute(&mut *conn)
        .await
        .map_err(SqliteStore::err)?;
    Ok(())
}

/// A character offset as the database stores it.
fn offset(at: u64) -> i64 {
    i64::try_from(at).unwrap_or(i64::MAX)
}

fn all_failed(n: usize, e: &StoreError) -> Vec<Result<()>> {
    (0..n).map(|_| Err(copy(e))).collect()
}

/// The same error for another caller.
fn copy(e: &StoreError) -> StoreError {
    match e {
        StoreError::NotFound => StoreError::NotFound,
        StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
        StoreError::InvalidReference(m) => StoreError::InvalidReference(m.clone()),
        StoreError::InvalidUrl(m) => StoreError::InvalidUrl(m.clone()),
        StoreError::Unavailable(m) => StoreError::Unavailable(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::Database(m) => StoreError::Database(m.clone()),
        StoreError::Blob(m) => StoreError::Blob(m.clone()),
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use kbsync_core::{DocumentStatus, KbId};
    use uuid::Uuid;

    use super::*;
    use crate::{DocumentStore, NewDocument};

    async fn store_with_kb() -> (tempfile::TempDir, SqliteStore, KbId) {
        crate::sqlite::tests::store_with_kb("kb.db").await
    }

    async fn pending_doc(store: &SqliteStore, kb: KbId, i: usize) -> Uuid {
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
                DateTime::UNIX_EPOCH,
            )
            .await
            .unwrap();
        id
    }

    fn job(id: Uuid, chunks: &[&str]) -> Job {
        Job {
            doc_id: id.to_string(),
            chunks: chunks.iter().map(|c| Chunk::from(*c)).collect(),
            now_ms: 1_750_000_000_000,
            done: oneshot::channel().0,
        }
    }

    async fn chunk_texts(store: &SqliteStore, id: Uuid) -> Vec<String> {
        sqlx::query_scalar("SELECT text FROM chunks WHERE document_id = $1 ORDER BY ordinal")
            .bind(id.to_string())
            .fetch_all(&store.pool)
            .await
            .unwrap()
    }

    /// FTS5 segments in the index (the segment id is the top bits of a data row's id).
    async fn fts5_segments(store: &SqliteStore) -> i64 {
        sqlx::query_scalar("SELECT COUNT(DISTINCT id >> 37) FROM chunks_fts_data WHERE id >> 37 > 0")
            .fetch_one(&store.pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_batch_reports_not_found_for_the_deleted_document_only_and_writes_the_others() {
        let (_dir, store, kb) = store_with_kb().await;
        let (a, gone, b) = (
            pending_doc(&store, kb, 0).await,
            pending_doc(&store, kb, 1).await,
            pending_doc(&store, kb, 2).await,
        );
        store
            .delete_document(kb, gone, chrono::DateTime::UNIX_EPOCH)
            .await
            .unwrap();
        let jobs = [
            job(a, &["alpha one", "alpha two"]),
            job(gone, &["gone"]),
            job(b, &["beta"]),
        ];
        let results = write_batch(&store.pool, &jobs).await;
        assert!(
            matches!(results[..], [Ok(()), Err(StoreError::NotFound), Ok(())]),
            "{results:?}"
        );
        assert_eq!(chunk_texts(&store, a).await, ["alpha one", "alpha two"]);
        assert_eq!(chunk_texts(&store, b).await, ["beta"]);
        assert!(chunk_texts(&store, gone).await.is_empty());
        for id in [a, b] {
            assert_eq!(
                store.get_document(kb, id).await.unwrap().status,
                DocumentStatus::Processed
            );
        }
    }

    #[tokio::test]
    async fn a_failure_other_than_not_found_is_retried_one_by_one_and_reaches_its_own_caller_only() {
        let (_dir, store, kb) = store_with_kb().await;
        sqlx::query(
            "CREATE TRIGGER poison BEFORE INSERT ON chunks WHEN new.text = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'poisoned chunk'); END",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        let (a, bad, b) = (
            pending_doc(&store, kb, 0).await,
            pending_doc(&store, kb, 1).await,
            pending_doc(&store, kb, 2).await,
        );
        store
            .complete_document(bad, &["old text".into()], DateTime::UNIX_EPOCH)
            .await
            .unwrap();
        let jobs = [
            job(a, &["alpha"]),
            job(bad, &["fine", "poison"]),
            job(b, &["beta"]),
        ];
        let results = write_batch(&store.pool, &jobs).await;
        assert!(
            matches!(&results[..], [Ok(()), Err(StoreError::Database(m)), Ok(())] if m.contains("poisoned")),
            "{results:?}"
        );
        assert_eq!(chunk_texts(&store, a).await, ["alpha"]);
        assert_eq!(chunk_texts(&store, b).await, ["beta"]);
        // The failed document is left exactly as it was.
        assert_eq!(chunk_texts(&store, bad).await, ["old text"]);
        sqlx::query("INSERT INTO chunks_fts (chunks_fts, rank) VALUES ('integrity-check', 1)")
            .execute(&store.pool)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_batch_of_documents_is_indexed_as_one_fts5_segment() {
        let (_dir, store, kb) = store_with_kb().await;
        let mut jobs = Vec::new();
        for i in 0..20 {
            let id = pending_doc(&store, kb, i).await;
            let chunks: Vec<String> = (0..30).map(|c| format!("document {i} chunk {c} words")).collect();
            let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
            jobs.push(job(id, &chunks));
        }
        let results = write_batch(&store.pool, &jobs).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert_eq!(fts5_segments(&store).await, 1);
    }

    #[tokio::test]
    async fn a_document_of_many_chunks_is_indexed_as_one_fts5_segment() {
        let (_dir, store, kb) = store_with_kb().await;
        let id = pending_doc(&store, kb, 0).await;
        let texts: Vec<String> = (0..200).map(|c| format!("chunk {c} of one document")).collect();
        let chunks: Vec<Chunk> = texts.iter().map(|t| Chunk::from(t.as_str())).collect();
        store
            .complete_document(id, &chunks, DateTime::UNIX_EPOCH)
            .await
            .unwrap();
        assert_eq!(fts5_segments(&store).await, 1);
        assert_eq!(chunk_texts(&store, id).await, texts);
    }

    #[test]
    fn a_document_queued_twice_waits_for_a_later_batch() {
        let (x, y) = (Uuid::new_v4(), Uuid::new_v4());
        let mut waiting: VecDeque<Job> =
            [job(x, &["1"]), job(y, &["2"]), job(x, &["3"]), job(y, &["4"])].into();
        let first: Vec<String> = take_batch(&mut waiting)
            .into_iter()
            .map(|j| j.chunks.iter().map(|c| c.text.as_str()).collect::<String>())
            .collect();
        assert_eq!(first, ["1", "2"]);
        let second: Vec<String> = take_batch(&mut waiting)
            .into_iter()
            .map(|j| j.chunks.iter().map(|c| c.text.as_str()).collect::<String>())
            .collect();
        assert_eq!(second, ["3", "4"]);
        assert!(take_batch(&mut waiting).is_empty());
    }

    #[test]
    fn a_batch_stops_at_its_size_limits_but_always_takes_one_document() {
        let big = "x".repeat(MAX_BATCH_BYTES / 2 + 1);
        let mut waiting: VecDeque<Job> = (0..3).map(|_| job(Uuid::new_v4(), &[big.as_str()])).collect();
        assert_eq!(take_batch(&mut waiting).len(), 1);
        let huge = "x".repeat(MAX_BATCH_BYTES + 1);
        let mut waiting: VecDeque<Job> = [job(Uuid::new_v4(), &[huge.as_str()])].into();
        assert_eq!(take_batch(&mut waiting).len(), 1);
        let mut waiting: VecDeque<Job> = (0..MAX_BATCH_DOCUMENTS + 5)
            .map(|_| job(Uuid::new_v4(), &["a"]))
            .collect();
        assert_eq!(take_batch(&mut waiting).len(), MAX_BATCH_DOCUMENTS);
        assert_eq!(take_batch(&mut waiting).len(), 5);
    }
}
