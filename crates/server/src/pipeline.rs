//! The ingestion pipeline: a stored blob becomes extracted, chunked, indexed text.
//!
//! Work is bounded: at most `max_concurrent` documents are extracted at once, however many are
//! queued, each from its stored file (read in bounded memory where the format allows; see
//! `kbsync_ingest`). A failure marks that one document `failed` with a reason and
//! never affects the others. Documents left `pending` by an earlier process are picked up again
//! by [`Pipeline::resume_pending`].

use std::{
    collections::{HashMap, hash_map::Entry},
    sync::{Arc, Mutex, PoisonError},
    time::Instant,
};

use kbsync_core::{CharSpan, Chunk, Clock, Document, DocumentId};
use kbsync_ingest::{ExtractError, Extractor, FileKind};
use kbsync_store::{BlobStore, Store, StoreError};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

/// A document queued or being processed.
struct InFlight {
    /// The content hash being processed.
    hash: String,
    /// A newer version queued meanwhile.
    next: Option<Document>,
}

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
    /// once (an upload racing the start-up resume, say): the content hash being processed, and
    /// the newer version to process next when the document got other content meanwhile (a
    /// same-name upload).
    in_flight: Arc<Mutex<HashMap<DocumentId, InFlight>>>,
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

    /// Queues a pending document unless it is already queued with the same content; returns at
    /// once. A document queued again with other content (replaced while it was processed) is
    /// processed again once the current run ends, so its newest content is what gets indexed.
    pub fn enqueue(&self, doc: Document) {
        {
            let mut in_flight = self.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
            match in_flight.entry(doc.id) {
                Entry::Occupied(mut queued) => {
                    let queued = queued.get_mut();
                    if queued.hash != doc.content_hash {
                        queued.next = Some(doc);
                    }
                    return;
                }
                Entry::Vacant(slot) => {
                    slot.insert(InFlight {
                        hash: doc.content_hash.clone(),
                        next: None,
                    });
                }
            }
        }
        let this = self.clone();
        self.tasks.spawn(async move {
            let mut doc = doc;
            loop {
                let id = doc.id;
                this.process(doc).await;
                let mut in_flight = this.in_flight.lock().unwrap_or_else(PoisonError::into_inner);
                let next = in_flight.get_mut(&id).and_then(|queued| {
                    let next = queued.next.take()?;
                    queued.hash = next.content_hash.clone();
                    Some(next)
                });
                match next {
                    Some(next) => doc = next,
                    None => {
                        in_flight.remove(&id);
                        break;
                    }
                }
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use kbsync_core::{DocumentStatus, KbType, ManualClock, Role};
    use kbsync_ingest::IngestConfig;
    use kbsync_store::{NewDocument, Reader, SearchQuery};

    async fn hits(store: &dyn Store, text: &str) -> usize {
        store
            .search(SearchQuery {
                text,
                reader: Reader::Admin,
                kb_ids: &[],
                limit: 10,
            })
            .await
            .unwrap()
            .len()
    }

    #[tokio::test]
    async fn a_document_replaced_while_it_is_processed_is_processed_again_with_its_new_content() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = kbsync_store::connect("sqlite::memory:").await.unwrap();
        let blobs = BlobStore::new(dir.path());
        let start: DateTime<Utc> = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let clock = Arc::new(ManualClock::new(start));
        let pipeline = Pipeline::new(
            store.clone(),
            blobs.clone(),
            Extractor::new(IngestConfig {
                max_concurrent: 1,
                ..IngestConfig::default()
            }),
            clock,
        );
        let owner = kbsync_kit::fixtures::user(&*store, Role::User, start).await;
        let kb = kbsync_kit::fixtures::kb(&*store, owner, "versions", KbType::Local, start).await;
        let upload = |hash: String| NewDocument {
            kb_id: kb,
            name: "a.txt".into(),
            path: "/a.txt".into(),
            mime: "text/plain".into(),
            size: 1,
            content_hash: hash,
            source_item_id: None,
            web_url: None,
        };

        // The first version waits for the one extraction slot, held here.
        let slot = pipeline.permits.clone().acquire_owned().await.unwrap();
        let old = blobs.put_bytes(b"the old walrus").await.unwrap();
        let (first, _) = store
            .put_uploaded_document(uuid::Uuid::new_v4(), upload(old.hash), start)
            .await
            .unwrap();
        pipeline.enqueue(first.clone());
        let new = blobs.put_bytes(b"the new bonobo").await.unwrap();
        let (second, replaced) = store
            .put_uploaded_document(uuid::Uuid::new_v4(), upload(new.hash), start)
            .await
            .unwrap();
        assert!(replaced);
        assert_eq!(second.id, first.id);
        pipeline.enqueue(second.clone());
        drop(slot);
        pipeline.drain().await;

        let doc = store.get_document(kb, first.id).await.unwrap();
        assert_eq!(doc.status, DocumentStatus::Processed);
        assert_eq!(hits(&*store, "bonobo").await, 1);
        assert_eq!(hits(&*store, "walrus").await, 0);
    }
}
