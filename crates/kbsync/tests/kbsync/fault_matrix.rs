//! The fault matrix: a `kbsync serve` process syncs a drive while the emulator injects one kind
//! of fault (or all of them at once) into 10 % of the requests it applies to. Every run ends in a
//! terminal status with its failures recorded per file; once the faults are cleared, the next run
//! leaves the knowledge base exactly equal to the drive (names, paths, content), nothing doubled.
//!
//! 100 files per case; `KBSYNC_LONG_TESTS=1` runs the full 2,000 (docs/reliability.md).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crate::common::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, Launch, free_port};
use msgraph_emulator::{Control, FaultAction, FaultRule, ResyncCode, RetryAfter};
use serde_json::{Value, json};

/// How often a rule fires among the requests it applies to.
const PROBABILITY: f64 = 0.1;
/// Graph API requests: delta pages, item and permission reads, content redirects.
const GRAPH: &str = "/v1.0/drives/**";
/// Pre-authenticated download URLs.
const DOWNLOADS: &str = "/_download/*";
/// At most this many faulty runs are made for every rule of a case to fire at least once. A run
/// makes only one or two delta requests with a token (the only ones a 410 applies to), so with
/// "all at once" (where the draws are not reproducible) the chance that the 410 never fires in
/// 100 runs is 0.9^100, about 3e-5.
const MAX_FAULTY_RUNS: usize = 100;

/// One column of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    ThrottledRetryAfterSeconds,
    ThrottledRetryAfterHttpDate,
    Unavailable503,
    ServerError500,
    DroppedConnection,
    TruncatedBody,
    Unauthorized401,
    ResyncRequired410,
    AllAtOnce,
}

impl Fault {
    const EACH: [Fault; 8] = [
        Fault::ResyncRequired410,
        Fault::ThrottledRetryAfterSeconds,
        Fault::ThrottledRetryAfterHttpDate,
        Fault::Unavailable503,
        Fault::ServerError500,
        Fault::DroppedConnection,
        Fault::TruncatedBody,
        Fault::Unauthorized401,
    ];

    /// The rules this fault installs: on the routes Graph could answer it on.
    fn rules(self) -> Vec<FaultRule> {
        let both = |action: FaultAction| {
            vec![
                FaultRule::new("GET", GRAPH, action.clone()).probability(PROBABILITY),
                FaultRule::new("GET", DOWNLOADS, action).probability(PROBABILITY),
            ]
        };
        let throttle = |status, retry_after| FaultAction::Throttle {
            status,
            retry_after,
            rate_limit_headers: false,
        };
        match self {
            Fault::ThrottledRetryAfterSeconds => both(throttle(429, RetryAfter::Seconds(1))),
            Fault::ThrottledRetryAfterHttpDate => both(throttle(429, RetryAfter::HttpDate(1))),
            Fault::Unavailable503 => both(throttle(503, RetryAfter::Seconds(1))),
            Fault::ServerError500 => both(FaultAction::ServerError { status: 500 }),
            Fault::DroppedConnection => both(FaultAction::DropConnection),
            Fault::TruncatedBody => both(FaultAction::TruncateBody),
            // Download URLs are pre-authenticated: a revoked access token shows on Graph calls only.
            Fault::Unauthorized401 => {
                vec![FaultRule::new("GET", GRAPH, FaultAction::Unauthorized).probability(PROBABILITY)]
            }
            // The action itself passes over every request but a delta request with a token.
            Fault::ResyncRequired410 => vec![
                FaultRule::new(
                    "GET",
                    GRAPH,
                    FaultAction::ResyncRequired {
                        code: ResyncCode::ResyncChangesApplyDifferences,
                    },
                )
                .probability(PROBABILITY),
            ],
            // Every rule of every kind, each at 10 % of what reaches it (the 410 first, so
            // that the few delta requests with a token meet it before any other rule).
            Fault::AllAtOnce => Fault::EACH.iter().flat_map(|f| f.rules()).collect(),
        }
    }
}

/// Files per case by default: each throttling rule costs about a second per 10 requests, so this
/// keeps the slowest case (all at once) within a few minutes.
const CI_FILES_PER_CASE: usize = 100;

/// The drive as kbsync must end up showing it: file name → (path, marker word of its content).
type Expected = BTreeMap<String, (String, String)>;

fn files_per_case() -> usize {
    if std::env::var_os("KBSYNC_LONG_TESTS").is_some_and(|v| v == "1") {
        2000
    } else {
        CI_FILES_PER_CASE
    }
}

/// Fills the drive: `count` files over 20 folders, each with its own marker word.
fn fill_drive(drive: &Control, drive_id: &str, count: usize) -> (Expected, Vec<String>) {
    let mut expected = Expected::new();
    let mut ids = Vec::new();
    for i in 0..count {
        let name = format!("file-{i:04}.txt");
        let path = format!("/Matrix/Folder {:02}/{name}", i % 20);
        let marker = format!("marker{i:04}");
        let item = drive
            .put_file(
                drive_id,
                &path,
                format!("fault matrix file {i}, {marker}").into_bytes(),
            )
            .unwrap();
        ids.push(item.id);
        expected.insert(name, (path, marker));
    }
    (expected, ids)
}

/// Round `r` of changes between faulty runs: one file added, one changed, one renamed, one deleted.
fn change_drive(drive: &Control, drive_id: &str, ids: &[String], expected: &mut Expected, r: usize) {
    let name = format!("added-{r:02}.txt");
    let path = format!("/Matrix/Folder 00/{name}");
    let marker = format!("added{r:02}");
    drive
        .put_file(
            drive_id,
            &path,
            format!("added in round {r}, {marker}").into_bytes(),
        )
        .unwrap();
    expected.insert(name, (path, marker));

    let (changed, renamed, deleted) = (3 * r, 3 * r + 1, 3 * r + 2);
    let marker = format!("revised{changed:04}");
    drive
        .modify_file(
            drive_id,
            &ids[changed],
            format!("revised in round {r}, {marker}").into_bytes(),
        )
        .unwrap();
    expected.get_mut(&format!("file-{changed:04}.txt")).unwrap().1 = marker;

    let old = format!("file-{renamed:04}.txt");
    let new = format!("renamed-{renamed:04}.txt");
    drive.rename(drive_id, &ids[renamed], &new).unwrap();
    let (path, marker) = expected.remove(&old).unwrap();
    expected.insert(new.clone(), (path.replace(&old, &new), marker));

    drive.delete(drive_id, &ids[deleted]).unwrap();
    expected.remove(&format!("file-{deleted:04}.txt")).unwrap();
}

/// Waits until the run `run_id` (or, with `None`, the latest run) is over and the knowledge base
/// no longer shows a run going (the run's record is closed a moment before its lease is let go);
/// returns the run.
#[expect(
    clippy::disallowed_methods,
    reason = "polls a child process against a real-time deadline"
)]
async fn finished_run(api: &Api, kb: &str, run_id: Option<&str>) -> Value {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (status, body) = api
            .get(&format!("/api/v1/knowledge/{kb}/sync/runs?limit=5"))
            .await;
        assert_eq!(status, 200, "{body}");
        let run = body["runs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| run_id.is_none_or(|id| r["id"] == id))
            .cloned();
        if let Some(run) = run
            && !run["finished_at"].is_null()
            && api.sync_state(kb).await["running"] == false
        {
            return run;
        }
        assert!(Instant::now() < deadline, "run never finished: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A run's status and wall time, for the report line.
fn outcome(run: &Value) -> String {
    let wall = run["phases"]["wall_seconds"].as_f64().unwrap_or(f64::NAN);
    format!("{} {wall:.1}s", run["status"].as_str().unwrap())
}

/// A run under faults ended cleanly: a terminal status, every failure named with its reason, and
/// a failed run's reason shown on the knowledge base. A 401 that persists after a refresh stops
/// the run `needs_reauth` (docs/sync.md), so that end is clean where 401s are injected.
async fn assert_ended_cleanly(api: &Api, kb: &str, fault: Fault, run: &Value) {
    let status = run["status"].as_str().unwrap();
    let mut clean = vec!["completed", "completed_with_errors", "failed"];
    if matches!(fault, Fault::Unauthorized401 | Fault::AllAtOnce) {
        clean.push("needs_reauth");
    }
    assert!(clean.contains(&status), "not a clean end: {run}");
    let failures = run["failures"].as_array().unwrap();
    assert!(
        failures.len() as u64 >= run["failed"].as_u64().unwrap(),
        "every failed file is recorded: {run}"
    );
    assert!(
        failures
            .iter()
            .all(|f| !f["name"].as_str().unwrap().is_empty() && !f["reason"].as_str().unwrap().is_empty()),
        "{run}"
    );
    if status == "completed_with_errors" {
        assert!(!failures.is_empty(), "{run}");
    }
    let state = api.sync_state(kb).await;
    assert_eq!(state["running"], false, "{state}");
    if status == "failed" || status == "needs_reauth" {
        assert!(
            state["last_error"].as_str().is_some_and(|e| !e.is_empty()),
            "a failed run says why: {state}"
        );
    }
    // The run marks the connection only when nothing renewed it meanwhile: a refresh another
    // request of the run had in flight when it stopped succeeded, so the grant still works and the
    // next scheduled run goes on (crates/oauth `mark_needs_reauth`). Marked, the user connects again.
    if status == "needs_reauth" && state["needs_reauth"] == true {
        api.connect(kb).await;
    }
}

/// The knowledge base holds exactly the drive's files: same names and paths, each once, each
/// with its current content (its marker word finds it and only it).
async fn assert_equal_to_drive(api: &Api, kb: &str, expected: &Expected, replaced: &[String]) {
    let files = api.all_files(kb).await;
    let mut found = BTreeMap::new();
    for f in &files {
        assert_eq!(f["status"], "processed", "{f}");
        let previous = found.insert(
            f["name"].as_str().unwrap().to_owned(),
            f["path"].as_str().unwrap().to_owned(),
        );
        assert!(previous.is_none(), "duplicate document {f}");
    }
    let names: BTreeSet<_> = found.keys().collect();
    let wanted: BTreeSet<_> = expected.keys().collect();
    let missing: Vec<_> = wanted.difference(&names).take(5).collect();
    let extra: Vec<_> = names.difference(&wanted).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, not in the drive {extra:?}"
    );
    for (name, (path, marker)) in expected {
        assert_eq!(&found[name], path, "{name}");
        let (status, hits) = api.get(&format!("/api/v1/search?q={marker}")).await;
        assert_eq!(status, 200, "{hits}");
        let results = hits["results"].as_array().unwrap();
        assert!(
            !results.is_empty() && results.iter().all(|r| r["name"] == name.as_str()),
            "{marker} should find {name} only: {hits}"
        );
    }
    for marker in replaced {
        let (_, hits) = api.get(&format!("/api/v1/search?q={marker}")).await;
        assert_eq!(hits["results"], json!([]), "replaced content still found");
    }
}

#[expect(
    clippy::disallowed_methods,
    reason = "measures the case's wall time for its report line"
)]
async fn sync_under(fault: Fault, database: Option<String>) {
    let started = Instant::now();
    let count = files_per_case();
    let port = free_port();
    let emu = crate::common::emulator(&[port]).await;
    let drive = emu.control();
    let drive_id = drive.default_drive_id();
    let (mut expected, ids) = fill_drive(&drive, &drive_id, count);
    let folder = drive.item_by_path(&drive_id, "/Matrix").unwrap();
    let dir = tempfile::tempdir().unwrap();
    // No scheduler: the test starts every run, so each one's outcome is its own.
    let mut launch = Launch::new(port, dir.path(), &emu).env("KBSYNC_SCHEDULER", "false");
    if let Some(url) = &database {
        launch = launch.env("KBSYNC_DATABASE_URL", url);
    }
    let instance = launch.start();
    let api = Api::login(&instance.base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let kb = api.create_onedrive_kb("Fault matrix").await;
    api.connect(&kb).await;

    let rules: Vec<u64> = fault.rules().into_iter().map(|r| drive.add_fault(r)).collect();
    let (status, body) = api
        .post(
            &format!("/api/v1/knowledge/{kb}/sources"),
            json!({"datasource": "onedrive", "items": [{"type": "folder", "drive_id": drive_id, "item_id": folder.id, "name": "Matrix", "path": "/Matrix"}]}),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let run = finished_run(&api, &kb, None).await;
    assert_ended_cleanly(&api, &kb, fault, &run).await;
    let mut statuses = vec![outcome(&run)];

    // Further faulty runs over a changing drive, until every rule has fired (a 410 needs a delta
    // request with a token, which a run makes only once or twice).
    let mut replaced = Vec::new();
    let fired = |drive: &Control| {
        let faults = drive.faults();
        rules
            .iter()
            .all(|id| faults.iter().any(|f| f.id == *id && f.fired > 0))
    };
    let mut round = 0;
    while !fired(&drive) {
        assert!(
            round < MAX_FAULTY_RUNS,
            "{fault:?}: some rule never fired in {round} runs: {:?}",
            drive.faults()
        );
        if 3 * round + 2 < count {
            replaced.push(expected[&format!("file-{:04}.txt", 3 * round)].1.clone());
            change_drive(&drive, &drive_id, &ids, &mut expected, round);
        }
        round += 1;
        let (status, body) = api.post(&format!("/api/v1/knowledge/{kb}/sync"), json!({})).await;
        assert_eq!(status, 202, "{body}");
        let run = finished_run(&api, &kb, body["run_id"].as_str()).await;
        assert_ended_cleanly(&api, &kb, fault, &run).await;
        statuses.push(outcome(&run));
    }
    let fired: Vec<u64> = drive.faults().iter().map(|f| f.fired).collect();

    // Faults cleared: the next run converges.
    drive.clear_faults();
    let (status, body) = api.post(&format!("/api/v1/knowledge/{kb}/sync"), json!({})).await;
    assert_eq!(status, 202, "{body}");
    let run = finished_run(&api, &kb, body["run_id"].as_str()).await;
    assert_eq!(run["status"], "completed", "{run}\n{}", instance.log());
    assert_equal_to_drive(&api, &kb, &expected, &replaced).await;
    api.runs_none_left_syncing(&kb).await;
    eprintln!(
        "fault matrix {fault:?} on {}: {count} files, faulty runs {statuses:?}, rules fired {fired:?}, {:.1} s",
        if database.is_some() {
            "PostgreSQL"
        } else {
            "SQLite"
        },
        started.elapsed().as_secs_f64()
    );
    instance.terminate().await;
    emu.shutdown().await;
}

async fn on_postgres(fault: Fault) {
    let Some(database) = kbsync_kit::PgDatabase::create("kbsync_faults").await else {
        return;
    };
    sync_under(fault, Some(database.url().to_owned())).await;
}

macro_rules! matrix {
    ($($fault:ident: $sqlite:ident, $postgres:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            sync_under(Fault::$fault, None).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            on_postgres(Fault::$fault).await;
        }
    )*};
}

matrix! {
    ThrottledRetryAfterSeconds:
        throttled_429_retry_after_seconds_ends_cleanly_then_converges_on_sqlite,
        throttled_429_retry_after_seconds_ends_cleanly_then_converges_on_postgres;
    ThrottledRetryAfterHttpDate:
        throttled_429_retry_after_http_date_ends_cleanly_then_converges_on_sqlite,
        throttled_429_retry_after_http_date_ends_cleanly_then_converges_on_postgres;
    Unavailable503:
        unavailable_503_ends_cleanly_then_converges_on_sqlite,
        unavailable_503_ends_cleanly_then_converges_on_postgres;
    ServerError500:
        server_error_500_ends_cleanly_then_converges_on_sqlite,
        server_error_500_ends_cleanly_then_converges_on_postgres;
    DroppedConnection:
        dropped_connections_end_cleanly_then_converge_on_sqlite,
        dropped_connections_end_cleanly_then_converge_on_postgres;
    TruncatedBody:
        truncated_bodies_end_cleanly_then_converge_on_sqlite,
        truncated_bodies_end_cleanly_then_converge_on_postgres;
    Unauthorized401:
        unauthorized_401_ends_cleanly_then_converges_on_sqlite,
        unauthorized_401_ends_cleanly_then_converges_on_postgres;
    ResyncRequired410:
        resync_required_410_ends_cleanly_then_converges_on_sqlite,
        resync_required_410_ends_cleanly_then_converges_on_postgres;
    AllAtOnce:
        all_faults_at_once_end_cleanly_then_converge_on_sqlite,
        all_faults_at_once_end_cleanly_then_converge_on_postgres;
}
