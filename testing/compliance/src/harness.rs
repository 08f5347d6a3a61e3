//! A knowledge base synced from a subject: the store, the blob store, kbsync's real sync engine,
//! and what the behaviours ask of them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kbsync_core::datasource::{ContentHash, TokenSource};
use kbsync_core::{
    Clock, Document, DocumentStatus, KbId, ManualClock, Random, Role, SeededRandom, Source, SourceKind,
    SyncStatus, SyncTrigger, UserId,
};
use kbsync_ingest::{Extractor, IngestConfig};
use kbsync_store::{BlobStore, NewSource, Page, Reader, SearchQuery, Store};
use kbsync_sync::events::SyncEvents;
use kbsync_sync::{PermissionPolicy, RunSummary, SyncContext, SyncEngine, SyncLimits};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::Subject;

/// The limits of the behaviours' engine: a 1 MiB file size limit, four files at a time.
pub fn limits() -> SyncLimits {
    SyncLimits {
        max_file_size: 1024 * 1024,
        concurrency: 4,
        max_files: 1000,
        file_timeout: Duration::from_secs(30),
    }
}

/// A knowledge base of a fresh owner, synced from `subject` by kbsync's sync engine.
pub struct Harness<S: Subject> {
    pub subject: S,
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    pub events: SyncEvents,
    pub engine: SyncEngine,
    pub owner: UserId,
    pub kb: KbId,
    random: Arc<dyn Random>,
    blob_dir: tempfile::TempDir,
}

impl<S: Subject> Harness<S> {
    pub async fn new(subject: S, store: Arc<dyn Store>) -> Self {
        let clock = subject.clock();
        let owner = kbsync_kit::fixtures::user(store.as_ref(), Role::User, clock.now()).await;
        let kb = kbsync_kit::fixtures::kb(
            store.as_ref(),
            owner,
            "compliance",
            subject.kind().kb_type(),
            clock.now(),
        )
        .await;
        let random: Arc<dyn Random> = Arc::new(SeededRandom::new(17));
        let blob_dir = tempfile::tempdir().unwrap();
        let events = SyncEvents::new();
        Self {
            engine: SyncEngine::new(SyncContext {
                store: store.clone(),
                blobs: BlobStore::new(blob_dir.path()),
                extractor: Extractor::new(IngestConfig::default()),
                clock: clock.clone(),
                random: random.clone(),
                limits: limits(),
                events: events.clone(),
                permissions: PermissionPolicy::default(),
            }),
            subject,
            store,
            clock,
            events,
            owner,
            kb,
            random,
            blob_dir,
        }
    }

    /// Another engine over the same store, blobs, events and randomness, with other limits (an
    /// administrator changed the configuration).
    pub fn engine_with(&self, limits: SyncLimits) -> SyncEngine {
        SyncEngine::new(SyncContext {
            store: self.store.clone(),
            blobs: self.blobs(),
            extractor: Extractor::new(IngestConfig::default()),
            clock: self.clock.clone(),
            random: self.random.clone(),
            limits,
            events: self.events.clone(),
            permissions: PermissionPolicy::default(),
        })
    }

    pub fn blobs(&self) -> BlobStore {
        BlobStore::new(self.blob_dir.path())
    }

    /// Picks the folder at `path` as a source of the knowledge base.
    pub async fn add_folder_source(&self, path: &str) -> Source {
        let new = NewSource {
            kb_id: self.kb,
            datasource: self.subject.kind(),
            kind: SourceKind::Folder,
            drive_id: self.subject.drive_id(),
            item_id: self.subject.id(path),
            name: path.rsplit('/').next().unwrap_or(path).to_owned(),
            path: path.to_owned(),
        };
        // Sources are listed oldest first: added a second apart, their order is known.
        self.clock.advance(chrono::Duration::seconds(1));
        self.store
            .add_source(Uuid::new_v4(), new, self.clock.now())
            .await
            .unwrap()
    }

    /// One run of `engine` with `tokens`, a second after the previous one.
    pub async fn run_on(
        &self,
        engine: &SyncEngine,
        tokens: &dyn TokenSource,
        cancel: CancellationToken,
    ) -> RunSummary {
        self.clock.advance(chrono::Duration::seconds(1));
        engine
            .run(
                Uuid::new_v4(),
                self.kb,
                self.subject.datasource(),
                tokens,
                SyncTrigger::Manual,
                cancel,
            )
            .await
            .unwrap()
    }

    /// One run with the subject's minted tokens.
    pub async fn sync(&self) -> RunSummary {
        self.run_on(&self.engine, self.subject.tokens(), CancellationToken::new())
            .await
    }

    /// One run that must complete without a failure.
    pub async fn sync_completed(&self) -> RunSummary {
        let summary = self.sync().await;
        assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
        assert_eq!(summary.failed, 0, "{summary:?}");
        summary
    }

    /// Every document of the knowledge base.
    pub async fn documents(&self) -> Vec<Document> {
        self.store
            .list_documents(
                self.kb,
                Page {
                    limit: 1000,
                    offset: 0,
                },
            )
            .await
            .unwrap()
            .items
    }

    /// path → the source's hash of the stored bytes, for every document; each document is
    /// processed, named as its path's last segment, its size that of its bytes, and no two
    /// documents share a path or an item.
    pub async fn contents(&self) -> BTreeMap<String, ContentHash> {
        let docs = self.documents().await;
        let mut out = BTreeMap::new();
        let mut items = std::collections::BTreeSet::new();
        for d in &docs {
            assert_eq!(d.status, DocumentStatus::Processed, "{d:?}");
            assert_eq!(Some(d.name.as_str()), d.path.rsplit('/').next(), "{d:?}");
            let bytes = self.blobs().read(&d.content_hash).await.unwrap();
            assert_eq!(d.size, i64::try_from(bytes.len()).unwrap(), "{d:?}");
            assert!(
                items.insert(d.source_item_id.clone()),
                "two documents of one item: {docs:#?}"
            );
            let previous = out.insert(d.path.clone(), self.subject.hash(&bytes));
            assert!(previous.is_none(), "two documents at {}: {docs:#?}", d.path);
        }
        out
    }

    /// The knowledge base holds exactly the files below the folder at `path`, at the source's
    /// paths, with the source's content (compared by the source's own hash).
    pub async fn assert_mirrors(&self, path: &str) {
        let source = self.subject.files_under(path);
        assert!(!source.is_empty(), "nothing under {path} at the source");
        assert_eq!(self.contents().await, source);
    }

    /// The names of the documents a word finds, for anyone who may read the knowledge base.
    pub async fn finds(&self, word: &str) -> Vec<String> {
        self.finds_as(Reader::Admin, word).await
    }

    /// The names of the documents `reader` finds with `word`, sorted.
    pub async fn finds_as(&self, reader: Reader, word: &str) -> Vec<String> {
        let hits = self
            .store
            .search(SearchQuery {
                text: word,
                reader,
                kb_ids: &[],
                limit: 50,
            })
            .await
            .unwrap();
        let mut names: Vec<String> = hits.into_iter().map(|h| h.name).collect();
        names.sort();
        names
    }

    /// A kbsync user with `email` (whom the source's sharing can name).
    pub async fn kbsync_user(&self, email: &str) -> UserId {
        kbsync_kit::fixtures::user_with_email(self.store.as_ref(), email, Role::User, self.clock.now()).await
    }

    pub async fn kb_status(&self) -> SyncStatus {
        self.store.get_kb(self.kb).await.unwrap().sync_status
    }

    pub async fn cursors(&self) -> Vec<Option<String>> {
        self.store
            .list_sources(self.kb)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.cursor)
            .collect()
    }

    /// Puts every `(path, text)` file at the source.
    pub fn put_tree(&self, tree: &[(&str, &str)]) {
        for (path, text) in tree {
            self.subject.put(path, text);
        }
    }
}
