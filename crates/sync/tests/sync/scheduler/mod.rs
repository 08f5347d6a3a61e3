//! The runner and the scheduler against the in-process Graph emulator, on an injected manual
//! clock, each scenario on SQLite and (when `KBSYNC_TEST_DATABASE_URL` is set) PostgreSQL in a
//! schema of its own. Nothing here sleeps to wait for something: it polls with a deadline. This
//! module holds the harness (the world of one database, its runners and schedulers).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbsync_core::datasource::{AccessToken, Datasource, DatasourceKind, StaticToken};
use kbsync_core::{Clock, KbId, KbType, ManualClock, Random, Role, SeededRandom, SyncStatus};
use kbsync_core::{SourceKind, SyncRun, SyncState, SyncTrigger};
use kbsync_ingest::{Extractor, IngestConfig};
use kbsync_msgraph::{GraphConfig, OneDrive, TokioSleeper};
use kbsync_store::{BlobStore, NewConnection, NewUser, Store, StoreError, TokenCipher};
use kbsync_sync::runner::{
    DatasourceResolver, ResolveError, RunnerSettings, StartError, StoredTokens, SyncRunner,
};
use kbsync_sync::scheduler::{Scheduler, SchedulerSettings};
use kbsync_sync::{PermissionPolicy, SyncLimits, SyncRuntime, SyncSettings};
use msgraph_emulator::{Control, Emulator, FaultAction, FaultRule, RunningEmulator};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

mod claiming;
mod instances;
mod reauth;

/// Longest real time any wait in these tests may take.
const DEADLINE: Duration = Duration::from_secs(60);

/// The datasource and tokens of a knowledge base, as the server's resolver gives them: tokens
/// exist while the store holds a connection that does not need re-authorization (the stored
/// refresh token itself is a dummy; the emulator accepts the minted access token). A refused
/// connection is marked in the store as the OAuth connection manager marks it (under the
/// refresh lease, only while it is the connection the run used).
struct TestResolver {
    store: Arc<dyn Store>,
    datasource: Arc<dyn Datasource>,
    token: AccessToken,
    clock: ManualClock,
}

#[async_trait]
impl DatasourceResolver for TestResolver {
    fn datasource(&self, kind: DatasourceKind) -> Option<Arc<dyn Datasource>> {
        (kind == DatasourceKind::OneDrive).then(|| self.datasource.clone())
    }

    async fn tokens(&self, kb_id: KbId) -> Result<StoredTokens, ResolveError> {
        match self.store.get_connection(kb_id).await {
            Ok(conn) if conn.needs_reauth => Err(ResolveError::NeedsReauth),
            Ok(conn) => Ok(StoredTokens {
                source: Arc::new(StaticToken(self.token.clone())),
                stored_at: conn.stored_at,
            }),
            Err(StoreError::NotFound) => Err(ResolveError::NotConnected),
            Err(e) => Err(ResolveError::Unavailable(e.to_string())),
        }
    }

    async fn mark_needs_reauth(&self, kb_id: KbId, stored_at: DateTime<Utc>) -> Result<bool, ResolveError> {
        let unavailable = |e: StoreError| ResolveError::Unavailable(e.to_string());
        let conn = self.store.get_connection(kb_id).await.map_err(unavailable)?;
        if conn.needs_reauth || conn.stored_at != stored_at {
            return Ok(false);
        }
        let now = self.clock.now();
        if !self
            .store
            .try_acquire_refresh_lease(kb_id, "oauth", now, now + chrono::Duration::minutes(1))
            .await
            .map_err(unavailable)?
        {
            return Ok(false);
        }
        self.store
            .mark_needs_reauth(kb_id, "oauth", now)
            .await
            .map_err(unavailable)
    }
}

struct World {
    _emu: RunningEmulator,
    _blob_dir: tempfile::TempDir,
    blob_path: PathBuf,
    ctl: Control,
    drive: String,
    store: Arc<dyn Store>,
    clock: ManualClock,
    datasource: Arc<OneDrive>,
    token: AccessToken,
    owner: Uuid,
    cipher: TokenCipher,
    seeds: AtomicU64,
}

async fn world(store: Arc<dyn Store>) -> World {
    let emu = Emulator::builder()
        .seed(11)
        .frozen_clock(true)
        .start()
        .await
        .unwrap();
    let ctl = emu.control();
    let config = GraphConfig {
        // A failure is reported at once: the runner's backoff is under test, not the client's.
        max_attempts: 1,
        ..kbsync_kit::emulator::graph_config(&emu)
    };
    let datasource = Arc::new(kbsync_kit::emulator::onedrive(
        &emu,
        config,
        Arc::new(TokioSleeper),
    ));
    let token = kbsync_kit::emulator::access_token(&ctl, &ctl.default_user_id());
    let owner = kbsync_kit::fixtures::user(store.as_ref(), Role::User, ctl.now()).await;
    let blob_dir = tempfile::tempdir().unwrap();
    World {
        blob_path: blob_dir.path().to_owned(),
        _blob_dir: blob_dir,
        drive: ctl.default_drive_id(),
        clock: ManualClock::new(ctl.now()),
        _emu: emu,
        ctl,
        store,
        datasource,
        token,
        owner,
        cipher: TokenCipher::new("scheduler-test-secret", None).unwrap(),
        seeds: AtomicU64::new(100),
    }
}

fn settings() -> RunnerSettings {
    RunnerSettings {
        default_interval: chrono::Duration::minutes(60),
        lease_ttl: chrono::Duration::minutes(2),
        renew_every: Duration::from_millis(50),
        max_runs: 4,
        retry_base: chrono::Duration::minutes(5),
        retry_max: chrono::Duration::minutes(20),
        jitter: 0.1,
    }
}

fn minutes(m: i64) -> chrono::Duration {
    chrono::Duration::minutes(m)
}

impl World {
    /// A runner of its own (engine, random, instance id) on the shared database and clock.
    fn runner(&self, instance: &str, settings: RunnerSettings) -> SyncRunner {
        let resolver = Arc::new(TestResolver {
            store: self.store.clone(),
            datasource: self.datasource.clone(),
            token: self.token.clone(),
            clock: self.clock.clone(),
        });
        self.runner_with(resolver, instance, settings)
    }

    /// A runner like [`World::runner`] that reaches datasources and tokens through `resolver`,
    /// built as the binary builds it (`SyncRuntime::new`).
    fn runner_with(
        &self,
        resolver: Arc<dyn DatasourceResolver>,
        instance: &str,
        settings: RunnerSettings,
    ) -> SyncRunner {
        let random: Arc<dyn Random> = Arc::new(SeededRandom::new(self.seeds.fetch_add(1, Ordering::Relaxed)));
        SyncRuntime::new(
            self.store.clone(),
            BlobStore::new(&self.blob_path),
            Extractor::new(IngestConfig::default()),
            Arc::new(self.clock.clone()),
            random,
            resolver,
            SyncSettings {
                limits: SyncLimits {
                    max_file_size: 1024 * 1024,
                    concurrency: 1,
                    ..SyncLimits::default()
                },
                permissions: PermissionPolicy::default(),
                runner: settings,
                scheduler: None,
                instance_id: instance.to_owned(),
            },
        )
        .runner
    }

    fn scheduler(&self, runner: &SyncRunner, batch: u32) -> Scheduler {
        Scheduler::new(
            runner.clone(),
            SchedulerSettings {
                tick: Duration::from_millis(20),
                batch,
                reauth_grace: chrono::Duration::hours(72),
            },
        )
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    async fn create_kb(&self, name: &str, kb_type: KbType) -> KbId {
        kbsync_kit::fixtures::kb(self.store.as_ref(), self.owner, name, kb_type, self.now()).await
    }

    /// A drive folder `/name` with `files` text files, added as the knowledge base's source.
    async fn add_folder(&self, kb: KbId, name: &str, files: usize) {
        self.ctl.create_folder(&self.drive, &format!("/{name}")).unwrap();
        for i in 0..files {
            self.ctl
                .put_file(
                    &self.drive,
                    &format!("/{name}/note-{i}.txt"),
                    format!("{name} note {i}"),
                )
                .unwrap();
        }
        let folder = self.ctl.item_by_path(&self.drive, &format!("/{name}")).unwrap();
        self.store
            .add_source(
                Uuid::new_v4(),
                kbsync_kit::fixtures::onedrive_source(
                    kb,
                    SourceKind::Folder,
                    &self.drive,
                    &folder.id,
                    &format!("/{name}"),
                ),
                self.now(),
            )
            .await
            .unwrap();
    }

    async fn connect(&self, kb: KbId) {
        self.store
            .upsert_connection(
                NewConnection {
                    kb_id: kb,
                    datasource: DatasourceKind::OneDrive,
                    credentials: kbsync_core::ConnectionCredentials::Delegated,
                    refresh_token: Some(self.cipher.encrypt("dummy-refresh-token")),
                    access_token: None,
                    tenant: None,
                },
                self.now(),
            )
            .await
            .unwrap();
    }

    /// A connected OneDrive knowledge base with a folder source of `files` files: due at once.
    async fn synced_kb(&self, name: &str, files: usize) -> KbId {
        let kb = self.create_kb(name, KbType::OneDrive).await;
        self.add_folder(kb, name, files).await;
        self.connect(kb).await;
        kb
    }

    async fn runs(&self, kb: KbId) -> Vec<SyncRun> {
        self.store.list_sync_runs(kb, 100).await.unwrap()
    }

    async fn state(&self, kb: KbId) -> SyncState {
        self.store.get_sync_state(kb, self.now()).await.unwrap()
    }

    /// Makes downloads slow (real time), so a run is still going when the test acts on it.
    fn slow_downloads(&self, millis: u64) {
        self.ctl.add_fault(FaultRule::new(
            "GET",
            "/_download/**",
            FaultAction::Delay { millis },
        ));
    }

    /// Waits until the knowledge base has a run recorded as `syncing`.
    async fn wait_syncing(&self, kb: KbId) {
        eventually("a run to be going", || async {
            self.runs(kb)
                .await
                .iter()
                .any(|r| r.outcome.status == SyncStatus::Syncing)
        })
        .await;
    }

    fn downloads(&self) -> usize {
        self.ctl
            .request_log()
            .entries
            .iter()
            .filter(|e| e.path.starts_with("/_download/"))
            .count()
    }
}

#[expect(clippy::disallowed_methods, reason = "polls against a real-time deadline")]
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn idle(runner: &SyncRunner) {
    tokio::time::timeout(DEADLINE, runner.wait_idle())
        .await
        .expect("the runs did not finish in time");
}

/// `at` lies in `[from + lo, from + hi]`.
#[track_caller]
fn assert_between(at: DateTime<Utc>, from: DateTime<Utc>, lo: chrono::Duration, hi: chrono::Duration) {
    assert!(
        at >= from + lo && at <= from + hi,
        "{at} is not within [{}, {}]",
        from + lo,
        from + hi
    );
}
