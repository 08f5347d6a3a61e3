//! The sync engine: one run brings a knowledge base's documents in line with its sources.
//!
//! A run goes in four steps:
//!
//! 1. **Gather.** Every source is asked what changed. A folder source follows the datasource's
//!    change feed from its cursor, page by page, and buffers the whole round (items arrive in any
//!    order, possibly twice, children before parents); a file source reads the file's metadata.
//!    What the engine knows of a source's items (names, parents, hashes) is kept in a
//!    [`state::SourceState`] saved together with the cursor, so paths are rebuilt from parent ids
//!    and nameless tombstones are resolved by id. A source that answers "not found" (404/403) is
//!    revoked at once, whatever else the run does: its documents leave search (kept, with its
//!    cursor) and its sharing grants nothing; if the next run gets the same answer the loss is
//!    confirmed and the documents are removed, if it reads the source they come back.
//! 2. **Check the limit.** With every source gathered, the files of the knowledge base are
//!    counted (distinct items, whatever order the feeds listed them in). Over
//!    [`SyncLimits::max_files`] the run stops with `file_limit_exceeded` before anything is
//!    downloaded or any cursor moves.
//! 3. **Apply.** Renames and moves (content unchanged) update documents without downloading;
//!    deleted items and items that left a source are removed; files that cannot be indexed
//!    (unsupported type, over [`SyncLimits::max_file_size`]) are skipped. What is left is the
//!    work list: new and changed files, downloaded, extracted and indexed with bounded
//!    concurrency, each within [`SyncLimits::file_timeout`]. A source's new cursor is saved as
//!    soon as every file of its round is brought in or recorded as a failed file; failed files
//!    are retried by the next run although the cursor moved, because their state says they were
//!    never brought in at their current hash.
//! 4. **Permissions.** When every folder source's round was applied, their sharing replaces the
//!    knowledge base's sync grants (see [`permissions`]).
//!
//! **Skipped files are not failures.** A failure means "retried next run"; a file skipped for
//! its type or size will be skipped again until it changes, so it is only counted (`skipped`),
//! logged at debug level with its reason, and remembered in the source state (so it is neither
//! counted nor fetched again while it stays as it is). It never appears in a run's failures.
//!
//! **Final status**, when several things happened in one run, the first that applies wins:
//! `needs_reauth` > `file_limit_exceeded` > `cancelled` > `access_revoked` > `failed` >
//! `completed_with_errors` > `completed`. The order follows what the user has to do: nothing
//! else can proceed until the user signs in again; a knowledge base over its file limit syncs
//! nothing until sources or the limit change; a cancelled run says nothing about the sources it
//! did not reach; a revoked source needs the owner to share it again (or the source removed),
//! which outweighs a passing failure of another source; and a source that could not be read at
//! all outweighs individual files that failed.

pub mod events;
pub mod permissions;
pub mod runner;
pub mod scheduler;
pub mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kbsync_core::datasource::{
    Datasource, ItemKind, NextPage, ProviderError, RemoteItem, SourceRef, TokenProvider,
};
use kbsync_core::{Clock, Document, KbId, Random, SyncStatus, UserId};
use kbsync_ingest::{Extractor, FileKind};
use kbsync_store::{
    BlobError, BlobStore, DocumentLocation, NewDocument, Source, SourceKind, Store, StoreError, SyncFailure,
    SyncGrant, SyncProgress, SyncRunOutcome, SyncTrigger,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::events::{SyncEvent, SyncEvents};
use crate::permissions::Grantees;
pub use crate::permissions::PermissionPolicy;
use crate::state::{KnownItem, Skip, SourceState};

/// How many times one source may answer "cursor expired" in one run before the run gives up on it.
const MAX_RESTARTS: usize = 3;

/// The counter of files by outcome.
const FILES_METRIC: &str = "kbsync_sync_files_total";

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
    /// What permission sync may turn into grants.
    pub permissions: PermissionPolicy,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub run_id: Uuid,
    pub status: SyncStatus,
    pub processed: u64,
    /// Files that could not be brought in (retried by the next run).
    pub failed: u64,
    pub deleted: u64,
    /// Files skipped for their type or size (not failures).
    pub skipped: u64,
    /// Files the sources hold (distinct items), as far as the run got to know them.
    pub total_found: u64,
    /// Failed files, then failures of whole sources (a source that could not be read).
    pub failures: Vec<SyncFailure>,
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The database failed; the run is recorded as `failed` when that is still possible.
    #[error("storage failed during the sync run: {0}")]
    Store(#[from] StoreError),
    #[error("the source state could not be saved: {0}")]
    State(#[from] serde_json::Error),
}

pub struct SyncEngine {
    cx: SyncContext,
    /// The settings that decide what a saved state says about skipped files (see
    /// [`state_settings`]), computed once.
    settings: String,
}

/// Why a run stopped before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stop {
    Cancelled,
    /// The datasource refused the credentials even after a refresh.
    NeedsReauth(String),
}

/// One run's bookkeeping.
struct Run {
    id: Uuid,
    kb_id: KbId,
    processed: u64,
    failed: u64,
    deleted: u64,
    skipped: u64,
    total_found: u64,
    /// Failed files, in the order they happened.
    failures: Vec<SyncFailure>,
    /// How many of `failures` (from the start) are already recorded in the store.
    recorded: usize,
    /// Sources that could not be read; recorded when the run ends, after the files.
    source_failures: Vec<SyncFailure>,
    revoked: bool,
    source_failed: bool,
    /// Files of the work list finished, and their number.
    current: u64,
    total: u64,
}

impl Run {
    fn new(id: Uuid, kb_id: KbId) -> Self {
        Self {
            id,
            kb_id,
            processed: 0,
            failed: 0,
            deleted: 0,
            skipped: 0,
            total_found: 0,
            failures: Vec::new(),
            recorded: 0,
            source_failures: Vec::new(),
            revoked: false,
            source_failed: false,
            current: 0,
            total: 0,
        }
    }

    fn outcome(&self, status: SyncStatus) -> SyncRunOutcome {
        SyncRunOutcome {
            status,
            processed: self.processed,
            failed: self.failed,
            deleted: self.deleted,
            skipped: self.skipped,
            total_found: self.total_found,
            // Recorded ones are in the store already; `finish_sync_run` appends the rest.
            failures: self.failures[self.recorded..]
                .iter()
                .chain(&self.source_failures)
                .cloned()
                .collect(),
        }
    }

    fn summary(&self, status: SyncStatus) -> RunSummary {
        RunSummary {
            run_id: self.id,
            status,
            processed: self.processed,
            failed: self.failed,
            deleted: self.deleted,
            skipped: self.skipped,
            total_found: self.total_found,
            failures: self
                .failures
                .iter()
                .chain(&self.source_failures)
                .cloned()
                .collect(),
        }
    }

    /// The final status when the run went through (see the crate docs for the precedence).
    fn end_status(&self) -> SyncStatus {
        if self.revoked {
            SyncStatus::AccessRevoked
        } else if self.source_failed {
            SyncStatus::Failed
        } else if self.failed > 0 {
            SyncStatus::CompletedWithErrors
        } else {
            SyncStatus::Completed
        }
    }
}

/// One source after gathering.
enum Gathered {
    /// Its changes are known: `state` is the state at `cursor`, to be applied.
    Ready(Box<Plan>),
    /// A folder whose round brought no change and whose saved state has nothing left to retry:
    /// only its cursor moves. Its state is not read unless another source needs the run to plan.
    Quiet(Box<Quiet>),
    /// It answered 404/403: its documents were hidden (the first time) or removed (confirmed).
    Revoked,
    /// The datasource failed in a way that retrying later may fix; nothing was advanced. The
    /// files it held at its saved state still count towards the limit and are kept.
    Failed(ProviderError),
}

/// A folder round that changed nothing.
struct Quiet {
    cursor: String,
    sharing_changed: bool,
}

/// A source whose round is gathered and is being applied.
struct Plan {
    source: Source,
    state: SourceState,
    cursor: String,
    /// The round differs from the saved state (a folder's round brought items, or a file source's
    /// metadata changed); a file source that did not change and has nothing to retry is quiet.
    changed: bool,
    /// The round was a full enumeration (first sync, or the cursor expired).
    full: bool,
    /// The datasource reported a sharing change in the round.
    sharing_changed: bool,
    /// The files of the state this source looks after (an item in several sources is one
    /// document, looked after by one of them); set by planning.
    owned: HashSet<String>,
    /// Files of the work list not finished yet.
    remaining: usize,
    /// A file of the round was cancelled or stopped: the round is not applied completely.
    incomplete: bool,
    /// The cursor and state are saved.
    saved: bool,
}

/// What following a folder's change feed gave.
enum Round {
    Done {
        changes: BTreeMap<String, RemoteItem>,
        cursor: String,
        full: bool,
        sharing_changed: bool,
    },
    Gathered(Gathered),
    Stop(Stop),
}

/// One file to download, extract and index.
struct Work {
    plan: usize,
    source_id: Uuid,
    kb_id: KbId,
    drive_id: String,
    id: String,
    item: KnownItem,
    path: String,
}

enum FileOutcome {
    Processed,
    Skipped(Skip),
    Failed(String),
    Cancelled,
    Unauthorized(String),
}

/// What downloading and extracting one file produced, before anything is written to the store.
enum Fetched {
    Indexed {
        blob: kbsync_store::StoredBlob,
        chunks: Vec<String>,
        kind: FileKind,
    },
    Unreadable {
        blob: kbsync_store::StoredBlob,
        reason: String,
        kind: FileKind,
    },
    Done(FileOutcome),
}

impl SyncEngine {
    pub fn new(cx: SyncContext) -> Self {
        let settings = state_settings(&cx.limits);
        Self { cx, settings }
    }

    /// One run over every source of the knowledge base, recorded under `run_id` (the caller
    /// chooses it, so it can hand it out before the run starts).
    ///
    /// Publishes `status` (syncing), `progress` after each file of the work list, `file_failed`
    /// and at the end `finished` and `status`; persists the status, the progress and each failed
    /// file as it happens. An `Err` means the database failed; the run is then recorded as
    /// `failed` when that is still possible.
    pub async fn run(
        &self,
        run_id: Uuid,
        kb_id: KbId,
        datasource: &dyn Datasource,
        tokens: &dyn TokenProvider,
        trigger: SyncTrigger,
        cancel: CancellationToken,
    ) -> Result<RunSummary, SyncError> {
        let store = &self.cx.store;
        store
            .create_sync_run(run_id, kb_id, trigger, self.cx.clock.now())
            .await?;
        store.set_sync_status(kb_id, SyncStatus::Syncing).await?;
        self.publish(
            kb_id,
            SyncEvent::Status {
                run_id,
                status: SyncStatus::Syncing,
            },
        );
        let mut run = Run::new(run_id, kb_id);
        self.save_progress(&run, None).await;
        tracing::info!(kb.id = %kb_id, run.id = %run_id, trigger = trigger.as_str(), "sync run started");
        match self.run_sources(&mut run, datasource, tokens, &cancel).await {
            Ok(status) => {
                store
                    .finish_sync_run(run_id, &run.outcome(status), self.cx.clock.now())
                    .await?;
                store.set_sync_status(kb_id, status).await?;
                self.publish_end(&run, status);
                tracing::info!(
                    kb.id = %kb_id, run.id = %run_id, status = status.as_str(), processed = run.processed,
                    failed = run.failed, deleted = run.deleted, skipped = run.skipped,
                    total_found = run.total_found, "sync run finished"
                );
                Ok(run.summary(status))
            }
            Err(e) => {
                tracing::error!(kb.id = %kb_id, run.id = %run_id, error = %e, "sync run failed");
                let status = SyncStatus::Failed;
                // Best effort: the database may be what failed.
                let _ = store
                    .finish_sync_run(run_id, &run.outcome(status), self.cx.clock.now())
                    .await;
                let _ = store.set_sync_status(kb_id, status).await;
                self.publish_end(&run, status);
                Err(e)
            }
        }
    }

    async fn run_sources(
        &self,
        run: &mut Run,
        ds: &dyn Datasource,
        tokens: &dyn TokenProvider,
        cancel: &CancellationToken,
    ) -> Result<SyncStatus, SyncError> {
        let sources = self.cx.store.list_sources(run.kb_id).await?;

        // 1. Gather every source's changes.
        let mut gathered = Vec::with_capacity(sources.len());
        for source in sources {
            if cancel.is_cancelled() {
                return Ok(SyncStatus::Cancelled);
            }
            let outcome = match source.kind {
                SourceKind::Folder => self.gather_folder(&source, ds, tokens, cancel, run).await?,
                SourceKind::File => self.gather_file(&source, ds, tokens, run).await?,
            };
            match outcome {
                Ok(g) => {
                    if source.revoked_at.is_some() && matches!(g, Gathered::Ready(_) | Gathered::Quiet(_)) {
                        // Readable again: its kept documents come back without a download.
                        tracing::info!(kb.id = %run.kb_id, source.id = %source.id, "source accessible again: its documents are searchable again");
                        self.cx.store.clear_source_revoked(source.id).await?;
                    }
                    gathered.push((source, g));
                }
                Err(Stop::Cancelled) => return Ok(SyncStatus::Cancelled),
                Err(Stop::NeedsReauth(why)) => return Ok(self.needs_reauth(run, &why)),
            }
        }

        // Nothing changed anywhere and nothing is left to retry: move the cursors on, without
        // reading any saved state or document.
        if gathered
            .iter()
            .all(|(source, g)| is_quiet(source, g, &self.settings))
        {
            return self.quiet_run(run, &gathered, ds, tokens).await;
        }
        // Otherwise every source is planned, quiet ones included (an item may be in several).
        let mut loaded = Vec::with_capacity(gathered.len());
        for (source, g) in gathered {
            let g = match g {
                Gathered::Quiet(quiet) => self.wake(&source, *quiet).await?,
                other => other,
            };
            loaded.push((source, g));
        }
        let gathered = loaded;

        // 2. The limit, over distinct files (the same item in two sources is one document).
        let mut files: HashSet<String> = HashSet::new();
        let mut failed_files: HashSet<String> = HashSet::new();
        for (source, g) in &gathered {
            match g {
                Gathered::Ready(plan) => files.extend(plan.state.files(&source.item_id).map(str::to_owned)),
                Gathered::Failed(_) => {
                    if let Some(old) = self.load_state(source).await? {
                        failed_files.extend(old.files(&source.item_id).map(str::to_owned));
                    }
                }
                Gathered::Revoked | Gathered::Quiet(_) => {}
            }
        }
        files.extend(failed_files.iter().cloned());
        run.total_found = u64::try_from(files.len()).unwrap_or(u64::MAX);
        if run.total_found > self.cx.limits.max_files {
            return Ok(self.over_limit(run));
        }

        // Source failures are known now; they go into the run's history at its end.
        let mut plans = Vec::new();
        let mut folders_ok = true;
        for (source, g) in gathered {
            match g {
                Gathered::Ready(plan) => plans.push(*plan),
                Gathered::Revoked => run.revoked = true,
                Gathered::Quiet(_) => {}
                Gathered::Failed(e) => {
                    tracing::warn!(kb.id = %run.kb_id, source.id = %source.id, error = %e, "source could not be synced");
                    run.source_failed = true;
                    folders_ok &= source.kind != SourceKind::Folder;
                    run.source_failures.push(SyncFailure {
                        item_id: source.item_id.clone(),
                        name: source.name.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }

        // 3. Apply: renames, removals and skips now; then the work list.
        let work = self.plan(run, &mut plans, &failed_files).await?;
        if cancel.is_cancelled() {
            return Ok(SyncStatus::Cancelled);
        }
        run.total = u64::try_from(work.len()).unwrap_or(u64::MAX);
        self.save_progress(run, None).await;
        for plan in &mut plans {
            if plan.remaining == 0 {
                self.save_cursor(plan).await?;
            }
        }
        if let Some(stop) = self
            .bring_in_all(run, &mut plans, work, ds, tokens, cancel)
            .await?
        {
            return Ok(self.stopped(run, stop));
        }

        // 4. Permissions, once every folder's round is applied, when they are due.
        let folders: Vec<&Plan> = plans
            .iter()
            .filter(|p| p.source.kind == SourceKind::Folder)
            .collect();
        if folders_ok && folders.iter().all(|p| p.saved) {
            let hinted = folders.iter().any(|p| p.sharing_changed || p.full);
            let sources: Vec<&Source> = folders.iter().map(|p| &p.source).collect();
            if let Err(stop) = self
                .refresh_permissions(run, &sources, hinted, ds, tokens)
                .await?
            {
                return Ok(self.stopped(run, stop));
            }
        } else {
            tracing::info!(kb.id = %run.kb_id, "not every folder source was synced: sync grants left as they are");
        }
        Ok(run.end_status())
    }

    /// The run when every source is quiet: the cursors move on, the sharing is read if it is due.
    async fn quiet_run(
        &self,
        run: &mut Run,
        gathered: &[(Source, Gathered)],
        ds: &dyn Datasource,
        tokens: &dyn TokenProvider,
    ) -> Result<SyncStatus, SyncError> {
        // Each source counts the files it looks after, so the sum counts distinct files.
        run.total_found = gathered
            .iter()
            .map(|(source, _)| source.state_files.unwrap_or(0))
            .sum();
        if run.total_found > self.cx.limits.max_files {
            return Ok(self.over_limit(run));
        }
        let mut hinted = false;
        for (source, g) in gathered {
            if let Gathered::Quiet(quiet) = g {
                hinted |= quiet.sharing_changed;
                if source.cursor.as_deref() != Some(quiet.cursor.as_str()) {
                    self.cx
                        .store
                        .advance_source_cursor(source.id, &quiet.cursor)
                        .await?;
                }
            }
        }
        let folders: Vec<&Source> = gathered
            .iter()
            .map(|(source, _)| source)
            .filter(|s| s.kind == SourceKind::Folder)
            .collect();
        if let Err(stop) = self
            .refresh_permissions(run, &folders, hinted, ds, tokens)
            .await?
        {
            return Ok(self.stopped(run, stop));
        }
        tracing::debug!(kb.id = %run.kb_id, run.id = %run.id, "nothing changed in any source");
        Ok(run.end_status())
    }

    fn over_limit(&self, run: &Run) -> SyncStatus {
        tracing::warn!(
            kb.id = %run.kb_id, run.id = %run.id, found = run.total_found, limit = self.cx.limits.max_files,
            "the knowledge base's sources hold more files than allowed: nothing synced"
        );
        SyncStatus::FileLimitExceeded
    }

    /// A quiet folder that must be planned after all (another source changed): its saved state,
    /// with nothing to apply. A state that cannot be read is forgotten with the cursor, so the
    /// next run enumerates the folder again; this run counts the source as failed.
    async fn wake(&self, source: &Source, quiet: Quiet) -> Result<Gathered, SyncError> {
        match self.load_state(source).await? {
            Some(state) => {
                let mut plan = Plan::new(source.clone(), state, quiet.cursor);
                plan.sharing_changed = quiet.sharing_changed;
                Ok(Gathered::Ready(Box::new(plan)))
            }
            None => {
                self.cx.store.set_source_cursor(source.id, None, None).await?;
                Ok(Gathered::Failed(ProviderError::Transient(
                    "the saved state of this source could not be read; it will be enumerated again".into(),
                )))
            }
        }
    }

    /// A source's saved state; `None` when it has none or it cannot be parsed.
    async fn load_state(&self, source: &Source) -> Result<Option<SourceState>, SyncError> {
        let text = self.cx.store.source_state(source.id).await?;
        Ok(SourceState::parse(text.as_deref()))
    }

    /// The status of a run that stopped early.
    fn stopped(&self, run: &Run, stop: Stop) -> SyncStatus {
        match stop {
            Stop::Cancelled => SyncStatus::Cancelled,
            Stop::NeedsReauth(why) => self.needs_reauth(run, &why),
        }
    }

    fn needs_reauth(&self, run: &Run, why: &str) -> SyncStatus {
        tracing::warn!(kb.id = %run.kb_id, run.id = %run.id, reason = why, "the datasource refused the credentials: the knowledge base needs re-authorization");
        SyncStatus::NeedsReauth
    }

    /// A folder's round of changes, buffered and applied to its state (not yet to documents).
    /// The saved state is read only when the round brought something or a file is left to retry.
    async fn gather_folder(
        &self,
        source: &Source,
        ds: &dyn Datasource,
        tokens: &dyn TokenProvider,
        cancel: &CancellationToken,
        run: &mut Run,
    ) -> Result<Result<Gathered, Stop>, SyncError> {
        // A state saved without its counts (before they existed) is read first, as it always was.
        let mut state = None;
        let mut cursor = source.cursor.clone();
        if cursor.is_some() && source.state_files.is_none() {
            state = self.load_state(source).await?;
            if state.is_none() {
                cursor = None;
            }
        }
        let (changes, next_cursor, full, sharing_changed) = match self
            .follow_changes(source, ds, tokens, cancel, run, cursor)
            .await?
        {
            Round::Done {
                changes,
                cursor,
                full,
                sharing_changed,
            } => (changes, cursor, full, sharing_changed),
            Round::Gathered(g) => return Ok(Ok(g)),
            Round::Stop(stop) => return Ok(Err(stop)),
        };
        if !full
            && changes.is_empty()
            && state.is_none()
            && source.state_pending == Some(0)
            && source.state_settings.as_deref() == Some(self.settings.as_str())
        {
            return Ok(Ok(Gathered::Quiet(Box::new(Quiet {
                cursor: next_cursor,
                sharing_changed,
            }))));
        }
        // A full round after an expired cursor starts from the saved state too: files it still
        // returns at the content already brought in are not downloaded again.
        let state = match state {
            Some(state) => state,
            None if source.cursor.is_none() => SourceState::default(),
            None => match self.load_state(source).await? {
                Some(state) => state,
                None if full => SourceState::default(),
                None => {
                    // The round is relative to a state that cannot be read: start over.
                    tracing::warn!(source.id = %source.id, "saved source state unreadable: enumerating the source again");
                    return self.gather_from_scratch(source, ds, tokens, cancel, run).await;
                }
            },
        };
        Ok(Ok(planned(
            source,
            state,
            &changes,
            next_cursor,
            full,
            sharing_changed,
        )))
    }

    /// A folder enumerated from the start, whatever its saved cursor and state.
    async fn gather_from_scratch(
        &self,
        source: &Source,
        ds: &dyn Datasource,
        tokens: &dyn TokenProvider,
        cancel: &CancellationToken,
        run: &mut Run,
    ) -> Result<Result<Gathered, Stop>, SyncError> {
        match self.follow_changes(source, ds, tokens, cancel, run, None).await? {
            Round::Done {
                changes,
                cursor,
                sharing_changed,
                ..
            } => Ok(Ok(planned(
                source,
                SourceState::default(),
                &changes,
                cursor,
                true,
                sharing_changed,
            ))),
            Round::Gathered(g) => Ok(Ok(g)),
            Round::Stop(stop) => Ok(Err(stop)),
        }
    }

    /// Follows a folder's change feed from `cursor` (from the start when `None`) to the end of the
    /// round, buffering the latest state of each item (duplicates: last wins).
    async fn follow_changes(
        &self,
        source: &Source,
        ds: &dyn Datasource,
        tokens: &dyn TokenProvider,
        cancel: &CancellationToken,
        run: &mut Run,
        mut cursor: Option<String>,
    ) -> Result<Round, SyncError> {
        let mut full = cursor.is_none();
        let at = SourceRef {
            drive_id: source.drive_id.clone(),
            item_id: source.item_id.clone(),
        };
        let mut changes = BTreeMap::new();
        let mut sharing_changed = false;
        let mut restarts = 0;
        loop {
            if cancel.is_cancelled() {
                return Ok(Round::Stop(Stop::Cancelled));
            }
            match ds.changes(tokens, &at, cursor.as_deref()).await {
                Ok(page) => {
                    sharing_changed |= page.sharing_changed;
                    for item in page.items {
                        changes.insert(item.id.clone(), item);
                    }
                    match page.next {
                        NextPage::More(next) => cursor = Some(next),
                        NextPage::Done(next) => {
                            return Ok(Round::Done {
                                changes,
                                cursor: next,
                                full,
                                sharing_changed,
                            });
                        }
                    }
                }
                Err(ProviderError::CursorExpired { restart }) if restarts < MAX_RESTARTS => {
                    tracing::info!(source.id = %source.id, "change cursor expired: enumerating the source again");
                    restarts += 1;
                    changes.clear();
                    full = true;
                    cursor = restart;
                }
                Err(ProviderError::NotFound(_)) => {
                    self.revoke(source, run).await?;
                    return Ok(Round::Gathered(Gathered::Revoked));
                }
                Err(ProviderError::Unauthorized(why)) => return Ok(Round::Stop(Stop::NeedsReauth(why))),
                Err(e) => return Ok(Round::Gathered(Gathered::Failed(e))),
            }
        }
    }

    /// A file source: its current metadata; its cursor is its content hash.
    async fn gather_file(
        &self,
        source: &Source,
        ds: &dyn Datasource,
        tokens: &dyn TokenProvider,
        run: &mut Run,
    ) -> Result<Result<Gathered, Stop>, SyncError> {
        let mut item = match ds.item(tokens, &source.drive_id, &source.item_id).await {
            Ok(item) if !item.deleted && item.kind == ItemKind::File => item,
            Ok(_) | Err(ProviderError::NotFound(_)) => {
                self.revoke(source, run).await?;
                return Ok(Ok(Gathered::Revoked));
            }
            Err(ProviderError::Unauthorized(why)) => return Ok(Err(Stop::NeedsReauth(why))),
            Err(e) => return Ok(Ok(Gathered::Failed(e))),
        };
        let saved = self.load_state(source).await?.unwrap_or_default();
        let mut state = saved.clone();
        state.items.retain(|id, _| *id == item.id);
        // The file is its own root: its path is its name.
        item.parent_id = None;
        state.apply(&item);
        let cursor = state
            .items
            .get(&item.id)
            .map(KnownItem::hash_value)
            .unwrap_or_default();
        let mut plan = Plan::new(source.clone(), state, cursor);
        plan.changed = plan.state != saved || source.cursor.as_deref() != Some(plan.cursor.as_str());
        Ok(Ok(Gathered::Ready(Box::new(plan))))
    }

    /// Brings the documents in line with the gathered states, except for the files that must
    /// be downloaded: those are returned as the work list.
    ///
    /// An item in several sources is one document, looked after by one of them: the oldest
    /// folder source that holds it, else the oldest file source. A document is removed when no source holds its item any more, neither a
    /// gathered one nor one that failed this time (its files are kept until it answers again).
    async fn plan(
        &self,
        run: &mut Run,
        plans: &mut [Plan],
        failed_files: &HashSet<String>,
    ) -> Result<Vec<Work>, SyncError> {
        let store = &self.cx.store;
        let max = self.cx.limits.max_file_size;
        // Folders first (a folder gives the document its path in the folder), then in source order.
        let mut order: Vec<usize> = (0..plans.len()).collect();
        order.sort_by_key(|&i| plans[i].source.kind != SourceKind::Folder);
        let mut owner: HashMap<String, usize> = HashMap::new();
        for i in order {
            for id in plans[i].state.files(&plans[i].source.item_id) {
                owner.entry(id.to_owned()).or_insert(i);
            }
        }
        for (id, &i) in &owner {
            plans[i].owned.insert(id.clone());
        }
        // The documents of the sources being applied, by item id.
        let mut docs: HashMap<String, Document> = HashMap::new();
        for plan in plans.iter() {
            for doc in store.source_documents(plan.source.id).await? {
                if let Some(item_id) = doc.source_item_id.clone() {
                    docs.insert(item_id, doc);
                }
            }
        }
        // Whatever document is left mirrors an item that was deleted or left every source.
        let gone: Vec<Document> = docs
            .iter()
            .filter(|(id, _)| !owner.contains_key(*id) && !failed_files.contains(*id))
            .map(|(_, d)| d.clone())
            .collect();
        for doc in gone {
            if let Some(id) = &doc.source_item_id {
                docs.remove(id);
            }
            self.remove_document(&doc).await?;
            run.deleted += 1;
        }

        let mut work = Vec::new();
        for (i, plan) in plans.iter_mut().enumerate() {
            let root = plan.source.item_id.clone();
            let ids: Vec<String> = plan.state.files(&root).map(str::to_owned).collect();
            for id in ids {
                if owner.get(&id) != Some(&i) {
                    continue;
                }
                let (Some(item), Some(path)) = (
                    plan.state.items.get(&id).cloned(),
                    plan.state
                        .path(&root, &id)
                        .map(|p| document_path(&plan.source, &p)),
                ) else {
                    continue;
                };
                let hash = item.hash_value();
                let synced = item.synced_hash.as_deref() == Some(hash.as_str());
                let doc = docs.get(&id);
                let skip = if FileKind::detect(&item.name, item.mime.as_deref()).is_none() {
                    Some(Skip::UnsupportedType)
                } else if item.size.is_some_and(|s| u64::try_from(s).unwrap_or(0) > max) {
                    Some(Skip::TooLarge { limit: max })
                } else {
                    None
                };
                if let Some(skip) = skip {
                    // A document of earlier content would no longer match the drive.
                    if let Some(doc) = doc {
                        self.remove_document(doc).await?;
                        run.deleted += 1;
                    }
                    if !synced || item.skipped != Some(skip) {
                        self.count_skip(run, &plan.source, &path, skip);
                    }
                    mark_synced(&mut plan.state, &id, Some(skip));
                    continue;
                }
                if synced {
                    match (doc, item.skipped) {
                        (Some(doc), _) => {
                            // Content unchanged: at most a rename or move, applied without downloading.
                            let location = DocumentLocation {
                                name: item.name.clone(),
                                path: path.clone(),
                                web_url: item.web_url.clone(),
                            };
                            if doc.name != location.name
                                || doc.path != location.path
                                || doc.web_url != location.web_url
                            {
                                store
                                    .update_document_location(
                                        plan.source.kb_id,
                                        doc.id,
                                        location,
                                        self.cx.clock.now(),
                                    )
                                    .await?;
                            }
                            continue;
                        }
                        // Found too large while downloading (its size was not announced): it
                        // stays skipped until it changes or the limit is raised.
                        (None, Some(Skip::TooLarge { limit })) if limit >= max => continue,
                        // Skipped earlier for a reason that no longer holds, or its document
                        // went away: bring it in.
                        (None, _) => {}
                    }
                }
                plan.remaining += 1;
                work.push(Work {
                    plan: i,
                    source_id: plan.source.id,
                    kb_id: plan.source.kb_id,
                    drive_id: plan.source.drive_id.clone(),
                    id,
                    item,
                    path,
                });
            }
        }
        Ok(work)
    }

    /// Downloads, extracts and indexes the work list with bounded concurrency, saving each
    /// source's cursor once all of its files are done. Returns why it stopped early, if it did.
    async fn bring_in_all(
        &self,
        run: &mut Run,
        plans: &mut [Plan],
        work: Vec<Work>,
        ds: &dyn Datasource,
        tokens: &dyn TokenProvider,
        cancel: &CancellationToken,
    ) -> Result<Option<Stop>, SyncError> {
        // Stops the files in flight: on cancel, when the credentials are refused, or when the
        // database fails.
        let stop = cancel.child_token();
        // The files run in `produce`; their results are booked in `book`. The two are polled
        // together, so files in flight (which may hold a database transaction) keep moving while
        // the bookkeeping waits for the database.
        let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
        let stop_ref = &stop;
        let produce = async move {
            let mut files = futures::stream::iter(work)
                .map(|w| async move {
                    let outcome = if stop_ref.is_cancelled() {
                        Ok(FileOutcome::Cancelled)
                    } else {
                        self.bring_in(&w, ds, tokens, stop_ref).await
                    };
                    (w, outcome)
                })
                .buffer_unordered(self.cx.limits.concurrency.max(1));
            while let Some(done) = files.next().await {
                // The receiver is gone only when the bookkeeping failed; the files left are
                // stopped then, and drained so none is dropped in the middle of a write.
                let _ = done_tx.send(done);
            }
        };
        let book = async {
            let mut stopped: Option<Stop> = None;
            while let Some((w, outcome)) = done_rx.recv().await {
                let outcome = match outcome {
                    Ok(outcome) => outcome,
                    Err(e) => {
                        stop.cancel();
                        return Err(e);
                    }
                };
                if let Err(e) = self.book(run, plans, &w, outcome, &mut stopped, &stop).await {
                    stop.cancel();
                    return Err(e);
                }
            }
            Ok(stopped)
        };
        let ((), booked) = tokio::join!(produce, book);
        let mut stopped = booked?;
        if stopped.is_none() && cancel.is_cancelled() {
            stopped = Some(Stop::Cancelled);
        }
        Ok(stopped)
    }

    /// Books one finished file: counts, state, progress, failures, and the source's cursor once
    /// all of its files are done.
    async fn book(
        &self,
        run: &mut Run,
        plans: &mut [Plan],
        w: &Work,
        outcome: FileOutcome,
        stopped: &mut Option<Stop>,
        stop: &CancellationToken,
    ) -> Result<(), SyncError> {
        let plan = &mut plans[w.plan];
        plan.remaining = plan.remaining.saturating_sub(1);
        let finished = match outcome {
            FileOutcome::Processed => {
                run.processed += 1;
                metrics::counter!(FILES_METRIC, "outcome" => "processed").increment(1);
                mark_synced(&mut plan.state, &w.id, None);
                true
            }
            FileOutcome::Skipped(skip) => {
                self.count_skip(run, &plan.source, &w.path, skip);
                mark_synced(&mut plan.state, &w.id, Some(skip));
                true
            }
            FileOutcome::Failed(reason) => {
                self.fail_file(run, w, reason).await;
                true
            }
            FileOutcome::Cancelled => {
                plan.incomplete = true;
                false
            }
            FileOutcome::Unauthorized(why) => {
                plan.incomplete = true;
                if stopped.is_none() {
                    *stopped = Some(Stop::NeedsReauth(why));
                }
                stop.cancel();
                false
            }
        };
        if finished {
            run.current += 1;
            self.save_progress(run, Some(&w.path)).await;
            self.publish(
                run.kb_id,
                SyncEvent::Progress {
                    run_id: run.id,
                    current: run.current,
                    total: run.total,
                    file: Some(w.path.clone()),
                },
            );
        }
        let plan = &mut plans[w.plan];
        if plan.remaining == 0 && !plan.incomplete {
            self.save_cursor(plan).await?;
        }
        Ok(())
    }

    /// Downloads, stores, extracts and indexes one file. Failures of this one file are an
    /// outcome; only a storage failure is an error. Download and extraction together get
    /// [`SyncLimits::file_timeout`]; the store writes that follow are never interrupted, so a
    /// document is never left half written.
    async fn bring_in(
        &self,
        w: &Work,
        ds: &dyn Datasource,
        tokens: &dyn TokenProvider,
        stop: &CancellationToken,
    ) -> Result<FileOutcome, SyncError> {
        let limit = self.cx.limits.file_timeout;
        let fetched = tokio::select! {
            biased;
            () = stop.cancelled() => return Ok(FileOutcome::Cancelled),
            fetched = tokio::time::timeout(limit, self.fetch(w, ds, tokens)) => fetched,
        };
        let (blob, kind, chunks) = match fetched {
            Err(_) => {
                return Ok(FileOutcome::Failed(format!(
                    "timed out: downloading and extracting took longer than {}s",
                    limit.as_secs_f64()
                )));
            }
            Ok(Fetched::Done(outcome)) => return Ok(outcome),
            Ok(Fetched::Indexed { blob, chunks, kind }) => (blob, kind, Ok(chunks)),
            Ok(Fetched::Unreadable { blob, reason, kind }) => (blob, kind, Err(reason)),
        };
        let new = NewDocument {
            kb_id: w.kb_id,
            name: w.item.name.clone(),
            path: w.path.clone(),
            mime: w.item.mime.clone().unwrap_or_else(|| kind.mime().to_owned()),
            size: i64::try_from(blob.size).unwrap_or(i64::MAX),
            content_hash: blob.hash.clone(),
            source_item_id: Some(w.id.clone()),
            web_url: w.item.web_url.clone(),
        };
        let store = &self.cx.store;
        let (doc, unreferenced) = store
            .upsert_source_document(self.cx.random.uuid(), w.source_id, new, self.cx.clock.now())
            .await?;
        if let Some(hash) = unreferenced {
            self.delete_blob(&hash).await;
        }
        match chunks {
            Ok(chunks) => {
                store
                    .complete_document(doc.id, &chunks, self.cx.clock.now())
                    .await?;
                Ok(FileOutcome::Processed)
            }
            Err(reason) => {
                store.fail_document(doc.id, &reason, self.cx.clock.now()).await?;
                Ok(FileOutcome::Failed(reason))
            }
        }
    }

    /// The interruptible part of bringing a file in: download to the blob store, then extract.
    async fn fetch(&self, w: &Work, ds: &dyn Datasource, tokens: &dyn TokenProvider) -> Fetched {
        let Some(kind) = FileKind::detect(&w.item.name, w.item.mime.as_deref()) else {
            return Fetched::Done(FileOutcome::Skipped(Skip::UnsupportedType));
        };
        let max = self.cx.limits.max_file_size;
        let stream = match ds.download(tokens, &w.item.to_remote(&w.id, &w.drive_id)).await {
            Ok(stream) => stream,
            Err(ProviderError::Unauthorized(why)) => return Fetched::Done(FileOutcome::Unauthorized(why)),
            Err(e) => return Fetched::Done(FileOutcome::Failed(format!("download failed: {e}"))),
        };
        let blob = match self.cx.blobs.write_stream(stream, max).await {
            Ok(blob) => blob,
            Err(BlobError::TooLarge { limit }) => {
                return Fetched::Done(FileOutcome::Skipped(Skip::TooLarge { limit }));
            }
            Err(e) => return Fetched::Done(FileOutcome::Failed(format!("download failed: {e}"))),
        };
        let path = match self.cx.blobs.path(&blob.hash) {
            Ok(path) => path,
            Err(e) => {
                return Fetched::Done(FileOutcome::Failed(format!(
                    "the stored file could not be read: {e}"
                )));
            }
        };
        // From the stored file rather than a copy in memory: plain text is read only up to the
        // text cap and zip containers part by part, so a large file does not cost its size.
        match self.cx.extractor.process_file(kind, path).await {
            Ok(chunks) => Fetched::Indexed { blob, chunks, kind },
            // Our own storage failed, not the file: not recorded against the document, retried.
            Err(kbsync_ingest::ExtractError::Io(e)) => Fetched::Done(FileOutcome::Failed(format!(
                "the stored file could not be read: {e}"
            ))),
            Err(e) => Fetched::Unreadable {
                blob,
                reason: e.to_string(),
                kind,
            },
        }
    }

    /// Reads every folder's sharing and replaces the knowledge base's sync grants with what it
    /// names, when it is due: when `hinted` (the change feed reported a sharing change, or a
    /// folder was enumerated in full), when it was never read or sources or users changed since
    /// (`Store::sharing_read_at` is `None`), or when it was read longer than
    /// [`PermissionPolicy::refresh`] ago. A folder whose sharing cannot be read right now leaves
    /// the grants as they are.
    async fn refresh_permissions(
        &self,
        run: &Run,
        folders: &[&Source],
        hinted: bool,
        ds: &dyn Datasource,
        tokens: &dyn TokenProvider,
    ) -> Result<Result<(), Stop>, SyncError> {
        let store = &self.cx.store;
        let now = self.cx.clock.now();
        let due = hinted
            || match store.sharing_read_at(run.kb_id).await? {
                None => true,
                Some(at) => (now - at)
                    .to_std()
                    .is_ok_and(|age| age >= self.cx.permissions.refresh),
            };
        if !due {
            return Ok(Ok(()));
        }
        // Each folder's grantees, kept apart: every grant is recorded with the source that gave
        // it, so removing or losing a source withdraws exactly what only it granted.
        let mut per_source: Vec<(Uuid, Grantees)> = Vec::with_capacity(folders.len());
        for source in folders {
            match ds.permissions(tokens, &source.drive_id, &source.item_id).await {
                Ok(perms) => per_source.push((source.id, permissions::grantees(&perms, self.cx.permissions))),
                // Taken away since the round was read: it names no one any more.
                Err(ProviderError::NotFound(why)) => {
                    tracing::info!(kb.id = %run.kb_id, source.id = %source.id, reason = why, "source sharing no longer readable: it grants nothing");
                }
                Err(ProviderError::Unauthorized(why)) => return Ok(Err(Stop::NeedsReauth(why))),
                Err(e) => {
                    tracing::warn!(kb.id = %run.kb_id, source.id = %source.id, error = %e, "could not read the sharing of a source: sync grants left as they are until the next run reads it");
                    store.forget_sharing_reads(Some(run.kb_id)).await?;
                    return Ok(Ok(()));
                }
            }
        }
        // One look-up for all of them.
        let mut all = Grantees::default();
        for (_, grantees) in &per_source {
            all.merge(grantees.clone());
        }
        let everyone: Vec<UserId> = if all.everyone {
            store.all_user_ids().await?
        } else {
            Vec::new()
        };
        let mut by_email: HashMap<String, UserId> = HashMap::new();
        if !all.emails.is_empty() {
            let emails: Vec<String> = all.emails.into_iter().collect();
            for user in store.users_by_emails(&emails).await? {
                by_email.insert(user.email.trim().to_lowercase(), user.id);
            }
        }
        // The owner needs no grant.
        let owner = store.get_kb(run.kb_id).await?.owner_id;
        let mut grants: BTreeSet<SyncGrant> = BTreeSet::new();
        for (source_id, grantees) in &per_source {
            let readers = grantees
                .emails
                .iter()
                .filter_map(|email| by_email.get(email))
                .chain(everyone.iter().filter(|_| grantees.everyone));
            for &user_id in readers {
                if user_id != owner {
                    grants.insert(SyncGrant {
                        source_id: *source_id,
                        user_id,
                    });
                }
            }
        }
        let grants: Vec<SyncGrant> = grants.into_iter().collect();
        store.replace_sync_grants(run.kb_id, &grants, now).await?;
        tracing::debug!(kb.id = %run.kb_id, grants = grants.len(), "sync grants replaced");
        Ok(Ok(()))
    }

    fn count_skip(&self, run: &mut Run, source: &Source, path: &str, skip: Skip) {
        run.skipped += 1;
        metrics::counter!(FILES_METRIC, "outcome" => "skipped").increment(1);
        tracing::debug!(
            kb.id = %source.kb_id, source.id = %source.id, file = path, reason = skip.label(),
            "file skipped: {}", skip.reason()
        );
    }

    /// Records a failed file at once (so every instance sees it) and tells the listeners.
    async fn fail_file(&self, run: &mut Run, w: &Work, reason: String) {
        run.failed += 1;
        metrics::counter!(FILES_METRIC, "outcome" => "failed").increment(1);
        tracing::info!(kb.id = %run.kb_id, run.id = %run.id, file = %w.path, reason = %reason, "file could not be synced");
        let failure = SyncFailure {
            item_id: w.id.clone(),
            name: w.item.name.clone(),
            reason: reason.clone(),
        };
        // Recorded now unless an unrecorded failure precedes it (kept in order for the end).
        let in_order = run.recorded == run.failures.len();
        run.failures.push(failure.clone());
        if in_order {
            match self.cx.store.record_sync_failures(run.id, &[failure]).await {
                Ok(()) => run.recorded += 1,
                Err(e) => {
                    tracing::warn!(run.id = %run.id, error = %e, "could not record a failed file now: it is recorded when the run ends");
                }
            }
        }
        self.publish(
            run.kb_id,
            SyncEvent::FileFailed {
                run_id: run.id,
                name: w.item.name.clone(),
                reason,
            },
        );
    }

    async fn save_cursor(&self, plan: &mut Plan) -> Result<(), SyncError> {
        let json = plan.state.to_json()?;
        let pending = plan
            .owned
            .iter()
            .filter(|id| {
                plan.state
                    .items
                    .get(id.as_str())
                    .is_some_and(|item| item.synced_hash.as_deref() != Some(item.hash_value().as_str()))
            })
            .count();
        let saved = kbsync_store::SavedState {
            json: &json,
            files: u64::try_from(plan.owned.len()).unwrap_or(u64::MAX),
            pending: u64::try_from(pending).unwrap_or(u64::MAX),
            settings: &self.settings,
        };
        self.cx
            .store
            .set_source_cursor(plan.source.id, Some(&plan.cursor), Some(saved))
            .await?;
        plan.saved = true;
        Ok(())
    }

    /// Persists the progress for every instance; a failure only costs the display.
    async fn save_progress(&self, run: &Run, file: Option<&str>) {
        let progress = SyncProgress {
            run_id: Some(run.id),
            current: run.current,
            total: run.total,
            file: file.map(str::to_owned),
        };
        if let Err(e) = self.cx.store.set_sync_progress(run.kb_id, &progress).await {
            tracing::warn!(kb.id = %run.kb_id, run.id = %run.id, error = %e, "could not persist the sync progress");
        }
    }

    fn publish(&self, kb_id: KbId, event: SyncEvent) {
        self.cx.events.publish(kb_id, event);
    }

    fn publish_end(&self, run: &Run, status: SyncStatus) {
        self.publish(
            run.kb_id,
            SyncEvent::Finished {
                run_id: run.id,
                status,
                processed: run.processed,
                failed: run.failed,
                deleted: run.deleted,
                skipped: run.skipped,
                total_found: run.total_found,
            },
        );
        self.publish(
            run.kb_id,
            SyncEvent::Status {
                run_id: run.id,
                status,
            },
        );
    }

    /// The source answered 404/403. The first time, its documents leave search at once but are
    /// kept, with its cursor and state, and the grants its sharing gave are withdrawn: a passing
    /// error must not cost a full download. When it answers so again on a later run (the loss is
    /// confirmed), its documents go and its cursor is forgotten.
    async fn revoke(&self, source: &Source, run: &mut Run) -> Result<(), SyncError> {
        let store = &self.cx.store;
        if source.revoked_at.is_none() {
            tracing::info!(kb.id = %source.kb_id, source.id = %source.id, "source no longer accessible: its documents are hidden until the next run confirms it");
            store.mark_source_revoked(source.id, self.cx.clock.now()).await?;
        } else {
            tracing::info!(kb.id = %source.kb_id, source.id = %source.id, "source still not accessible: removing its documents");
            for doc in store.source_documents(source.id).await? {
                self.remove_document(&doc).await?;
                run.deleted += 1;
            }
            store.set_source_cursor(source.id, None, None).await?;
        }
        // Its sharing no longer counts: the grants are computed again.
        store.forget_sharing_reads(Some(source.kb_id)).await?;
        Ok(())
    }

    async fn remove_document(&self, doc: &Document) -> Result<(), SyncError> {
        match self.cx.store.delete_document(doc.kb_id, doc.id).await {
            Ok(unreferenced) => {
                metrics::counter!(FILES_METRIC, "outcome" => "deleted").increment(1);
                if let Some(hash) = unreferenced {
                    self.delete_blob(&hash).await;
                }
            }
            // Removed meanwhile (by hand): nothing left to do.
            Err(StoreError::NotFound) => {}
            Err(e) => return Err(e.into()),
        }
        Ok(())
    }

    async fn delete_blob(&self, hash: &str) {
        if let Err(e) = self.cx.blobs.delete(hash).await {
            tracing::warn!(blob.hash = hash, error = %e, "could not remove an unreferenced blob");
        }
    }
}

impl Plan {
    fn new(source: Source, state: SourceState, cursor: String) -> Self {
        Self {
            source,
            state,
            cursor,
            changed: false,
            full: false,
            sharing_changed: false,
            owned: HashSet::new(),
            remaining: 0,
            incomplete: false,
            saved: false,
        }
    }
}

/// A folder's round applied to the state it is relative to: the source ready to be planned.
fn planned(
    source: &Source,
    mut state: SourceState,
    changes: &BTreeMap<String, RemoteItem>,
    cursor: String,
    full: bool,
    sharing_changed: bool,
) -> Gathered {
    if full {
        // A full enumeration returns everything there is: what it did not return is gone.
        state.items.retain(|id, _| changes.contains_key(id));
    }
    for item in changes.values() {
        state.apply(item);
    }
    state.prune(&source.item_id);
    let mut plan = Plan::new(source.clone(), state, cursor);
    plan.changed = full || !changes.is_empty();
    plan.full = full;
    plan.sharing_changed = sharing_changed;
    Gathered::Ready(Box::new(plan))
}

/// The settings that decide what a saved state says about skipped files: the size limit and the
/// types that can be indexed. A state saved under other settings is planned again.
fn state_settings(limits: &SyncLimits) -> String {
    format!(
        "max_file_size={};types={}",
        limits.max_file_size,
        kbsync_ingest::supported_extensions().join(",")
    )
}

/// Whether a gathered source needs no planning: a quiet folder, or a file source that did not
/// change and has nothing to retry.
fn is_quiet(source: &Source, g: &Gathered, settings: &str) -> bool {
    match g {
        Gathered::Quiet(_) => true,
        Gathered::Ready(plan) => {
            plan.source.kind == SourceKind::File
                && !plan.changed
                && source.state_pending == Some(0)
                && source.state_settings.as_deref() == Some(settings)
        }
        Gathered::Revoked | Gathered::Failed(_) => false,
    }
}

fn mark_synced(state: &mut SourceState, id: &str, skipped: Option<Skip>) {
    if let Some(item) = state.items.get_mut(id) {
        item.synced_hash = Some(item.hash_value());
        item.skipped = skipped;
    }
}

/// Where a document shows in its knowledge base: the path the user picked the source at, then
/// the item's path below it (`/Team/Notes/a.txt`), so that it reads as the path in the drive. A
/// file source keeps the folder it was picked in and takes the file's current name. Without a
/// picked path, the path starts at the source's own name.
fn document_path(source: &Source, tree_path: &str) -> String {
    let picked = source.path.trim().trim_end_matches('/');
    if source.path.trim().is_empty() {
        return format!("/{tree_path}");
    }
    match source.kind {
        SourceKind::Folder => match tree_path.split_once('/') {
            Some((_, below)) => format!("{picked}/{below}"),
            None => format!("{picked}/"),
        },
        SourceKind::File => {
            let folder = picked.rsplit_once('/').map_or("", |(folder, _)| folder);
            format!("{folder}/{tree_path}")
        }
    }
}

#[cfg(test)]
mod document_path_tests {
    use super::*;

    fn source(kind: SourceKind, path: &str) -> Source {
        Source {
            id: Uuid::nil(),
            kb_id: Uuid::nil(),
            provider: kbsync_core::datasource::DatasourceKind::OneDrive,
            kind,
            drive_id: "d".into(),
            item_id: "i".into(),
            name: "n".into(),
            path: path.into(),
            cursor: None,
            state_files: None,
            state_pending: None,
            state_settings: None,
            revoked_at: None,
            created_at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn documents_read_as_paths_in_the_drive_below_the_picked_source() {
        let team = source(SourceKind::Folder, "/Team");
        assert_eq!(document_path(&team, "Team/Notes/a.txt"), "/Team/Notes/a.txt");
        let root = source(SourceKind::Folder, "/");
        assert_eq!(document_path(&root, "root/a.txt"), "/a.txt");
        let renamed = source(SourceKind::File, "/Loose/old.txt");
        assert_eq!(document_path(&renamed, "new.txt"), "/Loose/new.txt");
        let unnamed = source(SourceKind::Folder, "");
        assert_eq!(document_path(&unnamed, "Team/a.txt"), "/Team/a.txt");
    }
}
