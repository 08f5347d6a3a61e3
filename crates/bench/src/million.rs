//! Scenario 11: the first sync of a drive of a million items (folders and mostly small text files)
//! that the emulator generates lazily, so that the emulator's own memory stays flat. The sync runs
//! in a child process (this binary, `million-child`) on a SQLite file of the parent's; the parent
//! watches the emulator's delta page counts and the child's VmHWM (/proc/{pid}/status).
//!
//! 1. **First sync**: enumeration time (child start until the emulator served the round's last
//!    delta page), delta pages, the child's peak RSS up to that moment and for the whole run, total
//!    time and files indexed. A drive over [`DOWNLOAD_LIMIT`] items is synced at enumeration level
//!    only: every file is skipped by a 1-byte size limit, so nothing is downloaded (downloading a
//!    million small files takes hours here), which the block says.
//! 2. **Kill and resume**: a child on a fresh database is killed (SIGKILL) once the emulator has
//!    served half of the round's delta pages; a second child then syncs the same database. The
//!    pages the emulator serves again are the work a restart repeats (enumeration level).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kbsync_core::datasource::{AccessToken, StaticToken};
use kbsync_core::{KbType, SyncTrigger};
use kbsync_msgraph::{GraphConfig, OneDrive, TokioSleeper, microsoft_oauth};
use kbsync_store::{SqliteStore, Store};
use msgraph_emulator::Emulator;
use msgraph_emulator::lazy::LazyDrive;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{Block, Graph, add_folder, engine, limits, mb, memory, new_kb};

const TOKEN_ENV: &str = "KBSYNC_BENCH_CHILD_TOKEN";
const SEED: u64 = 11;
/// Drives larger than this are synced at enumeration level (files skipped by size, not downloaded).
const DOWNLOAD_LIMIT: u64 = 50_000;
/// How often the parent samples the emulator's counts and the child's memory.
const POLL: Duration = Duration::from_millis(20);

pub async fn run(small: bool, items: Option<u64>) -> Result<()> {
    let n = items.unwrap_or(if small { 5_000 } else { 1_000_000 });
    let files = LazyDrive::new(n, SEED, "").files();
    let g = Graph::start(Emulator::builder().seed(SEED).generate_lazily(n), |_| {}).await?;
    let downloads = n <= DOWNLOAD_LIMIT;
    let mut b = Block::new(format!(
        "11. a {n}-item drive ({files} small text files, {} folders), first sync in a child process",
        n - files
    ));
    if !downloads {
        b.line(format!(
            "enumeration level: over {DOWNLOAD_LIMIT} items every file is skipped by a 1-byte size limit (nothing downloaded)"
        ));
    }
    // 1. The first sync.
    let db = ChildDb::new(&g).await?;
    let first = Child::spawn(&g, &db, if downloads { None } else { Some(1) })?;
    let watched = first.watch(&g, None).await?;
    let result = watched
        .result
        .context("the first-sync child was not supposed to be killed")?;
    let pages = g.ctl.delta_page_counts(&g.drive)?;
    let enumeration = watched.enumerated.map_or_else(
        || "never completed".to_string(),
        |d| format!("{:.1} s", d.as_secs_f64()),
    );
    b.line(format!(
        "enumeration {enumeration} ({} delta page requests, {} pages a round, {:.0} items/s); engine's enumerate phase {:.1} s",
        pages.requests,
        pages.pages_per_round,
        watched
            .enumerated
            .map_or(0.0, |d| (n + 1) as f64 / d.as_secs_f64().max(1e-9)),
        Duration::from_millis(result.get("enumerate_ms")).as_secs_f64()
    ));
    b.line(format!(
        "run {:.1} s (child from start to result {:.1} s, to exit {:.1} s); files indexed {}, skipped {}, failed {}, found {}; status {}",
        Duration::from_millis(result.get("run_ms")).as_secs_f64(),
        Duration::from_millis(result.get("child_ms")).as_secs_f64(),
        watched.elapsed.as_secs_f64(),
        result.get("processed"),
        result.get("skipped"),
        result.get("failed"),
        result.get("total_found"),
        result.status
    ));
    b.line(format!(
        "child RSS: {:.0} MB before the run, peak {:.0} MB until the last delta page was served, {:.0} MB for the whole run",
        mb(result.get("rss_before")),
        mb(watched.enumeration_peak),
        mb(result.get("peak_rss"))
    ));
    b.target(
        "enumeration peak RSS",
        format!("{:.0} MB", mb(watched.enumeration_peak)),
        "< 300 MB",
        watched.enumeration_peak > 0 && watched.enumeration_peak < 300_000_000,
    );
    if downloads {
        b.target(
            "files indexed",
            format!("{} of {files}", result.get("processed")),
            &format!("all {files}"),
            result.get("processed") == files,
        );
    }
    drop(db);
    b.print();

    // 2. Kill at half the pages, then resume on the same database.
    let mut b = Block::new(
        "11. the same drive: SIGKILL at 50 % of the first enumeration, then a new child on the same database",
    );
    g.ctl.clear_delta_page_counts(&g.drive)?;
    let db = ChildDb::new(&g).await?;
    let killed = Child::spawn(&g, &db, Some(1))?;
    let half = pages.pages_per_round.div_ceil(2).max(1);
    let watched = killed.watch(&g, Some(half)).await?;
    let before = g.ctl.delta_page_counts(&g.drive)?;
    let resumed = Child::spawn(&g, &db, Some(1))?;
    let after_run = resumed.watch(&g, None).await?;
    let result = after_run
        .result
        .context("the resumed child was not supposed to be killed")?;
    let after = g.ctl.delta_page_counts(&g.drive)?;
    let repeated = after.repeated;
    b.line(format!(
        "SIGKILL after {} of {} delta pages ({:.1} s); the second child requested {} pages, {repeated} of them again, and ended {} ({} found); {} pages in all",
        before.requests,
        pages.pages_per_round,
        watched.elapsed.as_secs_f64(),
        after.requests - before.requests,
        result.status,
        result.get("total_found"),
        after.requests
    ));
    let restarted_from_zero = repeated >= before.requests.saturating_sub(2) && before.requests > 2;
    b.target(
        "delta pages requested again after a kill at 50 %",
        format!(
            "{repeated} of {}{}",
            before.requests,
            if restarted_from_zero {
                " (restarts from zero)"
            } else {
                ""
            }
        ),
        "<= 2 (resume from the last applied page)",
        repeated <= 2,
    );
    b.print();
    Ok(())
}

/// The SQLite file both children of a test use, with a knowledge base syncing the drive's root.
struct ChildDb {
    url: String,
    kb: Uuid,
    _dir: tempfile::TempDir,
}

impl ChildDb {
    async fn new(g: &Graph) -> Result<ChildDb> {
        let dir = tempfile::tempdir()?;
        let url = format!("sqlite://{}", dir.path().join("million.sqlite").display());
        let store = SqliteStore::connect(&url).await?;
        store.migrate().await?;
        let store: Arc<dyn Store> = Arc::new(store);
        let (_, kb) = new_kb(&store, KbType::OneDrive).await?;
        add_folder(&store, kb, &g.drive, &g.root, "/").await?;
        Ok(ChildDb { url, kb, _dir: dir })
    }
}

/// The result line a child prints.
struct ChildResult {
    json: serde_json::Value,
    status: String,
}

impl ChildResult {
    fn get(&self, k: &str) -> u64 {
        self.json.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0)
    }
}

/// What the parent saw of a child.
struct Watched {
    /// From the child's start until the emulator served the last page of the round.
    enumerated: Option<Duration>,
    /// The child's VmHWM when the last page of the round was served (or when it was killed).
    enumeration_peak: u64,
    elapsed: Duration,
    /// `None` when the child was killed.
    result: Option<ChildResult>,
}

struct Child {
    process: tokio::process::Child,
    started: Instant,
}

impl Child {
    fn spawn(g: &Graph, db: &ChildDb, max_file_size: Option<u64>) -> Result<Child> {
        let started = Instant::now();
        let process = tokio::process::Command::new(std::env::current_exe()?)
            .arg("million-child")
            .arg(g.emu.graph_url())
            .arg(g.emu.base_url())
            .arg(g.ctl.tenant_id())
            .arg(&db.url)
            .arg(db.kb.to_string())
            .arg(max_file_size.map_or_else(|| "none".to_string(), |s| s.to_string()))
            .env(TOKEN_ENV, g.token.secret())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        Ok(Child { process, started })
    }

    /// Waits for the child, sampling the emulator's page counts: kills it (SIGKILL) once the drive has
    /// served `kill_at` pages in all, when given.
    async fn watch(mut self, g: &Graph, kill_at: Option<u64>) -> Result<Watched> {
        let pid = self.process.id().context("the child has no pid")?;
        let rounds_before = g.ctl.delta_page_counts(&g.drive)?.rounds_completed;
        let (mut enumerated, mut enumeration_peak) = (None, 0);
        let mut stdout = self.process.stdout.take().context("the child's stdout")?;
        let mut stderr = self.process.stderr.take().context("the child's stderr")?;
        let out = tokio::spawn(async move {
            let mut s = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut s)
                .await
                .map(|_| s)
        });
        let err = tokio::spawn(async move {
            let mut s = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut s)
                .await
                .map(|_| s)
        });
        let status = loop {
            if let Some(status) = self.process.try_wait()? {
                break status;
            }
            let counts = g.ctl.delta_page_counts(&g.drive)?;
            if enumerated.is_none() {
                enumeration_peak = peak_rss_of(pid).max(enumeration_peak);
                if counts.rounds_completed > rounds_before {
                    enumerated = Some(self.started.elapsed());
                }
            }
            if kill_at.is_some_and(|k| counts.requests >= k) {
                self.process.start_kill()?;
                self.process.wait().await?;
                return Ok(Watched {
                    enumerated,
                    enumeration_peak,
                    elapsed: self.started.elapsed(),
                    result: None,
                });
            }
            tokio::time::sleep(POLL).await;
        };
        let elapsed = self.started.elapsed();
        let stdout = out.await??;
        let stderr = err.await??;
        if !status.success() {
            bail!("the million child failed ({status}): {stderr}");
        }
        let json: serde_json::Value = stdout
            .lines()
            .find_map(|l| l.strip_prefix("RESULT "))
            .context("the million child printed no result")
            .and_then(|j| Ok(serde_json::from_str(j)?))?;
        let status = json
            .get("status")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("?")
            .to_string();
        Ok(Watched {
            enumerated,
            enumeration_peak,
            elapsed,
            result: Some(ChildResult { json, status }),
        })
    }
}

/// A process's peak resident memory (VmHWM) in bytes, 0 when it cannot be read.
fn peak_rss_of(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// The child: syncs the knowledge base of an existing SQLite file and prints `RESULT {json}`.
pub async fn child(args: &[String]) -> Result<()> {
    let [graph_url, base_url, tenant, db_url, kb, max_file_size] = args else {
        bail!("million-child GRAPH_URL BASE_URL TENANT SQLITE_URL KB_ID MAX_FILE_SIZE|none");
    };
    let started = Instant::now();
    let token = AccessToken::new(std::env::var(TOKEN_ENV).context(TOKEN_ENV)?);
    let kb: Uuid = kb.parse()?;
    let config = GraphConfig {
        graph_url: graph_url.clone(),
        request_timeout: Duration::from_secs(120),
        ..GraphConfig::default()
    };
    let http = config.http_client()?;
    let oauth = microsoft_oauth(base_url, tenant, vec!["Files.Read.All".into()]);
    let ds = Arc::new(OneDrive::new(config, oauth, http, Arc::new(TokioSleeper)));
    let store: Arc<dyn Store> = Arc::new(SqliteStore::connect(db_url).await?);
    let mut limits = limits(10_000_000);
    if max_file_size != "none" {
        limits.max_file_size = max_file_size.parse()?;
    }
    let blobs = tempfile::tempdir()?;
    let engine = engine(store, blobs.path(), limits);
    let (rss_before, _) = memory();
    let t = Instant::now();
    let summary = engine
        .run(
            Uuid::new_v4(),
            kb,
            ds.as_ref(),
            &StaticToken(token),
            SyncTrigger::Manual,
            CancellationToken::new(),
        )
        .await?;
    let run_ms = t.elapsed().as_millis();
    let (_, peak) = memory();
    let result = serde_json::json!({
        "rss_before": rss_before,
        "peak_rss": peak,
        "run_ms": run_ms,
        "child_ms": started.elapsed().as_millis(),
        "enumerate_ms": summary.phases.enumerate.as_millis(),
        "processed": summary.processed,
        "failed": summary.failed,
        "skipped": summary.skipped,
        "total_found": summary.total_found,
        "status": format!("{:?}", summary.status),
        "first_failure": summary.failures.first().map(|f| f.reason.clone()),
    });
    println!("RESULT {result}");
    Ok(())
}
