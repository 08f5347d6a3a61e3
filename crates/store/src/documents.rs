//! Documents (one file in a knowledge base each) and the chunks of text that search indexes.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbsync_core::{Chunk, Document, DocumentId, DocumentStatus, KbId};

use crate::{Page, PageOf, Result};

#[derive(Debug, Clone)]
pub struct NewDocument {
    pub kb_id: KbId,
    pub name: String,
    pub path: String,
    pub mime: String,
    pub size: i64,
    pub content_hash: String,
    pub source_item_id: Option<String>,
    pub web_url: Option<String>,
}

/// How many strikes against the same content quarantine a document
/// ([`DocumentStore::strike_document`]).
pub const QUARANTINE_STRIKES: u64 = 2;

/// A quarantined document and the content its strikes were against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantinedDocument {
    pub document: Document,
    /// The source's hash of the item (a synced document) or the content hash (an upload) at which
    /// it is quarantined: other content is tried again.
    pub content: String,
}

/// Where a document is, as a rename or move changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentLocation {
    pub name: String,
    pub path: String,
    pub web_url: Option<String>,
}

/// Documents, uploaded or mirrored from a source's items, with their chunks: a document is
/// `pending` until its chunks are written (`processed`) or it fails.
#[async_trait]
pub trait DocumentStore: Send + Sync {
    /// Creates a document in status `pending`. Its content hash stops being an orphan candidate
    /// in the same transaction (see [`OrphanBlobStore`](crate::OrphanBlobStore)): the caller then
    /// makes sure the blob file exists ([`HeldBlob::settle`](crate::HeldBlob::settle)).
    async fn create_document(&self, id: DocumentId, new: NewDocument, now: DateTime<Utc>)
    -> Result<Document>;
    async fn get_document(&self, kb_id: KbId, id: DocumentId) -> Result<Document>;
    /// A knowledge base's documents ordered by path, with the total count.
    async fn list_documents(&self, kb_id: KbId, page: Page) -> Result<PageOf<Document>>;
    /// Atomically replaces the document's chunks and marks it `processed` (clearing any error).
    async fn complete_document(&self, id: DocumentId, chunks: &[Chunk], now: DateTime<Utc>) -> Result<()>;
    /// Marks the document `failed` with a readable reason and removes any chunks it had.
    async fn fail_document(&self, id: DocumentId, error: &str, now: DateTime<Utc>) -> Result<()>;
    /// Records a strike against the document: extracting its content, identified by `content` (a
    /// synced document: the source's hash of the item; an upload: its content hash), killed or
    /// timed out the text extractor, as `reason` says. Like [`fail_document`](Self::fail_document)
    /// the document becomes `failed` with `reason` and loses its chunks; at the
    /// [`QUARANTINE_STRIKES`]th strike against the same `content` it is quarantined instead: status
    /// `quarantined`, error [`quarantine_reason`](kbsync_core::quarantine_reason). A strike against
    /// other content counts as the first. Returns the document's status afterwards.
    async fn strike_document(
        &self,
        id: DocumentId,
        content: &str,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<DocumentStatus>;
    /// The quarantined documents of a knowledge base, ordered by path. A document stays
    /// quarantined until it is brought in again ([`complete_document`](Self::complete_document),
    /// [`upsert_source_document`](Self::upsert_source_document), a failure other than a strike,
    /// or an upload of other content at its path).
    async fn quarantined_documents(&self, kb_id: KbId) -> Result<Vec<QuarantinedDocument>>;
    /// Replaces the content of the document at `new.path` of a knowledge base that did not come
    /// from a source (a same-name upload): it keeps its id, gets the new name, type, size and
    /// content hash, loses its chunks and goes back to `pending` (unless it is quarantined and the
    /// content is the same: it stays so), and its old content hash becomes
    /// an orphan candidate when it changed. Without such a document, creates one with `id` like
    /// [`create_document`](Self::create_document). Returns the document and whether it replaced
    /// one. Two uploads of one path at once leave one document.
    async fn put_uploaded_document(
        &self,
        id: DocumentId,
        new: NewDocument,
        now: DateTime<Utc>,
    ) -> Result<(Document, bool)>;
    /// Deletes the document and its chunks, and records its content hash as an orphan candidate
    /// at `now` in the same transaction; its blob is removed later, by
    /// [`collect_blobs`](crate::collect_blobs), and only if no document references it then.
    /// Returns the hash when no other document references it now (for the caller's records: no
    /// caller deletes a blob).
    async fn delete_document(
        &self,
        kb_id: KbId,
        id: DocumentId,
        now: DateTime<Utc>,
    ) -> Result<Option<String>>;
    /// Documents still `pending`, oldest first: work an earlier process did not finish.
    async fn pending_documents(&self, limit: u32) -> Result<Vec<Document>>;

    // --- documents mirrored from a source --------------------------------------------------

    /// The documents that came from a source (hidden ones included), ordered by path.
    async fn source_documents(&self, source_id: uuid::Uuid) -> Result<Vec<Document>>;
    /// The documents that came from any of `source_ids` (hidden ones included) and mirror one
    /// of `item_ids`, in no particular order.
    async fn source_documents_of_items(
        &self,
        source_ids: &[uuid::Uuid],
        item_ids: &[String],
    ) -> Result<Vec<Document>>;
    /// The document of a knowledge base that mirrors a remote item, if any.
    async fn document_by_source_item(&self, kb_id: KbId, source_item_id: &str) -> Result<Option<Document>>;
    /// Creates or replaces the document of a knowledge base that mirrors `new.source_item_id`
    /// (required: `InvalidReference` without it): an existing document keeps its id, gets the new
    /// metadata and content hash, loses its chunks and goes back to `pending`; otherwise a
    /// `pending` document with `id` is created. The new hash stops being an orphan candidate and
    /// a replaced hash becomes one, in the same transaction. Returns the document and the content
    /// hash it replaced when no document references that hash any more (for the caller's
    /// records: the blob is collected later).
    async fn upsert_source_document(
        &self,
        id: DocumentId,
        source_id: uuid::Uuid,
        new: NewDocument,
        now: DateTime<Utc>,
    ) -> Result<(Document, Option<String>)>;
    /// A rename or move: changes name, path and web URL only (content, chunks and status stay).
    async fn update_document_location(
        &self,
        kb_id: KbId,
        id: DocumentId,
        location: DocumentLocation,
        now: DateTime<Utc>,
    ) -> Result<()>;
}
