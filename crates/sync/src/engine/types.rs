//! The engine's types: the public settings and results of a run ([`SyncLimits`], [`SyncContext`],
//! [`RunSummary`], [`SyncError`]) and the bookkeeping a run carries between its steps (the run's
//! counts, each source's gathered round and plan, the work list).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kbsync_core::SyncTrigger;
use kbsync_core::datasource::DatasourceError;
use kbsync_core::{Clock, KbId, Random, SyncStatus};
use kbsync_core::{Source, SyncFailure, SyncPhaseTimes, SyncRunOutcome};
use kbsync_ingest::Extractor;
use kbsync_store::{BlobStore, Store, StoreError};
use uuid::Uuid;

use super::phases::PhaseMeter;
use crate::events::SyncEvents;
use crate::permissions::PermissionPolicy;
use crate::state::{KnownItem, SourceState};

/// Why a run starts: what triggered it and, for a run the scheduler claimed, when the knowledge
/// base was due (recorded with the run for its queue lag). A bare [`SyncTrigger`] is a start that
/// was not due at a known time (a manual run, or a first run due at once).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunStart {
    pub trigger: SyncTrigger,
    pub due_at: Option<DateTime<Utc>>,
}

impl From<SyncTrigger> for RunStart {
    fn from(trigger: SyncTrigger) -> Self {
        Self {
            trigger,
            due_at: None,
        }
    }
}

/// Limits of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLimits {
    /// Files larger than this (bytes) are skipped (counted, not failed).
    pub max_file_size: u64,
    /// Downloads and extractions running at once.
    pub concurrency: usize,
    /// Most files a knowledge base may hold, counted over all its sources after gathering their
    /// changes (every file, whether its type can be indexed or not). A run that finds more stops
    /// with `file_limit_exceeded` before it downloads anything.
    pub max_files: u64,
    /// Longest time one file may take to download and extract; beyond it the file fails with a
    /// timeout (and is retried by the next run).
    pub file_timeout: Duration,
}

impl Default for SyncLimits {
    fn default() -> Self {
        Self {
            max_file_size: 100 * 1024 * 1024,
            concurrency: 8,
            max_files: 10_000,
            file_timeout: Duration::from_secs(10 * 60),
        }
    }
}

/// Everything a run needs besides the datasource and its tokens.
#[derive(Clone)]
pub struct SyncContext {
    pub store: Arc<dyn Store>,
    pub blobs: BlobStore,
    pub extractor: Extractor,
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
    pub limits: SyncLimits,
    /// Where progress is published for listeners on this instance (the SSE handler).
    pub events: SyncEvents,
    /// What permission sync may turn into access, and how often it reads it.
    pub permissions: PermissionPolicy,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub run_id: Uuid,
    pub status: SyncStatus,
    pub processed: u64,
    /// Files that could not be brought in (retried by the next run, unless quarantined).
    pub failed: u64,
    pub deleted: u64,
    /// Files skipped for their type or size (not failures).
    pub skipped: u64,
    /// Files not brought in because they are quarantined (each listed in `failures` with the
    /// reason; not counted in `failed`).
    pub quarantined: u64,
    /// Files the sources hold (distinct items), as far as the run got to know them.
    pub total_found: u64,
    /// Failed files, then failures of whole sources (a source that could not be read).
    pub failures: Vec<SyncFailure>,
    /// Where the run's time went (as recorded with the run).
    pub phases: SyncPhaseTimes,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The database failed; the run is recorded as `failed` when that is still possible.
    #[error("storage failed during the sync run: {0}")]
    Store(#[from] StoreError),
    #[error("the source state could not be saved: {0}")]
    State(#[from] serde_json::Error),
}

/// Why a run stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stop {
    Cancelled,
    /// The datasource refused the credentials even after a refresh.
    NeedsReauth(String),
}

/// One run's bookkeeping.
pub(super) struct Run {
    pub(super) id: Uuid,
    pub(super) kb_id: KbId,
    pub(super) processed: u64,
    pub(super) failed: u64,
    pub(super) deleted: u64,
    pub(super) skipped: u64,
    /// Files found quarantined, or quarantined by this run (listed in `failures` too).
    pub(super) quarantined: u64,
    pub(super) total_found: u64,
    /// Failed files, in the order they happened.
    pub(super) failures: Vec<SyncFailure>,
    /// How many of `failures` (from the start) are already recorded in the store.
    pub(super) recorded: usize,
    /// Sources that could not be read; recorded when the run ends, after the files.
    pub(super) source_failures: Vec<SyncFailure>,
    pub(super) revoked: bool,
    pub(super) source_failed: bool,
    /// Files of the work list finished, and their number.
    pub(super) current: u64,
    pub(super) total: u64,
    /// Bytes of the finished files of the work list, and of the whole list, as the source
    /// announced their sizes (a file without an announced size counts 0).
    pub(super) bytes: u64,
    pub(super) total_bytes: u64,
    /// Where the run's time goes; its wall time started with the run.
    pub(super) phases: Arc<PhaseMeter>,
}

impl Run {
    pub(super) fn new(id: Uuid, kb_id: KbId) -> Self {
        Self {
            id,
            kb_id,
            processed: 0,
            failed: 0,
            deleted: 0,
            skipped: 0,
            quarantined: 0,
            total_found: 0,
            failures: Vec::new(),
            recorded: 0,
            source_failures: Vec::new(),
            revoked: false,
            source_failed: false,
            current: 0,
            total: 0,
            bytes: 0,
            total_bytes: 0,
            phases: PhaseMeter::start(),
        }
    }

    /// How the run ended, for the store; `phases` are its times at the end (see
    /// [`PhaseMeter::times`]), given by the caller so that the record and the summary agree.
    pub(super) fn outcome(&self, status: SyncStatus, phases: SyncPhaseTimes) -> SyncRunOutcome {
        SyncRunOutcome {
            status,
            processed: self.processed,
            failed: self.failed,
            deleted: self.deleted,
            skipped: self.skipped,
            quarantined: self.quarantined,
            total_found: self.total_found,
            // Recorded ones are in the store already; `finish_sync_run` appends the rest.
            failures: self.failures[self.recorded..]
                .iter()
                .chain(&self.source_failures)
                .cloned()
                .collect(),
            phases: Some(phases),
        }
    }

    pub(super) fn summary(&self, status: SyncStatus, phases: SyncPhaseTimes) -> RunSummary {
        RunSummary {
            run_id: self.id,
            status,
            processed: self.processed,
            failed: self.failed,
            deleted: self.deleted,
            skipped: self.skipped,
            quarantined: self.quarantined,
            total_found: self.total_found,
            failures: self
                .failures
                .iter()
                .chain(&self.source_failures)
                .cloned()
                .collect(),
            phases,
        }
    }

    /// The final status when the run went through (see the crate docs for the precedence).
    pub(super) fn end_status(&self) -> SyncStatus {
        if self.revoked {
            SyncStatus::AccessRevoked
        } else if self.source_failed {
            SyncStatus::Failed
        } else if self.failed > 0 || self.quarantined > 0 {
            // A quarantined file is not in the knowledge base either.
            SyncStatus::CompletedWithErrors
        } else {
            SyncStatus::Completed
        }
    }
}

/// One source after gathering.
pub(super) enum Gathered {
    /// Its changes are known: `state` is the state at `cursor`, to be applied.
    Ready(Box<Plan>),
    /// A folder whose round brought no change and whose saved state has nothing left to retry:
    /// only its cursor moves. Its state is not read unless another source needs the run to plan.
    Quiet(Box<Quiet>),
    /// It answered 404/403: its documents were hidden (the first time) or removed (confirmed).
    Revoked,
    /// The datasource failed in a way that retrying later may fix; nothing was advanced. The
    /// files it held at its saved state still count towards the limit and are kept.
    Failed(DatasourceError),
}

/// A folder round that changed nothing.
pub(super) struct Quiet {
    pub(super) cursor: String,
}

/// A source whose round is gathered and is being applied.
pub(super) struct Plan {
    pub(super) source: Source,
    pub(super) state: SourceState,
    pub(super) cursor: String,
    /// The round differs from the saved state (a folder's round brought items, or a file source's
    /// metadata changed); a file source that did not change and has nothing to retry is quiet.
    pub(super) changed: bool,
    /// The round was a full enumeration (first sync, or the cursor expired).
    pub(super) full: bool,
    /// The files of the state this source looks after (an item in several sources is one
    /// document, looked after by one of them); set by planning.
    pub(super) owned: HashSet<String>,
    /// Files of the work list not finished yet.
    pub(super) remaining: usize,
    /// A file of the round was cancelled or stopped: the round is not applied completely.
    pub(super) incomplete: bool,
    /// The cursor and state are saved.
    pub(super) saved: bool,
}

impl Plan {
    pub(super) fn new(source: Source, state: SourceState, cursor: String) -> Self {
        Self {
            source,
            state,
            cursor,
            changed: false,
            full: false,
            owned: HashSet::new(),
            remaining: 0,
            incomplete: false,
            saved: false,
        }
    }
}

/// One file to download, extract and index.
pub(super) struct Work {
    pub(super) plan: usize,
    pub(super) source_id: Uuid,
    pub(super) kb_id: KbId,
    pub(super) drive_id: String,
    pub(super) id: String,
    pub(super) item: KnownItem,
    pub(super) path: String,
}

impl Work {
    /// The file's size as the source announced it; 0 when it announced none.
    pub(super) fn announced_size(&self) -> u64 {
        self.item.size.map_or(0, |s| u64::try_from(s).unwrap_or(0))
    }
}
