//! The sync engine against the in-process Graph emulator, each scenario on SQLite and (when
//! `KBSYNC_TEST_DATABASE_URL` is set) PostgreSQL in a schema of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use kbsync_core::Clock;
use kbsync_core::datasource::{AccessToken, DatasourceError, DatasourceKind, StaticToken, TokenSource};
use kbsync_core::{
    GrantOrigin, KbId, KbType, ManualClock, Permission, Random, Role, SeededRandom, SyncStatus, UserId,
};
use kbsync_ingest::{Extractor, IngestConfig};
use kbsync_msgraph::{GraphConfig, OneDrive, TokioSleeper, microsoft_oauth};
use kbsync_store::{
    BlobStore, NewSource, NewUser, Page, Reader, SearchQuery, Source, SourceKind, Store, SyncTrigger,
};
use kbsync_sync::events::{SyncEvent, SyncEvents};
use kbsync_sync::{PermissionPolicy, RunSummary, SyncContext, SyncEngine, SyncLimits};
use msgraph_emulator::{
    Control, DeltaBehaviour, Emulator, FaultAction, FaultRule, PermissionSpec, ResyncCode, RetryAfter,
    RunningEmulator,
};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// The route of a file's `/content` request (the 302 to its download URL).
const CONTENT_ROUTE: &str = "/v1.0/drives/*/items/*/content";
const PERMISSIONS_ROUTE: &str = "/v1.0/drives/*/items/*/permissions";

/// Access tokens minted by the emulator. A refresh mints a fresh one, unless the refresh token
/// is taken to be revoked (`refuse_refresh`): then it answers `Unauthorized`, as the connection
/// manager does after `invalid_grant`.
struct TestTokens {
    ctl: Control,
    user: String,
    current: Mutex<AccessToken>,
    refreshes: AtomicUsize,
    refuse_refresh: AtomicBool,
}

impl TestTokens {
    fn new(ctl: &Control, user: &str) -> Self {
        Self {
            ctl: ctl.clone(),
            user: user.to_owned(),
            current: Mutex::new(Self::mint(ctl, user)),
            refreshes: AtomicUsize::new(0),
            refuse_refresh: AtomicBool::new(false),
        }
    }

    fn mint(ctl: &Control, user: &str) -> AccessToken {
        AccessToken::new(
            ctl.mint_access_token(user, &["Files.Read.All", "Sites.Read.All"])
                .unwrap(),
        )
    }

    fn refreshes(&self) -> usize {
        self.refreshes.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl TokenSource for TestTokens {
    async fn access_token(&self) -> Result<AccessToken, DatasourceError> {
        Ok(self.current.lock().unwrap().clone())
    }

    async fn refresh(&self, rejected: &AccessToken) -> Result<AccessToken, DatasourceError> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        if self.refuse_refresh.load(Ordering::SeqCst) {
            return Err(DatasourceError::Unauthorized(
                "the refresh token was revoked (invalid_grant)".into(),
            ));
        }
        let fresh = Self::mint(&self.ctl, &self.user);
        assert_ne!(&fresh, rejected);
        *self.current.lock().unwrap() = fresh.clone();
        Ok(fresh)
    }
}

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
    _emu: RunningEmulator,
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
        graph_url: emu.graph_url().to_string(),
        request_timeout: Duration::from_secs(10),
        base_backoff: Duration::from_millis(20),
        ..GraphConfig::default()
    };
    (options.graph)(&mut config);
    let http = config.http_client().unwrap();
    let oauth = microsoft_oauth(emu.base_url(), &ctl.tenant_id(), vec!["Files.Read.All".into()]);
    let ds = OneDrive::new(config, oauth, http, Arc::new(TokioSleeper));
    let user = ctl.default_user_id();
    let tokens = TestTokens::new(&ctl, &user);
    let drive = ctl.default_drive_id();
    let clock = Arc::new(ManualClock::new(ctl.now()));
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
        _emu: emu,
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

    async fn add_folder(&self, path: &str) -> Source {
        let item = self.ctl.item_by_path(&self.drive, path).unwrap();
        self.add_source(SourceKind::Folder, &item.id, &item.name, path)
            .await
    }

    async fn add_source(&self, kind: SourceKind, item_id: &str, name: &str, path: &str) -> Source {
        self.store
            .add_source(
                Uuid::new_v4(),
                NewSource {
                    kb_id: self.kb,
                    datasource: DatasourceKind::OneDrive,
                    kind,
                    drive_id: self.drive.clone(),
                    item_id: item_id.into(),
                    name: name.into(),
                    path: path.into(),
                },
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

    /// A kbsync user.
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

    async fn kbsync_user(&self, email: &str) -> UserId {
        let id = Uuid::new_v4();
        self.store
            .create_user(
                id,
                NewUser {
                    email: email.into(),
                    password_hash: "$argon2id$x".into(),
                    role: Role::User,
                },
                self.ctl.now(),
            )
            .await
            .unwrap();
        id
    }

    /// The KB's grants as (user, permission, origin), sorted.
    async fn grants(&self) -> Vec<(UserId, Permission, GrantOrigin)> {
        let mut g: Vec<_> = self
            .store
            .list_grants(self.kb)
            .await
            .unwrap()
            .into_iter()
            .map(|g| (g.user_id, g.permission, g.origin))
            .collect();
        g.sort_by_key(|(u, p, o)| (*u, p.as_str(), o.as_str()));
        g
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

kbsync_kit::on_both_databases!(
    initial_sync_of_a_nested_folder_mirrors_the_drive,
    incremental_changes_are_applied_and_a_rename_does_not_download_again,
    a_folder_moved_out_of_the_subtree_removes_its_files,
    an_expired_delta_token_resyncs_fully_and_removes_what_disappeared,
    a_run_without_changes_makes_one_delta_request_per_folder,
    sharing_is_read_again_when_the_drive_reports_a_change_or_the_last_read_is_older_than_the_refresh,
    a_revoked_folder_is_hidden_at_once_and_removed_when_the_next_run_confirms_it,
    a_folder_readable_again_after_one_refusal_comes_back_to_search_without_a_download,
    a_failing_file_is_recorded_and_retried_next_run,
    a_cancelled_run_advances_no_cursor,
    a_file_source_is_fetched_only_when_its_hash_changes,
    a_run_over_the_file_limit_downloads_nothing_advances_no_cursor_and_counts_the_same_in_any_order,
    too_large_and_unsupported_files_are_skipped_not_failed_and_not_fetched_again,
    a_file_slower_than_the_file_timeout_fails_alone_and_is_retried_next_run,
    a_401_whose_refresh_is_refused_stops_the_run_with_needs_reauth_and_advances_no_cursor,
    a_single_401_is_refreshed_once_and_the_run_completes,
    throttled_downloads_honour_retry_after_and_nothing_fails,
    throttling_that_outlasts_the_retries_fails_the_file_or_the_whole_source,
    a_run_cancelled_during_slow_downloads_stops_promptly_advances_no_cursor_and_the_next_run_completes,
    progress_is_persisted_and_events_tell_the_run_as_it_goes,
    a_file_in_two_sources_is_one_document_fetched_once,
    sharing_with_a_kbsync_user_grants_read_and_unsharing_takes_it_back,
    organization_links_grant_nothing_unless_link_grants_are_allowed,
    sharing_that_cannot_be_read_keeps_the_sync_grants,
    a_revoked_source_shares_nothing,
);

// --- scenarios -------------------------------------------------------------------------------

async fn initial_sync_of_a_nested_folder_mirrors_the_drive(store: Arc<dyn Store>) {
    let env = env(store).await;
    let files = [
        ("/Projects/a.txt", "alpha apple"),
        ("/Projects/Specs/b.md", "bravo banana"),
        ("/Projects/Specs/Deep/c.txt", "charlie cherry"),
        ("/Projects/Notes/d.txt", "delta date"),
    ];
    for (p, t) in files {
        env.put(p, t);
    }
    env.put("/Other/outside.txt", "outside fig");
    env.put("/Projects/image.bin", "not a supported type");
    env.add_folder("/Projects").await;

    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!((summary.processed, summary.skipped, summary.failed), (4, 1, 0));
    assert_eq!(summary.total_found, 5);
    assert_eq!(env.contents().await, env.drive_files(&files));
    assert_eq!(env.finds("cherry").await, ["c.txt"]);
    assert!(env.finds("fig").await.is_empty());
    let kb = env.store.get_kb(env.kb).await.unwrap();
    assert_eq!(kb.sync_status, SyncStatus::Completed);
    let runs = env.store.list_sync_runs(env.kb, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome.processed, 4);
}

async fn incremental_changes_are_applied_and_a_rename_does_not_download_again(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/keep.txt", "keep kiwi");
    let modify = env.put("/P/mod.txt", "old olive");
    let rename = env.put("/P/ren.txt", "rename raspberry");
    let moving = env.put("/P/Sub/mv.txt", "move mango");
    env.put("/P/Sub/under.txt", "under ugli");
    let gone = env.put("/P/del.txt", "delete durian");
    env.ctl.create_folder(&env.drive, "/P/Other").unwrap();
    let sub = env.id("/P/Sub");
    env.add_folder("/P").await;
    env.sync().await;

    env.put("/P/new.txt", "new nectarine");
    env.ctl
        .modify_file(&env.drive, &modify, "fresh orange".to_owned())
        .unwrap();
    env.ctl.rename(&env.drive, &rename, "renamed.txt").unwrap();
    env.ctl
        .move_item(&env.drive, &moving, &env.id("/P/Other"), None)
        .unwrap();
    env.ctl.delete(&env.drive, &gone).unwrap();
    env.ctl.rename(&env.drive, &sub, "Sub2").unwrap();
    env.ctl.clear_request_log();

    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!((summary.processed, summary.deleted), (2, 1), "{summary:?}");
    assert_eq!(
        env.content_requests(),
        2,
        "only the new and the modified file are downloaded"
    );
    assert_eq!(
        env.contents().await,
        env.drive_files(&[
            ("P/keep.txt", "keep kiwi"),
            ("P/mod.txt", "fresh orange"),
            ("P/new.txt", "new nectarine"),
            ("P/renamed.txt", "rename raspberry"),
            ("P/Other/mv.txt", "move mango"),
            ("P/Sub2/under.txt", "under ugli"),
        ])
    );
    assert_eq!(env.finds("orange").await, ["mod.txt"]);
    assert!(env.finds("olive").await.is_empty());
    assert!(env.finds("durian").await.is_empty());
    assert_eq!(env.finds("raspberry").await, ["renamed.txt"]);
}

async fn a_folder_moved_out_of_the_subtree_removes_its_files(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/stay.txt", "stay strawberry");
    env.put("/P/F/one.txt", "one quince");
    env.put("/P/F/Deeper/two.txt", "two tangerine");
    env.ctl.create_folder(&env.drive, "/Elsewhere").unwrap();
    env.add_folder("/P").await;
    env.sync().await;
    assert_eq!(env.contents().await.len(), 3);

    env.ctl
        .move_item(&env.drive, &env.id("/P/F"), &env.id("/Elsewhere"), None)
        .unwrap();
    let summary = env.sync().await;

    assert_eq!(summary.deleted, 2, "{summary:?}");
    assert_eq!(
        env.contents().await,
        env.drive_files(&[("P/stay.txt", "stay strawberry")])
    );
    assert!(env.finds("tangerine").await.is_empty());
}

async fn an_expired_delta_token_resyncs_fully_and_removes_what_disappeared(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    let b = env.put("/P/b.txt", "bravo banana");
    env.add_folder("/P").await;
    env.sync().await;

    env.ctl.delete(&env.drive, &b).unwrap();
    env.put("/P/c.txt", "charlie cherry");
    env.ctl
        .expire_delta_tokens(&env.drive, ResyncCode::ResyncChangesApplyDifferences)
        .unwrap();
    env.ctl.clear_request_log();
    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!(
        env.contents().await,
        env.drive_files(&[("P/a.txt", "alpha apple"), ("P/c.txt", "charlie cherry")])
    );
    assert!(env.finds("banana").await.is_empty());
    // The files it already holds at their content are not downloaded again: only the new one.
    assert_eq!((summary.processed, summary.deleted), (1, 1), "{summary:?}");
    assert_eq!(env.content_requests(), 1);
}

async fn a_run_without_changes_makes_one_delta_request_per_folder(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/A/a.txt", "alpha apple");
    env.put("/B/b.txt", "bravo banana");
    env.add_folder("/A").await;
    env.add_folder("/B").await;
    env.sync().await;
    env.ctl.clear_request_log();

    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::Completed);
    assert_eq!(
        (summary.processed, summary.deleted, summary.total_found),
        (0, 0, 2)
    );
    assert_eq!(env.delta_requests(), 2, "{:#?}", env.ctl.request_log().entries);
    // The sharing was read by the first run and is not due again: nothing else is asked.
    assert_eq!(
        env.ctl.request_log().entries.len(),
        2,
        "{:#?}",
        env.ctl.request_log().entries
    );
    assert_eq!(env.content_requests(), 0);
    assert_eq!(env.contents().await.len(), 2);
}

async fn sharing_is_read_again_when_the_drive_reports_a_change_or_the_last_read_is_older_than_the_refresh(
    store: Arc<dyn Store>,
) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    let p = env.add_folder("/P").await;
    let megan = env.graph_user("Megan Bowen", "megan@contoso.com");
    let megan_here = env.kbsync_user("megan@contoso.com").await;
    env.sync().await;
    assert!(env.grants().await.is_empty());

    // Nothing changed and the sharing is fresh: not read.
    env.ctl.clear_request_log();
    env.sync().await;
    assert_eq!(env.count(PERMISSIONS_ROUTE), 0);

    // Shared with Megan: the change feed marks the folder, so this run reads the sharing.
    env.ctl
        .add_permission(&env.drive, &p.item_id, PermissionSpec::user(&megan.id, &["read"]))
        .unwrap();
    env.ctl.clear_request_log();
    let summary = env.sync().await;
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!(env.count(PERMISSIONS_ROUTE), 1);
    assert_eq!(
        env.grants().await,
        [(megan_here, Permission::Read, GrantOrigin::Sync)]
    );

    // Unshared: announced the same way, the grant goes.
    let read_before = env.store.sharing_read_at(env.kb).await.unwrap();
    env.ctl
        .set_permissions(&env.drive, &p.item_id, Vec::new())
        .unwrap();
    env.sync().await;
    assert!(env.grants().await.is_empty());
    assert!(env.store.sharing_read_at(env.kb).await.unwrap() > read_before);

    // A change the feed does not announce (a drive need not) is caught when the last read is
    // older than the refresh (six hours by default).
    env.ctl.clear_request_log();
    env.clock.advance(chrono::Duration::hours(5));
    env.sync().await;
    assert_eq!(env.count(PERMISSIONS_ROUTE), 0, "read less than six hours ago");
    env.clock.advance(chrono::Duration::hours(1));
    env.sync().await;
    assert_eq!(env.count(PERMISSIONS_ROUTE), 1, "read six hours ago: due");

    // A new kbsync user may be one the sharing names: read on the next run.
    env.ctl.clear_request_log();
    env.kbsync_user("someone-new@example.com").await;
    env.sync().await;
    assert_eq!(env.count(PERMISSIONS_ROUTE), 1);
}

async fn a_revoked_folder_is_hidden_at_once_and_removed_when_the_next_run_confirms_it(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    env.put("/Q/b.txt", "bravo banana");
    let p = env.add_folder("/P").await;
    env.add_folder("/Q").await;
    env.sync().await;

    env.ctl.revoke_access(&env.user, &env.drive, &p.item_id).unwrap();
    let first = env.sync().await;

    // One refusal: out of search at once, but kept (with the cursor) in case it passes.
    assert_eq!(first.status, SyncStatus::AccessRevoked);
    assert_eq!(first.deleted, 0);
    assert!(env.finds("apple").await.is_empty());
    assert_eq!(env.finds("banana").await, ["b.txt"]);
    assert_eq!(
        env.contents().await,
        env.drive_files(&[("P/a.txt", "alpha apple"), ("Q/b.txt", "bravo banana")])
    );
    assert!(env.cursor(p.id).await.is_some());
    assert_eq!(
        env.store.get_kb(env.kb).await.unwrap().sync_status,
        SyncStatus::AccessRevoked
    );

    // Refused again by the next run: the loss is confirmed and the documents go.
    let second = env.sync().await;
    assert_eq!(second.status, SyncStatus::AccessRevoked);
    assert_eq!(second.deleted, 1);
    assert_eq!(
        env.contents().await,
        env.drive_files(&[("Q/b.txt", "bravo banana")])
    );
    assert!(env.finds("apple").await.is_empty());
    assert_eq!(env.cursor(p.id).await, None);
    assert_eq!(
        env.store.get_kb(env.kb).await.unwrap().sync_status,
        SyncStatus::AccessRevoked
    );
}

async fn a_folder_readable_again_after_one_refusal_comes_back_to_search_without_a_download(
    store: Arc<dyn Store>,
) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    env.put("/Q/b.txt", "bravo banana");
    let p = env.add_folder("/P").await;
    env.add_folder("/Q").await;
    env.sync().await;
    env.ctl.revoke_access(&env.user, &env.drive, &p.item_id).unwrap();
    assert_eq!(env.sync().await.status, SyncStatus::AccessRevoked);
    assert!(env.finds("apple").await.is_empty());
    let downloads = env.content_requests();

    env.ctl.grant_access(&env.user, &env.drive, &p.item_id).unwrap();
    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!(summary.deleted, 0);
    assert_eq!(env.content_requests(), downloads, "nothing is downloaded again");
    env.assert_mirrors(&[("P/a.txt", "alpha apple"), ("Q/b.txt", "bravo banana")])
        .await;
    assert!(
        env.store
            .list_sources(env.kb)
            .await
            .unwrap()
            .iter()
            .all(|s| s.revoked_at.is_none())
    );
}

async fn a_failing_file_is_recorded_and_retried_next_run(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/good.txt", "good grape");
    let bad = env.put("/P/bad.pdf", "%PDF-1.4 this is not a pdf at all");
    let source = env.add_folder("/P").await;

    let first = env.sync().await;
    assert_eq!(first.status, SyncStatus::CompletedWithErrors);
    assert_eq!((first.processed, first.failed), (1, 1));
    assert_eq!(first.failures.len(), 1);
    assert_eq!(first.failures[0].name, "bad.pdf");
    assert_eq!(env.finds("grape").await, ["good.txt"]);
    let cursor = env.store.list_sources(env.kb).await.unwrap()[0].cursor.clone();
    assert!(cursor.is_some(), "the cursor moved although a file failed");
    let runs = env.store.list_sync_runs(env.kb, 1).await.unwrap();
    assert_eq!(runs[0].outcome.failures[0].item_id, bad);

    // Fixed on the drive without the engine being told twice: the retry picks it up.
    let second = env.sync().await;
    assert_eq!(
        (second.processed, second.failed),
        (0, 1),
        "retried and still failing"
    );
    env.ctl
        .modify_file(&env.drive, &bad, kbsync_fixtures::pdf(&["pdf papaya"]))
        .unwrap();
    let third = env.sync().await;
    assert_eq!(third.status, SyncStatus::Completed, "{third:?}");
    assert_eq!(env.finds("papaya").await, ["bad.pdf"]);
    let _ = source;
}

async fn a_cancelled_run_advances_no_cursor(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    env.add_folder("/P").await;
    env.sync().await;
    let before = env.store.list_sources(env.kb).await.unwrap()[0].clone();
    env.put("/P/b.txt", "bravo banana");

    let cancel = CancellationToken::new();
    cancel.cancel();
    let summary = env.sync_with(cancel).await;

    assert_eq!(summary.status, SyncStatus::Cancelled);
    let after = env.store.list_sources(env.kb).await.unwrap()[0].clone();
    assert_eq!(after.cursor, before.cursor);
    assert_eq!(
        env.store.get_kb(env.kb).await.unwrap().sync_status,
        SyncStatus::Cancelled
    );
    assert!(env.finds("banana").await.is_empty());
    let resumed = env.sync().await;
    assert_eq!(resumed.processed, 1);
    assert_eq!(env.finds("banana").await, ["b.txt"]);
}

async fn a_file_source_is_fetched_only_when_its_hash_changes(store: Arc<dyn Store>) {
    let env = env(store).await;
    let id = env.put("/Loose/single.txt", "single sapote");
    env.store
        .add_source(
            Uuid::new_v4(),
            NewSource {
                kb_id: env.kb,
                datasource: DatasourceKind::OneDrive,
                kind: SourceKind::File,
                drive_id: env.drive.clone(),
                item_id: id.clone(),
                name: "single.txt".into(),
                path: "/Loose/single.txt".into(),
            },
            env.ctl.now(),
        )
        .await
        .unwrap();
    assert_eq!(env.sync().await.processed, 1);
    assert_eq!(
        env.contents().await,
        env.drive_files(&[("Loose/single.txt", "single sapote")])
    );

    env.ctl.clear_request_log();
    assert_eq!(env.sync().await.processed, 0);
    assert_eq!(env.content_requests(), 0);

    env.ctl
        .modify_file(&env.drive, &id, "second salak".to_owned())
        .unwrap();
    assert_eq!(env.sync().await.processed, 1);
    assert_eq!(env.finds("salak").await, ["single.txt"]);
    assert!(env.finds("sapote").await.is_empty());
}

// --- limits ----------------------------------------------------------------------------------

async fn a_run_over_the_file_limit_downloads_nothing_advances_no_cursor_and_counts_the_same_in_any_order(
    store: Arc<dyn Store>,
) {
    let env = env(store).await;
    env.put("/A/one.txt", "one olive");
    env.put("/A/Deep/two.txt", "two tomato");
    env.put("/B/three.txt", "three thyme");
    let doomed = env.put("/B/four.txt", "four fennel");
    env.add_folder("/A").await;
    env.add_folder("/B").await;
    let first = env.sync().await;
    assert_eq!(first.status, SyncStatus::Completed, "{first:?}");
    let cursors = env.cursors().await;
    let before = env.contents().await;

    // Now 6 files (two new, one deleted, one binary) in two sources against a limit of 5.
    env.put("/A/Deep/five.txt", "five fig");
    env.put("/B/six.txt", "six sage");
    env.put("/B/seven.bin", "binary");
    env.ctl.delete(&env.drive, &doomed).unwrap();
    let limited = env.engine_with(
        SyncLimits {
            max_files: 5,
            ..limits()
        },
        PermissionPolicy::default(),
    );
    let mut found = Vec::new();
    for (children_first, duplicates) in [(0.0, 0.0), (1.0, 0.9), (0.5, 0.3)] {
        env.ctl.set_delta_behaviour(DeltaBehaviour {
            children_first_probability: children_first,
            duplicate_probability: duplicates,
            ..DeltaBehaviour::default()
        });
        env.ctl.clear_request_log();

        let summary = env.sync_on(&limited).await;

        assert_eq!(summary.status, SyncStatus::FileLimitExceeded, "{summary:?}");
        assert_eq!((summary.processed, summary.deleted, summary.failed), (0, 0, 0));
        found.push(summary.total_found);
        assert_eq!(env.content_requests(), 0, "nothing is downloaded");
        assert_eq!(env.cursors().await, cursors, "no cursor moves");
        assert_eq!(
            env.contents().await,
            before,
            "nothing is applied, not even the deletion"
        );
        assert_eq!(env.kb_status().await, SyncStatus::FileLimitExceeded);
    }
    assert_eq!(found, [6, 6, 6], "the same count whatever the listing order");
    let runs = env.store.list_sync_runs(env.kb, 1).await.unwrap();
    assert_eq!(runs[0].outcome.status, SyncStatus::FileLimitExceeded);
    assert_eq!(runs[0].outcome.total_found, 6);

    // The limit raised, the same changes come in.
    let summary = env.sync().await;
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!((summary.processed, summary.deleted, summary.skipped), (2, 1, 1));
    env.assert_mirrors(&[
        ("A/one.txt", "one olive"),
        ("A/Deep/two.txt", "two tomato"),
        ("A/Deep/five.txt", "five fig"),
        ("B/three.txt", "three thyme"),
        ("B/six.txt", "six sage"),
    ])
    .await;
}

async fn too_large_and_unsupported_files_are_skipped_not_failed_and_not_fetched_again(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/small.txt", "small sorrel");
    let big = "big ".repeat(300_000); // 1.2 MB against a limit of 1 MiB
    env.put("/P/big.txt", &big);
    let image = env.put("/P/photo.png", "not really a png");
    env.put("/P/data.bin", "raw bytes");
    env.add_folder("/P").await;

    let first = env.sync().await;

    assert_eq!(first.status, SyncStatus::Completed, "{first:?}");
    assert_eq!((first.processed, first.skipped, first.failed), (1, 3, 0));
    assert_eq!(first.total_found, 4);
    assert!(first.failures.is_empty(), "skipped files are not failures");
    assert_eq!(
        env.content_requests(),
        1,
        "only the small text file is downloaded"
    );
    let runs = env.store.list_sync_runs(env.kb, 1).await.unwrap();
    assert!(runs[0].outcome.failures.is_empty());
    assert_eq!(runs[0].outcome.skipped, 3);
    env.assert_mirrors(&[("P/small.txt", "small sorrel")]).await;

    // Skipped files are remembered: neither counted nor fetched again while unchanged.
    env.ctl.clear_request_log();
    let second = env.sync().await;
    assert_eq!((second.processed, second.skipped, second.failed), (0, 0, 0));
    assert_eq!(env.content_requests(), 0);

    // Renamed to a supported type, the same content is indexed.
    env.ctl.rename(&env.drive, &image, "photo.txt").unwrap();
    let third = env.sync().await;
    assert_eq!((third.processed, third.skipped), (1, 0), "{third:?}");
    env.assert_mirrors(&[
        ("P/small.txt", "small sorrel"),
        ("P/photo.txt", "not really a png"),
    ])
    .await;

    // A raised size limit brings the big file in.
    let bigger = env.engine_with(
        SyncLimits {
            max_file_size: 4 * 1024 * 1024,
            ..limits()
        },
        PermissionPolicy::default(),
    );
    let fourth = env.sync_on(&bigger).await;
    assert_eq!((fourth.processed, fourth.skipped), (1, 0), "{fourth:?}");
    assert_eq!(env.contents().await.get("/P/big.txt"), Some(&big));
}

#[expect(clippy::disallowed_methods, reason = "asserts the timeout fires in real time")]
async fn a_file_slower_than_the_file_timeout_fails_alone_and_is_retried_next_run(store: Arc<dyn Store>) {
    let env = env_with(
        store,
        Options {
            limits: SyncLimits {
                file_timeout: Duration::from_millis(1500),
                ..limits()
            },
            ..Options::default()
        },
    )
    .await;
    env.put("/P/fast.txt", "fast fennel");
    env.put("/P/quick.txt", "quick quince");
    let slow = env.put("/P/slow.txt", "slow sloe");
    env.add_folder("/P").await;
    env.ctl.add_fault(
        FaultRule::new(
            "GET",
            &format!("/v1.0/drives/*/items/{slow}/content"),
            FaultAction::Delay { millis: 8000 },
        )
        .times(1),
    );

    let started = Instant::now();
    let first = env.sync().await;

    assert!(
        started.elapsed() < Duration::from_secs(7),
        "the run did not wait for the slow file"
    );
    assert_eq!(first.status, SyncStatus::CompletedWithErrors, "{first:?}");
    assert_eq!((first.processed, first.failed), (2, 1));
    assert_eq!(first.failures[0].item_id, slow);
    assert!(
        first.failures[0].reason.contains("timed out"),
        "{:?}",
        first.failures
    );
    assert!(
        env.cursors().await[0].is_some(),
        "the cursor moved although a file failed"
    );
    env.assert_mirrors(&[("P/fast.txt", "fast fennel"), ("P/quick.txt", "quick quince")])
        .await;

    let second = env.sync().await;
    assert_eq!(second.status, SyncStatus::Completed, "{second:?}");
    assert_eq!((second.processed, second.failed), (1, 0));
    env.assert_mirrors(&[
        ("P/fast.txt", "fast fennel"),
        ("P/quick.txt", "quick quince"),
        ("P/slow.txt", "slow sloe"),
    ])
    .await;
}

// --- credentials and throttling --------------------------------------------------------------

async fn a_401_whose_refresh_is_refused_stops_the_run_with_needs_reauth_and_advances_no_cursor(
    store: Arc<dyn Store>,
) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    env.add_folder("/P").await;
    env.add_folder("/P").await; // the same item again: harmless
    env.put("/Q/q.txt", "quiet quinoa");
    env.add_folder("/Q").await;
    env.sync().await;
    let cursors = env.cursors().await;
    env.put("/P/b.txt", "bravo banana");
    env.put("/Q/r.txt", "rapid radish");

    // The access token is refused on the downloads and the refresh token is revoked.
    env.tokens.refuse_refresh.store(true, Ordering::SeqCst);
    let fault = env
        .ctl
        .add_fault(FaultRule::new("GET", CONTENT_ROUTE, FaultAction::Unauthorized));
    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::NeedsReauth, "{summary:?}");
    assert!(env.tokens.refreshes() >= 1, "a refresh was tried");
    assert_eq!(env.cursors().await, cursors, "no cursor moved");
    assert_eq!(env.kb_status().await, SyncStatus::NeedsReauth);
    assert!(env.finds("banana").await.is_empty());
    let runs = env.store.list_sync_runs(env.kb, 1).await.unwrap();
    assert_eq!(runs[0].outcome.status, SyncStatus::NeedsReauth);

    // A browser token refused on the change feed: the same, before anything is downloaded.
    env.ctl.remove_fault(fault);
    env.ctl
        .add_fault(FaultRule::new("GET", "/v1.0/drives/**", FaultAction::Unauthorized).times(1));
    env.ctl.clear_request_log();
    let browser = StaticToken(TestTokens::mint(&env.ctl, &env.user));
    let summary = env.run_on(&env.engine, &browser, CancellationToken::new()).await;
    assert_eq!(summary.status, SyncStatus::NeedsReauth, "{summary:?}");
    assert_eq!(env.content_requests(), 0);
    assert_eq!(env.cursors().await, cursors);

    // Connected again: the run completes.
    env.tokens.refuse_refresh.store(false, Ordering::SeqCst);
    let summary = env.sync().await;
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    env.assert_mirrors(&[
        ("P/a.txt", "alpha apple"),
        ("P/b.txt", "bravo banana"),
        ("Q/q.txt", "quiet quinoa"),
        ("Q/r.txt", "rapid radish"),
    ])
    .await;
}

async fn a_single_401_is_refreshed_once_and_the_run_completes(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    env.put("/P/b.txt", "bravo banana");
    env.add_folder("/P").await;
    env.ctl
        .add_fault(FaultRule::new("GET", "/v1.0/drives/**", FaultAction::Unauthorized).times(1));

    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!(env.tokens.refreshes(), 1);
    assert_eq!(
        env.ctl
            .request_log()
            .entries
            .iter()
            .filter(|e| e.status == 401)
            .count(),
        1
    );
    env.assert_mirrors(&[("P/a.txt", "alpha apple"), ("P/b.txt", "bravo banana")])
        .await;
}

async fn throttled_downloads_honour_retry_after_and_nothing_fails(store: Arc<dyn Store>) {
    let env = env(store).await;
    let files = [
        ("P/a.txt", "alpha apple"),
        ("P/b.txt", "bravo banana"),
        ("P/c.txt", "charlie cherry"),
    ];
    for (p, t) in files {
        env.put(&format!("/{p}"), t);
    }
    env.add_folder("/P").await;
    env.ctl.add_fault(
        FaultRule::new(
            "GET",
            CONTENT_ROUTE,
            FaultAction::Throttle {
                status: 429,
                retry_after: RetryAfter::Seconds(1),
                rate_limit_headers: false,
            },
        )
        .times(3),
    );

    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!((summary.processed, summary.failed), (3, 0));
    let throttled = env
        .ctl
        .request_log()
        .entries
        .iter()
        .filter(|e| e.status == 429)
        .count();
    assert_eq!(throttled, 3);
    env.assert_mirrors(&files).await;
}

async fn throttling_that_outlasts_the_retries_fails_the_file_or_the_whole_source(store: Arc<dyn Store>) {
    // Retry-After beyond what the datasource waits on its own: it reports `Throttled` at once.
    let env = env_with(
        store,
        Options {
            graph: |g| g.max_retry_wait = Duration::from_secs(1),
            ..Options::default()
        },
    )
    .await;
    env.put("/A/ok.txt", "okay oat");
    let stuck = env.put("/A/stuck.txt", "stuck sesame");
    env.put("/B/b.txt", "bravo banana");
    let a = env.add_folder("/A").await;
    let b = env.add_folder("/B").await;
    let throttle = || FaultAction::Throttle {
        status: 429,
        retry_after: RetryAfter::Seconds(120),
        rate_limit_headers: false,
    };
    let on_file = env.ctl.add_fault(FaultRule::new(
        "GET",
        &format!("/v1.0/drives/*/items/{stuck}/content"),
        throttle(),
    ));
    let on_b = env.ctl.add_fault(FaultRule::new(
        "GET",
        &format!("/v1.0/drives/*/items/{}/delta", b.item_id),
        throttle(),
    ));

    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::Failed, "{summary:?}");
    assert_eq!((summary.processed, summary.failed), (1, 1));
    let reasons: Vec<(&str, &str)> = summary
        .failures
        .iter()
        .map(|f| (f.item_id.as_str(), f.reason.as_str()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert_eq!(reasons[0].0, stuck, "the file first, then the source");
    assert_eq!(reasons[1].0, b.item_id);
    assert!(
        reasons.iter().all(|(_, r)| r.contains("throttled")),
        "{reasons:?}"
    );
    assert!(env.cursor(a.id).await.is_some(), "A's round was applied");
    assert_eq!(env.cursor(b.id).await, None, "B's cursor did not move");
    let runs = env.store.list_sync_runs(env.kb, 1).await.unwrap();
    assert_eq!(runs[0].outcome.failures.len(), 2);
    env.assert_mirrors(&[("A/ok.txt", "okay oat")]).await;

    env.ctl.remove_fault(on_file);
    env.ctl.remove_fault(on_b);
    let summary = env.sync().await;
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    env.assert_mirrors(&[
        ("A/ok.txt", "okay oat"),
        ("A/stuck.txt", "stuck sesame"),
        ("B/b.txt", "bravo banana"),
    ])
    .await;
}

// --- cancellation, progress and events ---------------------------------------------------------

#[expect(
    clippy::disallowed_methods,
    reason = "asserts the run stops promptly in real time"
)]
async fn a_run_cancelled_during_slow_downloads_stops_promptly_advances_no_cursor_and_the_next_run_completes(
    store: Arc<dyn Store>,
) {
    let env = env_with(
        store,
        Options {
            limits: SyncLimits {
                concurrency: 2,
                ..limits()
            },
            ..Options::default()
        },
    )
    .await;
    env.put("/P/a.txt", "alpha apple");
    env.add_folder("/P").await;
    env.sync().await;
    let cursors = env.cursors().await;
    let mut files = vec![("P/a.txt".to_owned(), "alpha apple".to_owned())];
    for i in 0..6 {
        let (path, text) = (format!("P/new{i}.txt"), format!("new number{i}"));
        env.put(&format!("/{path}"), &text);
        files.push((path, text));
    }
    let delay = env.ctl.add_fault(FaultRule::new(
        "GET",
        CONTENT_ROUTE,
        FaultAction::Delay { millis: 4000 },
    ));
    let mut rx = env.events.subscribe(env.kb);
    let cancel = CancellationToken::new();

    let canceller = async {
        // The first file done: downloads are under way.
        next_event(&mut rx, Duration::from_secs(30), |e| {
            matches!(e, SyncEvent::Progress { .. }).then_some(())
        })
        .await;
        cancel.cancel();
        Instant::now()
    };
    let (summary, cancelled_at) = tokio::join!(env.sync_with(cancel.clone()), canceller);

    assert!(
        cancelled_at.elapsed() < Duration::from_secs(3),
        "the run stopped without waiting for the downloads in flight"
    );
    assert_eq!(summary.status, SyncStatus::Cancelled, "{summary:?}");
    assert!(summary.processed < 6, "{summary:?}");
    assert_eq!(env.cursors().await, cursors, "no cursor moved");
    assert_eq!(env.kb_status().await, SyncStatus::Cancelled);
    let runs = env.store.list_sync_runs(env.kb, 1).await.unwrap();
    assert_eq!(runs[0].outcome.status, SyncStatus::Cancelled);
    assert!(
        runs[0].outcome.failures.is_empty(),
        "cancelled files are not failures"
    );

    env.ctl.remove_fault(delay);
    let resumed = env.sync().await;
    assert_eq!(resumed.status, SyncStatus::Completed, "{resumed:?}");
    let expected: Vec<(&str, &str)> = files.iter().map(|(p, t)| (p.as_str(), t.as_str())).collect();
    env.assert_mirrors(&expected).await;
}

async fn progress_is_persisted_and_events_tell_the_run_as_it_goes(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    env.put("/P/b.txt", "bravo banana");
    let bad = env.put("/P/bad.pdf", "%PDF-1.4 this is not a pdf at all");
    env.put("/P/skip.bin", "binary");
    env.add_folder("/P").await;
    let mut rx = env.events.subscribe(env.kb);
    let run_id = Uuid::new_v4();
    env.clock.advance(chrono::Duration::seconds(1));

    let summary = env
        .engine
        .run(
            run_id,
            env.kb,
            &env.ds,
            &env.tokens,
            SyncTrigger::Manual,
            CancellationToken::new(),
        )
        .await
        .unwrap();

    assert_eq!(summary.run_id, run_id);
    assert_eq!(summary.status, SyncStatus::CompletedWithErrors, "{summary:?}");
    let events = drain(&mut rx);
    assert_eq!(
        events.first(),
        Some(&SyncEvent::Status {
            run_id,
            status: SyncStatus::Syncing
        })
    );
    let progress: Vec<(u64, u64)> = events
        .iter()
        .filter_map(|e| match e {
            SyncEvent::Progress {
                run_id: r,
                current,
                total,
                file,
            } => {
                assert_eq!(*r, run_id);
                assert!(file.as_deref().is_some_and(|f| f.starts_with("/P/")), "{file:?}");
                Some((*current, *total))
            }
            _ => None,
        })
        .collect();
    assert_eq!(progress, [(1, 3), (2, 3), (3, 3)], "the three files to download");
    let failed: Vec<&SyncEvent> = events
        .iter()
        .filter(|e| matches!(e, SyncEvent::FileFailed { .. }))
        .collect();
    assert!(
        matches!(failed[..], [SyncEvent::FileFailed { name, .. }] if name == "bad.pdf"),
        "{failed:?}"
    );
    let n = events.len();
    assert_eq!(
        events[n - 2..],
        [
            SyncEvent::Finished {
                run_id,
                status: SyncStatus::CompletedWithErrors,
                processed: 2,
                failed: 1,
                deleted: 0,
                skipped: 1,
                total_found: 4,
            },
            SyncEvent::Status {
                run_id,
                status: SyncStatus::CompletedWithErrors
            },
        ]
    );

    let state = env.store.get_sync_state(env.kb, env.ctl.now()).await.unwrap();
    assert_eq!(state.status, SyncStatus::CompletedWithErrors);
    assert_eq!(state.progress.run_id, Some(run_id));
    assert_eq!((state.progress.current, state.progress.total), (3, 3));
    assert!(state.progress.file.is_some());
    // The failed file was recorded as it happened, and only once.
    let recorded = env.store.list_sync_failures(run_id, 0).await.unwrap();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].item_id, bad);
    let runs = env.store.list_sync_runs(env.kb, 1).await.unwrap();
    assert_eq!(runs[0].outcome.failures, recorded);
    // The unreadable file is a failed document; the others are indexed.
    let docs = env
        .store
        .list_documents(env.kb, Page { limit: 10, offset: 0 })
        .await
        .unwrap()
        .items;
    let status: Vec<(&str, kbsync_core::DocumentStatus)> =
        docs.iter().map(|d| (d.path.as_str(), d.status)).collect();
    assert_eq!(
        status,
        [
            ("/P/a.txt", kbsync_core::DocumentStatus::Processed),
            ("/P/b.txt", kbsync_core::DocumentStatus::Processed),
            ("/P/bad.pdf", kbsync_core::DocumentStatus::Failed),
        ]
    );
    assert_eq!(env.finds("apple").await, ["a.txt"]);
    assert_eq!(env.finds("banana").await, ["b.txt"]);
}

// --- overlapping sources -----------------------------------------------------------------------

async fn a_file_in_two_sources_is_one_document_fetched_once(store: Arc<dyn Store>) {
    let env = env(store).await;
    let a = env.put("/P/a.txt", "alpha apple");
    env.put("/P/b.txt", "bravo banana");
    // The file picked first, then its folder: the folder gives the document its path.
    env.add_source(SourceKind::File, &a, "a.txt", "/P/a.txt").await;
    env.add_folder("/P").await;

    let first = env.sync().await;
    assert_eq!(first.status, SyncStatus::Completed, "{first:?}");
    assert_eq!((first.processed, first.total_found), (2, 2));
    env.assert_mirrors(&[("P/a.txt", "alpha apple"), ("P/b.txt", "bravo banana")])
        .await;

    env.ctl.clear_request_log();
    let second = env.sync().await;
    assert_eq!((second.processed, second.deleted), (0, 0), "{second:?}");
    assert_eq!(env.content_requests(), 0);

    env.ctl
        .modify_file(&env.drive, &a, "alpha apricot".to_owned())
        .unwrap();
    let third = env.sync().await;
    assert_eq!((third.processed, third.deleted), (1, 0), "{third:?}");
    env.assert_mirrors(&[("P/a.txt", "alpha apricot"), ("P/b.txt", "bravo banana")])
        .await;
}

// --- permission sync ---------------------------------------------------------------------------

async fn sharing_with_a_kbsync_user_grants_read_and_unsharing_takes_it_back(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    let p = env.add_folder("/P").await;
    let megan = env.graph_user("Megan Bowen", "megan@contoso.com");
    let megan_here = env.kbsync_user("Megan@Contoso.com").await;
    let manual = env.kbsync_user("manual@example.com").await;
    let guest_here = env.kbsync_user("guest@fabrikam.com").await;
    env.store.set_manual_grants(env.kb, &[manual], &[]).await.unwrap();
    let owner_email = format!("{}@example.com", env.owner);
    env.ctl
        .set_permissions(
            &env.drive,
            &p.item_id,
            vec![
                PermissionSpec::user(&megan.id, &["write"]),
                // The owner needs no grant.
                PermissionSpec::User {
                    user_id: None,
                    display_name: Some("Owner".into()),
                    email: Some(owner_email),
                    include_email: true,
                    roles: vec!["read".into()],
                },
                // No email: cannot be matched.
                PermissionSpec::User {
                    user_id: None,
                    display_name: Some("Guest".into()),
                    email: Some("guest@fabrikam.com".into()),
                    include_email: false,
                    roles: vec!["read".into()],
                },
                PermissionSpec::Group {
                    group_id: Some("g-sales".into()),
                    display_name: "Sales".into(),
                    email: Some("manual@example.com".into()),
                    roles: vec!["read".into()],
                },
            ],
        )
        .unwrap();

    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert!(env.count(PERMISSIONS_ROUTE) >= 1);
    let mut expected = vec![
        (megan_here, Permission::Read, GrantOrigin::Sync),
        (manual, Permission::Read, GrantOrigin::Manual),
    ];
    expected.sort_by_key(|(u, p, o)| (*u, p.as_str(), o.as_str()));
    assert_eq!(env.grants().await, expected);
    assert!(
        env.grants().await.iter().all(|(u, _, _)| *u != guest_here),
        "a person listed without an email is not matched"
    );
    env.assert_mirrors(&[("P/a.txt", "alpha apple")]).await;

    // Unshared: the sync grant goes, the manual one stays.
    env.ctl
        .set_permissions(&env.drive, &p.item_id, Vec::new())
        .unwrap();
    env.sync().await;
    assert_eq!(
        env.grants().await,
        [(manual, Permission::Read, GrantOrigin::Manual)]
    );
}

async fn organization_links_grant_nothing_unless_link_grants_are_allowed(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    let p = env.add_folder("/P").await;
    let first = env.kbsync_user("first@example.com").await;
    let second = env.kbsync_user("second@example.com").await;
    env.ctl
        .add_permission(
            &env.drive,
            &p.item_id,
            PermissionSpec::link("view", "organization"),
        )
        .unwrap();
    env.ctl
        .add_permission(&env.drive, &p.item_id, PermissionSpec::link("view", "anonymous"))
        .unwrap();

    let summary = env.sync().await;
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert!(env.grants().await.is_empty(), "a link opens nothing by default");

    // Allowed (a restart with the new settings reads every knowledge base's sharing again).
    let allowing = env.engine_with(
        limits(),
        PermissionPolicy {
            link_grants: true,
            ..Default::default()
        },
    );
    env.store.forget_sharing_reads(None).await.unwrap();
    env.sync_on(&allowing).await;
    let mut expected = vec![
        (first, Permission::Read, GrantOrigin::Sync),
        (second, Permission::Read, GrantOrigin::Sync),
    ];
    expected.sort_by_key(|(u, p, o)| (*u, p.as_str(), o.as_str()));
    assert_eq!(env.grants().await, expected, "every user but the owner");

    // Allowed again no more (a restart with the new settings): the grants go.
    env.store.forget_sharing_reads(None).await.unwrap();
    env.sync().await;
    assert!(env.grants().await.is_empty());
}

async fn sharing_that_cannot_be_read_keeps_the_sync_grants(store: Arc<dyn Store>) {
    let env = env_with(
        store,
        Options {
            graph: |g| g.max_attempts = 2,
            ..Options::default()
        },
    )
    .await;
    env.put("/P/a.txt", "alpha apple");
    env.put("/Q/q.txt", "quiet quinoa");
    let p = env.add_folder("/P").await;
    let q = env.add_folder("/Q").await;
    let megan = env.graph_user("Megan Bowen", "megan@contoso.com");
    let megan_here = env.kbsync_user("megan@contoso.com").await;
    env.ctl
        .add_permission(&env.drive, &p.item_id, PermissionSpec::user(&megan.id, &["read"]))
        .unwrap();
    env.sync().await;
    let granted = [(megan_here, Permission::Read, GrantOrigin::Sync)];
    assert_eq!(env.grants().await, granted);

    // P unshared, but Q's sharing cannot be read: nothing changes.
    env.ctl
        .set_permissions(&env.drive, &p.item_id, Vec::new())
        .unwrap();
    let fault = env.ctl.add_fault(FaultRule::new(
        "GET",
        &format!("/v1.0/drives/*/items/{}/permissions", q.item_id),
        FaultAction::ServerError { status: 503 },
    ));
    let summary = env.sync().await;
    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!(env.grants().await, granted);

    env.ctl.remove_fault(fault);
    env.sync().await;
    assert!(env.grants().await.is_empty());
}

async fn a_revoked_source_shares_nothing(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    env.put("/Q/q.txt", "quiet quinoa");
    let p = env.add_folder("/P").await;
    let q = env.add_folder("/Q").await;
    let megan = env.graph_user("Megan Bowen", "megan@contoso.com");
    let nestor = env.graph_user("Nestor Wilke", "nestor@contoso.com");
    let megan_here = env.kbsync_user("megan@contoso.com").await;
    let nestor_here = env.kbsync_user("nestor@contoso.com").await;
    env.ctl
        .add_permission(&env.drive, &p.item_id, PermissionSpec::user(&megan.id, &["read"]))
        .unwrap();
    env.ctl
        .add_permission(
            &env.drive,
            &q.item_id,
            PermissionSpec::user(&nestor.id, &["read"]),
        )
        .unwrap();
    env.sync().await;
    assert_eq!(env.grants().await.len(), 2);

    env.ctl.revoke_access(&env.user, &env.drive, &p.item_id).unwrap();
    let summary = env.sync().await;

    // Hidden after one refusal, it already grants nothing.
    assert_eq!(summary.status, SyncStatus::AccessRevoked, "{summary:?}");
    assert_eq!(
        env.grants().await,
        [(nestor_here, Permission::Read, GrantOrigin::Sync)]
    );
    assert!(env.grants().await.iter().all(|(u, _, _)| *u != megan_here));
    assert!(env.finds("apple").await.is_empty());

    // Readable again: its sharing counts again.
    env.ctl.grant_access(&env.user, &env.drive, &p.item_id).unwrap();
    env.sync().await;
    let mut both = vec![
        (megan_here, Permission::Read, GrantOrigin::Sync),
        (nestor_here, Permission::Read, GrantOrigin::Sync),
    ];
    both.sort_by_key(|(u, p, o)| (*u, p.as_str(), o.as_str()));
    assert_eq!(env.grants().await, both);

    // Refused on two runs in a row: the documents go too.
    env.ctl.revoke_access(&env.user, &env.drive, &p.item_id).unwrap();
    env.sync().await;
    env.sync().await;
    assert_eq!(
        env.grants().await,
        [(nestor_here, Permission::Read, GrantOrigin::Sync)]
    );
    env.assert_mirrors(&[("Q/q.txt", "quiet quinoa")]).await;
}
