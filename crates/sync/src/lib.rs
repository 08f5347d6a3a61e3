//! The sync engine: one run brings a knowledge base's documents in line with its sources.
//!
//! A folder source asks the datasource for the changes since its cursor, page by page, and
//! buffers the whole round before applying it (items arrive in any order, possibly twice, children
//! before parents). What the engine knows of the source's items (names, parents, hashes) is kept
//! in a [`state::SourceState`] saved together with the cursor, so paths are rebuilt from parent
//! ids and nameless tombstones are resolved by id. A file source compares its content hash.
//! The new cursor is saved only once every change of the round is applied or recorded as a
//! failed file; failed files are retried by the next run although the cursor moved, because
//! their state says they were never brought in at their current hash.

pub mod events;
pub mod runner;
pub mod scheduler;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use kbsync_core::datasource::{Datasource, ItemKind, NextPage, ProviderError, SourceRef, TokenProvider};
use kbsync_core::{Clock, Document, KbId, Random, SyncStatus};
use kbsync_ingest::{Extractor, FileKind};
use kbsync_store::{
    BlobError, BlobStore, DocumentLocation, NewDocument, Source, SourceKind, Store, StoreError, SyncFailure,
    SyncRunOutcome, SyncTrigger,
};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::state::{KnownItem, SourceState};

/// How many times one source may answer "cursor expired" in one run before the run gives up on it.
const MAX_RESTARTS: usize = 3;

/// Limits of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncLimits {
    /// Files larger than this (bytes) are skipped with a reason.
    pub max_file_size: u64,
    /// Downloads and extractions running at once.
    pub concurrency: usize,
}

impl Default for SyncLimits {
    fn default() -> Self {
        Self {
            max_file_size: 100 * 1024 * 1024,
            concurrency: 8,
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
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub run_id: Uuid,
    pub status: SyncStatus,
    pub processed: u64,
    pub failed: u64,
    pub deleted: u64,
    pub skipped: u64,
    pub total_found: u64,
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
}

#[derive(Debug, Default)]
struct Tally {
    processed: u64,
    failed: u64,
    deleted: u64,
    skipped: u64,
    total_found: u64,
    failures: Vec<SyncFailure>,
}

enum SourceOutcome {
    Done,
    Cancelled,
    Revoked,
    /// The datasource failed in a way that retrying later may fix; nothing was advanced.
    Failed(ProviderError),
}

enum FileOutcome {
    Processed,
    Skipped,
    Failed(String),
    Cancelled,
}

impl SyncEngine {
    pub fn new(cx: SyncContext) -> Self {
        Self { cx }
    }

    /// One run over every source of the knowledge base.
    pub async fn run(
        &self,
        kb_id: KbId,
        datasource: &dyn Datasource,
        tokens: &dyn TokenProvider,
        trigger: SyncTrigger,
        cancel: CancellationToken,
    ) -> Result<RunSummary, SyncError> {
        let store = &self.cx.store;
        let run_id = self.cx.random.uuid();
        store
            .create_sync_run(run_id, kb_id, trigger, self.cx.clock.now())
            .await?;
        store.set_sync_status(kb_id, SyncStatus::Syncing).await?;
        tracing::info!(kb.id = %kb_id, run.id = %run_id, trigger = trigger.as_str(), "sync run started");
        let mut tally = Tally::default();
        match self
            .run_sources(kb_id, datasource, tokens, &cancel, &mut tally)
            .await
        {
            Ok(status) => {
                let summary = RunSummary {
                    run_id,
                    status,
                    processed: tally.processed,
                    failed: tally.failed,
                    deleted: tally.deleted,
                    skipped: tally.skipped,
                    total_found: tally.total_found,
                    failures: tally.failures,
                };
                let outcome = SyncRunOutcome {
                    status,
                    processed: summary.processed,
                    failed: summary.failed,
                    deleted: summary.deleted,
                    skipped: summary.skipped,
                    total_found: summary.total_found,
                    failures: summary.failures.clone(),
                };
                store
                    .finish_sync_run(run_id, &outcome, self.cx.clock.now())
                    .await?;
                store.set_sync_status(kb_id, status).await?;
                tracing::info!(
                    kb.id = %kb_id, run.id = %run_id, status = status.as_str(), processed = summary.processed,
                    failed = summary.failed, deleted = summary.deleted, "sync run finished"
                );
                Ok(summary)
            }
            Err(e) => {
                tracing::error!(kb.id = %kb_id, run.id = %run_id, error = %e, "sync run failed");
                let outcome = SyncRunOutcome {
                    status: SyncStatus::Failed,
                    processed: tally.processed,
                    failed: tally.failed,
                    deleted: tally.deleted,
                    skipped: tally.skipped,
                    total_found: tally.total_found,
                    failures: tally.failures,
                };
                // Best effort: the database may be what failed.
                let _ = store.finish_sync_run(run_id, &outcome, self.cx.clock.now()).await;
                let _ = store.set_sync_status(kb_id, SyncStatus::Failed).await;
                Err(e)
            }
        }
    }

    async fn run_sources(
        &self,
        kb_id: KbId,
        ds: &dyn Datasource,
        tokens: &dyn TokenProvider,
        cancel: &CancellationToken,
        tally: &mut Tally,
    ) -> Result<SyncStatus, SyncError> {
        let (mut revoked, mut failed) = (false, false);
        for source in self.cx.store.list_sources(kb_id).await? {
            if cancel.is_cancelled() {
                return Ok(SyncStatus::Cancelled);
            }
            let outcome = match source.kind {
                SourceKind::Folder => self.sync_folder(&source, ds, tokens, cancel, tally).await?,
                SourceKind::File => self.sync_file(&source, ds, tokens, cancel, tally).await?,
            };
            match outcome {
                SourceOutcome::Done => {}
                SourceOutcome::Cancelled => return Ok(SyncStatus::Cancelled),
                SourceOutcome::Revoked => revoked = true,
                SourceOutcome::Failed(e) => {
                    tracing::warn!(kb.id = %kb_id, source.id = %source.id, error = %e, "source could not be synced");
                    failed = true;
                    tally.failures.push(SyncFailure {
                        item_id: source.item_id.clone(),
                        name: source.name.clone(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        Ok(if revoked {
            SyncStatus::AccessRevoked
        } else if failed {
            SyncStatus::Failed
        } else if tally.failed > 0 {
            SyncStatus::CompletedWithErrors
        } else {
            SyncStatus::Completed
        })
    }

    async fn sync_folder(
        &self,
        source: &Source,
        ds: &dyn Datasource,
        tokens: &dyn TokenProvider,
        cancel: &CancellationToken,
        tally: &mut Tally,
    ) -> Result<SourceOutcome, SyncError> {
        let known = source
            .cursor
            .as_ref()
            .and_then(|_| SourceState::parse(source.state.as_deref()));
        let (mut cursor, mut full) = match known {
            Some(_) => (source.cursor.clone(), false),
            None => (None, true),
        };
        let mut state = known.unwrap_or_default();
        let at = SourceRef {
            drive_id: source.drive_id.clone(),
            item_id: source.item_id.clone(),
        };
        // The latest state of each item of the round: duplicates, last wins.
        let mut changes = BTreeMap::new();
        let mut restarts = 0;
        let next_cursor = loop {
            if cancel.is_cancelled() {
                return Ok(SourceOutcome::Cancelled);
            }
            match ds.changes(tokens, &at, cursor.as_deref()).await {
                Ok(page) => {
                    for item in page.items {
                        changes.insert(item.id.clone(), item);
                    }
                    match page.next {
                        NextPage::More(next) => cursor = Some(next),
                        NextPage::Done(next) => break next,
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
                    self.revoke(source, tally).await?;
                    return Ok(SourceOutcome::Revoked);
                }
                Err(e) => return Ok(SourceOutcome::Failed(e)),
            }
        };
        if full {
            // A full enumeration returns everything there is: what it did not return is gone.
            state.items.retain(|id, _| changes.contains_key(id));
        }
        for item in changes.values() {
            state.apply(item);
        }
        state.prune(&source.item_id);
        self.reconcile(
            source,
            state,
            &source.item_id,
            next_cursor,
            ds,
            tokens,
            cancel,
            tally,
        )
        .await
    }

    async fn sync_file(
        &self,
        source: &Source,
        ds: &dyn Datasource,
        tokens: &dyn TokenProvider,
        cancel: &CancellationToken,
        tally: &mut Tally,
    ) -> Result<SourceOutcome, SyncError> {
        if cancel.is_cancelled() {
            return Ok(SourceOutcome::Cancelled);
        }
        let mut item = match ds.item(tokens, &source.drive_id, &source.item_id).await {
            Ok(item) if !item.deleted && item.kind == ItemKind::File => item,
            Ok(_) | Err(ProviderError::NotFound(_)) => {
                self.revoke(source, tally).await?;
                return Ok(SourceOutcome::Revoked);
            }
            Err(e) => return Ok(SourceOutcome::Failed(e)),
        };
        let mut state = SourceState::parse(source.state.as_deref()).unwrap_or_default();
        state.items.retain(|id, _| *id == item.id);
        // The file is its own root: its path is its name.
        item.parent_id = None;
        state.apply(&item);
        let cursor = state
            .items
            .get(&item.id)
            .map(KnownItem::hash_value)
            .unwrap_or_default();
        self.reconcile(source, state, &source.item_id, cursor, ds, tokens, cancel, tally)
            .await
    }

    /// Brings the source's documents in line with `state`, then saves `cursor` with the state.
    #[allow(clippy::too_many_arguments)]
    async fn reconcile(
        &self,
        source: &Source,
        mut state: SourceState,
        root_id: &str,
        cursor: String,
        ds: &dyn Datasource,
        tokens: &dyn TokenProvider,
        cancel: &CancellationToken,
        tally: &mut Tally,
    ) -> Result<SourceOutcome, SyncError> {
        let store = &self.cx.store;
        let mut docs: HashMap<String, Document> = HashMap::new();
        for doc in store.source_documents(source.id).await? {
            if let Some(item_id) = doc.source_item_id.clone() {
                docs.insert(item_id, doc);
            }
        }
        let mut work = Vec::new();
        let mut keep = Vec::new();
        for (id, item) in &state.items {
            if item.kind != ItemKind::File {
                continue;
            }
            let Some(path) = state.path(root_id, id) else {
                continue;
            };
            tally.total_found += 1;
            keep.push(id.clone());
            let doc = docs.get(id);
            if item.synced_hash.as_deref() == Some(item.hash_value().as_str()) {
                // Content unchanged: at most a rename or move, applied without downloading.
                if let Some(doc) = doc {
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
                            .update_document_location(source.kb_id, doc.id, location, self.cx.clock.now())
                            .await?;
                    }
                }
                continue;
            }
            work.push((id.clone(), item.clone(), path));
        }
        for id in keep {
            docs.remove(&id);
        }
        // Whatever document is left mirrors an item that was deleted or left the subtree.
        for doc in docs.into_values() {
            self.remove_document(&doc).await?;
            tally.deleted += 1;
        }

        let results: Vec<(String, String, Result<FileOutcome, SyncError>)> = futures::stream::iter(work)
            .map(|(id, item, path)| async move {
                let outcome = if cancel.is_cancelled() {
                    Ok(FileOutcome::Cancelled)
                } else {
                    self.bring_in(source, &id, &item, &path, ds, tokens).await
                };
                (id, item.name, outcome)
            })
            .buffer_unordered(self.cx.limits.concurrency.max(1))
            .collect()
            .await;
        let mut cancelled = false;
        for (id, name, outcome) in results {
            match outcome? {
                FileOutcome::Processed => {
                    tally.processed += 1;
                    mark_synced(&mut state, &id);
                }
                FileOutcome::Skipped => {
                    tally.skipped += 1;
                    mark_synced(&mut state, &id);
                }
                FileOutcome::Failed(reason) => {
                    tally.failed += 1;
                    tally.failures.push(SyncFailure {
                        item_id: id,
                        name,
                        reason,
                    });
                }
                FileOutcome::Cancelled => cancelled = true,
            }
        }
        if cancelled || cancel.is_cancelled() {
            return Ok(SourceOutcome::Cancelled);
        }
        store
            .set_source_cursor(source.id, Some(&cursor), Some(&state.to_json()?))
            .await?;
        Ok(SourceOutcome::Done)
    }

    /// Downloads, stores, extracts and indexes one file. Failures of this one file are an
    /// outcome; only a storage failure is an error.
    async fn bring_in(
        &self,
        source: &Source,
        id: &str,
        item: &KnownItem,
        path: &str,
        ds: &dyn Datasource,
        tokens: &dyn TokenProvider,
    ) -> Result<FileOutcome, SyncError> {
        let Some(kind) = FileKind::detect(&item.name, item.mime.as_deref()) else {
            return Ok(FileOutcome::Skipped);
        };
        let max = self.cx.limits.max_file_size;
        if item.size.is_some_and(|s| u64::try_from(s).unwrap_or(0) > max) {
            return Ok(FileOutcome::Skipped);
        }
        let stream = match ds.download(tokens, &item.to_remote(id, &source.drive_id)).await {
            Ok(stream) => stream,
            Err(e) => return Ok(FileOutcome::Failed(format!("download failed: {e}"))),
        };
        let blob = match self.cx.blobs.write_stream(stream, max).await {
            Ok(blob) => blob,
            Err(BlobError::TooLarge { .. }) => return Ok(FileOutcome::Skipped),
            Err(e) => return Ok(FileOutcome::Failed(format!("download failed: {e}"))),
        };
        let new = NewDocument {
            kb_id: source.kb_id,
            name: item.name.clone(),
            path: path.to_owned(),
            mime: item.mime.clone().unwrap_or_else(|| kind.mime().to_owned()),
            size: i64::try_from(blob.size).unwrap_or(i64::MAX),
            content_hash: blob.hash.clone(),
            source_item_id: Some(id.to_owned()),
            web_url: item.web_url.clone(),
        };
        let (doc, unreferenced) = self
            .cx
            .store
            .upsert_source_document(self.cx.random.uuid(), source.id, new, self.cx.clock.now())
            .await?;
        if let Some(hash) = unreferenced {
            self.delete_blob(&hash).await;
        }
        let bytes = match self.cx.blobs.read(&blob.hash).await {
            Ok(bytes) => bytes,
            Err(e) => {
                return Ok(FileOutcome::Failed(format!(
                    "the stored file could not be read: {e}"
                )));
            }
        };
        match self.cx.extractor.process(kind, Bytes::from(bytes)).await {
            Ok(chunks) => {
                self.cx
                    .store
                    .complete_document(doc.id, &chunks, self.cx.clock.now())
                    .await?;
                Ok(FileOutcome::Processed)
            }
            Err(e) => {
                let reason = e.to_string();
                self.cx
                    .store
                    .fail_document(doc.id, &reason, self.cx.clock.now())
                    .await?;
                Ok(FileOutcome::Failed(reason))
            }
        }
    }

    /// The source answered 404/403: its documents go, and its cursor is forgotten.
    async fn revoke(&self, source: &Source, tally: &mut Tally) -> Result<(), SyncError> {
        tracing::info!(kb.id = %source.kb_id, source.id = %source.id, "source no longer accessible: removing its documents");
        for doc in self.cx.store.source_documents(source.id).await? {
            self.remove_document(&doc).await?;
            tally.deleted += 1;
        }
        self.cx.store.set_source_cursor(source.id, None, None).await?;
        Ok(())
    }

    async fn remove_document(&self, doc: &Document) -> Result<(), SyncError> {
        match self.cx.store.delete_document(doc.kb_id, doc.id).await {
            Ok(Some(hash)) => self.delete_blob(&hash).await,
            Ok(None) | Err(StoreError::NotFound) => {}
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

fn mark_synced(state: &mut SourceState, id: &str) {
    if let Some(item) = state.items.get_mut(id) {
        item.synced_hash = Some(item.hash_value());
    }
}
