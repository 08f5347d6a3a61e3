//! The SQL of [`DocumentStore`](crate::DocumentStore) that is the same on both databases. How chunks
//! are written differs (`sqlite/documents.rs`, `postgres/documents.rs`): each database provides
//! `insert_chunks` and `complete_document_impl`, which may use `write_completed_document` below.

use kbsync_core::Document;

use crate::Result;
use crate::convert::{from_ms, parse_enum, parse_uuid};

macro_rules! doc_cols {
    () => {
        "id, kb_id, name, path, mime, size, content_hash, source_item_id, web_url, status, error, \
         created_at, updated_at, quarantined_at"
    };
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct DocRow {
    pub id: String,
    pub kb_id: String,
    pub name: String,
    pub path: String,
    pub mime: String,
    pub size: i64,
    pub content_hash: String,
    pub source_item_id: Option<String>,
    pub web_url: Option<String>,
    pub status: String,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Set while the document is quarantined (its `status` column then says `failed`).
    pub quarantined_at: Option<i64>,
}

impl DocRow {
    pub(crate) fn into_document(self) -> Result<Document> {
        Ok(Document {
            id: parse_uuid(&self.id)?,
            kb_id: parse_uuid(&self.kb_id)?,
            name: self.name,
            path: self.path,
            mime: self.mime,
            size: self.size,
            content_hash: self.content_hash,
            source_item_id: self.source_item_id,
            web_url: self.web_url,
            status: if self.quarantined_at.is_some() {
                kbsync_core::DocumentStatus::Quarantined
            } else {
                parse_enum(&self.status)?
            },
            error: self.error,
            created_at: from_ms(self.created_at)?,
            updated_at: from_ms(self.updated_at)?,
        })
    }
}

/// A quarantined document's row and the content its strikes were against.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct QuarantineRow {
    #[sqlx(flatten)]
    pub doc: DocRow,
    pub strike_content: Option<String>,
}

impl QuarantineRow {
    pub(crate) fn into_quarantined(self) -> Result<crate::QuarantinedDocument> {
        Ok(crate::QuarantinedDocument {
            content: self.strike_content.unwrap_or_default(),
            document: self.doc.into_document()?,
        })
    }
}

/// Writes `impl DocumentStore for $ty`, and the inherent `write_completed_document` that the
/// databases' `complete_document_impl` uses. `$ty` provides what `sql/mod.rs` lists.
macro_rules! impl_document_store {
    ($ty:ty) => {
        impl $ty {
            /// The writes of `complete_document` inside an open write transaction, which the
            /// caller commits: marks the document processed and replaces its chunks. `NotFound`,
            /// having written nothing, when the document is gone.
            async fn write_completed_document(
                conn: &mut DbConnection,
                doc_id: &str,
                chunks: &[kbsync_core::Chunk],
                now_ms: i64,
            ) -> $crate::Result<()> {
                let kb_id: Option<String> = sqlx::query_scalar(
                    "UPDATE documents SET status = 'processed', error = NULL, updated_at = $2, \
                     strikes = 0, strike_content = NULL, quarantined_at = NULL \
                     WHERE id = $1 RETURNING kb_id",
                )
                .bind(doc_id)
                .bind(now_ms)
                .fetch_optional(&mut *conn)
                .await
                .map_err(Self::err)?;
                let kb_id = kb_id.ok_or($crate::StoreError::NotFound)?;
                sqlx::query("DELETE FROM chunks WHERE document_id = $1")
                    .bind(doc_id)
                    .execute(&mut *conn)
                    .await
                    .map_err(Self::err)?;
                Self::insert_chunks(conn, doc_id, &kb_id, chunks).await
            }
        }

        impl $ty {
            /// Inserts a `pending` document (in the caller's transaction).
            async fn insert_document(
                conn: &mut DbConnection,
                id: kbsync_core::DocumentId,
                new: &$crate::NewDocument,
                now_ms: i64,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO documents (id, kb_id, name, path, mime, size, content_hash, \
                     source_item_id, web_url, status, error, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', NULL, $10, $10)",
                )
                .bind(id.to_string())
                .bind(new.kb_id.to_string())
                .bind(&new.name)
                .bind(&new.path)
                .bind(&new.mime)
                .bind(new.size)
                .bind(&new.content_hash)
                .bind(&new.source_item_id)
                .bind(&new.web_url)
                .bind(now_ms)
                .execute(&mut *conn)
                .await
                .map_err(|e| match Self::err(e) {
                    $crate::StoreError::InvalidReference(_) => {
                        $crate::StoreError::InvalidReference(format!("unknown knowledge base {}", new.kb_id))
                    }
                    $crate::StoreError::Conflict(_) => $crate::StoreError::Conflict(format!("document {id}")),
                    other => other,
                })?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::DocumentStore for $ty {
            async fn create_document(
                &self,
                id: kbsync_core::DocumentId,
                new: $crate::NewDocument,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<kbsync_core::Document> {
                use $crate::convert::*;
                let now = truncate_ms(now)?;
                let mut tx = self.begin_write().await?;
                Self::insert_document(&mut tx, id, &new, ms(now)).await?;
                Self::take_blob(&mut tx, &new.content_hash).await?;
                tx.commit().await.map_err(Self::err)?;
                Ok(kbsync_core::Document {
                    id,
                    kb_id: new.kb_id,
                    name: new.name,
                    path: new.path,
                    mime: new.mime,
                    size: new.size,
                    content_hash: new.content_hash,
                    source_item_id: new.source_item_id,
                    web_url: new.web_url,
                    status: kbsync_core::DocumentStatus::Pending,
                    error: None,
                    created_at: now,
                    updated_at: now,
                })
            }

            async fn get_document(
                &self,
                kb_id: kbsync_core::KbId,
                id: kbsync_core::DocumentId,
            ) -> $crate::Result<kbsync_core::Document> {
                sqlx::query_as::<_, $crate::sql::documents::DocRow>(concat!(
                    "SELECT ",
                    $crate::sql::documents::doc_cols!(),
                    " FROM documents WHERE kb_id = $1 AND id = $2"
                ))
                .bind(kb_id.to_string())
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?
                .into_document()
            }

            async fn list_documents(
                &self,
                kb_id: kbsync_core::KbId,
                page: $crate::Page,
            ) -> $crate::Result<$crate::PageOf<kbsync_core::Document>> {
                use $crate::convert::*;
                use $crate::sql::documents::DocRow;
                let kb = kb_id.to_string();
                let rows = sqlx::query_as::<_, DocRow>(concat!(
                    "SELECT ",
                    $crate::sql::documents::doc_cols!(),
                    " FROM documents WHERE kb_id = $1 ORDER BY path, id LIMIT $2 OFFSET $3"
                ))
                .bind(&kb)
                .bind(i64::from(page.limit))
                .bind(to_i64(page.offset))
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM documents WHERE kb_id = $1")
                    .bind(&kb)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(Self::err)?;
                Ok($crate::PageOf {
                    items: collect(rows, DocRow::into_document)?,
                    total: to_u64(total)?,
                })
            }

            async fn complete_document(
                &self,
                id: kbsync_core::DocumentId,
                chunks: &[kbsync_core::Chunk],
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                self.complete_document_impl(id, chunks, now).await
            }

            async fn fail_document(
                &self,
                id: kbsync_core::DocumentId,
                error: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                let doc_id = id.to_string();
                let mut tx = self.begin_write().await?;
                let updated = sqlx::query(
                    "UPDATE documents SET status = 'failed', error = $2, updated_at = $3, \
                     quarantined_at = NULL WHERE id = $1",
                )
                .bind(&doc_id)
                .bind(error)
                .bind($crate::convert::ms(now))
                .execute(&mut *tx)
                .await
                .map_err(Self::err)?;
                if updated.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                sqlx::query("DELETE FROM chunks WHERE document_id = $1")
                    .bind(&doc_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            async fn strike_document(
                &self,
                id: kbsync_core::DocumentId,
                content: &str,
                reason: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<kbsync_core::DocumentStatus> {
                use $crate::convert::*;
                let doc_id = id.to_string();
                let mut tx = self.begin_write().await?;
                let strikes: Option<i64> = sqlx::query_scalar(
                    "UPDATE documents SET \
                     strikes = CASE WHEN strike_content = $2 THEN strikes + 1 ELSE 1 END, \
                     strike_content = $2, status = 'failed', error = $3, quarantined_at = NULL, \
                     updated_at = $4 WHERE id = $1 RETURNING strikes",
                )
                .bind(&doc_id)
                .bind(content)
                .bind(reason)
                .bind(ms(now))
                .fetch_optional(&mut *tx)
                .await
                .map_err(Self::err)?;
                let strikes = strikes.ok_or($crate::StoreError::NotFound)?;
                let quarantined = to_u64(strikes)? >= $crate::QUARANTINE_STRIKES;
                if quarantined {
                    sqlx::query("UPDATE documents SET quarantined_at = $2, error = $3 WHERE id = $1")
                        .bind(&doc_id)
                        .bind(ms(now))
                        .bind(kbsync_core::quarantine_reason(reason))
                        .execute(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                }
                sqlx::query("DELETE FROM chunks WHERE document_id = $1")
                    .bind(&doc_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                tx.commit().await.map_err(Self::err)?;
                Ok(if quarantined {
                    kbsync_core::DocumentStatus::Quarantined
                } else {
                    kbsync_core::DocumentStatus::Failed
                })
            }

            async fn quarantined_documents(
                &self,
                kb_id: kbsync_core::KbId,
            ) -> $crate::Result<Vec<$crate::QuarantinedDocument>> {
                let rows = sqlx::query_as::<_, $crate::sql::documents::QuarantineRow>(concat!(
                    "SELECT ",
                    $crate::sql::documents::doc_cols!(),
                    ", strike_content FROM documents \
                     WHERE kb_id = $1 AND quarantined_at IS NOT NULL ORDER BY path, id"
                ))
                .bind(kb_id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                $crate::convert::collect(rows, $crate::sql::documents::QuarantineRow::into_quarantined)
            }

            async fn put_uploaded_document(
                &self,
                id: kbsync_core::DocumentId,
                new: $crate::NewDocument,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<(kbsync_core::Document, bool)> {
                use $crate::convert::*;
                use $crate::sql::documents::DocRow;
                let now = truncate_ms(now)?;
                let kb = new.kb_id.to_string();
                let mut tx = self.begin_write().await?;
                // Two uploads of one path wait for each other, so the second replaces the first.
                Self::lock_name(&mut tx, &format!("upload:{kb}:{}", new.path)).await?;
                let existing: Option<(String, String)> = sqlx::query_as(
                    "SELECT id, content_hash FROM documents \
                     WHERE kb_id = $1 AND path = $2 AND source_item_id IS NULL \
                     ORDER BY created_at, id LIMIT 1",
                )
                .bind(&kb)
                .bind(&new.path)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Self::err)?;
                let mut replaced = None;
                if let Some((existing_id, old_hash)) = existing {
                    // The row lock first (a deletion of this document waits, or has won: then
                    // the upload creates a new document).
                    let row = sqlx::query_as::<_, DocRow>(concat!(
                        "UPDATE documents SET name = $2, mime = $3, size = $4, content_hash = $5, \
                         status = CASE WHEN quarantined_at IS NOT NULL AND strike_content = $5 \
                             THEN 'failed' ELSE 'pending' END, \
                         error = CASE WHEN quarantined_at IS NOT NULL AND strike_content = $5 \
                             THEN error ELSE NULL END, \
                         quarantined_at = CASE WHEN strike_content = $5 THEN quarantined_at END, \
                         updated_at = $6 WHERE id = $1 RETURNING ",
                        $crate::sql::documents::doc_cols!()
                    ))
                    .bind(&existing_id)
                    .bind(&new.name)
                    .bind(&new.mime)
                    .bind(new.size)
                    .bind(&new.content_hash)
                    .bind(ms(now))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                    if let Some(row) = row {
                        sqlx::query("DELETE FROM chunks WHERE document_id = $1")
                            .bind(&existing_id)
                            .execute(&mut *tx)
                            .await
                            .map_err(Self::err)?;
                        if old_hash != new.content_hash {
                            Self::release_blob(&mut tx, &old_hash, ms(now)).await?;
                        }
                        replaced = Some(row);
                    }
                }
                let (row, was_replaced) = match replaced {
                    Some(row) => (row, true),
                    None => {
                        Self::insert_document(&mut tx, id, &new, ms(now)).await?;
                        let row = sqlx::query_as::<_, DocRow>(concat!(
                            "SELECT ",
                            $crate::sql::documents::doc_cols!(),
                            " FROM documents WHERE id = $1"
                        ))
                        .bind(id.to_string())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                        (row, false)
                    }
                };
                // Last, so a deletion racing this upload never waits on the candidate while
                // holding the row this upload needs.
                Self::take_blob(&mut tx, &new.content_hash).await?;
                tx.commit().await.map_err(Self::err)?;
                Ok((row.into_document()?, was_replaced))
            }

            async fn delete_document(
                &self,
                kb_id: kbsync_core::KbId,
                id: kbsync_core::DocumentId,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<Option<String>> {
                let mut tx = self.begin_write().await?;
                let hash: Option<String> = sqlx::query_scalar(
                    "DELETE FROM documents WHERE kb_id = $1 AND id = $2 RETURNING content_hash",
                )
                .bind(kb_id.to_string())
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(Self::err)?;
                let hash = hash.ok_or($crate::StoreError::NotFound)?;
                Self::release_blob(&mut tx, &hash, $crate::convert::ms(now)).await?;
                let still_used = sqlx::query("SELECT 1 FROM documents WHERE content_hash = $1 LIMIT 1")
                    .bind(&hash)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(Self::err)?
                    .is_some();
                tx.commit().await.map_err(Self::err)?;
                Ok(if still_used { None } else { Some(hash) })
            }

            async fn pending_documents(&self, limit: u32) -> $crate::Result<Vec<kbsync_core::Document>> {
                let rows = sqlx::query_as::<_, $crate::sql::documents::DocRow>(concat!(
                    "SELECT ",
                    $crate::sql::documents::doc_cols!(),
                    " FROM documents WHERE status = 'pending' ORDER BY created_at, id LIMIT $1"
                ))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                $crate::convert::collect(rows, $crate::sql::documents::DocRow::into_document)
            }

            // --- documents mirrored from a source ------------------------------------------

            async fn source_documents(&self, source_id: uuid::Uuid) -> $crate::Result<Vec<kbsync_core::Document>> {
                let rows = sqlx::query_as::<_, $crate::sql::documents::DocRow>(concat!(
                    "SELECT ",
                    $crate::sql::documents::doc_cols!(),
                    " FROM documents WHERE source_id = $1 ORDER BY path, id"
                ))
                .bind(source_id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                $crate::convert::collect(rows, $crate::sql::documents::DocRow::into_document)
            }

            async fn source_documents_of_items(
                &self,
                source_ids: &[uuid::Uuid],
                item_ids: &[String],
            ) -> $crate::Result<Vec<kbsync_core::Document>> {
                let mut docs = Vec::new();
                if source_ids.is_empty() {
                    return Ok(docs);
                }
                // Bounded batches keep every statement under the backends' bind-parameter limits.
                for batch in item_ids.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::new(concat!(
                        "SELECT ",
                        $crate::sql::documents::doc_cols!(),
                        " FROM documents WHERE source_id IN ("
                    ));
                    let mut list = qb.separated(", ");
                    for id in source_ids {
                        list.push_bind(id.to_string());
                    }
                    qb.push(") AND source_item_id IN (");
                    let mut list = qb.separated(", ");
                    for id in batch {
                        list.push_bind(id.as_str());
                    }
                    qb.push(")");
                    let rows: Vec<$crate::sql::documents::DocRow> =
                        qb.build_query_as().fetch_all(&self.pool).await.map_err(Self::err)?;
                    for row in rows {
                        docs.push(row.into_document()?);
                    }
                }
                Ok(docs)
            }

            async fn document_by_source_item(
                &self,
                kb_id: kbsync_core::KbId,
                source_item_id: &str,
            ) -> $crate::Result<Option<kbsync_core::Document>> {
                sqlx::query_as::<_, $crate::sql::documents::DocRow>(concat!(
                    "SELECT ",
                    $crate::sql::documents::doc_cols!(),
                    " FROM documents WHERE kb_id = $1 AND source_item_id = $2"
                ))
                .bind(kb_id.to_string())
                .bind(source_item_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .map($crate::sql::documents::DocRow::into_document)
                .transpose()
            }

            async fn upsert_source_document(
                &self,
                id: kbsync_core::DocumentId,
                source_id: uuid::Uuid,
                new: $crate::NewDocument,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<(kbsync_core::Document, Option<String>)> {
                use $crate::convert::*;
                use $crate::sql::documents::DocRow;
                let Some(item_id) = new.source_item_id.clone() else {
                    return Err($crate::StoreError::InvalidReference(
                        "a synced document needs a source item id".to_owned(),
                    ));
                };
                let now = truncate_ms(now)?;
                let kb = new.kb_id.to_string();
                let mut tx = self.begin_write().await?;
                let old_hash: Option<String> = sqlx::query_scalar(
                    "SELECT content_hash FROM documents WHERE kb_id = $1 AND source_item_id = $2",
                )
                .bind(&kb)
                .bind(&item_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Self::err)?;
                sqlx::query(
                    "INSERT INTO documents (id, kb_id, name, path, mime, size, content_hash, \
                     source_item_id, web_url, status, error, created_at, updated_at, source_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', NULL, $10, $10, $11) \
                     ON CONFLICT (kb_id, source_item_id) WHERE source_item_id IS NOT NULL DO UPDATE SET \
                     name = excluded.name, path = excluded.path, mime = excluded.mime, \
                     size = excluded.size, content_hash = excluded.content_hash, \
                     web_url = excluded.web_url, status = 'pending', error = NULL, \
                     updated_at = excluded.updated_at, source_id = excluded.source_id, \
                     quarantined_at = NULL",
                )
                .bind(id.to_string())
                .bind(&kb)
                .bind(&new.name)
                .bind(&new.path)
                .bind(&new.mime)
                .bind(new.size)
                .bind(&new.content_hash)
                .bind(&item_id)
                .bind(&new.web_url)
                .bind(ms(now))
                .bind(source_id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(|e| match Self::err(e) {
                    $crate::StoreError::InvalidReference(_) => $crate::StoreError::InvalidReference(format!(
                        "unknown knowledge base {} or source {source_id}",
                        new.kb_id
                    )),
                    other => other,
                })?;
                let row = sqlx::query_as::<_, DocRow>(concat!(
                    "SELECT ",
                    $crate::sql::documents::doc_cols!(),
                    " FROM documents WHERE kb_id = $1 AND source_item_id = $2"
                ))
                .bind(&kb)
                .bind(&item_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(Self::err)?;
                sqlx::query("DELETE FROM chunks WHERE document_id = $1")
                    .bind(&row.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                let mut unreferenced = None;
                if let Some(old) = old_hash.filter(|h| *h != new.content_hash) {
                    Self::release_blob(&mut tx, &old, ms(now)).await?;
                    let used = sqlx::query("SELECT 1 FROM documents WHERE content_hash = $1 LIMIT 1")
                        .bind(&old)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(Self::err)?
                        .is_some();
                    if !used {
                        unreferenced = Some(old);
                    }
                }
                Self::take_blob(&mut tx, &new.content_hash).await?;
                tx.commit().await.map_err(Self::err)?;
                Ok((row.into_document()?, unreferenced))
            }

            async fn update_document_location(
                &self,
                kb_id: kbsync_core::KbId,
                id: kbsync_core::DocumentId,
                location: $crate::DocumentLocation,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                let done = sqlx::query(
                    "UPDATE documents SET name = $3, path = $4, web_url = $5, updated_at = $6 \
                     WHERE kb_id = $1 AND id = $2",
                )
                .bind(kb_id.to_string())
                .bind(id.to_string())
                .bind(&location.name)
                .bind(&location.path)
                .bind(&location.web_url)
                .bind($crate::convert::ms(now))
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                Ok(())
            }
        }
    };
}

pub(crate) use impl_document_store;

pub(crate) use doc_cols;
