//! Scheduling: which knowledge base syncs when, the lease that lets one instance run it, and the
//! sync state every instance reports (status, progress, schedule).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbsync_core::{KbId, KbType, SyncProgress, SyncState, SyncStatus};

use crate::Result;

/// A knowledge base the scheduler claimed, with when it was due (`None`: never synced, due at
/// once), so the caller can measure how late it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedSync {
    pub kb_id: KbId,
    /// The knowledge base's type (never `local`): which datasource runs it.
    pub kb_type: KbType,
    pub due_at: Option<DateTime<Utc>>,
    /// When the latest change notification not yet answered by a run came (`None`: none is
    /// pending, the run is a scheduled one).
    pub requested_at: Option<DateTime<Utc>>,
}

/// What a lease holder learns when it renews its sync lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseRenewal {
    /// Still ours; carry on.
    Held,
    /// Still ours, and someone asked (possibly through another instance) to cancel the run.
    CancelRequested,
    /// Another instance took the lease over (ours had expired) or the knowledge base is gone.
    Lost,
}

/// How a finished (or abandoned) run leaves a knowledge base's schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRelease {
    /// When the scheduler should next consider the knowledge base.
    pub next_sync_at: DateTime<Utc>,
    /// Consecutive failed runs (0 after a run that did not fail), for the backoff.
    pub consecutive_failures: u32,
    /// Set when a run actually ran (a released-without-running lease leaves it unchanged).
    pub last_sync_at: Option<DateTime<Utc>>,
    /// The run's error for the KB view; `None` clears it.
    pub last_error: Option<String>,
    /// When the run that ends began reading the source (`None`: nothing ran). A change
    /// notification that came after it is still pending: unless the knowledge base is backing off
    /// after failures, it is due again at `next_sync_at`'s release time rather than after its
    /// interval. Notifications that came before it are answered and forgotten.
    pub run_started_at: Option<DateTime<Utc>>,
    /// The release's own time, when a pending notification makes the knowledge base due again.
    pub released_at: DateTime<Utc>,
}

/// Sync leases, schedule and state of knowledge bases.
///
/// A sync lease (owner, expiry) marks the one instance running a knowledge base's sync. A lease
/// is live while `now < expiry`; an expired lease is stale and may be taken over, but until
/// someone takes it its owner still holds it (it can renew or release it).
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Claims up to `limit` due knowledge bases for `owner` until `lease_until`, in one atomic
    /// step (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: one UPDATE), so no two callers ever
    /// claim the same one. Due: its type is a datasource (not `local`), it has a source and a
    /// connection that is not `needs_reauth`, no live lease at `now` (an expired one is stale and
    /// taken over), and `next_sync_at` is unset or not after `now`. Taken in claim order: never
    /// scheduled (`next_sync_at` unset) first, then oldest `next_sync_at`, then by id; the result
    /// is in that order, each with its type (no further read is needed to start its run).
    /// Claiming clears a pending cancel request. A PostgreSQL claimer may come back with fewer
    /// than `limit` while due rows remain, when it skipped rows another claimer was taking:
    /// callers claim again on their next tick.
    async fn claim_due_syncs(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ClaimedSync>>;
    /// Takes the lease of one knowledge base whatever its schedule, type or connection (a manual
    /// run), when it is free or expired at `now`, and clears a pending cancel request. `false`
    /// when a live lease holds it (`owner`'s own included: not re-entrant). `NotFound` when the
    /// knowledge base does not exist.
    async fn try_claim_sync(
        &self,
        kb_id: KbId,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool>;
    /// Extends `owner`'s lease to `lease_until` (also one that expired but was not taken over)
    /// and reports whether a cancel was requested. `Lost` when another owner holds the lease,
    /// none does, or the knowledge base is gone.
    async fn renew_sync_lease(
        &self,
        kb_id: KbId,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<LeaseRenewal>;
    /// Ends `owner`'s lease and records the schedule that follows: clears the lease and any
    /// cancel request, sets `next_sync_at`, the consecutive failures and the last error (`None`
    /// clears it), and `last_sync_at` only when given. A lease `owner` no longer holds is left
    /// alone and nothing changes (returns `false`; also for an unknown knowledge base).
    async fn release_sync(&self, kb_id: KbId, owner: &str, release: &SyncRelease) -> Result<bool>;
    /// Asks whoever runs the knowledge base's sync to stop (the holder sees it on its next
    /// renew); `false`, changing nothing, when no run holds a live lease at `now`. `NotFound`
    /// when the knowledge base does not exist.
    async fn request_sync_cancel(&self, kb_id: KbId, now: DateTime<Utc>) -> Result<bool>;
    /// A change notification for the knowledge bases that sync `drive_id` of `datasource`, received
    /// at `now`: each is due no later than `run_at` (unless it is backing off after failures: the
    /// backoff holds), and the notification stays pending until a run that started after `now`
    /// ends (see [`SyncRelease::run_started_at`]), so one that comes during a run is not lost. A
    /// knowledge base due earlier keeps its time, so a burst makes one run. Returns the knowledge
    /// bases concerned.
    async fn request_drive_syncs(
        &self,
        datasource: &str,
        drive_id: &str,
        now: DateTime<Utc>,
        run_at: DateTime<Utc>,
    ) -> Result<Vec<KbId>>;
    /// Sets when the scheduler next considers the knowledge base (e.g. now, after sources were
    /// added or a connection restored). `NotFound` when it does not exist.
    async fn schedule_sync(&self, kb_id: KbId, next_sync_at: DateTime<Utc>) -> Result<()>;
    /// Sets (or with `None` clears) a knowledge base's own sync interval; `next_sync_at` is left
    /// as it is. `NotFound` when it does not exist.
    async fn set_sync_interval(&self, kb_id: KbId, minutes: Option<u32>) -> Result<()>;

    // --- sync state ------------------------------------------------------------------------

    /// Sets a knowledge base's sync status. `NotFound` when it does not exist.
    async fn set_sync_status(&self, kb_id: KbId, status: SyncStatus) -> Result<()>;
    /// Persists the current run's progress (it stays after the run, as the last run's). `NotFound`
    /// when the knowledge base is gone.
    async fn set_sync_progress(&self, kb_id: KbId, progress: &SyncProgress) -> Result<()>;
    /// A knowledge base's sync state; `running` is judged against `now`. `NotFound` when it does
    /// not exist.
    async fn get_sync_state(&self, kb_id: KbId, now: DateTime<Utc>) -> Result<SyncState>;
}
