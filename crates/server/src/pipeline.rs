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

use kbsync_core::{CharSpan, Chunk, Clock, Document, DocumentId, DocumentStatus};
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
        // The same bytes uploaded again: not tried again (docs/reliability.md, "Quarantine").
        if doc.status == DocumentStatus::Quarantined {
            tracing::info!(document.id = %doc.id, kb.id = %doc.kb_id, "document quarantined: not extracted again");
            return;
        }
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
            Err(Failure {
                reason,
                strike: false,
            }) => {
                tracing::info!(document.id = %doc.id, kb.id = %doc.kb_id, reason = %reason, "document failed");
                self.store
                    .fail_document(doc.id, &reason, self.clock.now())
                    .await
                    .map(|()| "failed")
            }
            // The extractor timed out or crashed: a strike against these bytes.
            Err(Failure { reason, strike: true }) => {
                tracing::info!(document.id = %doc.id, kb.id = %doc.kb_id, reason = %reason, "document failed: a strike towards quarantine");
                self.store
                    .strike_document(doc.id, &doc.content_hash, &reason, self.clock.now())
                    .await
                    .map(|status| match status {
                        DocumentStatus::Quarantined => "quarantined",
                        _ => "failed",
                    })
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

    /// Extracts and chunks a document.
    async fn extract(&self, doc: &Document) -> Result<Vec<Chunk>, Failure> {
        let kind = FileKind::detect(&doc.name, Some(&doc.mime))
            .ok_or_else(|| Failure::plain(format!("unsupported file type: {}", doc.mime)))?;
        let path = self
            .blobs
            .path(&doc.content_hash)
            .map_err(|e| Failure::plain(format!("the stored file could not be read: {e}")))?;
        self.extractor
            .process_file(kind, path)
            .await
            .map(|chunks| chunks.into_iter().map(indexed_chunk).collect())
            .map_err(|e| match e {
                ExtractError::Io(e) => Failure::plain(format!("the stored file could not be read: {e}")),
                other => Failure {
                    strike: other.counts_as_strike(),
                    reason: other.to_string(),
                },
            })
    }
}

/// Why a document could not be extracted.
struct Failure {
    /// Shown to users.
    reason: String,
    /// The extractor itself timed out or crashed: a strike towards quarantine.
    strike: bool,
}

impl Failure {
    fn plain(reason: String) -> Self {
        Self {
            reason,
            strike: false,
        }
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

    #[tokio::test]
    async fn the_same_bytes_timing_out_the_extractor_twice_are_quarantined_and_not_extracted_again() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = kbsync_store::connect("sqlite::memory:").await.unwrap();
        let blobs = BlobStore::new(dir.path());
        let start: DateTime<Utc> = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let clock = Arc::new(ManualClock::new(start));
        // A real file the extractor times out on: millions of empty XML elements, 400 ms allowed.
        let pipeline = Pipeline::new(
            store.clone(),
            blobs.clone(),
            Extractor::new(IngestConfig {
                per_file_timeout: std::time::Duration::from_millis(400),
                ..IngestConfig::default()
            }),
            clock.clone(),
        );
        let owner = kbsync_kit::fixtures::user(&*store, Role::User, start).await;
        let kb = kbsync_kit::fixtures::kb(&*store, owner, "uploads", KbType::Local, start).await;
        let slow = blobs
            .put_bytes(format!("<r>{}</r>", "<a/>".repeat(8_000_000)).as_bytes())
            .await
            .unwrap();
        let upload = |hash: &str| NewDocument {
            kb_id: kb,
            name: "slow.xml".into(),
            path: "/slow.xml".into(),
            mime: "application/xml".into(),
            size: 1,
            content_hash: hash.to_owned(),
            source_item_id: None,
            web_url: None,
        };
        let put_and_process = |hash: String, at: i64| {
            let (store, pipeline, clock) = (store.clone(), pipeline.clone(), clock.clone());
            async move {
                let at = start + chrono::Duration::seconds(at);
                let (doc, _) = store
                    .put_uploaded_document(uuid::Uuid::new_v4(), upload(&hash), at)
                    .await
                    .unwrap();
                // Whatever the pipeline records is stamped later than the upload.
                clock.set(at + chrono::Duration::seconds(1));
                pipeline.enqueue(doc);
                pipeline.drain().await;
                store.get_document(kb, doc_id(&*store, kb).await).await.unwrap()
            }
        };

        let first = put_and_process(slow.hash.clone(), 10).await;
        assert_eq!(first.status, DocumentStatus::Failed, "{first:?}");
        let second = put_and_process(slow.hash.clone(), 20).await;
        assert_eq!(second.status, DocumentStatus::Quarantined, "{second:?}");
        let reason = second.error.clone().unwrap();
        assert!(reason.starts_with("quarantined: "), "{reason}");
        // The same bytes again: still quarantined, and the pipeline recorded nothing (no
        // extraction, no strike).
        let third = put_and_process(slow.hash.clone(), 30).await;
        assert_eq!(third.status, DocumentStatus::Quarantined);
        assert_eq!(third.error.as_deref(), Some(reason.as_str()));
        assert_eq!(third.updated_at, start + chrono::Duration::seconds(30));
        // Other bytes are extracted.
        let fixed = blobs.put_bytes(b"<r>defused dandelion</r>").await.unwrap();
        let fourth = put_and_process(fixed.hash, 40).await;
        assert_eq!(fourth.status, DocumentStatus::Processed, "{fourth:?}");
        assert_eq!(hits(&*store, "dandelion").await, 1);
    }

    async fn doc_id(store: &dyn Store, kb: kbsync_core::KbId) -> DocumentId {
        let page = kbsync_store::Page { limit: 10, offset: 0 };
        let docs = store.list_documents(kb, page).await.unwrap();
        assert_eq!(docs.total, 1, "one path, one document");
        docs.items[0].id
    }
}
