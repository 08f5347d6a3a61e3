//! Starting, watching and cancelling runs: leases, the datasource of a knowledge base, and what
//! a finished run means for its schedule.
//!
//! Every run, manual or scheduled, holds the knowledge base's lease in the database for as long
//! as it goes, so one knowledge base is never synced twice at once however many instances share
//! the database. The run renews the lease every [`RunnerSettings::renew_every`]; the renewal also
//! tells it when someone asked (through any instance) to cancel. When the run ends the lease is
//! released together with the schedule that follows: the next run after the knowledge base's
//! interval plus jitter, or after an exponential backoff when the run failed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbsync_core::datasource::{AccessToken, Datasource, DatasourceKind, StaticToken, TokenSource};
use kbsync_core::{KbId, Random, SyncStatus};
use kbsync_core::{SyncState, SyncTrigger};
use kbsync_store::{ClaimedSync, LeaseRenewal, StoreError, SyncRelease};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};
use uuid::Uuid;

use crate::{RunStart, RunSummary, SyncContext, SyncEngine, SyncError};

/// Where the runner finds the datasource and the credentials of a knowledge base. The server
/// implements it over the configured datasources and the OAuth connection manager, which owns
/// the stored connections: the runner reads and marks them only through this trait.
#[async_trait]
pub trait DatasourceResolver: Send + Sync + 'static {
    /// The datasource that serves knowledge bases of this kind; None when it is not configured.
    fn datasource(&self, kind: DatasourceKind) -> Option<Arc<dyn Datasource>>;
    /// The stored-token source of a knowledge base's connection, and which connection it is.
    async fn tokens(&self, kb_id: KbId) -> Result<StoredTokens, ResolveError>;
    /// The datasource refused the access token of the connection stored at `stored_at`: marks
    /// that connection as needing re-authorization, so the scheduler skips it until the user
    /// connects again. Marks nothing when the connection was renewed since (a different
    /// `stored_at`) or is being refreshed right now (what the refresh gets decides). Returns
    /// whether it marked it.
    async fn mark_needs_reauth(&self, kb_id: KbId, stored_at: DateTime<Utc>) -> Result<bool, ResolveError>;
}

/// The credentials of a knowledge base's stored connection, as a run uses them.
#[derive(Clone)]
pub struct StoredTokens {
    /// Hands out (and refreshes) the connection's access tokens.
    pub source: Arc<dyn TokenSource>,
    /// When the connection was stored: names this connection, so that a refusal never marks one
    /// the user renewed since.
    pub stored_at: DateTime<Utc>,
}

/// Why a knowledge base's credentials cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The knowledge base has no stored connection: the user must connect it.
    #[error("the knowledge base is not connected to its datasource")]
    NotConnected,
    /// The stored connection was refused (revoked or expired): the user must connect again.
    #[error("the connection must be renewed: sign in again")]
    NeedsReauth,
    /// The connection could not be read right now: retry later.
    #[error("the connection cannot be read right now: {0}")]
    Unavailable(String),
}

/// Why a manual run did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A run of this knowledge base is already going (on this or another instance).
    #[error("a sync of this knowledge base is already running")]
    AlreadyRunning,
    #[error("knowledge base not found")]
    NotFound,
    /// The user must connect the knowledge base first.
    #[error("the knowledge base is not connected to its datasource: connect it first")]
    NotConnected,
    /// The user must connect again.
    #[error("the connection must be renewed: sign in again")]
    NeedsReauth,
    /// A `local` knowledge base, or one whose datasource is not configured on this server.
    #[error(
        "this knowledge base cannot be synced: it has no datasource, or its datasource is not configured"
    )]
    Unsupported,
    /// The instance is stopping: try again in a moment (another instance may take it).
    #[error("the server is shutting down; try again in a moment")]
    ShuttingDown,
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for StartError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => StartError::NotFound,
            e => StartError::Store(e),
        }
    }
}

impl From<ResolveError> for StartError {
    fn from(e: ResolveError) -> Self {
        match e {
            ResolveError::NotConnected => StartError::NotConnected,
            ResolveError::NeedsReauth => StartError::NeedsReauth,
            ResolveError::Unavailable(why) => StartError::Store(StoreError::Unavailable(why)),
        }
    }
}

/// How runs are scheduled, leased and retried.
#[derive(Debug, Clone)]
pub struct RunnerSettings {
    /// Time from the end of a run to the next scheduled one, for knowledge bases without an
    /// interval of their own.
    pub default_interval: chrono::Duration,
    /// How long a lease lasts without renewal: an instance that dies mid-run holds its
    /// knowledge bases for at most this long before another instance takes them over.
    pub lease_ttl: chrono::Duration,
    /// How often a running sync renews its lease; also how fast a cancel requested through
    /// another instance is seen. Keep it well below `lease_ttl`.
    pub renew_every: std::time::Duration,
    /// Runs going at once on this instance. The scheduler claims no more than the free slots;
    /// a manual run starts even when all slots are taken (a user is waiting for it).
    pub max_runs: usize,
    /// Delay before retrying after a first failed run; doubled for every further failure.
    pub retry_base: chrono::Duration,
    /// The longest delay between retries of a failing knowledge base.
    pub retry_max: chrono::Duration,
    /// Random delay added to every next run, as a fraction of the delay (interval or backoff):
    /// 0.1 spreads runs over a tenth of it, so knowledge bases synced together drift apart.
    pub jitter: f64,
}

impl Default for RunnerSettings {
    fn default() -> Self {
        Self {
            default_interval: chrono::Duration::minutes(60),
            lease_ttl: chrono::Duration::minutes(2),
            renew_every: std::time::Duration::from_secs(1),
            max_runs: 4,
            retry_base: chrono::Duration::minutes(5),
            retry_max: chrono::Duration::hours(6),
            jitter: 0.1,
        }
    }
}

/// Starts, tracks and cancels the sync runs of this instance; cloning shares it.
#[derive(Clone)]
pub struct SyncRunner {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Arc<SyncEngine>,
    cx: SyncContext,
    resolver: Arc<dyn DatasourceResolver>,
    settings: RunnerSettings,
    instance_id: String,
    tracker: TaskTracker,
    /// The cancel token of each knowledge base this instance runs (or is starting).
    runs: Mutex<HashMap<KbId, CancellationToken>>,
    /// The parent of every run's token: cancelled once, by `shutdown`.
    shutdown: CancellationToken,
    /// How many entries `runs` has, for `wait_idle`.
    count: watch::Sender<usize>,
    /// Wakes this instance's scheduler loop before its next tick (a change notification made
    /// knowledge bases due, or a run ended and freed a slot).
    wake: tokio::sync::Notify,
}

/// What a spawned run needs.
struct Job {
    kb_id: KbId,
    run_id: Uuid,
    trigger: SyncTrigger,
    /// When the scheduler found the knowledge base due (`None`: a manual run, or due at once).
    due_at: Option<DateTime<Utc>>,
    datasource: Arc<dyn Datasource>,
    tokens: Arc<dyn TokenSource>,
    /// When the stored connection the tokens come from was stored; `None` for a
    /// browser-supplied token.
    connection_stored_at: Option<DateTime<Utc>>,
}

/// A knowledge base's place in `runs`; given back when dropped, however the run ends.
struct Reservation {
    inner: Arc<Inner>,
    kb_id: KbId,
    cancel: CancellationToken,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut runs = self.inner.runs.lock().unwrap_or_else(PoisonError::into_inner);
        runs.remove(&self.kb_id);
        self.inner.count.send_replace(runs.len());
        drop(runs);
        // A slot is free: the scheduler loop claims the next due knowledge base now rather than
        // at its next tick (with few slots and many due knowledge bases, waiting for the tick
        // would leave the slots idle most of the time).
        self.inner.wake.notify_one();
    }
}

enum Unreserved {
    AlreadyRunning,
    ShuttingDown,
}

impl From<Unreserved> for StartError {
    fn from(e: Unreserved) -> Self {
        match e {
            Unreserved::AlreadyRunning => StartError::AlreadyRunning,
            Unreserved::ShuttingDown => StartError::ShuttingDown,
        }
    }
}

/// When the next run of a knowledge base that did not run now is due.
#[derive(Debug, Clone, Copy)]
enum NotRun {
    /// Its normal interval from now (no credentials, no datasource).
    Interval,
    /// After `retry_base`, without counting a failure (a passing failure).
    RetrySoon,
    /// Now: another instance should take it.
    Now,
}

impl SyncRunner {
    pub fn new(
        engine: Arc<SyncEngine>,
        cx: SyncContext,
        resolver: Arc<dyn DatasourceResolver>,
        settings: RunnerSettings,
        instance_id: String,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                engine,
                cx,
                resolver,
                settings,
                instance_id,
                tracker: TaskTracker::new(),
                runs: Mutex::new(HashMap::new()),
                shutdown: CancellationToken::new(),
                count: watch::Sender::new(0),
                wake: tokio::sync::Notify::new(),
            }),
        }
    }

    /// A manual run: takes the lease (`StartError::AlreadyRunning` when a live lease exists),
    /// resolves the datasource and tokens (a browser-supplied access token, when given, is used
    /// for this run only through [`StaticToken`] and never stored), spawns the run and returns
    /// its id at once.
    pub async fn start_manual(
        &self,
        kb_id: KbId,
        browser_token: Option<AccessToken>,
    ) -> Result<Uuid, StartError> {
        let inner = &self.inner;
        let reservation = inner.reserve(kb_id)?;
        let kb = inner.cx.store.get_kb(kb_id).await?;
        let kind = DatasourceKind::of(kb.kb_type).ok_or(StartError::Unsupported)?;
        let datasource = inner.resolver.datasource(kind).ok_or(StartError::Unsupported)?;
        let (tokens, connection_stored_at): (Arc<dyn TokenSource>, _) = match browser_token {
            Some(token) => (Arc::new(StaticToken(token)), None),
            None => {
                let stored = inner.resolver.tokens(kb_id).await?;
                (stored.source, Some(stored.stored_at))
            }
        };
        let now = inner.cx.clock.now();
        if !inner
            .cx
            .store
            .try_claim_sync(kb_id, &inner.instance_id, now, now + inner.settings.lease_ttl)
            .await?
        {
            return Err(StartError::AlreadyRunning);
        }
        let run_id = inner.cx.random.uuid();
        inner.spawn(
            Job {
                kb_id,
                run_id,
                trigger: SyncTrigger::Manual,
                due_at: None,
                datasource,
                tokens,
                connection_stored_at,
            },
            reservation,
        );
        Ok(run_id)
    }

    /// Requests cancellation (through the store flag so it reaches whichever instance runs it,
    /// and directly when it runs here). false when nothing runs.
    pub async fn cancel(&self, kb_id: KbId) -> Result<bool, StoreError> {
        let inner = &self.inner;
        let local = inner
            .runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&kb_id)
            .cloned();
        if let Some(token) = &local {
            token.cancel();
        }
        match inner
            .cx
            .store
            .request_sync_cancel(kb_id, inner.cx.clock.now())
            .await
        {
            Ok(requested) => {
                if requested || local.is_some() {
                    info!(kb.id = %kb_id, here = local.is_some(), "sync run cancellation requested");
                }
                Ok(requested || local.is_some())
            }
            Err(e) if local.is_some() => {
                warn!(kb.id = %kb_id, error = %e, "could not record the cancel request; the local run was cancelled");
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// Runs going (or starting) on this instance.
    pub fn running(&self) -> usize {
        self.inner
            .runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// How many more runs the scheduler may start on this instance.
    pub fn free_slots(&self) -> usize {
        self.inner.settings.max_runs.saturating_sub(self.running())
    }

    /// Has this instance's scheduler claim due knowledge bases now rather than at its next tick.
    pub fn wake_scheduler(&self) {
        self.inner.wake.notify_one();
    }

    /// Resolves when [`SyncRunner::wake_scheduler`] was called (once per call, or once for
    /// several calls made while nobody waited).
    pub(crate) async fn woken(&self) {
        self.inner.wake.notified().await;
    }

    /// Waits until no run of this instance is going (tests).
    pub async fn wait_idle(&self) {
        let mut count = self.inner.count.subscribe();
        // The sender lives as long as `self`, so this only returns once the count is zero.
        let _ = count.wait_for(|n| *n == 0).await;
    }

    /// Graceful shutdown: stops accepting, cancels the runs of this instance (a cancelled run
    /// advances no cursor), waits for them and releases their leases with `next_sync_at = now`
    /// so another instance picks them up soon.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        let running = {
            let runs = inner.runs.lock().unwrap_or_else(PoisonError::into_inner);
            // Under the lock: a reservation either sees the shutdown or gets a cancelled token.
            inner.shutdown.cancel();
            runs.len()
        };
        info!(instance.id = %inner.instance_id, runs = running, "sync runner shutting down");
        inner.tracker.close();
        inner.tracker.wait().await;
        self.wait_idle().await;
        info!(instance.id = %inner.instance_id, "sync runner stopped");
    }

    pub(crate) fn is_shutting_down(&self) -> bool {
        self.inner.shutdown.is_cancelled()
    }

    pub(crate) fn context(&self) -> &SyncContext {
        &self.inner.cx
    }

    /// How this runner leases, schedules and retries runs.
    pub fn settings(&self) -> &RunnerSettings {
        &self.inner.settings
    }

    pub(crate) fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// Launches a run of a knowledge base the scheduler claimed for this instance. Returns
    /// whether it was launched; one that cannot run is released (or, when it already runs here,
    /// left to that run). Problems are logged here: one knowledge base must not stop the others.
    pub(crate) async fn start_scheduled(&self, claim: ClaimedSync) -> bool {
        let inner = &self.inner;
        let kb_id = claim.kb_id;
        let reservation = match inner.reserve(kb_id) {
            Ok(reservation) => reservation,
            // A manual start on this instance is resolving it: as the claim is ours, its own
            // claim fails (a lease is taken only when none is live). Due again at once, so the
            // next pass runs it.
            Err(Unreserved::AlreadyRunning | Unreserved::ShuttingDown) => {
                inner.release_unrun(kb_id, NotRun::Now).await;
                return false;
            }
        };
        // The claim carries the type: no read of the knowledge base is needed to choose its
        // datasource.
        let Some(datasource) =
            DatasourceKind::of(claim.kb_type).and_then(|kind| inner.resolver.datasource(kind))
        else {
            warn!(kb.id = %kb_id, kb.kind = %claim.kb_type, "no datasource configured for the knowledge base; not syncing it");
            inner.release_unrun(kb_id, NotRun::Interval).await;
            return false;
        };
        let tokens = match inner.resolver.tokens(kb_id).await {
            Ok(tokens) => tokens,
            Err(e @ (ResolveError::NotConnected | ResolveError::NeedsReauth)) => {
                info!(kb.id = %kb_id, reason = %e, "scheduled sync skipped");
                inner.release_unrun(kb_id, NotRun::Interval).await;
                return false;
            }
            Err(e) => {
                warn!(kb.id = %kb_id, error = %e, "scheduled sync postponed");
                inner.release_unrun(kb_id, NotRun::RetrySoon).await;
                return false;
            }
        };
        let now = inner.cx.clock.now();
        if let Some(due_at) = claim.due_at {
            metrics::histogram!("kbsync_sync_queue_lag_seconds").record(seconds(now - due_at).max(0.0));
        }
        inner.spawn(
            Job {
                kb_id,
                run_id: inner.cx.random.uuid(),
                // A change notification is pending: the run answers it.
                trigger: if claim.requested_at.is_some() {
                    SyncTrigger::Webhook
                } else {
                    SyncTrigger::Scheduled
                },
                due_at: claim.due_at,
                datasource,
                tokens: tokens.source,
                connection_stored_at: Some(tokens.stored_at),
            },
            reservation,
        );
        true
    }
}

impl Inner {
    fn reserve(self: &Arc<Self>, kb_id: KbId) -> Result<Reservation, Unreserved> {
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        if self.shutdown.is_cancelled() {
            return Err(Unreserved::ShuttingDown);
        }
        if runs.contains_key(&kb_id) {
            return Err(Unreserved::AlreadyRunning);
        }
        let cancel = self.shutdown.child_token();
        runs.insert(kb_id, cancel.clone());
        self.count.send_replace(runs.len());
        Ok(Reservation {
            inner: self.clone(),
            kb_id,
            cancel,
        })
    }

    fn spawn(self: &Arc<Self>, job: Job, reservation: Reservation) {
        info!(
            kb.id = %job.kb_id, run.id = %job.run_id, trigger = job.trigger.as_str(), "sync run launched"
        );
        let inner = self.clone();
        self.tracker
            .spawn(async move { inner.execute(job, reservation).await });
    }

    /// One run from start to release; the reservation is given back when it returns.
    async fn execute(self: Arc<Self>, job: Job, reservation: Reservation) {
        let Job {
            kb_id,
            run_id,
            trigger,
            due_at,
            datasource,
            tokens,
            connection_stored_at,
        } = job;
        let store = &self.cx.store;
        let started = self.cx.clock.now();
        match store.close_interrupted_runs(kb_id, started).await {
            Ok(0) => {}
            Ok(n) => {
                info!(kb.id = %kb_id, run.id = %run_id, runs = n, "closed runs an interrupted instance left open")
            }
            Err(e) => warn!(kb.id = %kb_id, run.id = %run_id, error = %e, "could not close interrupted runs"),
        }
        let cancel = reservation.cancel.clone();
        let (outcome, lease_lost) = self
            .drive(
                kb_id,
                run_id,
                RunStart { trigger, due_at },
                datasource.as_ref(),
                tokens.as_ref(),
                &cancel,
            )
            .await;
        let finished = self.cx.clock.now();
        let status = match &outcome {
            Ok(summary) => summary.status,
            Err(_) => SyncStatus::Failed,
        };
        metrics::counter!("kbsync_sync_runs_total", "status" => status.as_str()).increment(1);
        metrics::histogram!("kbsync_sync_run_duration_seconds").record(seconds(finished - started).max(0.0));
        if lease_lost {
            warn!(kb.id = %kb_id, run.id = %run_id, "the lease was lost to another instance; leaving the schedule to it");
            return;
        }
        if matches!(
            status,
            SyncStatus::Completed | SyncStatus::CompletedWithErrors | SyncStatus::AccessRevoked
        ) {
            // A knowledge base published into Open WebUI is brought up to date after each run that
            // got through; the publisher finds nothing to do when nothing it sends changed.
            if let Err(e) = store.request_publication(kb_id, finished, false).await {
                warn!(kb.id = %kb_id, run.id = %run_id, error = %e, "could not ask for a publish after the run");
            }
        }
        if status == SyncStatus::NeedsReauth
            && let Some(stored_at) = connection_stored_at
        {
            self.mark_needs_reauth(kb_id, run_id, stored_at).await;
        }
        let by_shutdown = status == SyncStatus::Cancelled && self.shutdown.is_cancelled();
        let release = self
            .release_after_run(kb_id, &outcome, by_shutdown, started, finished)
            .await;
        match store.release_sync(kb_id, &self.instance_id, &release).await {
            Ok(true) => debug!(
                kb.id = %kb_id, run.id = %run_id, next_sync_at = %release.next_sync_at, "sync lease released"
            ),
            Ok(false) => warn!(kb.id = %kb_id, run.id = %run_id, "the lease was no longer ours at release"),
            Err(e) => warn!(
                kb.id = %kb_id, run.id = %run_id, error = %e, "could not release the sync lease; it will expire"
            ),
        }
        drop(reservation);
    }

    /// Runs the engine while renewing the lease. Returns the run's outcome and whether the
    /// lease was lost meanwhile.
    ///
    /// The renewal runs in a task of its own: were it awaited alongside the engine in one task,
    /// the engine would not be polled during a renewal, and a renewal waiting for a database lock
    /// that the engine's own open transaction holds (SQLite has one writer) would never finish.
    async fn drive(
        self: &Arc<Self>,
        kb_id: KbId,
        run_id: Uuid,
        start: RunStart,
        datasource: &dyn Datasource,
        tokens: &dyn TokenSource,
        cancel: &CancellationToken,
    ) -> (Result<RunSummary, SyncError>, bool) {
        let stop = CancellationToken::new();
        let renewer = tokio::spawn(
            self.clone()
                .keep_lease(kb_id, run_id, cancel.clone(), stop.clone()),
        );
        let outcome = self
            .engine
            .run(run_id, kb_id, datasource, tokens, start, cancel.clone())
            .await;
        stop.cancel();
        // A renewal in flight finishes before the lease is released.
        let lost = match renewer.await {
            Ok(lost) => lost,
            Err(e) => {
                warn!(kb.id = %kb_id, run.id = %run_id, error = %e, "the lease renewal task failed");
                false
            }
        };
        (outcome, lost)
    }

    /// Renews the lease every `renew_every` until `stop`; cancels the run when someone asks to,
    /// or when the lease is lost. Returns whether it was lost.
    async fn keep_lease(
        self: Arc<Self>,
        kb_id: KbId,
        run_id: Uuid,
        cancel: CancellationToken,
        stop: CancellationToken,
    ) -> bool {
        let store = &self.cx.store;
        let ttl = self.settings.lease_ttl;
        let every = self
            .settings
            .renew_every
            .max(std::time::Duration::from_millis(10));
        let mut renew = tokio::time::interval(every);
        renew.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The first renewal is one period away, not immediate.
        renew.reset();
        let mut lease_until = self.cx.clock.now() + ttl;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = renew.tick() => {}
            }
            let until = self.cx.clock.now() + ttl;
            match store.renew_sync_lease(kb_id, &self.instance_id, until).await {
                Ok(LeaseRenewal::Held) => lease_until = until,
                Ok(LeaseRenewal::CancelRequested) => {
                    lease_until = until;
                    if !cancel.is_cancelled() {
                        info!(kb.id = %kb_id, run.id = %run_id, "cancel requested: stopping the sync run");
                        cancel.cancel();
                    }
                }
                Ok(LeaseRenewal::Lost) => {
                    warn!(kb.id = %kb_id, run.id = %run_id, "sync lease lost: stopping the run");
                    cancel.cancel();
                    return true;
                }
                Err(e) if self.cx.clock.now() >= lease_until => {
                    warn!(kb.id = %kb_id, run.id = %run_id, error = %e, "sync lease expired unrenewed: stopping the run");
                    cancel.cancel();
                    return true;
                }
                Err(e) => {
                    warn!(kb.id = %kb_id, run.id = %run_id, error = %e, "could not renew the sync lease")
                }
            }
        }
    }

    /// The schedule after a run that ran.
    async fn release_after_run(
        &self,
        kb_id: KbId,
        outcome: &Result<RunSummary, SyncError>,
        by_shutdown: bool,
        started: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> SyncRelease {
        let state = self.sync_state(kb_id, now).await;
        let interval = self.interval(state.as_ref());
        let previous_failures = state.as_ref().map_or(0, |s| s.consecutive_failures);
        let previous_error = state.as_ref().and_then(|s| s.last_error.clone());
        let failed = |failures: u32, error: String| {
            let delay = self.backoff(failures);
            SyncRelease {
                next_sync_at: now + self.with_jitter(delay),
                consecutive_failures: failures,
                last_sync_at: Some(now),
                last_error: Some(error),
                run_started_at: Some(started),
                released_at: now,
            }
        };
        let summary = match outcome {
            Err(e) => return failed(previous_failures.saturating_add(1), e.to_string()),
            Ok(summary) => summary,
        };
        let next = now + self.with_jitter(interval);
        match summary.status {
            SyncStatus::Failed => failed(previous_failures.saturating_add(1), failure_reason(summary)),
            // Handed over: another instance (or this one after a restart) picks it up at once.
            SyncStatus::Cancelled if by_shutdown => SyncRelease {
                next_sync_at: now,
                consecutive_failures: previous_failures,
                last_sync_at: None,
                last_error: previous_error,
                run_started_at: Some(started),
                released_at: now,
            },
            // A cancelled run neither failed nor succeeded: the backoff and the error stay.
            SyncStatus::Cancelled => SyncRelease {
                next_sync_at: next,
                consecutive_failures: previous_failures,
                last_sync_at: Some(now),
                last_error: previous_error,
                run_started_at: Some(started),
                released_at: now,
            },
            status => SyncRelease {
                next_sync_at: next,
                consecutive_failures: 0,
                last_sync_at: Some(now),
                last_error: status_error(status),
                run_started_at: Some(started),
                released_at: now,
            },
        }
    }

    /// Releases a claimed knowledge base that did not run.
    async fn release_unrun(&self, kb_id: KbId, why: NotRun) {
        let now = self.cx.clock.now();
        let state = self.sync_state(kb_id, now).await;
        let next_sync_at = match why {
            NotRun::Interval => now + self.with_jitter(self.interval(state.as_ref())),
            NotRun::RetrySoon => now + self.with_jitter(self.settings.retry_base),
            NotRun::Now => now,
        };
        let release = SyncRelease {
            next_sync_at,
            consecutive_failures: state.as_ref().map_or(0, |s| s.consecutive_failures),
            last_sync_at: None,
            last_error: state.and_then(|s| s.last_error),
            run_started_at: None,
            released_at: now,
        };
        match self
            .cx
            .store
            .release_sync(kb_id, &self.instance_id, &release)
            .await
        {
            Ok(_) => debug!(kb.id = %kb_id, next_sync_at = %next_sync_at, "released without running"),
            Err(e) => warn!(kb.id = %kb_id, error = %e, "could not release the sync lease; it will expire"),
        }
    }

    async fn sync_state(&self, kb_id: KbId, now: DateTime<Utc>) -> Option<SyncState> {
        match self.cx.store.get_sync_state(kb_id, now).await {
            Ok(state) => Some(state),
            Err(e) => {
                warn!(kb.id = %kb_id, error = %e, "could not read the sync state; scheduling with defaults");
                None
            }
        }
    }

    /// The knowledge base's own interval, else the default.
    fn interval(&self, state: Option<&SyncState>) -> chrono::Duration {
        state
            .and_then(|s| s.interval_minutes)
            .map_or(self.settings.default_interval, |m| {
                chrono::Duration::minutes(m.into())
            })
    }

    /// `retry_base × 2^(failures−1)`, at most `retry_max`.
    fn backoff(&self, failures: u32) -> chrono::Duration {
        let base = self.settings.retry_base.num_milliseconds().max(0);
        let max = self.settings.retry_max.num_milliseconds().max(0);
        let doublings = failures.saturating_sub(1).min(62);
        chrono::Duration::milliseconds(base.saturating_mul(1_i64 << doublings).min(max))
    }

    /// `delay` plus a uniform random part of at most `jitter × delay`.
    fn with_jitter(&self, delay: chrono::Duration) -> chrono::Duration {
        let jitter = self.settings.jitter;
        if !jitter.is_finite() || jitter <= 0.0 {
            return delay;
        }
        let extra = delay.num_milliseconds().max(0) as f64 * jitter * unit(self.cx.random.as_ref());
        delay + chrono::Duration::milliseconds(extra as i64)
    }

    /// The run was refused the stored credentials: the connection is marked (through the
    /// resolver, which owns connections) so the scheduler skips it until the user connects
    /// again. The OAuth layer already marks a refused refresh token; this covers a token the
    /// datasource refused although it was just refreshed.
    async fn mark_needs_reauth(&self, kb_id: KbId, run_id: Uuid, stored_at: DateTime<Utc>) {
        match self.resolver.mark_needs_reauth(kb_id, stored_at).await {
            Ok(true) => warn!(
                kb.id = %kb_id, run.id = %run_id, "the datasource refused the stored connection; it needs re-authorization"
            ),
            Ok(false) => {}
            Err(e) => warn!(
                kb.id = %kb_id, run.id = %run_id, error = %e, "could not mark the refused connection as needing re-authorization"
            ),
        }
    }
}

/// A uniform number in [0, 1).
fn unit(random: &dyn Random) -> f64 {
    let mut bytes = [0u8; 8];
    random.fill(&mut bytes);
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1_u64 << 53) as f64
}

fn seconds(d: chrono::Duration) -> f64 {
    d.num_milliseconds() as f64 / 1000.0
}

/// What the KB view shows after a run that did not fail.
fn status_error(status: SyncStatus) -> Option<String> {
    match status {
        SyncStatus::AccessRevoked => {
            Some("access to a source was revoked; its documents were removed".to_owned())
        }
        SyncStatus::FileLimitExceeded => {
            Some("the knowledge base reached its file limit; some files were not synced".to_owned())
        }
        SyncStatus::NeedsReauth => Some("the connection must be renewed: sign in again".to_owned()),
        _ => None,
    }
}

/// Why a run failed, for the KB view: the last failure recorded (a source's failure comes after
/// the files of that source).
fn failure_reason(summary: &RunSummary) -> String {
    match summary.failures.last() {
        Some(failure) => format!("the sync run failed: {}", failure.reason),
        None => "the sync run failed".to_owned(),
    }
}
