//! Whole `kbsync serve` processes syncing from the emulated OneDrive: killed mid-sync and
//! restarted, two instances sharing one PostgreSQL database, and the demo.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::common::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, Instance, Launch, free_port};
use msgraph_emulator::{FaultAction, FaultRule};
use serde_json::{Value, json};

/// A deterministic sequence of kill delays (no RNG crate needed for a test's schedule).
struct Lcg(u64);
impl Lcg {
    /// The seed in `KBSYNC_KILL_SEED`, or a fresh random one; printed, so that a failing schedule
    /// can be replayed with `KBSYNC_KILL_SEED=<seed>`.
    fn seeded() -> Lcg {
        use std::hash::{BuildHasher, Hasher};
        let seed = std::env::var("KBSYNC_KILL_SEED")
            .ok()
            .map(|s| s.parse().expect("KBSYNC_KILL_SEED is a number"))
            .unwrap_or_else(|| {
                std::collections::hash_map::RandomState::new()
                    .build_hasher()
                    .finish()
            });
        eprintln!("kill schedule seed: KBSYNC_KILL_SEED={seed}");
        Lcg(seed)
    }

    fn next_millis(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "polls child processes against a real-time deadline"
)]
async fn killed_mid_sync(database: Option<String>) {
    let started = Instant::now();
    let count = KILL_TEST_FILES;
    let port = free_port();
    let emu = crate::common::emulator(&[port]).await;
    let drive = emu.control();
    let drive_id = drive.default_drive_id();
    let expected = crate::common::fill_drive(&drive, &drive_id, "/Big", count, 20, "crash test file");
    let folder = drive.item_by_path(&drive_id, "/Big").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut launch = Launch::new(port, dir.path(), &emu);
    if let Some(url) = &database {
        launch = launch.env("KBSYNC_DATABASE_URL", url);
    }

    let mut instance = launch.start();
    let mut api = Api::login(&instance.base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let kb = api.create_onedrive_kb("Big drive").await;
    api.connect(&kb).await;
    let (status, body) = api
        .post(
            &format!("/api/v1/knowledge/{kb}/sources"),
            json!({"datasource": "onedrive", "items": [{"type": "folder", "drive_id": drive_id, "item_id": folder.id, "name": "Big", "path": "/Big"}]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");

    // Downloads take a little while, so that a run lasts long enough to be killed mid-way.
    drive.add_fault(FaultRule::new(
        "GET",
        "/_download/*",
        FaultAction::Delay { millis: 15 },
    ));
    let mut delays = Lcg::seeded();
    let mut killed_runs = BTreeSet::new();
    for round in 0..KILLS {
        // Kill at a random point of a run this instance started (after a restart, the scheduler
        // starts one once the dead instance's lease has expired); a run that finished before we
        // struck is followed by a manual one, so every kill lands in a run.
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let state = api.sync_state(&kb).await;
            let run = state["progress"]["run_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if state["running"] == true && !run.is_empty() && !killed_runs.contains(&run) {
                killed_runs.insert(run);
                break;
            }
            if state["running"] == false && state["status"] == "completed" {
                let (status, body) = api.post(&format!("/api/v1/knowledge/{kb}/sync"), json!({})).await;
                assert!(status == 202 || status == 409, "{status} {body}");
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: no run started: {state}\n{}",
                instance.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        tokio::time::sleep(Duration::from_millis(delays.next_millis(50, 2500))).await;
        instance.kill();
        instance = launch.start();
        // A new client: a pooled keep-alive connection to the killed process may not be known
        // dead yet, and a request on it would fail.
        api.http = reqwest::Client::new();
    }
    let state = api.wait_status(&kb, "completed", Duration::from_secs(600)).await;
    assert_eq!(state["running"], false);

    let found = api.processed_files_by_name(&kb).await;
    assert_eq!(found.len(), count, "documents: {}", found.len());
    let differing: Vec<_> = expected
        .iter()
        .filter(|(name, path)| found.get(*name) != Some(*path))
        .take(5)
        .collect();
    assert!(
        differing.is_empty(),
        "not where the drive has them: {differing:?}"
    );
    let last = count - 1;
    let (_, hits) = api.get(&format!("/api/v1/search?q=marker{last:04}")).await;
    assert_eq!(
        hits["results"][0]["name"],
        format!("file-{last:04}.txt"),
        "{hits}"
    );
    // Runs cut short by a kill are recorded as failed, none stays `syncing`.
    let runs = api.runs_none_left_syncing(&kb).await;
    assert_eq!(runs[0]["status"], "completed");
    instance.terminate().await;
    emu.shutdown().await;
    eprintln!(
        "killed {KILLS} times on {}: {count} files, {:.1} s",
        if database.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        started.elapsed().as_secs_f64()
    );
}

/// SIGKILLs per crash test, each at a random point of a run.
const KILLS: usize = 20;

/// The crash tests' drive, in CI too: a run's length grows with it, so that the kills land inside
/// runs, while the test's time is mostly the 20 restarts (500 files saved a fifth of it).
const KILL_TEST_FILES: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_twenty_times_at_random_points_ends_equal_to_the_drive_on_sqlite() {
    killed_mid_sync(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_killed_twenty_times_at_random_points_ends_equal_to_the_drive_on_postgres() {
    let Some(database) = kbsync_kit::PgDatabase::create("kbsync_proc").await else {
        return;
    };
    killed_mid_sync(Some(database.url().to_owned())).await;
}

/// Reads server-sent events until one named `until` arrives (or two minutes pass).
async fn read_events(resp: reqwest::Response, until: &str) -> Vec<(String, Value)> {
    kbsync_kit::sse::read_events(resp, until, Duration::from_secs(120)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(
    clippy::disallowed_methods,
    reason = "the kbsync processes run on the real clock; polls against a real-time deadline"
)]
async fn two_instances_on_postgres_sync_each_due_kb_exactly_once_and_share_progress() {
    let Some(database) = kbsync_kit::PgDatabase::create("kbsync_proc").await else {
        return;
    };
    let url = database.url().to_owned();
    let (port_a, port_b) = (free_port(), free_port());
    let emu = crate::common::emulator(&[port_a, port_b]).await;
    let drive = emu.control();
    let drive_id = drive.default_drive_id();
    let mut folders = Vec::new();
    for k in 0..50 {
        for f in 0..2 {
            drive
                .put_file(
                    &drive_id,
                    &format!("/KB{k:02}/doc{f}.txt"),
                    format!("kb {k} doc {f}").into_bytes(),
                )
                .unwrap();
        }
        folders.push(drive.item_by_path(&drive_id, &format!("/KB{k:02}")).unwrap().id);
    }
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let launch_a = Launch::new(port_a, dir_a.path(), &emu).env("KBSYNC_DATABASE_URL", &url);
    let launch_b = Launch::new(port_b, dir_b.path(), &emu).env("KBSYNC_DATABASE_URL", &url);

    // Set-up on one instance without a scheduler: 50 connected knowledge bases, each with its
    // folder as a source (added through the store, so that no manual run starts).
    let setup = launch_a.clone().env("KBSYNC_SCHEDULER", "false").start();
    let api = Api::login(&setup.base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let mut kbs = Vec::new();
    for k in 0..50 {
        let kb = api.create_onedrive_kb(&format!("KB {k:02}")).await;
        api.connect(&kb).await;
        kbs.push(kb);
    }
    setup.terminate().await;
    let store = kbsync_store::connect(&url).await.unwrap();
    for (kb, folder) in kbs.iter().zip(&folders) {
        store
            .add_source(
                uuid::Uuid::new_v4(),
                kbsync_store::NewSource {
                    kb_id: kb.parse().unwrap(),
                    datasource: kbsync_core::datasource::DatasourceKind::OneDrive,
                    kind: kbsync_core::SourceKind::Folder,
                    drive_id: drive_id.clone(),
                    item_id: folder.clone(),
                    name: "folder".into(),
                    path: "/folder".into(),
                },
                chrono::Utc::now(),
            )
            .await
            .unwrap();
    }
    drive.clear_request_log();

    let a = launch_a.start();
    let b = launch_b.start();
    let deadline = Instant::now() + Duration::from_secs(300);
    for kb in &kbs {
        loop {
            let runs = store.list_sync_runs(kb.parse().unwrap(), 10).await.unwrap();
            if runs.iter().any(|r| r.finished_at.is_some()) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "kb {kb} never synced\nA:\n{}\nB:\n{}",
                a.log(),
                b.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Every knowledge base ran once, completed, and is not due again before its interval.
    let now = chrono::Utc::now();
    for kb in &kbs {
        let id = kb.parse().unwrap();
        let runs = store.list_sync_runs(id, 10).await.unwrap();
        assert_eq!(runs.len(), 1, "kb {kb}: {runs:?}");
        assert_eq!(runs[0].outcome.status, kbsync_core::SyncStatus::Completed);
        assert_eq!(runs[0].trigger, kbsync_core::SyncTrigger::Scheduled);
        let state = store.get_sync_state(id, now).await.unwrap();
        assert!(
            state.next_sync_at.unwrap() > now + chrono::Duration::minutes(59),
            "{state:?}"
        );
    }
    // The request log proves it: one delta round (one request here) per folder, two downloads
    // per folder.
    let log = drive.request_log();
    let mut deltas: BTreeMap<String, usize> = BTreeMap::new();
    let mut downloads = 0;
    for entry in &log.entries {
        if entry.path.ends_with("/delta") {
            let folder = entry.path.split('/').rev().nth(1).unwrap().to_owned();
            *deltas.entry(folder).or_default() += 1;
        }
        if entry.path.starts_with("/_download/") {
            downloads += 1;
        }
    }
    let expected: BTreeMap<String, usize> = folders.iter().map(|f| (f.clone(), 1)).collect();
    assert_eq!(deltas, expected);
    assert_eq!(downloads, 100);
    let work_a = a.log().matches("sync run finished").count();
    let work_b = b.log().matches("sync run finished").count();
    assert_eq!(work_a + work_b, 50, "A ran {work_a}, B ran {work_b}");

    // Progress of a run on A reaches a client of B.
    drive
        .put_file(&drive_id, "/KB00/doc9.txt", b"a later document".to_vec())
        .unwrap();
    drive.add_fault(FaultRule::new(
        "GET",
        "/_download/*",
        FaultAction::Delay { millis: 300 },
    ));
    let api_a = Api::login(&a.base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let api_b = api_a.on(&b.base);
    let events = api_b
        .http
        .get(format!("{}/api/v1/knowledge/{}/sync/events", b.base, kbs[0]))
        .bearer_auth(&api_b.token)
        .send()
        .await
        .unwrap();
    assert_eq!(events.status().as_u16(), 200);
    let (status, body) = api_a
        .post(&format!("/api/v1/knowledge/{}/sync", kbs[0]), json!({}))
        .await;
    assert_eq!(status, 202, "{body}");
    let seen = read_events(events, "finished").await;
    let names: BTreeSet<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    assert!(names.contains("progress"), "{seen:?}");
    let (_, finished) = seen.last().unwrap();
    assert_eq!(finished["run_id"], body["run_id"]);
    assert_eq!(finished["processed"], 1, "{finished}");

    a.terminate().await;
    b.terminate().await;
    emu.shutdown().await;
    drop(store);
    drop(database);
}

/// The README's first command with a one-minute interval and change notifications off:
/// connecting a knowledge base to the sample drive and adding its root folder makes it
/// searchable, and a file changed through the emulator's control API is searchable after the
/// next scheduled run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_connect_add_root_folder_then_a_changed_file_is_searchable_after_the_next_scheduled_run() {
    demo_change_becomes_searchable(Bring::ScheduledRun).await;
}

/// The README's first command as it is (the demo turns change notifications on; the interval
/// stays an hour): a file changed through the emulator's control API is searchable seconds
/// later, through the run its change notification asked for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_a_changed_file_is_searchable_within_seconds_through_its_change_notification() {
    demo_change_becomes_searchable(Bring::Notification).await;
}

/// What brings a changed file in.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Bring {
    ScheduledRun,
    Notification,
}

#[expect(
    clippy::disallowed_methods,
    reason = "the kbsync process runs on the real clock; polls against a real-time deadline"
)]
async fn demo_change_becomes_searchable(bring: Bring) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut cmd = crate::common::kbsync();
    cmd.args([
        "serve",
        "--demo",
        "--bind",
        &format!("127.0.0.1:{port}"),
        "--data-dir",
    ])
    .arg(dir.path())
    .env("KBSYNC_SCHEDULER_TICK_SECS", "1")
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped());
    match bring {
        Bring::ScheduledRun => {
            cmd.env("KBSYNC_SYNC_INTERVAL_MINUTES", "1")
                .env("KBSYNC_WEBHOOKS", "off");
        }
        Bring::Notification => {
            cmd.env("KBSYNC_WEBHOOK_TICK_SECS", "1");
        }
    }
    // The demo prints where its emulators run on stdout, one line each.
    let instance = {
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("runs at ").nth(1) {
                    let which = if line.contains("emulated Google Drive") {
                        "gdrive"
                    } else {
                        "onedrive"
                    };
                    let _ = tx.send((which, rest.split(';').next().unwrap().trim().to_owned()));
                }
            }
        });
        let mut bases = BTreeMap::new();
        while bases.len() < 2 {
            let (which, base) = rx
                .recv_timeout(Duration::from_secs(120))
                .expect("the demo never printed both of its emulators");
            bases.insert(which, base);
        }
        (Instance::adopt(child, port), bases)
    };
    let (instance, bases) = instance;
    let (emulator_base, gdrive_base) = (bases["onedrive"].clone(), bases["gdrive"].clone());
    let api = Api::login(&instance.base, "demo@kbsync.local", "kbsync-demo").await;
    // The demo offers both datasources, both ready to connect.
    let (status, listed) = api.get("/api/v1/datasources").await;
    assert_eq!(status, 200, "{listed}");
    for name in ["onedrive", "gdrive"] {
        assert!(
            listed["datasources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["datasource"] == name && d["configured"] == true),
            "{name} is not offered as configured: {listed}"
        );
    }
    let kb = api.create_onedrive_kb("My OneDrive").await;
    api.connect(&kb).await;
    let (status, root) = api
        .get(&format!("/api/v1/datasources/onedrive/browse?knowledge_id={kb}"))
        .await;
    assert_eq!(status, 200, "{root}");
    let control = reqwest::Client::new();
    let info: Value = control
        .get(format!("{emulator_base}/_emulator/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let drive_id = info["default_drive_id"].as_str().unwrap().to_owned();
    let drive_info: Value = control
        .get(format!("{emulator_base}/_emulator/drives/{drive_id}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let note: Value = control
        .put(format!("{emulator_base}/_emulator/drives/{drive_id}/files"))
        .json(&json!({"path": "/Notes/standup.txt", "content": "Standup notes, first draft"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let started = Instant::now();
    let (status, body) = api
        .post(
            &format!("/api/v1/knowledge/{kb}/sources"),
            json!({"datasource": "onedrive", "items": [{"type": "folder", "drive_id": drive_id, "item_id": drive_info["root_id"], "name": "My files", "path": "/"}]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let state = api.wait_status(&kb, "completed", Duration::from_secs(60)).await;
    assert!(started.elapsed() < Duration::from_secs(60), "{state}");
    let files = api.all_files(&kb).await;
    assert!(files.len() >= 50, "only {} files synced", files.len());
    assert!(
        files.iter().any(|f| f["path"] == "/Notes/standup.txt"),
        "paths read as in the drive"
    );

    if bring == Bring::Notification {
        // The drive's subscription is created within a tick of the root folder being added.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let subscriptions: Value = control
                .get(format!("{emulator_base}/_emulator/subscriptions"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            if subscriptions
                .as_array()
                .is_some_and(|s| s.iter().any(|s| s["expired"] == false))
            {
                break;
            }
            assert!(Instant::now() < deadline, "no subscription\n{}", instance.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        // Let the catch-up run its creation asked for finish.
        api.wait_status(&kb, "completed", Duration::from_secs(60)).await;
    }

    if bring == Bring::ScheduledRun {
        // While the scheduled run is a minute away: the demo's Google Drive syncs too.
        demo_gdrive_kb_connects_syncs_and_is_searchable(&api, &gdrive_base, &instance).await;
    }

    // Change one file through the control API; the next scheduled run, or the run its change
    // notification asks for, brings it in.
    let changed = Instant::now();
    let changed_at = chrono::Utc::now();
    let resp = control
        .put(format!(
            "{emulator_base}/_emulator/drives/{drive_id}/items/{}/content",
            note["id"].as_str().unwrap()
        ))
        .json(&json!({"content": "Freshly edited: the aubergine manifesto"}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let deadline = Instant::now()
        + match bring {
            Bring::ScheduledRun => Duration::from_secs(150),
            Bring::Notification => Duration::from_secs(30),
        };
    loop {
        let (_, hits) = api.get("/api/v1/search?q=aubergine").await;
        if hits["results"].as_array().is_some_and(|r| !r.is_empty()) {
            assert_eq!(hits["results"][0]["name"], "standup.txt");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the change never became searchable\n{}",
            instance.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = changed.elapsed();
    let (_, runs) = api.get(&format!("/api/v1/knowledge/{kb}/sync/runs")).await;
    let trigger = match bring {
        Bring::ScheduledRun => "scheduled",
        Bring::Notification => "webhook",
    };
    // A run of that trigger started after the change.
    let after_change = |r: &Value| {
        r["started_at"]
            .as_str()
            .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
            .is_some_and(|t| t >= changed_at - chrono::Duration::milliseconds(5))
    };
    assert!(
        runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["trigger"] == trigger && after_change(r)),
        "{runs}"
    );
    if bring == Bring::Notification {
        assert!(took < Duration::from_secs(30), "{took:?}");
    }
    let log = instance.terminate().await;
    assert!(log.contains("scheduler started"), "{log}");
    assert!(log.contains("scheduler stopped"), "{log}");
}

/// A knowledge base of type `gdrive` on the demo's emulated Google Drive: it connects through the
/// emulator's automatic consent, its My Drive syncs (Google Docs exported, binary files
/// downloaded), and a file put into the drive is searchable.
async fn demo_gdrive_kb_connects_syncs_and_is_searchable(api: &Api, gdrive_base: &str, instance: &Instance) {
    let control = reqwest::Client::new();
    let info: Value = control
        .get(format!("{gdrive_base}/_emulator/info"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let root_id = info["my_drive_root_id"].as_str().unwrap().to_owned();
    let created = control
        .post(format!("{gdrive_base}/_emulator/files"))
        .json(&json!({"parent_id": root_id, "name": "Allotment plan.txt", "kind": "file", "content": "Sow the kohlrabi in April."}))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.text().await.unwrap());
    let files: Value = control
        .get(format!("{gdrive_base}/_emulator/files"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let google_docs_in_my_drive = files
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| {
            f["path"].as_str().unwrap().starts_with("/My Drive/")
                && f["mimeType"] == "application/vnd.google-apps.document"
                && f["trashed"] == false
        })
        .count();

    let kb = api.create_kb("My Google Drive", "gdrive").await;
    api.connect_to("gdrive", &kb).await;
    let (status, top) = api
        .get(&format!("/api/v1/datasources/gdrive/browse?knowledge_id={kb}"))
        .await;
    assert_eq!(status, 200, "{top}");
    assert!(top.to_string().contains("My Drive"), "{top}");
    let (status, body) = api
        .post(
            &format!("/api/v1/knowledge/{kb}/sources"),
            json!({"datasource": "gdrive", "items": [{"type": "folder", "drive_id": "user", "item_id": root_id, "name": "My Drive", "path": "/"}]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let state = api.wait_status(&kb, "completed", Duration::from_secs(90)).await;
    let synced = api.all_files(&kb).await;
    assert!(synced.len() >= 10, "only {} files synced: {state}", synced.len());
    let exported_docs = synced
        .iter()
        .filter(|f| f["name"].as_str().is_some_and(|n| n.ends_with(".docx")))
        .count();
    assert!(
        google_docs_in_my_drive == 0 || exported_docs > 0,
        "no Google Doc was exported ({google_docs_in_my_drive} in My Drive)"
    );
    let (_, hits) = api.get("/api/v1/search?q=kohlrabi").await;
    let results = hits["results"].as_array().unwrap();
    assert!(
        results.iter().any(|r| r["name"] == "Allotment plan.txt"),
        "{hits}\n{}",
        instance.log()
    );
}

/// A PostgreSQL restart in the middle of a run (a private cluster: the shared server stays up):
/// the run ends, failed with a reason or completed, never stuck in `syncing`; the process lives
/// on, and the next run leaves the knowledge base equal to the drive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[expect(
    clippy::disallowed_methods,
    reason = "polls a child process against a real-time deadline"
)]
async fn a_postgres_restart_mid_sync_ends_the_run_cleanly_and_the_next_run_converges() {
    let started = Instant::now();
    let Some(cluster) = crate::common::PrivatePostgres::start() else {
        return;
    };
    let count = 400;
    let port = free_port();
    let emu = crate::common::emulator(&[port]).await;
    let drive = emu.control();
    let drive_id = drive.default_drive_id();
    let expected = crate::common::fill_drive(&drive, &drive_id, "/Restart", count, 10, "restart test file");
    let folder = drive.item_by_path(&drive_id, "/Restart").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let launch = Launch::new(port, dir.path(), &emu)
        .env("KBSYNC_DATABASE_URL", &cluster.url())
        .env("KBSYNC_SCHEDULER", "false");
    let instance = launch.start();
    let api = Api::login(&instance.base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let kb = api.create_onedrive_kb("Restarted database").await;
    api.connect(&kb).await;
    // Slow downloads, so that the run is still going when the database goes away.
    drive.add_fault(FaultRule::new(
        "GET",
        "/_download/*",
        FaultAction::Delay { millis: 20 },
    ));
    let (status, body) = api
        .post(
            &format!("/api/v1/knowledge/{kb}/sources"),
            json!({"datasource": "onedrive", "items": [{"type": "folder", "drive_id": drive_id, "item_id": folder.id, "name": "Restart", "path": "/Restart"}]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let state = api.sync_state(&kb).await;
        if state["running"] == true && state["progress"]["current"].as_u64().unwrap_or(0) >= 20 {
            break;
        }
        assert!(Instant::now() < deadline, "the run never got going: {state}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.restart();

    // The run ends and lets its lease go (the API itself may answer 5xx while the pool
    // reconnects).
    let deadline = Instant::now() + Duration::from_secs(300);
    let run = loop {
        let (status, body) = api
            .get(&format!("/api/v1/knowledge/{kb}/sync/runs?limit=5"))
            .await;
        if status == 200
            && let Some(run) = body["runs"].as_array().and_then(|r| r.first())
            && !run["finished_at"].is_null()
            && api.get(&format!("/api/v1/knowledge/{kb}/sync")).await.1["running"] == false
        {
            break run.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the run never ended after the restart: {status} {body}\n{}",
            instance.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let outcome = run["status"].as_str().unwrap().to_owned();
    assert!(
        ["failed", "completed", "completed_with_errors"].contains(&outcome.as_str()),
        "{run}"
    );
    let state = api.sync_state(&kb).await;
    assert_eq!(state["running"], false, "{state}");
    if outcome == "failed" {
        assert!(
            state["last_error"].as_str().is_some_and(|e| !e.is_empty()),
            "a failed run says why: {state}"
        );
    }
    eprintln!(
        "after the restart the run ended {outcome}: {}",
        state["last_error"]
    );

    // The next run converges.
    drive.clear_faults();
    let (status, body) = api.post(&format!("/api/v1/knowledge/{kb}/sync"), json!({})).await;
    assert_eq!(status, 202, "{body}");
    let state = api.wait_status(&kb, "completed", Duration::from_secs(300)).await;
    assert_eq!(state["running"], false);
    let found = api.processed_files_by_name(&kb).await;
    assert_eq!(found, expected);
    let (_, hits) = api.get("/api/v1/search?q=marker0399").await;
    assert_eq!(hits["results"][0]["name"], "file-0399.txt", "{hits}");
    api.runs_none_left_syncing(&kb).await;
    eprintln!(
        "PostgreSQL restarted mid-sync: the run ended {outcome}, the next converged; {count} files, {:.1} s",
        started.elapsed().as_secs_f64()
    );
    instance.terminate().await;
    emu.shutdown().await;
    drop(cluster);
}
