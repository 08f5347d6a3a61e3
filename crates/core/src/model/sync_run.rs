//! Sync runs: one execution of a knowledge base's sync, kept as history with its failed files and
//! where its time went.

use std::time::Duration;

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
    /// Files not brought in because they are quarantined (each also listed in `failures`, with
    /// the reason); not counted in `failed`.
    pub quarantined: u64,
    pub total_found: u64,
    pub failures: Vec<SyncFailure>,
    /// Where the run's time went; `None` while it runs, and for a run that never finished (an
    /// instance died) or finished before kbsync measured it.
    pub phases: Option<SyncPhaseTimes>,
}

/// A part of a sync run whose time is measured (docs/sync.md, "Where a run's time goes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncPhase {
    /// Asking every source what changed (change-feed pages, a file source's metadata) and applying
    /// each round to the source's saved state. A step of the run: its wall time.
    Enumerate,
    /// Comparing the gathered states with the documents: the file limit, renames and moves,
    /// removals, skips, and the work list. A step of the run: its wall time.
    Plan,
    /// Bringing files' bytes into the blob store, summed over the files brought in.
    Download,
    /// Turning stored files into chunks, summed over the files.
    Extract,
    /// Writing documents and their chunks to the store, summed over the files.
    Index,
    /// Reading permissions, writing documents' access lists and expanding groups. A step of the
    /// run: its wall time.
    Permissions,
}

impl SyncPhase {
    pub const ALL: [SyncPhase; 6] = [
        SyncPhase::Enumerate,
        SyncPhase::Plan,
        SyncPhase::Download,
        SyncPhase::Extract,
        SyncPhase::Index,
        SyncPhase::Permissions,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SyncPhase::Enumerate => "enumerate",
            SyncPhase::Plan => "plan",
            SyncPhase::Download => "download",
            SyncPhase::Extract => "extract",
            SyncPhase::Index => "index",
            SyncPhase::Permissions => "permissions",
        }
    }
}

/// Where a run's time went, in real elapsed time. The steps of a run (enumerate, plan,
/// permissions) follow one another and are timed as wall time; the files of the work list run
/// concurrently, so download, extract and index are each the *sum* over files of the time a file
/// spent in that phase: with several files in flight their sum may exceed `wall`. The work list's
/// own wall time is about `wall - enumerate - plan - permissions`; its bookkeeping between files
/// (progress, failed files, cursors) is in no phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SyncPhaseTimes {
    pub enumerate: Duration,
    pub plan: Duration,
    pub download: Duration,
    pub extract: Duration,
    pub index: Duration,
    pub permissions: Duration,
    /// The run from its start until its end is recorded.
    pub wall: Duration,
}

impl SyncPhaseTimes {
    /// The time of one phase.
    pub fn get(&self, phase: SyncPhase) -> Duration {
        match phase {
            SyncPhase::Enumerate => self.enumerate,
            SyncPhase::Plan => self.plan,
            SyncPhase::Download => self.download,
            SyncPhase::Extract => self.extract,
            SyncPhase::Index => self.index,
            SyncPhase::Permissions => self.permissions,
        }
    }

    /// The time of one phase, to be changed.
    pub fn get_mut(&mut self, phase: SyncPhase) -> &mut Duration {
        match phase {
            SyncPhase::Enumerate => &mut self.enumerate,
            SyncPhase::Plan => &mut self.plan,
            SyncPhase::Download => &mut self.download,
            SyncPhase::Extract => &mut self.extract,
            SyncPhase::Index => &mut self.index,
            SyncPhase::Permissions => &mut self.permissions,
        }
    }
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
