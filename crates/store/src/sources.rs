//! Sources (the picked folders and files a knowledge base syncs from) and the engine's state at
//! each source's cursor.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbsync_core::datasource::DatasourceKind;
use kbsync_core::{KbId, Source, SourceKind};

use crate::Result;

#[derive(Debug, Clone)]
pub struct NewSource {
    pub kb_id: KbId,
    pub datasource: DatasourceKind,
    pub kind: SourceKind,
    pub drive_id: String,
    pub item_id: String,
    /// Display name and path, as the picker showed them.
    pub name: String,
    pub path: String,
}

/// What the sync engine saves with a source's cursor: its state (its own serialization) and the
/// two counts a later run reads without parsing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedState<'a> {
    pub json: &'a str,
    /// Files inside the source's subtree.
    pub files: u64,
    /// Files not brought in at their current content (failed, to be retried by the next run).
    pub pending: u64,
    /// The engine settings the state was decided under (size limit, supported types).
    pub settings: &'a str,
}

/// A knowledge base's sources, each with its cursor and the engine's saved state at it, and
/// whether it answered 403/404 (revoked).
#[async_trait]
pub trait SourceStore: Send + Sync {
    /// Adds a source to a knowledge base. Adding an item the knowledge base already syncs from
    /// (same drive and item) is harmless: the existing source is returned unchanged. An unknown
    /// knowledge base is `InvalidReference`.
    async fn add_source(&self, id: uuid::Uuid, new: NewSource, now: DateTime<Utc>) -> Result<Source>;
    /// A knowledge base's sources, oldest first.
    async fn list_sources(&self, kb_id: KbId) -> Result<Vec<Source>>;
    /// Removes a source of a knowledge base and the documents that came from it (with their
    /// chunks, so they leave search at once), in one transaction; returns the content hashes, sorted, that no remaining document
    /// (in any knowledge base) references (their blobs are collected later: the documents'
    /// hashes become orphan candidates at `now`, in the same transaction). `NotFound` when the
    /// source is not one of that knowledge base's.
    async fn delete_source(
        &self,
        kb_id: KbId,
        source_id: uuid::Uuid,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>>;

    // --- cursor and saved state ------------------------------------------------------------

    /// Saves a source's cursor together with the engine's state at that cursor, in one write
    /// (`None` forgets them). `NotFound` when the source is gone.
    async fn set_source_cursor(
        &self,
        source_id: uuid::Uuid,
        cursor: Option<&str>,
        state: Option<SavedState<'_>>,
    ) -> Result<()>;
    /// Moves a source's cursor on without touching its saved state (a round that changed
    /// nothing). `NotFound` when the source is gone or has no cursor yet.
    async fn advance_source_cursor(&self, source_id: uuid::Uuid, cursor: &str) -> Result<()>;
    /// The engine's saved state of a source (`None` when it has none). `NotFound` when the source
    /// is gone.
    async fn source_state(&self, source_id: uuid::Uuid) -> Result<Option<String>>;

    // --- revocation ------------------------------------------------------------------------

    /// Marks a source that answered 403/404: `revoked_at` is set (an earlier mark is kept), its
    /// documents leave search (they are kept until the loss is confirmed), and the read grants
    /// only its sharing gave are withdrawn, in one transaction. `NotFound` when the source is gone.
    async fn mark_source_revoked(&self, source_id: uuid::Uuid, now: DateTime<Utc>) -> Result<()>;
    /// The source answers again: clears `revoked_at` (its documents are searchable again) and
    /// makes the next permission sync read the knowledge base's sharing. `NotFound` when the
    /// source is gone.
    async fn clear_source_revoked(&self, source_id: uuid::Uuid) -> Result<()>;
}
