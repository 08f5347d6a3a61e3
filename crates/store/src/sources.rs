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

/// One item of a source's saved state, as the store keeps it: the engine's serialization of the
/// item (`data`) with what the store looks items up by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceItem {
    pub item_id: String,
    /// Paths and inherited access follow parents; `None` for the source's root.
    pub parent_id: Option<String>,
    /// The source looks after the item's document (an item in several sources is one document).
    pub owned: bool,
    /// An owned file not yet brought in at its current content (to be retried by the next run).
    pub pending: bool,
    pub data: String,
}

/// Which of a source's saved items to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemSelection<'a> {
    /// Every item.
    All,
    /// These items (those the source holds), with every folder above each of them.
    WithAncestors(&'a [String]),
    /// Everything below these items (not the items themselves), at any depth.
    Descendants(&'a [String]),
    /// The pending items.
    Pending,
}

/// What the sync engine saves with a source's cursor, in one transaction: the items that changed
/// since they were read, the ones that left the source, and the counts a later run reads without
/// reading any item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedItems<'a> {
    /// Items to write (inserted or replaced).
    pub upsert: &'a [SourceItem],
    /// Items to forget.
    pub remove: &'a [String],
    /// Files the source looks after (`owned` items).
    pub files: u64,
    /// Of those, files not brought in at their current content (`pending` items).
    pub pending: u64,
    /// The engine settings the state was decided under (size limit, supported types).
    pub settings: &'a str,
}

/// One page of a folder's round of changes, saved before the round is complete (see
/// [`kbsync_core::SavedRound`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoundPage<'a> {
    /// The cursor the round started from; `None` for the start of the feed.
    pub from: Option<&'a str>,
    /// The round enumerates everything.
    pub full: bool,
    /// The page's number in the round, from 0. Page 0 replaces any round saved before.
    pub page: u64,
    /// The link to ask for after this page.
    pub next: &'a str,
    /// The page's items: `(item id, the engine's serialization of the item)`.
    pub items: &'a [(String, String)],
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

    /// Saves a source's cursor together with the changes to its saved items and their counts, in
    /// one transaction. A state saved as one document by an earlier version is removed with it,
    /// and so is a round saved page by page (the round this cursor ends).
    /// `NotFound` when the source is gone.
    async fn save_source_items(
        &self,
        source_id: uuid::Uuid,
        cursor: &str,
        saved: SavedItems<'_>,
    ) -> Result<()>;
    /// Forgets a source's cursor, its saved items and their counts, and a saved round (the next
    /// run enumerates the source from the start). `NotFound` when the source is gone.
    async fn forget_source_state(&self, source_id: uuid::Uuid) -> Result<()>;
    /// Moves a source's cursor on without touching its saved state (a round that changed
    /// nothing). `NotFound` when the source is gone or has no cursor yet.
    async fn advance_source_cursor(&self, source_id: uuid::Uuid, cursor: &str) -> Result<()>;
    /// Saves one page of a round of a folder's changes with the link to ask for next, in one
    /// transaction; the source's `round` then names it. `NotFound` when the source is gone.
    async fn save_round_page(&self, source_id: uuid::Uuid, page: RoundPage<'_>) -> Result<()>;
    /// The items of one saved page of a source's round (as saved, ordered by item id); empty when
    /// no such page is saved.
    async fn round_page(&self, source_id: uuid::Uuid, page: u64) -> Result<Vec<String>>;
    /// Forgets a source's saved round (its pages and link). `NotFound` when the source is gone.
    /// Saving the source's items at the end of a round ([`SourceStore::save_source_items`]) and
    /// forgetting its state forget the round too.
    async fn forget_round(&self, source_id: uuid::Uuid) -> Result<()>;
    /// A source's saved items, as `which` selects them, in no particular order. `NotFound` when
    /// the source is gone (asked only when nothing was found).
    async fn source_items(&self, source_id: uuid::Uuid, which: ItemSelection<'_>) -> Result<Vec<SourceItem>>;
    /// The state an earlier version saved as one document (`None` when there is none: the
    /// source has none, or its items are saved as rows). `NotFound` when the source is gone.
    async fn legacy_source_state(&self, source_id: uuid::Uuid) -> Result<Option<String>>;

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
