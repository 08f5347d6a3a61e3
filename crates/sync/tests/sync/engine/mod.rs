//! The sync engine against the in-process Graph emulator, each scenario on SQLite and (when
//! `KBSYNC_TEST_DATABASE_URL` is set) PostgreSQL in a schema of its own. This module holds the
//! harness: an emulator with a OneDrive datasource, a store, an engine, and what the scenarios ask
//! of them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kbsync_core::Clock;
use kbsync_core::datasource::{StaticToken, TokenSource};
use kbsync_core::{KbId, KbType, ManualClock, Random, Role, SeededRandom, SyncStatus, UserId};
use kbsync_core::{Source, SourceKind, SyncTrigger};
use kbsync_ingest::{Extractor, IngestConfig};
use kbsync_kit::emulator::TestTokens;
use kbsync_msgraph::{GraphConfig, OneDrive, TokioSleeper};
use kbsync_store::{BlobStore, ItemSelection, Page, Reader, SavedItems, SearchQuery, Store};
use kbsync_sync::events::{SyncEvent, SyncEvents};
use kbsync_sync::{PermissionPolicy, RunSummary, SyncContext, SyncEngine, SyncLimits};
use msgraph_emulator::{
    Control, DeltaBehaviour, Emulator, FaultAction, FaultRule, PermissionSpec, ResyncCode, RetryAfter,
    RunningEmulator,
};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

mod failures;
mod mirroring;
mod progress;
mod quarantine;
mod scenario;
mod sharing;

/// The route of a file's `/content` request (the 302 to its download URL).
const CONTENT_ROUTE: &str = "/v1.0/drives/*/items/*/content";
const PERMISSIONS_ROUTE: &str = "/v1.0/drives/*/items/*/permissions";

/// How a scenario wants its engine and datasource.
struct Options {
    limits: SyncLimits,
    permissions: PermissionPolicy,
    graph: fn(&mut GraphConfig),
}

impl Default for Options {
    fn default() -> Self {
        Self {
            limits: limits(),
            permissions: PermissionPolicy::default(),
            graph: |_| {},
        }
    }
}

fn limits() -> SyncLimits {
    SyncLimits {
        max_file_size: 1024 * 1024,
        concurrency: 4,
        max_files: 1000,
        file_timeout: Duration::from_secs(30),
    }
}

struct Env {
    emu: RunningEmulator,
    blob_dir: tempfile::TempDir,
    ctl: Control,
    ds: OneDrive,
    tokens: TestTokens,
    drive: String,
    user: String,
    store: Arc<dyn Store>,
    events: SyncEvents,
    random: Arc<dyn Random>,
    clock: Arc<ManualClock>,
    engine: SyncEngine,
    owner: UserId,
    kb: KbId,
}

async fn env(store: Arc<dyn Store>) -> Env {
    env_with(store, Options::default()).await
}

async fn env_with(store: Arc<dyn Store>, options: Options) -> Env {
    // Children before parents and duplicates on, so the engine's buffering is exercised.
    let emu = Emulator::builder()
        .seed(5)
        .frozen_clock(true)
        .delta_behaviour(DeltaBehaviour {
            children_first_probability: 0.5,
            duplicate_probability: 0.3,
            ..DeltaBehaviour::default()
        })
        .start()
        .await
        .unwrap();
    let ctl = emu.control();
    let mut config = GraphConfig {
        base_backoff: Duration::from_millis(20),
        ..kbsync_kit::emulator::graph_config(&emu)
    };
    (options.graph)(&mut config);
    let clock = Arc::new(ManualClock::new(ctl.now()));
    // The datasource's clock is the engine's: a tenant's throttle gate reopens when the test
    // moves time on.
    let ds = kbsync_kit::emulator::onedrive(&emu, config, Arc::new(TokioSleeper)).with_clock(clock.clone());
    let user = ctl.default_user_id();
    let tokens = TestTokens::new(&ctl, &user);
    let drive = ctl.default_drive_id();
    let owner = kbsync_kit::fixtures::user(store.as_ref(), Role::User, ctl.now()).await;
    let kb = kbsync_kit::fixtures::kb(store.as_ref(), owner, "synced", KbType::OneDrive, ctl.now()).await;
    let blob_dir = tempfile::tempdir().unwrap();
    let events = SyncEvents::new();
    let random: Arc<dyn Random> = Arc::new(SeededRandom::new(9));
    let engine = SyncEngine::new(SyncContext {
        store: store.clone(),
        blobs: BlobStore::new(blob_dir.path()),
        extractor: Extractor::new(IngestConfig::default()),
        clock: clock.clone(),
        random: random.clone(),
        limits: options.limits,
        events: events.clone(),
        permissions: options.permissions,
    });
    Env {
        emu,
        blob_dir,
        ctl,
        ds,
        tokens,
        drive,
        user,
        store,
        events,
        random,
        clock,
        engine,
        owner,
        kb,
    }
}

impl Env {
    /// Another engine over the same store, blobs, events and randomness, with other settings
    /// (an administrator changed the configuration between runs).
    fn engine_with(&self, limits: SyncLimits, permissions: PermissionPolicy) -> SyncEngine {
        SyncEngine::new(SyncContext {
            store: self.store.clone(),
            blobs: BlobStore::new(self.blob_dir.path()),
            extractor: Extractor::new(IngestConfig::default()),
            clock: self.clock.clone(),
            random: self.random.clone(),
            limits,
            events: self.events.clone(),
            permissions,
        })
    }

    /// Another engine over the same store, blobs, events and randomness whose extractor has its
    /// own settings.
    fn engine_with_ingest(&self, limits: SyncLimits, ingest: IngestConfig) -> SyncEngine {
        SyncEngine::new(SyncContext {
            store: self.store.clone(),
            blobs: BlobStore::new(self.blob_dir.path()),
            extractor: Extractor::new(ingest),
            clock: self.clock.clone(),
            random: self.random.clone(),
            limits,
            events: self.events.clone(),
            permissions: PermissionPolicy::default(),
        })
    }

    async fn add_folder(&self, path: &str) -> Source {
        let item = self.ctl.item_by_path(&self.drive, path).unwrap();
        self.add_source(SourceKind::Folder, &item.id, path).await
    }

    async fn add_source(&self, kind: SourceKind, item_id: &str, path: &str) -> Source {
        self.store
            .add_source(
                Uuid::new_v4(),
                kbsync_kit::fixtures::onedrive_source(self.kb, kind, &self.drive, item_id, path),
                // Sources are listed oldest first: added a second apart, their order is known.
                {
                    self.clock.advance(chrono::Duration::seconds(1));
                    self.clock.now()
                },
            )
            .await
            .unwrap()
    }

    async fn run_on(
        &self,
        engine: &SyncEngine,
        tokens: &dyn TokenSource,
        cancel: CancellationToken,
    ) -> RunSummary {
        // Runs start a second apart, so "newest first" is well defined.
        self.clock.advance(chrono::Duration::seconds(1));
        engine
            .run(
                Uuid::new_v4(),
                self.kb,
                &self.ds,
                tokens,
                SyncTrigger::Manual,
                cancel,
            )
            .await
            .unwrap()
    }

    async fn sync_with(&self, cancel: CancellationToken) -> RunSummary {
        self.run_on(&self.engine, &self.tokens, cancel).await
    }

    async fn sync(&self) -> RunSummary {
        self.sync_with(CancellationToken::new()).await
    }

    async fn sync_on(&self, engine: &SyncEngine) -> RunSummary {
        self.run_on(engine, &self.tokens, CancellationToken::new()).await
    }

    fn put(&self, path: &str, text: &str) -> String {
        self.ctl.put_file(&self.drive, path, text.to_owned()).unwrap().id
    }

    fn id(&self, path: &str) -> String {
        self.ctl.item_by_path(&self.drive, path).unwrap().id
    }

    async fn cursors(&self) -> Vec<Option<String>> {
        self.store
            .list_sources(self.kb)
            .await
            .unwrap()
            .into_iter()
            .map(|s| s.cursor)
            .collect()
    }

    async fn cursor(&self, source_id: Uuid) -> Option<String> {
        self.store
            .list_sources(self.kb)
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.id == source_id)
            .unwrap()
            .cursor
    }

    /// path → text of the stored file of every document of the KB; every document is
    /// processed, named as its path's last segment, and its stored bytes match its hash.
    async fn contents(&self) -> BTreeMap<String, String> {
        let docs = self
            .store
            .list_documents(
                self.kb,
                Page {
                    limit: 1000,
                    offset: 0,
                },
            )
            .await
            .unwrap();
        let mut out = BTreeMap::new();
        for d in docs.items {
            assert_eq!(d.status, kbsync_core::DocumentStatus::Processed, "{d:?}");
            assert_eq!(Some(d.name.as_str()), d.path.rsplit('/').next(), "{d:?}");
            let bytes = self.blobs().read(&d.content_hash).await.unwrap();
            assert_eq!(d.size, i64::try_from(bytes.len()).unwrap(), "{d:?}");
            out.insert(d.path, String::from_utf8(bytes).unwrap());
        }
        out
    }

    fn blobs(&self) -> BlobStore {
        BlobStore::new(self.blob_dir.path())
    }

    /// The files as the KB should hold them (path without the leading slash → content).
    fn drive_files(&self, expected: &[(&str, &str)]) -> BTreeMap<String, String> {
        expected
            .iter()
            .map(|(p, t)| (format!("/{}", p.trim_start_matches('/')), (*t).to_owned()))
            .collect()
    }

    /// The contents the KB must hold, checked against the drive too: each expected file is on
    /// the drive at that path with that quickXorHash.
    async fn assert_mirrors(&self, expected: &[(&str, &str)]) {
        for (path, text) in expected {
            let item = self
                .ctl
                .item_by_path(&self.drive, &format!("/{}", path.trim_start_matches('/')))
                .unwrap();
            assert_eq!(
                item.quick_xor_hash.as_deref(),
                Some(msgraph_emulator::quickxorhash::quickxorhash(text.as_bytes()).as_str()),
                "{path} on the drive"
            );
        }
        assert_eq!(self.contents().await, self.drive_files(expected));
        for (path, text) in expected {
            let word = text.split_whitespace().last().unwrap();
            let name = path.rsplit('/').next().unwrap();
            assert!(
                self.finds(word).await.contains(&name.to_owned()),
                "{word} finds {name}"
            );
        }
    }

    async fn finds(&self, word: &str) -> Vec<String> {
        let hits = self
            .store
            .search(SearchQuery {
                text: word,
                reader: Reader::Admin,
                kb_ids: &[],
                limit: 50,
            })
            .await
            .unwrap();
        hits.into_iter().map(|h| h.name).collect()
    }

    fn count(&self, route_glob: &str) -> usize {
        self.ctl
            .request_log()
            .entries
            .iter()
            .filter(|e| msgraph_emulator::glob_match(route_glob, &e.path))
            .count()
    }

    fn content_requests(&self) -> usize {
        self.count(CONTENT_ROUTE)
    }

    fn delta_requests(&self) -> usize {
        let log = self.ctl.request_log();
        log.entries.iter().filter(|e| e.path.contains("delta")).count()
    }

    async fn kb_status(&self) -> SyncStatus {
        self.store.get_kb(self.kb).await.unwrap().sync_status
    }

    /// A user of the emulated tenant with a mail address (someone the drive can be shared with).
    fn graph_user(&self, display_name: &str, mail: &str) -> msgraph_emulator::UserInfo {
        self.ctl
            .create_user(msgraph_emulator::NewUser {
                display_name: display_name.into(),
                mail: Some(mail.into()),
                ..msgraph_emulator::NewUser::default()
            })
            .unwrap()
    }

    /// A kbsync user with `email` (whom the drive's sharing can name).
    async fn kbsync_user(&self, email: &str) -> UserId {
        kbsync_kit::fixtures::user_with_email(self.store.as_ref(), email, Role::User, self.ctl.now()).await
    }

    /// The names of the documents `reader` finds with `word`, sorted.
    async fn finds_as(&self, reader: UserId, word: &str) -> Vec<String> {
        let hits = self
            .store
            .search(SearchQuery {
                text: word,
                reader: Reader::User(reader),
                kb_ids: &[],
                limit: 50,
            })
            .await
            .unwrap();
        let mut names: Vec<String> = hits.into_iter().map(|h| h.name).collect();
        names.sort();
        names
    }
}

/// Waits for the next event that `pick` accepts, at most `within`.
#[expect(clippy::disallowed_methods, reason = "polls against a real-time deadline")]
async fn next_event<T>(
    rx: &mut broadcast::Receiver<SyncEvent>,
    within: Duration,
    mut pick: impl FnMut(&SyncEvent) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Ok(event)) => {
                if let Some(t) = pick(&event) {
                    return t;
                }
            }
            Ok(Err(e)) => panic!("event channel: {e}"),
            Err(_) => panic!("no matching event within {within:?}"),
        }
    }
}

/// Every event already published.
fn drain(rx: &mut broadcast::Receiver<SyncEvent>) -> Vec<SyncEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}
