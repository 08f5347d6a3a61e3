//! The ingestion pipeline: a stored blob becomes extracted, chunked, indexed text.
//!
//! Work is bounded: at most `max_concurrent` documents are extracted at once, however many are
//! queued, each from its stored file (read in bounded memory where the format allows; see
//! `kbsync_ingest`). A failure marks that one document `failed` with a reason and
//! never affects the others. Documents left `pending` by an earlier process are picked up again
//! by [`Pipeline::resume_pending`].

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use kbsync_core::{CharSpan, Chunk, Clock, Document, DocumentId};
use kbsync_ingest::{ExtractError, Extractor, FileKind};
use kbsync_store::{BlobStore, Store, StoreError};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

/// How many pending documents a start-up resumes at most; the rest wait for the next start.
const RESUME_BATCH: u32 = 10_000;

#[derive(Clone)]
pub struct Pipeline {
    store: Arc<dyn Store>,
    blobs: BlobStore,
    extractor: Extractor,
    clock: Arc<dyn Clock>,
    permits: Arc<Semaphore>,
    tasks: TaskTracker,
    /// Documents queued or being processed, so that the same one is never processed twice at
    /// once (an upload racing the start-up resume, say).
    in_flight: Arc<Mutex<HashSet<DocumentId>>>,
}

impl Pipeline {
    pub fn new(store: Arc<dyn Store>, blobs: BlobStore, extractor: Extractor, clock: Arc<dyn Clock>) -> Self {
        let permits = Arc::new(Semaphore::new(extractor.config().max_concurrent.max(1)));
        Self {
            store,
            blobs,
            extractor,
            clock,
            permits,
            tasks: TaskTracker::new(),
            in_flight: Arc::default(),
        }
    }

    /// Queues a pending document unless it is already queued; returns at once.
    pub fn enqueue(&self, doc: Document) {
        if !self
            .in_flight
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(doc.id)
        {
            return;
        }
        let this = self.clone();
        self.tasks.spawn(async move {
            let id = doc.id;
            this.process(doc).await;
            this.in_flight
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&id);
        });
    }

    /// Queues the documents an earlier process left pending.
    pub async fn resume_pending(&self) -> Result<usize, StoreError> {
        let pending = self.store.pending_documents(RESUME_BATCH).await?;
        let n = pending.len();
        for doc in pending {
            self.enqueue(doc);
        }
        if n > 0 {
            tracing::info!(documents = n, "resuming ingestion of pending documents");
        }
        Ok(n)
    }

    /// Waits until every queued document is finished; new work may not be queued meanwhile.
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
    }

    async fn process(&self, doc: Document) {
        let Ok(_permit) = self.permits.clone().acquire_owned().await else {
            return;
        };
        #[expect(clippy::disallowed_methods, reason = "measures the ingestion's real duration")]
        let started = Instant::now();
        let outcome = match self.extract(&doc).await {
            Ok(chunks) => self
                .store
                .complete_document(doc.id, &chunks, self.clock.now())
                .await
                .map(|()| "processed"),
            Err(reason) => {
                tracing::info!(document.id = %doc.id, kb.id = %doc.kb_id, reason = %reason, "document failed");
                self.store
                    .fail_document(doc.id, &reason, self.clock.now())
                    .await
                    .map(|()| "failed")
            }
        };
        match outcome {
            Ok(outcome) => {
                metrics::counter!("kbsync_documents_ingested_total", "outcome" => outcome).increment(1);
                metrics::histogram!("kbsync_ingest_seconds").record(started.elapsed().as_secs_f64());
            }
            // Deleted while it was being processed: nothing left to record.
            Err(StoreError::NotFound) => {}
            Err(e) => {
                tracing::error!(document.id = %doc.id, error = %e, "could not record the ingestion result")
            }
        }
    }

    /// Extracts and chunks a document; the error is the reason shown to users.
    async fn extract(&self, doc: &Document) -> Result<Vec<Chunk>, String> {
        let kind = FileKind::detect(&doc.name, Some(&doc.mime))
            .ok_or_else(|| format!("unsupported file type: {}", doc.mime))?;
        let path = self
            .blobs
            .path(&doc.content_hash)
            .map_err(|e| format!("the stored file could not be read: {e}"))?;
        self.extractor
            .process_file(kind, path)
            .await
            .map(|chunks| chunks.into_iter().map(indexed_chunk).collect())
            .map_err(|e| match e {
                ExtractError::Io(e) => format!("the stored file could not be read: {e}"),
                other => other.to_string(),
            })
    }
}

/// A chunk as the store indexes it, with its place in the document's normalised text.
fn indexed_chunk(c: kbsync_ingest::TextChunk) -> Chunk {
    Chunk {
        text: c.text,
        span: Some(CharSpan {
            start: u64::try_from(c.start).unwrap_or(u64::MAX),
            end: u64::try_from(c.end).unwrap_or(u64::MAX),
        }),
    }
}
