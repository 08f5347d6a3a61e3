//! Sync runs kept as history, with the files each could not bring in.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbsync_core::{KbId, SyncFailure, SyncRun, SyncRunOutcome, SyncTrigger};

use crate::Result;

/// Sync runs and their failed files.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Records the start of a sync run (status `syncing`, counts zero).
    async fn create_sync_run(
        &self,
        id: uuid::Uuid,
        kb_id: KbId,
        trigger: SyncTrigger,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Records how a run ended. `outcome.failures` are appended after the failures already
    /// recorded with [`record_sync_failures`](RunStore::record_sync_failures) (pass only those not
    /// recorded yet); the counts are taken as given. `NotFound` when the run is unknown.
    async fn finish_sync_run(
        &self,
        id: uuid::Uuid,
        outcome: &SyncRunOutcome,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// A knowledge base's most recent runs, newest first, with their failed files.
    async fn list_sync_runs(&self, kb_id: KbId, limit: u32) -> Result<Vec<SyncRun>>;
    /// Marks every run of the knowledge base still recorded as `syncing` as `failed` with
    /// `finished_at = now` (a process died mid-run); returns how many there were. Call it only
    /// while holding the knowledge base's lease, before creating the new run.
    async fn close_interrupted_runs(&self, kb_id: KbId, now: DateTime<Utc>) -> Result<u64>;
    /// Appends failed files to a run as they happen (so they survive a crash and every instance
    /// can report them), after those already recorded; `finish_sync_run` appends its own after
    /// these. Concurrent appends to one run are safe. `NotFound` when the run is unknown.
    async fn record_sync_failures(&self, run_id: uuid::Uuid, failures: &[SyncFailure]) -> Result<()>;
    /// A run's failed files after the first `skip`, in the order they were recorded (empty for
    /// an unknown run).
    async fn list_sync_failures(&self, run_id: uuid::Uuid, skip: u64) -> Result<Vec<SyncFailure>>;
    /// Deletes finished sync runs (with their failed files) that ended before `finished_before`,
    /// except each knowledge base's `keep_per_kb` most recent runs; running runs are never
    /// deleted. Returns how many runs. Safe to run on every instance at once.
    async fn purge_sync_runs(&self, finished_before: DateTime<Utc>, keep_per_kb: u32) -> Result<u64>;
}
