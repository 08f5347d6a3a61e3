//! Step 3, applying the work list: files are downloaded, stored, extracted and indexed with
//! bounded concurrency, each within its time limit; each finished file is booked (counts, state,
//! progress, failures) and a source's cursor is saved once all of its files are done.

use std::sync::Arc;

use futures::StreamExt;
use kbsync_core::datasource::{Datasource, DatasourceError, TokenSource};
use kbsync_core::{Source, SyncFailure, SyncPhase};
use kbsync_ingest::FileKind;
use kbsync_store::{BlobError, NewDocument};
use tokio_util::sync::CancellationToken;

use super::phases::PhaseMeter;
use super::plan::mark_synced;
use super::types::{Plan, Run, Stop, Work};
use super::{FILES_METRIC, SyncEngine, SyncError};
use crate::events::SyncEvent;
use crate::state::Skip;

enum FileOutcome {
    Processed,
    Skipped(Skip),
    Failed(String),
    /// Extraction killed or timed out the extractor again on the same content: the document
    /// is quarantined, with this reason.
    Quarantined(String),
    Cancelled,
    Unauthorized(String),
}

/// What downloading and extracting one file produced, before anything is written to the store.
enum Fetched {
    Indexed {
        blob: kbsync_store::HeldBlob,
        chunks: Vec<kbsync_core::Chunk>,
        kind: FileKind,
    },
    Unreadable {
        blob: kbsync_store::HeldBlob,
        reason: String,
        kind: FileKind,
        /// The extractor itself timed out or crashed: a strike towards quarantine.
        strike: bool,
    },
    Done(FileOutcome),
}

impl SyncEngine {
    /// Downloads, extracts and indexes the work list with bounded concurrency, saving each
    /// source's cursor once all of its files are done. Returns why it stopped early, if it did.
    pub(super) async fn bring_in_all(
        &self,
        run: &mut Run,
        plans: &mut [Plan],
        work: Vec<Work>,
        ds: &dyn Datasource,
        tokens: &dyn TokenSource,
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
        // The files add their own download, extract and index times.
        let meter = run.phases.clone();
        let meter = &meter;
        let produce = async move {
            let mut files = futures::stream::iter(work)
                .map(|w| async move {
                    let outcome = if stop_ref.is_cancelled() {
                        Ok(FileOutcome::Cancelled)
                    } else {
                        self.bring_in(&w, ds, tokens, stop_ref, meter).await
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
            FileOutcome::Quarantined(reason) => {
                // Brought in as far as it goes: not tried again until its content changes.
                mark_synced(&mut plan.state, &w.id, None);
                self.report_quarantined(run, &w.id, &w.item.name, reason).await;
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
            run.bytes = run.bytes.saturating_add(w.announced_size());
            self.save_progress(run, Some(&w.path)).await;
            self.publish(
                run.kb_id,
                SyncEvent::Progress {
                    run_id: run.id,
                    current: run.current,
                    total: run.total,
                    bytes: run.bytes,
                    total_bytes: run.total_bytes,
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
    /// document is never left half written. Its time goes to `meter`'s download, extract and
    /// index phases.
    async fn bring_in(
        &self,
        w: &Work,
        ds: &dyn Datasource,
        tokens: &dyn TokenSource,
        stop: &CancellationToken,
        meter: &Arc<PhaseMeter>,
    ) -> Result<FileOutcome, SyncError> {
        let limit = self.cx.limits.file_timeout;
        let fetched = tokio::select! {
            biased;
            () = stop.cancelled() => return Ok(FileOutcome::Cancelled),
            fetched = tokio::time::timeout(limit, self.fetch(w, ds, tokens, meter)) => fetched,
        };
        let (blob, kind, chunks) = match fetched {
            // Not a strike: the download may have been what was slow, or the file waited for
            // the extractor; the extractor's own limit is what times out a file.
            Err(_) => {
                return Ok(FileOutcome::Failed(format!(
                    "timed out: downloading and extracting took longer than {}s",
                    limit.as_secs_f64()
                )));
            }
            Ok(Fetched::Done(outcome)) => return Ok(outcome),
            Ok(Fetched::Indexed { blob, chunks, kind }) => (blob, kind, Ok(chunks)),
            Ok(Fetched::Unreadable {
                blob,
                reason,
                kind,
                strike,
            }) => (blob, kind, Err((reason, strike))),
        };
        let held = blob;
        let blob = held.blob();
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
        let _indexing = meter.time(SyncPhase::Index);
        // A replaced blob is collected later, if no document references it then
        // (docs/storage.md).
        let (doc, _replaced) = store
            .upsert_source_document(self.cx.random.uuid(), w.source_id, new, self.cx.clock.now())
            .await?;
        // The row is committed: from now on the collector keeps the blob; put it back in case
        // it was collected before.
        if let Err(e) = held.settle().await {
            let reason = format!("the stored file could not be kept: {e}");
            store.fail_document(doc.id, &reason, self.cx.clock.now()).await?;
            return Ok(FileOutcome::Failed(reason));
        }
        match chunks {
            Ok(chunks) => {
                store
                    .complete_document(doc.id, &chunks, self.cx.clock.now())
                    .await?;
                Ok(FileOutcome::Processed)
            }
            Err((reason, false)) => {
                store.fail_document(doc.id, &reason, self.cx.clock.now()).await?;
                Ok(FileOutcome::Failed(reason))
            }
            Err((reason, true)) => {
                // Counted against the content as the source identifies it, which planning
                // compares before downloading.
                let status = store
                    .strike_document(doc.id, &w.item.hash_value(), &reason, self.cx.clock.now())
                    .await?;
                if status == kbsync_core::DocumentStatus::Quarantined {
                    Ok(FileOutcome::Quarantined(kbsync_core::quarantine_reason(&reason)))
                } else {
                    Ok(FileOutcome::Failed(reason))
                }
            }
        }
    }

    /// The interruptible part of bringing a file in: download to the blob store, then extract.
    async fn fetch(
        &self,
        w: &Work,
        ds: &dyn Datasource,
        tokens: &dyn TokenSource,
        meter: &Arc<PhaseMeter>,
    ) -> Fetched {
        let Some(kind) = FileKind::detect(&w.item.name, w.item.mime.as_deref()) else {
            return Fetched::Done(FileOutcome::Skipped(Skip::UnsupportedType));
        };
        let max = self.cx.limits.max_file_size;
        // The bytes are streamed into the blob store as they arrive: both are the download.
        let downloading = meter.time(SyncPhase::Download);
        let stream = match ds.download(tokens, &w.item.to_remote(&w.id, &w.drive_id)).await {
            Ok(stream) => stream,
            Err(DatasourceError::Unauthorized(why)) => return Fetched::Done(FileOutcome::Unauthorized(why)),
            Err(e) => return Fetched::Done(FileOutcome::Failed(format!("download failed: {e}"))),
        };
        let blob = match self.cx.blobs.write_stream_held(stream, max).await {
            Ok(blob) => blob,
            Err(BlobError::TooLarge { limit }) => {
                return Fetched::Done(FileOutcome::Skipped(Skip::TooLarge { limit }));
            }
            Err(e) => return Fetched::Done(FileOutcome::Failed(format!("download failed: {e}"))),
        };
        drop(downloading);
        let _extracting = meter.time(SyncPhase::Extract);
        // The held copy: the collector may remove the blob's path until the document row is
        // written (docs/storage.md).
        let path = blob.content_path().to_path_buf();
        // From the stored file rather than a copy in memory: plain text is read only up to the
        // text cap and zip containers part by part, so a large file does not cost its size.
        match self.cx.extractor.process_file(kind, path).await {
            Ok(chunks) => Fetched::Indexed {
                blob,
                chunks: chunks.into_iter().map(indexed_chunk).collect(),
                kind,
            },
            // Our own storage failed, not the file: not recorded against the document, retried.
            Err(kbsync_ingest::ExtractError::Io(e)) => Fetched::Done(FileOutcome::Failed(format!(
                "the stored file could not be read: {e}"
            ))),
            Err(e) => Fetched::Unreadable {
                blob,
                reason: e.to_string(),
                kind,
                strike: e.counts_as_strike(),
            },
        }
    }

    pub(super) fn count_skip(&self, run: &mut Run, source: &Source, path: &str, skip: Skip) {
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
        self.record_failure(run, &w.id, &w.item.name, reason).await;
    }

    /// Reports a quarantined file in the run's history (with its failed files, but not counted
    /// as failed) and to the listeners.
    pub(super) async fn report_quarantined(&self, run: &mut Run, item_id: &str, name: &str, reason: String) {
        run.quarantined += 1;
        metrics::counter!(FILES_METRIC, "outcome" => "quarantined").increment(1);
        tracing::info!(kb.id = %run.kb_id, run.id = %run.id, file = name, reason = %reason, "file quarantined");
        self.record_failure(run, item_id, name, reason).await;
    }

    async fn record_failure(&self, run: &mut Run, item_id: &str, name: &str, reason: String) {
        let failure = SyncFailure {
            item_id: item_id.to_owned(),
            name: name.to_owned(),
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
                name: name.to_owned(),
                reason,
            },
        );
    }

    /// Saves the source's cursor with what changed in its state since it was read or last saved.
    pub(super) async fn save_cursor(&self, plan: &mut Plan) -> Result<(), SyncError> {
        let changes = plan.state.changes(&plan.owned)?;
        let saved = kbsync_store::SavedItems {
            upsert: &changes.upsert,
            remove: &changes.remove,
            files: changes.files,
            pending: changes.pending,
            settings: &self.settings,
        };
        self.cx
            .store
            .save_source_items(plan.source.id, &plan.cursor, saved)
            .await?;
        plan.state.saved(&changes);
        plan.saved = true;
        Ok(())
    }
}

/// A chunk as the store indexes it, with its place in the document's normalised text.
fn indexed_chunk(c: kbsync_ingest::TextChunk) -> kbsync_core::Chunk {
    kbsync_core::Chunk {
        text: c.text,
        span: Some(kbsync_core::CharSpan {
            start: u64::try_from(c.start).unwrap_or(u64::MAX),
            end: u64::try_from(c.end).unwrap_or(u64::MAX),
        }),
    }
}
