//! The sync engine against the in-process Graph emulator, each scenario on SQLite and (when
//! `KBSYNC_TEST_DATABASE_URL` is set) PostgreSQL in a schema of its own.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use kbsync_core::datasource::{AccessToken, DatasourceKind, StaticToken};
use kbsync_core::{KbId, KbType, ManualClock, Role, SeededRandom, SyncStatus};
use kbsync_ingest::{Extractor, IngestConfig};
use kbsync_msgraph::{GraphConfig, OneDrive, TokioSleeper, microsoft_oauth};
use kbsync_store::{
    BlobStore, NewKnowledgeBase, NewSource, NewUser, Page, PostgresStore, Reader, SearchQuery, Source,
    SourceKind, Store, SyncTrigger,
};
use kbsync_sync::{RunSummary, SyncContext, SyncEngine, SyncLimits};
use msgraph_emulator::{Control, DeltaBehaviour, Emulator, ResyncCode, RunningEmulator};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const PG_ENV: &str = "KBSYNC_TEST_DATABASE_URL";

// --- harness ---------------------------------------------------------------------------------

async fn on_sqlite<F, Fut>(body: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kbsync.db").display());
    body(kbsync_store::connect(&url).await.unwrap()).await;
}

async fn on_postgres<F, Fut>(body: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Ok(url) = std::env::var(PG_ENV) else {
        eprintln!("skipped: {PG_ENV} is not set, so this PostgreSQL variant did not run");
        return;
    };
    let schema = format!("kbsync_test_{}", Uuid::new_v4().simple());
    let store = PostgresStore::connect_in_schema(&url, &schema).await.unwrap();
    store.migrate().await.unwrap();
    let outcome = AssertUnwindSafe(body(Arc::new(store))).catch_unwind().await;
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    conn.close().await.unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::on_sqlite(super::$name).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::on_postgres(super::$name).await } )*
        }
    };
}

struct Env {
    _emu: RunningEmulator,
    _blob_dir: tempfile::TempDir,
    ctl: Control,
    ds: OneDrive,
    tokens: StaticToken,
    drive: String,
    user: String,
    store: Arc<dyn Store>,
    engine: SyncEngine,
    kb: KbId,
}

async fn env(store: Arc<dyn Store>) -> Env {
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
    let config = GraphConfig {
        graph_url: emu.graph_url().to_string(),
        request_timeout: Duration::from_secs(10),
        ..GraphConfig::default()
    };
    let http = config.http_client().unwrap();
    let oauth = microsoft_oauth(emu.base_url(), &ctl.tenant_id(), vec!["Files.Read.All".into()]);
    let ds = OneDrive::new(config, oauth, http, Arc::new(TokioSleeper));
    let user = ctl.default_user_id();
    let tokens = StaticToken(AccessToken::new(
        ctl.mint_access_token(&user, &["Files.Read.All"]).unwrap(),
    ));
    let drive = ctl.default_drive_id();
    let owner = Uuid::new_v4();
    let clock = Arc::new(ManualClock::new(ctl.now()));
    store
        .create_user(
            owner,
            NewUser {
                email: format!("{owner}@example.com"),
                password_hash: "$argon2id$x".into(),
                role: Role::User,
            },
            ctl.now(),
        )
        .await
        .unwrap();
    let kb = Uuid::new_v4();
    store
        .create_kb(
            kb,
            NewKnowledgeBase {
                name: "synced".into(),
                description: String::new(),
                owner_id: owner,
                kb_type: KbType::OneDrive,
            },
            ctl.now(),
        )
        .await
        .unwrap();
    let blob_dir = tempfile::tempdir().unwrap();
    let engine = SyncEngine::new(SyncContext {
        store: store.clone(),
        blobs: BlobStore::new(blob_dir.path()),
        extractor: Extractor::new(IngestConfig::default()),
        clock,
        random: Arc::new(SeededRandom::new(9)),
        limits: SyncLimits {
            max_file_size: 1024 * 1024,
            concurrency: 4,
        },
    });
    Env {
        _emu: emu,
        _blob_dir: blob_dir,
        ctl,
        ds,
        tokens,
        drive,
        user,
        store,
        engine,
        kb,
    }
}

impl Env {
    async fn add_folder(&self, path: &str) -> Source {
        let item = self.ctl.item_by_path(&self.drive, path).unwrap();
        self.store
            .add_source(
                Uuid::new_v4(),
                NewSource {
                    kb_id: self.kb,
                    provider: DatasourceKind::OneDrive,
                    kind: SourceKind::Folder,
                    drive_id: self.drive.clone(),
                    item_id: item.id,
                    name: item.name,
                    path: path.into(),
                },
                self.ctl.now(),
            )
            .await
            .unwrap()
    }

    async fn sync_with(&self, cancel: CancellationToken) -> RunSummary {
        self.engine
            .run(self.kb, &self.ds, &self.tokens, SyncTrigger::Manual, cancel)
            .await
            .unwrap()
    }

    async fn sync(&self) -> RunSummary {
        self.sync_with(CancellationToken::new()).await
    }

    fn put(&self, path: &str, text: &str) -> String {
        self.ctl.put_file(&self.drive, path, text.to_owned()).unwrap().id
    }

    fn id(&self, path: &str) -> String {
        self.ctl.item_by_path(&self.drive, path).unwrap().id
    }

    /// path → (status, text of the stored file) of every document of the KB.
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
            let bytes = self.engine_blobs().read(&d.content_hash).await.unwrap();
            out.insert(d.path, String::from_utf8(bytes).unwrap());
        }
        out
    }

    fn engine_blobs(&self) -> BlobStore {
        BlobStore::new(self._blob_dir.path())
    }

    /// The text files below a drive folder, as the KB should hold them (path without the leading
    /// slash → content).
    fn drive_files(&self, expected: &[(&str, &str)]) -> BTreeMap<String, String> {
        expected
            .iter()
            .map(|(p, t)| (p.trim_start_matches('/').to_owned(), (*t).to_owned()))
            .collect()
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

    fn content_requests(&self) -> usize {
        let log = self.ctl.request_log();
        log.entries
            .iter()
            .filter(|e| e.path.ends_with("/content"))
            .count()
    }

    fn delta_requests(&self) -> usize {
        let log = self.ctl.request_log();
        log.entries.iter().filter(|e| e.path.contains("delta")).count()
    }
}

scenarios!(
    initial_sync_of_a_nested_folder_mirrors_the_drive,
    incremental_changes_are_applied_and_a_rename_does_not_download_again,
    a_folder_moved_out_of_the_subtree_removes_its_files,
    an_expired_delta_token_resyncs_fully_and_removes_what_disappeared,
    a_run_without_changes_makes_one_delta_request_per_folder,
    a_revoked_folder_removes_its_documents_and_marks_access_revoked,
    a_failing_file_is_recorded_and_retried_next_run,
    a_cancelled_run_advances_no_cursor,
    a_file_source_is_fetched_only_when_its_hash_changes,
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
    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::Completed, "{summary:?}");
    assert_eq!(
        env.contents().await,
        env.drive_files(&[("P/a.txt", "alpha apple"), ("P/c.txt", "charlie cherry")])
    );
    assert!(env.finds("banana").await.is_empty());
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
    assert_eq!((summary.processed, summary.deleted), (0, 0));
    assert_eq!(env.delta_requests(), 2, "{:#?}", env.ctl.request_log().entries);
    assert_eq!(env.content_requests(), 0);
    assert_eq!(env.contents().await.len(), 2);
}

async fn a_revoked_folder_removes_its_documents_and_marks_access_revoked(store: Arc<dyn Store>) {
    let env = env(store).await;
    env.put("/P/a.txt", "alpha apple");
    env.put("/Q/b.txt", "bravo banana");
    let p = env.add_folder("/P").await;
    env.add_folder("/Q").await;
    env.sync().await;

    env.ctl.revoke_access(&env.user, &env.drive, &p.item_id).unwrap();
    let summary = env.sync().await;

    assert_eq!(summary.status, SyncStatus::AccessRevoked);
    assert_eq!(summary.deleted, 1);
    assert_eq!(
        env.contents().await,
        env.drive_files(&[("Q/b.txt", "bravo banana")])
    );
    assert!(env.finds("apple").await.is_empty());
    assert_eq!(
        env.store.get_kb(env.kb).await.unwrap().sync_status,
        SyncStatus::AccessRevoked
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
                provider: DatasourceKind::OneDrive,
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
        env.drive_files(&[("single.txt", "single sapote")])
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
