//! Sync runs: one execution of a knowledge base's sync, kept as history with its failed files.

use chrono::{DateTime, Utc};

use super::{KbId, SyncStatus};

/// What started a sync run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncTrigger {
    Manual,
    Scheduled,
    Webhook,
}

impl SyncTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncTrigger::Manual => "manual",
            SyncTrigger::Scheduled => "scheduled",
            SyncTrigger::Webhook => "webhook",
        }
    }
}

/// A file a sync run could not bring in, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFailure {
    pub item_id: String,
    pub name: String,
    pub reason: String,
}

/// How a sync run ended, as the store records it when the run finishes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRunOutcome {
    pub status: SyncStatus,
    pub processed: u64,
    pub failed: u64,
    pub deleted: u64,
    pub skipped: u64,
    pub total_found: u64,
    pub failures: Vec<SyncFailure>,
}

/// One recorded sync run; while it runs, its status is `syncing` and its counts are zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRun {
    pub id: uuid::Uuid,
    pub kb_id: KbId,
    pub trigger: SyncTrigger,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: SyncRunOutcome,
}
