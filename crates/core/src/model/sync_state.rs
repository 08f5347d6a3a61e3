//! A knowledge base's sync state: status, progress of the current run and its schedule, as every
//! instance reads it from the database.

use chrono::{DateTime, Utc};

use super::{KbId, SyncStatus};

/// Progress of the current run, persisted so every instance can report it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncProgress {
    pub run_id: Option<uuid::Uuid>,
    pub current: u64,
    pub total: u64,
    /// The file being worked on (or the last one finished).
    pub file: Option<String>,
}

/// A knowledge base's sync state as the store keeps it (ARCHITECTURE §1 "sync state", minus
/// what the connection holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    pub kb_id: KbId,
    pub status: SyncStatus,
    pub progress: SyncProgress,
    pub last_error: Option<String>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub next_sync_at: Option<DateTime<Utc>>,
    /// The knowledge base's own interval; `None` means the server-wide default.
    pub interval_minutes: Option<u32>,
    pub consecutive_failures: u32,
    /// Whether some instance holds a live lease (a run is going) at the time asked.
    pub running: bool,
    /// A cancel was requested of the run going now (always false when none is running: a flag
    /// left by a run that died means nothing).
    pub cancel_requested: bool,
}
