//! How SQLite writes a document's chunks: through the [`IndexWriter`](super::index_writer)'s
//! group commit, so that FTS5 writes one index segment per batch of documents.

use chrono::{DateTime, Utc};
use kbsync_core::{Chunk, DocumentId};
use sqlx::SqliteConnection;

use super::{SqliteStore, index_writer};
use crate::Result;
use crate::convert::ms;

impl SqliteStore {
    /// Queued and written together with other documents completed at the same time, in one
    /// transaction (see [`index_writer`]); returns once that transaction has committed.
    pub(super) async fn complete_document_impl(
        &self,
        id: DocumentId,
        chunks: &[Chunk],
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.index_writer
            .complete(id.to_string(), chunks.to_vec(), ms(now))
            .await
    }

    /// Inserts a document's chunks, numbered from 0 in order, in as few statements as the bind
    /// limit allows: FTS5 writes an index segment per statement, not per row.
    pub(super) async fn insert_chunks(
        conn: &mut SqliteConnection,
        document_id: &str,
        kb_id: &str,
        chunks: &[Chunk],
    ) -> Result<()> {
        index_writer::insert_chunk_rows(conn, &[(document_id, kb_id, chunks)]).await
    }
}
