//! The runner and the scheduler against the in-process Graph emulator, on an injected manual
//! clock, each scenario on SQLite and (when `KBSYNC_TEST_DATABASE_URL` is set) PostgreSQL in a
//! schema of its own. Nothing here sleeps to wait for something: it polls with a deadline.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbsync_core::datasource::{AccessToken, Datasource, DatasourceKind, StaticToken};
use kbsync_core::{Clock, KbId, KbType, ManualClock, Random, Role, SeededRandom, SyncStatus};
use kbsync_ingest::{Extractor, IngestConfig};
use kbsync_msgraph::{GraphConfig, OneDrive, TokioSleeper, microsoft_oauth};
use kbsync_store::{
    BlobStore, NewConnection, NewSource, NewUser, SourceKind, Store, StoreError, SyncGrant, SyncRun,
    SyncState, SyncTrigger, TokenCipher,
};
use kbsync_sync::events::SyncEvents;
use kbsync_sync::runner::{
    DatasourceResolver, ResolveError, RunnerSettings, StartError, StoredTokens, SyncRunner,
};
use kbsync_sync::scheduler::{Scheduler, SchedulerSettings};
use kbsync_sync::{PermissionPolicy, SyncContext, SyncEngine, SyncLimits};
use msgraph_emulator::{Control, Emulator, FaultAction, FaultRule, RunningEmulator};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

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
        graph_url: emu.graph_url().to_string(),
        request_timeout: Duration::from_secs(10),
        // A failure is reported at once: the runner's backoff is under test, not the client's.
        max_attempts: 1,
        ..GraphConfig::default()
    };
    let http = config.http_client().unwrap();
    let oauth = microsoft_oauth(emu.base_url(), &ctl.tenant_id(), vec!["Files.Read.All".into()]);
    let datasource = Arc::new(OneDrive::new(config, oauth, http, Arc::new(TokioSleeper)));
    let user = ctl.default_user_id();
    let token = AccessToken::new(ctl.mint_access_token(&user, &["Files.Read.All"]).unwrap());
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
        let random: Arc<dyn Random> = Arc::new(SeededRandom::new(self.seeds.fetch_add(1, Ordering::Relaxed)));
        let cx = SyncContext {
            store: self.store.clone(),
            blobs: BlobStore::new(&self.blob_path),
            extractor: Extractor::new(IngestConfig::default()),
            clock: Arc::new(self.clock.clone()),
            random,
            limits: SyncLimits {
                max_file_size: 1024 * 1024,
                concurrency: 1,
                ..SyncLimits::default()
            },
            events: SyncEvents::new(),
            permissions: PermissionPolicy::default(),
        };
        let engine = Arc::new(SyncEngine::new(cx.clone()));
        let resolver = Arc::new(TestResolver {
            store: self.store.clone(),
            datasource: self.datasource.clone(),
            token: self.token.clone(),
            clock: self.clock.clone(),
        });
        SyncRunner::new(engine, cx, resolver, settings, instance.to_owned())
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
                NewSource {
                    kb_id: kb,
                    datasource: DatasourceKind::OneDrive,
                    kind: SourceKind::Folder,
                    drive_id: self.drive.clone(),
                    item_id: folder.id,
                    name: folder.name,
                    path: format!("/{name}"),
                },
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
                    refresh_token: self.cipher.encrypt("dummy-refresh-token"),
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

// --- scenarios -------------------------------------------------------------------------------

kbsync_kit::on_both_databases!(
    due_kbs_are_claimed_and_synced_once_and_not_yet_due_ones_are_not,
    scheduled_runs_record_the_scheduled_trigger_and_manual_runs_the_manual_one,
    after_a_run_the_next_sync_is_the_interval_plus_bounded_jitter,
    advancing_the_clock_past_the_interval_makes_a_kb_due_again,
    kbs_needing_reauth_local_unconnected_or_without_source_are_never_claimed,
    sync_grants_of_a_kb_needing_reauth_are_withdrawn_by_the_tick_once_the_grace_period_is_over,
    failed_runs_back_off_exponentially_up_to_the_cap_and_success_resets,
    a_stale_lease_is_taken_over_and_its_interrupted_run_closed,
    a_tick_keeps_claiming_until_the_slots_are_full,
    two_runners_sharing_a_database_sync_every_due_kb_exactly_once,
    a_manual_start_while_a_run_is_going_is_refused_on_every_instance,
    a_cancel_through_another_instance_stops_the_run_without_advancing_cursors,
    shutdown_releases_leases_for_immediate_pickup_and_leaves_no_run_syncing,
    the_scheduler_loop_syncs_due_kbs_and_stops_on_shutdown,
    a_run_refused_the_stored_connection_marks_it_needs_reauth,
    a_claimed_kb_whose_tokens_need_reauth_is_released_without_running,
);

async fn due_kbs_are_claimed_and_synced_once_and_not_yet_due_ones_are_not(store: Arc<dyn Store>) {
    let w = world(store).await;
    let due = w.synced_kb("due", 2).await;
    let later = w.synced_kb("later", 1).await;
    w.store.schedule_sync(later, w.now() + minutes(10)).await.unwrap();
    let runner = w.runner("instance-a", settings());
    let scheduler = w.scheduler(&runner, 10);

    assert_eq!(scheduler.tick().await.unwrap(), 1);
    idle(&runner).await;
    let runs = w.runs(due).await;
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0].outcome.status, SyncStatus::Completed);
    assert_eq!(runs[0].outcome.processed, 2);
    assert!(w.runs(later).await.is_empty());
    assert_eq!(w.downloads(), 2);

    // Nothing is due any more: another pass claims nothing and downloads nothing.
    assert_eq!(scheduler.tick().await.unwrap(), 0);
    idle(&runner).await;
    assert_eq!(w.runs(due).await.len(), 1);
    assert_eq!(w.downloads(), 2);
    assert!(!w.state(due).await.running);
}

async fn scheduled_runs_record_the_scheduled_trigger_and_manual_runs_the_manual_one(store: Arc<dyn Store>) {
    let w = world(store).await;
    let scheduled = w.synced_kb("scheduled", 1).await;
    let manual = w.synced_kb("manual", 1).await;
    w.store
        .schedule_sync(manual, w.now() + minutes(30))
        .await
        .unwrap();
    let runner = w.runner("instance-a", settings());

    assert_eq!(w.scheduler(&runner, 10).tick().await.unwrap(), 1);
    let run_id = runner.start_manual(manual, None).await.unwrap();
    idle(&runner).await;

    let runs = w.runs(scheduled).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].trigger, SyncTrigger::Scheduled);
    let runs = w.runs(manual).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].trigger, SyncTrigger::Manual);
    assert_eq!(
        runs[0].id, run_id,
        "start_manual returns the id the run is recorded under"
    );
    assert_eq!(runs[0].outcome.status, SyncStatus::Completed);
}

async fn after_a_run_the_next_sync_is_the_interval_plus_bounded_jitter(store: Arc<dyn Store>) {
    let w = world(store).await;
    let mut kbs = Vec::new();
    for i in 0..4 {
        kbs.push(w.synced_kb(&format!("kb-{i}"), 1).await);
    }
    let own = w.synced_kb("own-interval", 1).await;
    w.store.set_sync_interval(own, Some(10)).await.unwrap();
    let runner = w.runner(
        "instance-a",
        RunnerSettings {
            max_runs: 8,
            ..settings()
        },
    );
    let t0 = w.now();

    assert_eq!(w.scheduler(&runner, 10).tick().await.unwrap(), 5);
    idle(&runner).await;

    let mut next = Vec::new();
    for kb in &kbs {
        let state = w.state(*kb).await;
        assert_eq!(state.status, SyncStatus::Completed);
        assert_eq!(state.last_sync_at, Some(t0));
        assert_eq!(state.consecutive_failures, 0);
        assert_eq!(state.last_error, None);
        assert!(!state.running);
        let at = state.next_sync_at.unwrap();
        // 60 minutes plus at most a tenth of them.
        assert_between(at, t0, minutes(60), minutes(66));
        next.push(at);
    }
    next.sort();
    next.dedup();
    assert_eq!(
        next.len(),
        kbs.len(),
        "jitter spreads knowledge bases synced together"
    );

    let at = w.state(own).await.next_sync_at.unwrap();
    assert_between(at, t0, minutes(10), minutes(11));
}

async fn advancing_the_clock_past_the_interval_makes_a_kb_due_again(store: Arc<dyn Store>) {
    let w = world(store).await;
    let kb = w.synced_kb("again", 1).await;
    let runner = w.runner("instance-a", settings());
    let scheduler = w.scheduler(&runner, 10);

    assert_eq!(scheduler.tick().await.unwrap(), 1);
    idle(&runner).await;
    let next = w.state(kb).await.next_sync_at.unwrap();

    w.clock.set(next - chrono::Duration::seconds(1));
    assert_eq!(scheduler.tick().await.unwrap(), 0, "not due a second early");

    w.clock.set(next);
    assert_eq!(scheduler.tick().await.unwrap(), 1);
    idle(&runner).await;
    let runs = w.runs(kb).await;
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.outcome.status == SyncStatus::Completed));
    assert_eq!(w.state(kb).await.last_sync_at, Some(next));
    // The second run found nothing new to download.
    assert_eq!(w.downloads(), 1);
}

async fn sync_grants_of_a_kb_needing_reauth_are_withdrawn_by_the_tick_once_the_grace_period_is_over(
    store: Arc<dyn Store>,
) {
    let w = world(store).await;
    let kb = w.synced_kb("lapsing", 1).await;
    let mut users = Vec::new();
    for name in ["synced", "manual"] {
        let id = Uuid::new_v4();
        w.store
            .create_user(
                id,
                NewUser {
                    email: format!("{name}-{id}@example.com"),
                    password_hash: "$argon2id$x".into(),
                    role: Role::User,
                },
                w.now(),
            )
            .await
            .unwrap();
        users.push(id);
    }
    let (synced, manual) = (users[0], users[1]);
    let source_id = w.store.list_sources(kb).await.unwrap()[0].id;
    w.store
        .replace_sync_grants(
            kb,
            &[SyncGrant {
                source_id,
                user_id: synced,
            }],
            w.now(),
        )
        .await
        .unwrap();
    w.store.set_manual_grants(kb, &[manual], &[]).await.unwrap();
    assert!(
        w.store
            .try_acquire_refresh_lease(kb, "oauth", w.now(), w.now() + minutes(1))
            .await
            .unwrap()
    );
    assert!(w.store.mark_needs_reauth(kb, "oauth", w.now()).await.unwrap());
    let runner = w.runner("instance-a", settings());
    let scheduler = w.scheduler(&runner, 10);
    let readers = |grants: Vec<kbsync_core::AccessGrant>| {
        let mut users: Vec<Uuid> = grants.iter().map(|g| g.user_id).collect();
        users.sort();
        users
    };
    let mut both = vec![synced, manual];
    both.sort();

    scheduler.tick().await.unwrap();
    assert_eq!(readers(w.store.list_grants(kb).await.unwrap()), both);
    w.clock
        .advance(chrono::Duration::hours(72) - chrono::Duration::seconds(1));
    scheduler.tick().await.unwrap();
    assert_eq!(readers(w.store.list_grants(kb).await.unwrap()), both);

    w.clock.advance(chrono::Duration::seconds(1));
    scheduler.tick().await.unwrap();
    assert_eq!(readers(w.store.list_grants(kb).await.unwrap()), vec![manual]);
    assert_eq!(w.store.strongest_grant(kb, synced).await.unwrap(), None);
    idle(&runner).await;
    assert!(w.runs(kb).await.is_empty());
}

async fn kbs_needing_reauth_local_unconnected_or_without_source_are_never_claimed(store: Arc<dyn Store>) {
    let w = world(store).await;
    let reauth = w.synced_kb("reauth", 1).await;
    assert!(
        w.store
            .try_acquire_refresh_lease(reauth, "oauth", w.now(), w.now() + minutes(1))
            .await
            .unwrap()
    );
    assert!(
        w.store
            .mark_needs_reauth(reauth, "oauth", w.clock.now())
            .await
            .unwrap()
    );
    let local = w.create_kb("local", KbType::Local).await;
    w.add_folder(local, "local", 1).await;
    w.connect(local).await;
    let unconnected = w.create_kb("unconnected", KbType::OneDrive).await;
    w.add_folder(unconnected, "unconnected", 1).await;
    let sourceless = w.create_kb("sourceless", KbType::OneDrive).await;
    w.connect(sourceless).await;
    let runner = w.runner("instance-a", settings());
    let scheduler = w.scheduler(&runner, 10);

    assert_eq!(scheduler.tick().await.unwrap(), 0);
    w.clock.advance(chrono::Duration::days(30));
    assert_eq!(scheduler.tick().await.unwrap(), 0);
    idle(&runner).await;
    for kb in [reauth, local, unconnected, sourceless] {
        assert!(w.runs(kb).await.is_empty());
        assert!(!w.state(kb).await.running);
    }
    assert_eq!(w.downloads(), 0);
    // A manual start says why.
    assert!(matches!(
        runner.start_manual(local, None).await,
        Err(StartError::Unsupported)
    ));
    assert!(matches!(
        runner.start_manual(reauth, None).await,
        Err(StartError::NeedsReauth)
    ));
    assert!(matches!(
        runner.start_manual(unconnected, None).await,
        Err(StartError::NotConnected)
    ));
    assert!(matches!(
        runner.start_manual(Uuid::new_v4(), None).await,
        Err(StartError::NotFound)
    ));
    assert_eq!(runner.running(), 0);
}

async fn failed_runs_back_off_exponentially_up_to_the_cap_and_success_resets(store: Arc<dyn Store>) {
    let w = world(store).await;
    let kb = w.synced_kb("flaky", 1).await;
    let fault = w.ctl.add_fault(FaultRule::new(
        "GET",
        "/v1.0/**",
        FaultAction::ServerError { status: 500 },
    ));
    let runner = w.runner("instance-a", settings());
    let scheduler = w.scheduler(&runner, 10);

    // retry_base 5 min doubling, retry_max 20 min.
    for (failures, delay) in [(1, 5), (2, 10), (3, 20), (4, 20), (5, 20)] {
        assert_eq!(scheduler.tick().await.unwrap(), 1, "attempt {failures}");
        idle(&runner).await;
        let state = w.state(kb).await;
        assert_eq!(state.status, SyncStatus::Failed);
        assert_eq!(state.consecutive_failures, failures);
        assert!(state.last_error.is_some());
        let next = state.next_sync_at.unwrap();
        assert_between(
            next,
            w.now(),
            minutes(delay),
            minutes(delay) + minutes(delay) / 10,
        );
        // Not due before its backoff is over.
        w.clock.set(next - chrono::Duration::seconds(1));
        assert_eq!(scheduler.tick().await.unwrap(), 0);
        w.clock.set(next);
    }
    assert_eq!(w.runs(kb).await.len(), 5);

    assert!(w.ctl.remove_fault(fault));
    assert_eq!(scheduler.tick().await.unwrap(), 1);
    idle(&runner).await;
    let state = w.state(kb).await;
    assert_eq!(state.status, SyncStatus::Completed);
    assert_eq!(state.consecutive_failures, 0);
    assert_eq!(state.last_error, None);
    assert_between(state.next_sync_at.unwrap(), w.now(), minutes(60), minutes(66));
}

async fn a_stale_lease_is_taken_over_and_its_interrupted_run_closed(store: Arc<dyn Store>) {
    let w = world(store).await;
    let kb = w.synced_kb("orphan", 1).await;
    // An instance claimed it, started a run and died.
    let claimed = w
        .store
        .claim_due_syncs("crashed-instance", w.now(), w.now() + minutes(2), 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let orphan = Uuid::new_v4();
    w.store
        .create_sync_run(orphan, kb, SyncTrigger::Scheduled, w.now())
        .await
        .unwrap();
    let runner = w.runner("instance-a", settings());
    let scheduler = w.scheduler(&runner, 10);

    assert_eq!(scheduler.tick().await.unwrap(), 0, "the lease is still live");
    assert!(matches!(
        runner.start_manual(kb, None).await,
        Err(StartError::AlreadyRunning)
    ));

    w.clock.advance(minutes(2) + chrono::Duration::seconds(1));
    assert_eq!(
        scheduler.tick().await.unwrap(),
        1,
        "an expired lease is taken over"
    );
    idle(&runner).await;
    let runs = w.runs(kb).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    let old = runs.iter().find(|r| r.id == orphan).unwrap();
    assert_eq!(old.outcome.status, SyncStatus::Failed);
    assert!(old.finished_at.is_some());
    let new = runs.iter().find(|r| r.id != orphan).unwrap();
    assert_eq!(new.outcome.status, SyncStatus::Completed);
    assert!(!w.state(kb).await.running);
}

async fn a_tick_keeps_claiming_until_the_slots_are_full(store: Arc<dyn Store>) {
    let w = world(store).await;
    w.slow_downloads(200);
    let mut kbs = Vec::new();
    for i in 0..5 {
        kbs.push(w.synced_kb(&format!("kb-{i}"), 1).await);
    }
    let runner = w.runner(
        "instance-a",
        RunnerSettings {
            max_runs: 4,
            ..settings()
        },
    );
    // Claims of two at most: the tick claims again until the four slots are taken.
    let scheduler = w.scheduler(&runner, 2);

    assert_eq!(scheduler.tick().await.unwrap(), 4);
    assert!(runner.running() <= 4);
    idle(&runner).await;
    assert_eq!(scheduler.tick().await.unwrap(), 1);
    idle(&runner).await;
    for kb in kbs {
        assert_eq!(w.runs(kb).await.len(), 1);
    }
}

#[expect(clippy::disallowed_methods, reason = "polls against a real-time deadline")]
async fn two_runners_sharing_a_database_sync_every_due_kb_exactly_once(store: Arc<dyn Store>) {
    let w = world(store).await;
    let mut kbs = Vec::new();
    for i in 0..20 {
        kbs.push(w.synced_kb(&format!("shared-{i:02}"), 1).await);
    }
    let a = w.runner("instance-a", settings());
    let b = w.runner("instance-b", settings());
    let (sa, sb) = (w.scheduler(&a, 3), w.scheduler(&b, 3));

    let (mut by_a, mut by_b) = (0, 0);
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while by_a + by_b < kbs.len() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of 20 launched",
            by_a + by_b
        );
        let (ta, tb) = tokio::join!(sa.tick(), sb.tick());
        by_a += ta.unwrap();
        by_b += tb.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    idle(&a).await;
    idle(&b).await;
    let (ta, tb) = tokio::join!(sa.tick(), sb.tick());
    assert_eq!((ta.unwrap(), tb.unwrap()), (0, 0));

    assert_eq!(by_a + by_b, 20);
    assert!(by_a > 0 && by_b > 0, "both instances took work: {by_a} + {by_b}");
    for kb in &kbs {
        let runs = w.runs(*kb).await;
        assert_eq!(runs.len(), 1, "{runs:?}");
        assert_eq!(runs[0].outcome.status, SyncStatus::Completed);
        assert_eq!(runs[0].trigger, SyncTrigger::Scheduled);
    }
    assert_eq!(w.downloads(), 20, "every file downloaded once");
}

async fn a_manual_start_while_a_run_is_going_is_refused_on_every_instance(store: Arc<dyn Store>) {
    let w = world(store).await;
    w.slow_downloads(300);
    let kb = w.synced_kb("busy", 8).await;
    let a = w.runner("instance-a", settings());
    let b = w.runner("instance-b", settings());

    a.start_manual(kb, None).await.unwrap();
    assert!(matches!(
        a.start_manual(kb, None).await,
        Err(StartError::AlreadyRunning)
    ));
    assert!(matches!(
        b.start_manual(kb, None).await,
        Err(StartError::AlreadyRunning)
    ));
    w.wait_syncing(kb).await;
    assert!(w.state(kb).await.running);
    assert!(matches!(
        b.start_manual(kb, None).await,
        Err(StartError::AlreadyRunning)
    ));
    assert_eq!(
        w.scheduler(&b, 10).tick().await.unwrap(),
        0,
        "a leased KB is not claimed"
    );

    assert!(a.cancel(kb).await.unwrap());
    idle(&a).await;
    assert_eq!(w.runs(kb).await.len(), 1);
    // Free again: a new manual run starts.
    w.ctl.clear_faults();
    b.start_manual(kb, None).await.unwrap();
    idle(&b).await;
    assert_eq!(w.runs(kb).await.len(), 2);
}

async fn a_cancel_through_another_instance_stops_the_run_without_advancing_cursors(store: Arc<dyn Store>) {
    let w = world(store).await;
    w.slow_downloads(300);
    let kb = w.synced_kb("long", 8).await;
    let a = w.runner("instance-a", settings());
    let b = w.runner("instance-b", settings());
    assert!(!b.cancel(kb).await.unwrap(), "nothing runs yet");

    let run_id = a.start_manual(kb, None).await.unwrap();
    w.wait_syncing(kb).await;
    assert!(b.cancel(kb).await.unwrap());
    assert_eq!(b.running(), 0);
    idle(&a).await;

    let runs = w.runs(kb).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].id, run_id);
    assert_eq!(runs[0].outcome.status, SyncStatus::Cancelled);
    assert!(
        runs[0].outcome.processed < 8,
        "the run stopped early: {:?}",
        runs[0].outcome
    );
    let state = w.state(kb).await;
    assert_eq!(state.status, SyncStatus::Cancelled);
    assert!(!state.running);
    for source in w.store.list_sources(kb).await.unwrap() {
        assert_eq!(source.cursor, None, "a cancelled run advances no cursor");
    }
    // A user's cancel is not a failure, and the schedule goes on at the interval.
    assert_eq!(state.consecutive_failures, 0);
    assert_between(state.next_sync_at.unwrap(), w.now(), minutes(60), minutes(66));
}

async fn shutdown_releases_leases_for_immediate_pickup_and_leaves_no_run_syncing(store: Arc<dyn Store>) {
    let w = world(store).await;
    w.slow_downloads(300);
    let kb = w.synced_kb("handover", 8).await;
    let a = w.runner("instance-a", settings());
    let b = w.runner("instance-b", settings());

    a.start_manual(kb, None).await.unwrap();
    w.wait_syncing(kb).await;
    tokio::time::timeout(DEADLINE, a.shutdown())
        .await
        .expect("shutdown hung");
    assert_eq!(a.running(), 0);

    let state = w.state(kb).await;
    assert!(!state.running, "the lease was released");
    assert_eq!(state.next_sync_at, Some(w.now()), "due again at once");
    let runs = w.runs(kb).await;
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].outcome.status, SyncStatus::Cancelled);
    assert!(runs.iter().all(|r| r.outcome.status != SyncStatus::Syncing));
    assert!(matches!(
        a.start_manual(kb, None).await,
        Err(StartError::ShuttingDown)
    ));
    assert_eq!(
        w.scheduler(&a, 10).tick().await.unwrap(),
        0,
        "a stopped runner claims nothing"
    );

    // Another instance picks it up on its next pass, without the clock moving.
    w.ctl.clear_faults();
    assert_eq!(w.scheduler(&b, 10).tick().await.unwrap(), 1);
    idle(&b).await;
    let runs = w.runs(kb).await;
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().any(|r| r.outcome.status == SyncStatus::Completed));
}

async fn the_scheduler_loop_syncs_due_kbs_and_stops_on_shutdown(store: Arc<dyn Store>) {
    let w = world(store).await;
    let kb = w.synced_kb("looped", 1).await;
    let runner = w.runner("instance-a", settings());
    let shutdown = CancellationToken::new();
    let handle = w.scheduler(&runner, 10).spawn(shutdown.clone());

    eventually("the loop to sync the due knowledge base", || async {
        w.runs(kb)
            .await
            .iter()
            .any(|r| r.outcome.status == SyncStatus::Completed)
    })
    .await;
    // Newly due work is picked up by later ticks.
    let later = w.synced_kb("later", 1).await;
    eventually("the loop to sync a knowledge base added later", || async {
        w.runs(later)
            .await
            .iter()
            .any(|r| r.outcome.status == SyncStatus::Completed)
    })
    .await;

    shutdown.cancel();
    tokio::time::timeout(DEADLINE, handle)
        .await
        .expect("the loop did not stop")
        .unwrap();
    assert!(matches!(
        runner.start_manual(kb, None).await,
        Err(StartError::ShuttingDown)
    ));
    assert_eq!(w.runs(kb).await.len(), 1);
}

async fn a_run_refused_the_stored_connection_marks_it_needs_reauth(store: Arc<dyn Store>) {
    let w = world(store).await;
    let kb = w.synced_kb("refused", 1).await;
    let browser = w.synced_kb("browser", 1).await;
    w.ctl
        .add_fault(FaultRule::new("GET", "/v1.0/**", FaultAction::Unauthorized));
    let runner = w.runner("instance-a", settings());

    // A browser-supplied token that is refused says nothing about the stored connection.
    runner
        .start_manual(browser, Some(AccessToken::new("browser-token")))
        .await
        .unwrap();
    idle(&runner).await;
    assert_eq!(w.runs(browser).await[0].outcome.status, SyncStatus::NeedsReauth);
    assert!(!w.store.get_connection(browser).await.unwrap().needs_reauth);

    runner.start_manual(kb, None).await.unwrap();
    idle(&runner).await;
    assert_eq!(w.runs(kb).await[0].outcome.status, SyncStatus::NeedsReauth);
    assert!(w.store.get_connection(kb).await.unwrap().needs_reauth);
    let state = w.state(kb).await;
    assert_eq!(state.status, SyncStatus::NeedsReauth);
    assert_eq!(state.consecutive_failures, 0, "not retried as a failure");

    // The scheduler skips it until the user connects again.
    w.ctl.clear_faults();
    w.clock.advance(chrono::Duration::days(2));
    let scheduler = w.scheduler(&runner, 10);
    assert_eq!(
        scheduler.tick().await.unwrap(),
        1,
        "only the browser-token KB is due"
    );
    idle(&runner).await;
    assert_eq!(w.runs(kb).await.len(), 1);
    w.connect(kb).await;
    assert_eq!(scheduler.tick().await.unwrap(), 1);
    idle(&runner).await;
    assert_eq!(w.runs(kb).await[0].outcome.status, SyncStatus::Completed);
}

async fn a_claimed_kb_whose_tokens_need_reauth_is_released_without_running(store: Arc<dyn Store>) {
    let w = world(store).await;
    let kb = w.synced_kb("stale-connection", 1).await;
    // The store still sees a usable connection, but the resolver refuses (e.g. the connection
    // was renewed elsewhere a moment ago, or tokens cannot be had): the claim is given back.
    struct Refusing;
    #[async_trait]
    impl DatasourceResolver for Refusing {
        fn datasource(&self, _: DatasourceKind) -> Option<Arc<dyn Datasource>> {
            None
        }
        async fn tokens(&self, _: KbId) -> Result<StoredTokens, ResolveError> {
            Err(ResolveError::NeedsReauth)
        }
        async fn mark_needs_reauth(&self, _: KbId, _: DateTime<Utc>) -> Result<bool, ResolveError> {
            Ok(false)
        }
    }
    let random: Arc<dyn Random> = Arc::new(SeededRandom::new(7));
    let cx = SyncContext {
        store: w.store.clone(),
        blobs: BlobStore::new(&w.blob_path),
        extractor: Extractor::new(IngestConfig::default()),
        clock: Arc::new(w.clock.clone()),
        random,
        limits: SyncLimits::default(),
        events: SyncEvents::new(),
        permissions: PermissionPolicy::default(),
    };
    struct NeedsReauth(Arc<OneDrive>);
    #[async_trait]
    impl DatasourceResolver for NeedsReauth {
        fn datasource(&self, _: DatasourceKind) -> Option<Arc<dyn Datasource>> {
            Some(self.0.clone())
        }
        async fn tokens(&self, _: KbId) -> Result<StoredTokens, ResolveError> {
            Err(ResolveError::NeedsReauth)
        }
        async fn mark_needs_reauth(&self, _: KbId, _: DateTime<Utc>) -> Result<bool, ResolveError> {
            Ok(false)
        }
    }
    let runner = SyncRunner::new(
        Arc::new(SyncEngine::new(cx.clone())),
        cx.clone(),
        Arc::new(NeedsReauth(w.datasource.clone())),
        settings(),
        "instance-a".into(),
    );
    let t0 = w.now();
    assert_eq!(w.scheduler(&runner, 10).tick().await.unwrap(), 0);
    idle(&runner).await;
    assert!(w.runs(kb).await.is_empty());
    let state = w.state(kb).await;
    assert!(!state.running, "the lease was given back");
    assert_between(state.next_sync_at.unwrap(), t0, minutes(60), minutes(66));
    assert_eq!(state.last_sync_at, None, "it did not run");

    // Without a datasource configured it is given back the same way.
    w.clock.advance(minutes(70));
    let unconfigured = SyncRunner::new(
        Arc::new(SyncEngine::new(cx.clone())),
        cx,
        Arc::new(Refusing),
        settings(),
        "instance-b".into(),
    );
    assert_eq!(w.scheduler(&unconfigured, 10).tick().await.unwrap(), 0);
    assert!(!w.state(kb).await.running);
    assert!(w.runs(kb).await.is_empty());
    assert!(matches!(
        unconfigured.start_manual(kb, None).await,
        Err(StartError::Unsupported)
    ));
}
