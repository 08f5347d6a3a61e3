//! A source: one picked item (folder or file) a knowledge base syncs from.

use chrono::{DateTime, Utc};

use super::KbId;
use crate::datasource::DatasourceKind;

/// Whether a source is a folder (followed through its change feed) or a single file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Folder,
    File,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Folder => "folder",
            SourceKind::File => "file",
        }
    }
}

/// One picked item a knowledge base syncs from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub id: uuid::Uuid,
    pub kb_id: KbId,
    pub datasource: DatasourceKind,
    pub kind: SourceKind,
    pub drive_id: String,
    pub item_id: String,
    pub name: String,
    pub path: String,
    /// A folder's delta link or a file's last content hash; `None` until a round completed.
    pub cursor: Option<String>,
    /// How many files the engine's saved state at `cursor` holds, and how many of them are not
    /// brought in at their current content (to be retried); `None` when unknown. The state itself
    /// is read from the store (`source_state`) only when a run needs it.
    pub state_files: Option<u64>,
    pub state_pending: Option<u64>,
    /// The engine settings the saved state was decided under (the engine's own text).
    pub state_settings: Option<String>,
    /// When the source first answered 403/404 (the store's `mark_source_revoked`); `None` while
    /// it is readable. While set, its documents are left out of search and their access lists
    /// are cleared.
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// A round of the folder's change feed that a run saved page by page and did not finish;
    /// the next run resumes it. `None` for a file source and between rounds.
    pub round: Option<SavedRound>,
}

/// A round of a folder's change feed saved page by page (the store's `save_round_page`): the
/// pages' items wait in the store until the round is complete, so that a run stopped in the
/// middle of a long enumeration resumes from the last saved page instead of from the start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedRound {
    /// The cursor the round started from; `None` for the start of the feed. A round is resumed
    /// only by a run that would start from the same cursor.
    pub from: Option<String>,
    /// The link to ask for next.
    pub next: String,
    /// The round enumerates everything (a first round, or one after an expired cursor).
    pub full: bool,
    /// How many pages are saved (numbered from 0).
    pub pages: u64,
}
