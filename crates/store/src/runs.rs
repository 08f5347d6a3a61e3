//! Sync runs kept as history, with the files each could not bring in.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbsync_core::{KbId, SyncFailure, SyncRun, SyncRunOutcome, SyncTrigger};

use crate::Result;

/// Sync runs and their failed files.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Records the start of a sync run (status `syncing`, counts zero) at `now`. `due_at` is when
    /// the scheduler found the knowledge base due ([`ClaimedSync::due_at`](crate::ClaimedSync)),
    /// for the queue lag `now - due_at`; `None` for a manual run or one due at once.
    async fn create_sync_run(
        &self,
        id: uuid::Uuid,
        kb_id: KbId,
        trigger: SyncTrigger,
        due_at: Option<DateTime<Utc>>,
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
    /// The runs of every knowledge base that started in `[since, until)`, grouped into periods of
    /// `period` from `since` (the first period starts at `since`), oldest first. Only periods in
    /// which a run started are returned. A run counts in the period it started in, with the counts
    /// it has so far (zero while it runs). An empty window or a period that is not positive finds
    /// nothing.
    async fn sync_activity(
        &self,
        since: DateTime<Utc>,
        until: DateTime<Utc>,
        period: chrono::TimeDelta,
    ) -> Result<Vec<RunActivity>>;
}

/// The sync runs that started in one period, across all knowledge bases (see
/// [`RunStore::sync_activity`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunActivity {
    pub period_start: DateTime<Utc>,
    /// Runs that started in the period, finished or not.
    pub runs: u64,
    /// Of those, runs that ended in a failure ([`SyncStatus::is_failure`](kbsync_core::SyncStatus)).
    pub failed_runs: u64,
    /// Files the runs brought in (downloaded, extracted and indexed).
    pub processed: u64,
    /// Files the runs could not bring in.
    pub failed_files: u64,
    /// Documents the runs removed.
    pub deleted: u64,
    /// Runs with a due time (scheduled or notified, see [`RunStore::create_sync_run`]): the queue
    /// lag below is over these.
    pub lagged_runs: u64,
    /// The sum of their lags (`started_at - due_at`, never negative), for the mean.
    pub lag_total: chrono::TimeDelta,
    /// The longest of their lags (zero when there were none).
    pub lag_max: chrono::TimeDelta,
}

impl RunActivity {
    /// The mean queue lag of the period's scheduled runs (`None` when it had none).
    pub fn lag_mean(&self) -> Option<chrono::TimeDelta> {
        let n = i32::try_from(self.lagged_runs).ok().filter(|n| *n > 0)?;
        Some(self.lag_total / n)
    }
}
