//! The engine itself: [`SyncEngine::run`] records a run and goes through its steps in order
//! (gather every source, check the limit, plan and apply, then permissions; see the crate docs).
//! Each step lives in its own module as more `impl SyncEngine` blocks; this one holds the run's
//! outline and its reporting (progress, events).

mod access;
mod apply;
mod documents;
mod gather;
mod phases;
mod plan;
mod types;

use std::collections::HashSet;

use kbsync_core::datasource::{Datasource, TokenSource};
use kbsync_core::{KbId, SyncPhase, SyncStatus};
use kbsync_core::{Source, SourceKind, SyncFailure, SyncProgress};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub use self::types::{RunStart, RunSummary, SyncContext, SyncError, SyncLimits};

use self::gather::is_quiet;
use self::plan::{assign_owners, state_settings};
use self::types::{Gathered, Plan, Run, Stop, Work};
use crate::events::SyncEvent;

/// The counter of files by outcome.
const FILES_METRIC: &str = "kbsync_sync_files_total";

pub struct SyncEngine {
    cx: SyncContext,
    /// The settings that decide what a saved state says about skipped files (see
    /// [`state_settings`]), computed once.
    settings: String,
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
        tokens: &dyn TokenSource,
        start: impl Into<RunStart>,
        cancel: CancellationToken,
    ) -> Result<RunSummary, SyncError> {
        let RunStart { trigger, due_at } = start.into();
        let store = &self.cx.store;
        // Its wall time starts here.
        let mut run = Run::new(run_id, kb_id);
        store
            .create_sync_run(run_id, kb_id, trigger, due_at, self.cx.clock.now())
            .await?;
        store.set_sync_status(kb_id, SyncStatus::Syncing).await?;
        self.publish(
            kb_id,
            SyncEvent::Status {
                run_id,
                status: SyncStatus::Syncing,
            },
        );
        self.save_progress(&run, None).await;
        tracing::info!(kb.id = %kb_id, run.id = %run_id, trigger = trigger.as_str(), "sync run started");
        match self.run_sources(&mut run, datasource, tokens, &cancel).await {
            Ok(status) => {
                let times = run.phases.times();
                phases::record_metrics(&times);
                store
                    .finish_sync_run(run_id, &run.outcome(status, times), self.cx.clock.now())
                    .await?;
                store.set_sync_status(kb_id, status).await?;
                self.publish_end(&run, status);
                tracing::info!(
                    kb.id = %kb_id, run.id = %run_id, status = status.as_str(), processed = run.processed,
                    failed = run.failed, deleted = run.deleted, skipped = run.skipped,
                    total_found = run.total_found, wall_s = times.wall.as_secs_f64(),
                    enumerate_s = times.enumerate.as_secs_f64(), plan_s = times.plan.as_secs_f64(),
                    download_s = times.download.as_secs_f64(), extract_s = times.extract.as_secs_f64(),
                    index_s = times.index.as_secs_f64(), permissions_s = times.permissions.as_secs_f64(),
                    "sync run finished"
                );
                Ok(run.summary(status, times))
            }
            Err(e) => {
                tracing::error!(kb.id = %kb_id, run.id = %run_id, error = %e, "sync run failed");
                let status = SyncStatus::Failed;
                let times = run.phases.times();
                phases::record_metrics(&times);
                // Best effort: the database may be what failed.
                let _ = store
                    .finish_sync_run(run_id, &run.outcome(status, times), self.cx.clock.now())
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
        tokens: &dyn TokenSource,
        cancel: &CancellationToken,
    ) -> Result<SyncStatus, SyncError> {
        // 1. Gather every source's changes. A source reads every saved item when every
        // permission is due (the read covers them all) or its items were decided under other
        // settings; otherwise only those its round touches.
        let enumerating = run.phases.time(SyncPhase::Enumerate);
        let access_due = self.permissions_due(run).await?;
        let sources = self.cx.store.list_sources(run.kb_id).await?;
        let read_all =
            |source: &Source| access_due || source.state_settings.as_deref() != Some(self.settings.as_str());
        let mut gathered = Vec::with_capacity(sources.len());
        for source in sources {
            if cancel.is_cancelled() {
                return Ok(SyncStatus::Cancelled);
            }
            let outcome = match source.kind {
                SourceKind::Folder => {
                    let all = read_all(&source);
                    self.gather_folder(&source, ds, tokens, cancel, run, all).await?
                }
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
        drop(enumerating);
        let planning = run.phases.time(SyncPhase::Plan);

        // Nothing changed anywhere, nothing is left to retry and no permission is due: move the
        // cursors on, without reading any saved state or document.
        if !access_due
            && gathered
                .iter()
                .all(|(source, g)| is_quiet(source, g, &self.settings))
        {
            drop(planning);
            return self.quiet_run(run, &gathered, ds, tokens).await;
        }
        // Otherwise every source is planned, quiet ones included (an item may be in several).
        let mut loaded = Vec::with_capacity(gathered.len());
        for (source, g) in gathered {
            let g = match g {
                Gathered::Quiet(quiet) => {
                    let all = read_all(&source);
                    self.wake(&source, *quiet, all).await?
                }
                other => other,
            };
            loaded.push((source, g));
        }
        let mut gathered = loaded;

        // A source that read only the items its round touches reads those the others touch too:
        // an item in several sources is one document, and each must know whether it holds it.
        let touched = self.read_touched(&mut gathered).await?;

        // 2. The limit, over distinct files (the same item in two sources is one document), and
        // which source looks after each file.
        let owner = {
            let mut plans: Vec<&mut Plan> = gathered
                .iter_mut()
                .filter_map(|(_, g)| match g {
                    Gathered::Ready(plan) => Some(plan.as_mut()),
                    _ => None,
                })
                .collect();
            assign_owners(&mut plans)
        };
        let mut failed_files: HashSet<String> = HashSet::new();
        let mut found: u64 = 0;
        for (source, g) in &gathered {
            match g {
                Gathered::Ready(plan) => found += plan.state.owned_files(&plan.owned),
                Gathered::Failed(_) => {
                    // Its files are kept; those no other source looks after still count.
                    let old = match &touched {
                        None => self.load_state(source).await?,
                        Some(ids) => self.read_items(source, ids).await?,
                    };
                    if let Some(old) = old {
                        let files: Vec<String> = old.files(&source.item_id).map(str::to_owned).collect();
                        found += u64::try_from(files.iter().filter(|id| !owner.contains_key(*id)).count())
                            .unwrap_or(u64::MAX);
                        found += old.owned_files(&HashSet::new());
                        failed_files.extend(files);
                    }
                }
                Gathered::Revoked | Gathered::Quiet(_) => {}
            }
        }
        run.total_found = found;
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
        let work = self
            .plan(run, &mut plans, &owner, &failed_files, touched.as_deref())
            .await?;
        if cancel.is_cancelled() {
            return Ok(SyncStatus::Cancelled);
        }
        run.total = u64::try_from(work.len()).unwrap_or(u64::MAX);
        run.total_bytes = work.iter().map(Work::announced_size).sum();
        self.save_progress(run, None).await;
        for plan in &mut plans {
            if plan.remaining == 0 {
                self.save_cursor(plan).await?;
            }
        }
        drop(planning);
        if let Some(stop) = self
            .bring_in_all(run, &mut plans, work, ds, tokens, cancel)
            .await?
        {
            return Ok(self.stopped(run, stop));
        }

        // 4. Document access, for every source whose round is applied.
        let complete = folders_ok && plans.iter().all(|p| p.saved);
        let _permissions = run.phases.time(SyncPhase::Permissions);
        if let Err(stop) = self
            .sync_access(run, &mut plans, access_due, complete, ds, tokens)
            .await?
        {
            return Ok(self.stopped(run, stop));
        }
        Ok(run.end_status())
    }

    /// The run when every source is quiet and no permission is due: the cursors move on, the
    /// groups that are due are expanded.
    async fn quiet_run(
        &self,
        run: &mut Run,
        gathered: &[(Source, Gathered)],
        ds: &dyn Datasource,
        tokens: &dyn TokenSource,
    ) -> Result<SyncStatus, SyncError> {
        let planning = run.phases.time(SyncPhase::Plan);
        // Each source counts the files it looks after, so the sum counts distinct files.
        run.total_found = gathered
            .iter()
            .map(|(source, _)| source.state_files.unwrap_or(0))
            .sum();
        if run.total_found > self.cx.limits.max_files {
            return Ok(self.over_limit(run));
        }
        for (source, g) in gathered {
            if let Gathered::Quiet(quiet) = g
                && source.cursor.as_deref() != Some(quiet.cursor.as_str())
            {
                self.cx
                    .store
                    .advance_source_cursor(source.id, &quiet.cursor)
                    .await?;
            }
        }
        let quarantine = self.cx.store.quarantined_documents(run.kb_id).await?;
        self.report_quarantine(run, quarantine, &HashSet::new()).await;
        drop(planning);
        let _permissions = run.phases.time(SyncPhase::Permissions);
        if let Err(stop) = self.refresh_groups(run, ds, tokens).await? {
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
}
