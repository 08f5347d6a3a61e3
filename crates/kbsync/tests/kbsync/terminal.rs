//! The commands for people at a terminal, on a deployment a server set up: `kbsync sync` (exit
//! statuses, plain progress lines without a terminal, the lease a server would hold), `kbsync
//! status` and `kbsync search`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Output;

use msgraph_emulator::{FaultAction, FaultRule, RunningEmulator};
use serde_json::{Value, json};

use crate::common::{ADMIN_EMAIL, ADMIN_PASSWORD, Api, Launch, emulator, free_port, kbsync};

/// A deployment a server set up and left: a OneDrive knowledge base "Handbook", connected, with
/// the drive's /Handbook folder as its source and nothing synced yet; and a local one, "Notes".
struct Deployment {
    emu: RunningEmulator,
    _dir: tempfile::TempDir,
    data: PathBuf,
    launch: Launch,
    database_url: String,
    handbook: String,
}

impl Deployment {
    #[expect(
        clippy::disallowed_methods,
        reason = "the kbsync processes run on the real clock"
    )]
    async fn new(database: Option<String>) -> Self {
        let port = free_port();
        let emu = emulator(&[port]).await;
        let control = emu.control();
        let drive_id = control.default_drive_id();
        for (path, text) in [
            (
                "/Handbook/vacation.txt",
                "Vacation policy: every ptarmigan team takes twenty days off.",
            ),
            (
                "/Handbook/expenses.txt",
                "Expense receipts go to finance within a week.",
            ),
            ("/Handbook/Office/badges.txt", "Badge rules for the office."),
        ] {
            // 2,401 bytes of filler each, so that the amounts shown are not all zero.
            let body = format!("{text}\n{}", "lorem ipsum ".repeat(200));
            control.put_file(&drive_id, path, body.into_bytes()).unwrap();
        }
        let folder = control.item_by_path(&drive_id, "/Handbook").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut launch = Launch::new(port, &data, &emu).env("KBSYNC_SCHEDULER", "false");
        let database_url = match database {
            Some(url) => {
                launch = launch.env("KBSYNC_DATABASE_URL", &url);
                url
            }
            None => format!("sqlite://{}", data.join("kbsync.sqlite").display()),
        };
        let server = launch.start();
        let api = Api::login(&server.base, ADMIN_EMAIL, ADMIN_PASSWORD).await;
        let handbook = api.create_onedrive_kb("Handbook").await;
        api.connect(&handbook).await;
        let (status, body) = api.post("/api/v1/knowledge", json!({"name": "Notes"})).await;
        assert_eq!(status, 201, "{body}");
        server.terminate().await;
        // The source goes in through the store: adding it through the API would start a run.
        let store = kbsync_store::connect(&database_url).await.unwrap();
        store
            .add_source(
                uuid::Uuid::new_v4(),
                kbsync_store::NewSource {
                    kb_id: handbook.parse().unwrap(),
                    datasource: kbsync_core::datasource::DatasourceKind::OneDrive,
                    kind: kbsync_core::SourceKind::Folder,
                    drive_id,
                    item_id: folder.id,
                    name: "Handbook".into(),
                    path: "/Handbook".into(),
                },
                chrono::Utc::now(),
            )
            .await
            .unwrap();
        Deployment {
            emu,
            _dir: dir,
            data,
            launch,
            database_url,
            handbook,
        }
    }

    /// `kbsync <args>` with the server's settings; stdout and stderr are pipes (no terminal).
    fn run(&self, args: &[&str]) -> Output {
        kbsync()
            .args(args)
            .arg("--data-dir")
            .arg(&self.data)
            .envs(self.launch.env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap()
    }

    async fn store(&self) -> std::sync::Arc<dyn kbsync_store::Store> {
        kbsync_store::connect(&self.database_url).await.unwrap()
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The exit status, with both outputs when it is not the expected one.
fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

/// A sync through the command line: exit 0, a plain line per file (no terminal) with MB and the
/// file, and a summary; then status, search, and a second sync with nothing to do.
async fn sync_status_and_search(database: Option<String>) {
    let d = Deployment::new(database).await;

    let out = d.run(&["sync", "Handbook"]);
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("syncing \"Handbook\" ({})", d.handbook)),
        "{stdout}"
    );
    let progress: Vec<&str> = stdout.lines().filter(|l| l.starts_with('[')).collect();
    assert_eq!(progress.len(), 3, "one line per file:\n{stdout}");
    assert!(progress[0].starts_with("[1/3] "), "{stdout}");
    assert!(progress[2].starts_with("[3/3] "), "{stdout}");
    // The three files' 7,335 bytes, as the drive announced them.
    assert!(progress[2].contains(" 7.3/7.3 kB "), "{stdout}");
    assert!(
        progress
            .iter()
            .all(|l| (l.contains(" kB") || l.contains(" MB")) && l.contains("/Handbook/")),
        "{stdout}"
    );
    assert!(
        !stdout.contains("\x1b["),
        "no terminal codes in plain output:\n{stdout}"
    );
    assert!(
        stdout.contains("completed: 3 processed, 0 failed, 0 deleted, 0 skipped"),
        "{stdout}"
    );

    // The knowledge base has the files: the search finds them, as the operator and by name.
    let out = d.run(&["search", "ptarmigan"]);
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    assert!(stdout.starts_with("1. Handbook / vacation.txt\n"), "{stdout}");
    assert!(stdout.contains("ptarmigan"), "{stdout}");
    let out = d.run(&["search", "ptarmigan", "--kb", "Notes"]);
    assert_exit(&out, 0);
    assert_eq!(text(&out.stdout), "no results\n");
    // As a user who may read nothing of it.
    let out = d.run(&["search", "ptarmigan", "--as", "nobody@example.com"]);
    assert_exit(&out, 6);
    assert!(text(&out.stderr).contains("no kbsync user has the email nobody@example.com"));

    let out = d.run(&["status", "--json"]);
    assert_exit(&out, 0);
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let handbook = rows.iter().find(|r| r["name"] == "Handbook").unwrap();
    assert_eq!(handbook["id"], d.handbook.as_str());
    assert_eq!(handbook["datasource"], "onedrive");
    assert_eq!(handbook["state"], "completed");
    assert_eq!(handbook["running"], false);
    assert_eq!(handbook["connection"], "connected");
    assert_eq!(handbook["needs_reauth"], false);
    assert_eq!(handbook["last_run"]["status"], "completed");
    assert_eq!(handbook["last_run"]["trigger"], "manual");
    assert_eq!(handbook["last_run"]["processed"], 3);
    assert!(handbook["last_run"]["finished_at"].is_string(), "{handbook}");
    assert!(handbook["next_run_at"].is_string(), "{handbook}");
    let notes = rows.iter().find(|r| r["name"] == "Notes").unwrap();
    assert_eq!(notes["datasource"], "local");
    assert_eq!(notes["connection"], Value::Null);
    assert_eq!(notes["last_run"], Value::Null);
    assert_eq!(notes["next_run_at"], Value::Null);

    let out = d.run(&["status"]);
    assert_exit(&out, 0);
    let table = text(&out.stdout);
    let header = table.lines().next().unwrap();
    assert!(
        header.starts_with("NAME") && header.contains("CONNECTION"),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("Handbook") && l.contains(&d.handbook) && l.contains("connected")),
        "{table}"
    );

    // By id this time; nothing changed at the source.
    let out = d.run(&["sync", &d.handbook]);
    assert_exit(&out, 0);
    assert!(
        text(&out.stdout).contains("completed: 0 processed"),
        "{}",
        text(&out.stdout)
    );
    d.emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_exits_0_with_plain_progress_lines_then_status_and_search_see_the_files() {
    sync_status_and_search(None).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sync_exits_0_with_plain_progress_lines_then_status_and_search_see_the_files_on_postgres() {
    let Some(database) = kbsync_kit::PgDatabase::create("kbsync_cli").await else {
        return;
    };
    sync_status_and_search(Some(database.url().to_owned())).await;
}

/// While another instance holds the knowledge base's lease, `kbsync sync` exits 7 (or, with
/// `--wait`, waits for the lease to go and syncs).
#[tokio::test(flavor = "multi_thread")]
#[expect(
    clippy::disallowed_methods,
    reason = "the lease is taken on the real clock the kbsync process reads"
)]
async fn sync_of_a_kb_leased_elsewhere_exits_7_or_waits_for_it_with_wait() {
    let d = Deployment::new(None).await;
    let store = d.store().await;
    let kb = d.handbook.parse().unwrap();
    let now = chrono::Utc::now();
    assert!(
        store
            .try_claim_sync(kb, "another-instance", now, now + chrono::Duration::seconds(3))
            .await
            .unwrap()
    );
    let out = d.run(&["sync", "Handbook"]);
    assert_exit(&out, 7);
    assert!(
        text(&out.stderr).contains("is being synced elsewhere"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        store.list_sync_runs(kb, 10).await.unwrap().is_empty(),
        "no run started"
    );

    // The other instance's lease expires unrenewed: then it runs.
    let out = d.run(&["sync", "Handbook", "--wait"]);
    assert_exit(&out, 0);
    let stdout = text(&out.stdout);
    assert!(stdout.contains("waiting for that run to end"), "{stdout}");
    assert!(stdout.contains("completed: 3 processed"), "{stdout}");
    d.emu.shutdown().await;
}

/// A revoked connection: the run ends `needs_reauth`, exit 5, and status says so.
#[tokio::test(flavor = "multi_thread")]
async fn sync_of_a_revoked_connection_exits_5_and_status_shows_it_needs_reauthorisation() {
    let d = Deployment::new(None).await;
    let control = d.emu.control();
    control.revoke_refresh_tokens(&control.default_user_id()).unwrap();
    control.add_fault(FaultRule::new("*", "/v1.0/**", FaultAction::Unauthorized));

    let out = d.run(&["sync", "Handbook"]);
    assert_exit(&out, 5);
    assert!(text(&out.stderr).contains("connect"), "{}", text(&out.stderr));

    let out = d.run(&["status", "--json"]);
    assert_exit(&out, 0);
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let handbook = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "Handbook")
        .unwrap()
        .clone();
    assert_eq!(handbook["state"], "needs_reauth", "{handbook}");
    assert_eq!(handbook["connection"], "needs_reauth", "{handbook}");
    assert_eq!(handbook["needs_reauth"], true);
    assert_eq!(handbook["next_run_at"], Value::Null, "the scheduler skips it");
    let out = d.run(&["status"]);
    assert!(
        text(&out.stdout).contains("NEEDS RE-AUTHORISATION"),
        "{}",
        text(&out.stdout)
    );

    // A second attempt is refused before it starts, with the same status.
    let out = d.run(&["sync", "Handbook"]);
    assert_exit(&out, 5);
    d.emu.shutdown().await;
}

/// A file that cannot be read: the run completes with errors, exit 4, the file named on its
/// own line.
#[tokio::test(flavor = "multi_thread")]
async fn sync_with_a_failed_file_exits_4_and_names_the_file() {
    let d = Deployment::new(None).await;
    let control = d.emu.control();
    control
        .put_file(
            &control.default_drive_id(),
            "/Handbook/broken.pdf",
            b"%PDF-1.4 this is not a pdf at all".to_vec(),
        )
        .unwrap();
    let out = d.run(&["sync", "Handbook"]);
    assert_exit(&out, 4);
    let stdout = text(&out.stdout);
    assert!(
        stdout.lines().any(|l| l.starts_with("failed: broken.pdf: ")),
        "{stdout}"
    );
    assert!(
        stdout.contains("completed_with_errors: 3 processed, 1 failed"),
        "{stdout}"
    );
    assert!(
        text(&out.stderr).contains("the next run retries them"),
        "{}",
        text(&out.stderr)
    );
    d.emu.shutdown().await;
}

/// Ctrl-C (SIGINT) cancels the run: the process ends by itself with exit 8 and the run is
/// recorded as cancelled, its lease released.
#[tokio::test(flavor = "multi_thread")]
#[expect(
    clippy::disallowed_methods,
    reason = "the lease is read on the real clock the kbsync process wrote it on"
)]
async fn ctrl_c_cancels_the_sync_and_exits_8() {
    let d = Deployment::new(None).await;
    let control = d.emu.control();
    // Slow downloads: the run is still going when it is interrupted.
    control.add_fault(FaultRule::new(
        "GET",
        "/_download/*",
        FaultAction::Delay { millis: 3000 },
    ));
    let mut child = kbsync()
        .args(["sync", "Handbook", "--data-dir"])
        .arg(&d.data)
        .envs(d.launch.env.iter().map(|(k, v)| (k, v)))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    assert!(first.starts_with("syncing \"Handbook\""), "{first}");
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(out.status.code(), Some(8), "{rest}\n{}", text(&out.stderr));
    assert!(rest.contains("cancelled: "), "{rest}");
    let store = d.store().await;
    let kb = d.handbook.parse().unwrap();
    let runs = store.list_sync_runs(kb, 1).await.unwrap();
    assert_eq!(runs[0].outcome.status, kbsync_core::SyncStatus::Cancelled);
    assert!(
        !store
            .get_sync_state(kb, chrono::Utc::now())
            .await
            .unwrap()
            .running,
        "the lease was released"
    );
    d.emu.shutdown().await;
}

/// `kbsync` on a data directory with a database but no such knowledge base, and on one without
/// a database.
fn run_in(data: &Path, args: &[&str]) -> Output {
    kbsync()
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("KBSYNC_SECRET_KEY", "terminal-test-secret-key")
        .output()
        .unwrap()
}

#[test]
fn sync_of_a_kb_that_does_not_exist_exits_6_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    assert_exit(&run_in(dir.path(), &["migrate"]), 0);
    let out = run_in(dir.path(), &["sync", "No such KB"]);
    assert_exit(&out, 6);
    assert!(
        text(&out.stderr).contains("no knowledge base has the id or name \"No such KB\""),
        "{}",
        text(&out.stderr)
    );
    let id = uuid::Uuid::new_v4().to_string();
    assert_exit(&run_in(dir.path(), &["sync", &id]), 6);
    assert_exit(
        &run_in(dir.path(), &["search", "anything", "--kb", "No such KB"]),
        6,
    );
    // An empty deployment: an empty array, and a table that says so.
    let out = run_in(dir.path(), &["status", "--json"]);
    assert_exit(&out, 0);
    assert_eq!(serde_json::from_slice::<Value>(&out.stdout).unwrap(), json!([]));
    assert_eq!(
        text(&run_in(dir.path(), &["status"]).stdout),
        "no knowledge bases\n"
    );
}

#[test]
fn operator_commands_refuse_a_data_directory_without_a_database_and_create_none() {
    let dir = tempfile::tempdir().unwrap();
    for args in [&["sync", "Handbook"][..], &["status"], &["search", "anything"]] {
        let out = run_in(dir.path(), args);
        assert_exit(&out, 1);
        assert!(
            text(&out.stderr).contains("there is no database"),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    assert!(!dir.path().join("kbsync.sqlite").exists());
}

#[test]
fn sync_help_documents_the_exit_statuses() {
    let out = kbsync().args(["sync", "--help"]).output().unwrap();
    assert_exit(&out, 0);
    let help = text(&out.stdout);
    for line in [
        "Exit status:",
        "0  the run completed",
        "4  the run completed, but some files",
        "6  no knowledge base",
    ] {
        assert!(help.contains(line), "{line}: {help}");
    }
}
