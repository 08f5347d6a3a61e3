//! How PostgreSQL writes a document's chunks: with their `tsvector` of folded words, in one
//! transaction per document.

use chrono::{DateTime, Utc};
use kbsync_core::{Chunk, DocumentId};
use sqlx::postgres::PgConnection;

use super::PostgresStore;
use crate::Result;
use crate::convert::ms;
use crate::search_text::folded_words;

/// The most chunk text one INSERT carries (a document with more is inserted in several).
const MAX_INSERT_BYTES: usize = 16 * 1024 * 1024;

impl PostgresStore {
    /// One transaction per document: PostgreSQL has concurrent writers, and its index has no
    /// per-commit cost like FTS5's segments.
    pub(super) async fn complete_document_impl(
        &self,
        id: DocumentId,
        chunks: &[Chunk],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        Self::write_completed_document(&mut tx, &id.to_string(), chunks, ms(now)).await?;
        tx.commit().await.map_err(Self::err)
    }

    /// Inserts a document's chunks, numbered from 0 in order, in one statement (UNNEST of five
    /// arrays) per [`MAX_INSERT_BYTES`] of text: one statement for any ordinary document, and a
    /// bounded message for a huge one.
    ///
    /// One statement is faster than one INSERT per chunk only when the driver sets TCP_NODELAY:
    /// sqlx 0.9.0 does not (0.9.1 does again), and a message larger than the socket's send
    /// buffer (~16 KiB, so a document of ~8 chunks) then waits ~40 ms for the server's delayed
    /// ACK (docs/benchmarks.md, scenario 1).
    pub(super) async fn insert_chunks(
        conn: &mut PgConnection,
        document_id: &str,
        kb_id: &str,
        chunks: &[Chunk],
    ) -> Result<()> {
        let mut start = 0;
        while start < chunks.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < chunks.len() && (end == start || bytes + chunks[end].text.len() <= MAX_INSERT_BYTES) {
                bytes += chunks[end].text.len();
                end += 1;
            }
            let batch = &chunks[start..end];
            let ordinals: Vec<i64> = (start..end)
                .map(|i| i64::try_from(i).unwrap_or(i64::MAX))
                .collect();
            // PostgreSQL text cannot hold NUL characters.
            let texts: Vec<String> = batch.iter().map(|c| c.text.replace('\0', "")).collect();
            let folded: Vec<String> = batch.iter().map(|c| folded_words(&c.text).join(" ")).collect();
            let starts: Vec<Option<i64>> = batch.iter().map(|c| c.span.map(|s| offset(s.start))).collect();
            let ends: Vec<Option<i64>> = batch.iter().map(|c| c.span.map(|s| offset(s.end))).collect();
            sqlx::query(
                "INSERT INTO chunks (document_id, kb_id, ordinal, text, tsv, acl_id, start_offset, end_offset) \
                 SELECT $1, $2, u.ordinal, u.text, to_tsvector('simple', u.folded), \
                 (SELECT d.acl_id FROM documents d WHERE d.id = $1), u.start_offset, u.end_offset \
                 FROM UNNEST($3::BIGINT[], $4::TEXT[], $5::TEXT[], $6::BIGINT[], $7::BIGINT[]) \
                 AS u (ordinal, text, folded, start_offset, end_offset)",
            )
            .bind(document_id)
            .bind(kb_id)
            .bind(ordinals)
            .bind(texts)
            .bind(folded)
            .bind(starts)
            .bind(ends)
            .execute(&mut *conn)
            .await
            .map_err(Self::err)?;
            start = end;
        }
        Ok(())
    }
}

/// A character offset as the database stores it.
fn offset(at: u64) -> i64 {
    i64::try_from(at).unwrap_or(i64::MAX)
}
