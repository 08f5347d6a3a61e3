//! Scenario 6: peak resident memory of a kbsync process syncing large files. The emulator (which
//! holds every file in memory) runs here; the sync runs in a child process (this binary,
//! `memory-child`), which reports its own VmHWM at the end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kbsync_core::KbType;
use kbsync_core::SyncTrigger;
use kbsync_core::datasource::{AccessToken, StaticToken};
use kbsync_msgraph::{GraphConfig, OneDrive, TokioSleeper, microsoft_oauth};
use msgraph_emulator::Emulator;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{Block, Db, Graph, add_folder, engine, limits, mb, memory, new_kb};

const TOKEN_ENV: &str = "KBSYNC_BENCH_CHILD_TOKEN";

pub async fn run(small: bool) -> Result<()> {
    let (n, size) = if small { (3, 5_000_000) } else { (20, 100_000_000) };
    let g = Graph::start(Emulator::builder().seed(6), |_| {}).await?;
    let line = kbsync_fixtures::text_corpus(6, 200_000);
    for i in 0..n {
        let mut body = format!("large file {i}\n").into_bytes();
        while body.len() < size {
            let take = (size - body.len()).min(line.len());
            body.extend_from_slice(&line.as_bytes()[..take]);
        }
        g.ctl.put_file(&g.drive, &format!("/Large/large-{i}.txt"), body)?;
    }
    let folder = g.ctl.item_by_path(&g.drive, "/Large")?;
    let exe = std::env::current_exe()?;
    let t = Instant::now();
    let out = tokio::process::Command::new(exe)
        .arg("memory-child")
        .arg(g.emu.graph_url())
        .arg(g.emu.base_url())
        .arg(g.ctl.tenant_id())
        .arg(&g.drive)
        .arg(&folder.id)
        .env(TOKEN_ENV, g.token.secret())
        .output()
        .await?;
    let elapsed = t.elapsed();
    if !out.status.success() {
        bail!(
            "the memory child failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result: serde_json::Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .context("the memory child printed no result")
        .and_then(|j| Ok(serde_json::from_str(j)?))?;
    let get = |k: &str| result.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let peak = get("peak_rss");
    let mut b = Block::new(format!(
        "6. memory: {n} files of {:.0} MB (text)",
        mb(size as u64)
    ));
    b.line(format!(
        "child process: RSS {:.0} MB before the run, peak {:.0} MB; run {:.1} s ({:.1} s with process start); processed {}, failed {}",
        mb(get("rss_before")),
        mb(peak),
        Duration::from_millis(get("run_ms")).as_secs_f64(),
        elapsed.as_secs_f64(),
        get("processed"),
        get("failed")
    ));
    if let Some(reason) = result.get("first_failure").and_then(serde_json::Value::as_str) {
        b.line(format!("first failure: {reason}"));
    }
    b.target(
        "peak RSS",
        format!("{:.0} MB", mb(peak)),
        "< 200 MB",
        peak < 200_000_000,
    );
    // A file refused by size uses no memory: the figure counts only when every file was indexed.
    b.target(
        "files indexed",
        format!("{} of {n}", get("processed")),
        &format!("all {n}"),
        get("processed") == n as u64,
    );
    b.print();
    Ok(())
}

/// The child: syncs the folder into a fresh SQLite store and prints `RESULT {json}`.
pub async fn child(args: &[String]) -> Result<()> {
    let [graph_url, base_url, tenant, drive, folder] = args else {
        bail!("memory-child GRAPH_URL BASE_URL TENANT DRIVE FOLDER_ID");
    };
    let token = AccessToken::new(std::env::var(TOKEN_ENV).context(TOKEN_ENV)?);
    let config = GraphConfig {
        graph_url: graph_url.clone(),
        request_timeout: Duration::from_secs(60),
        ..GraphConfig::default()
    };
    let http = config.http_client()?;
    let oauth = microsoft_oauth(base_url, tenant, vec!["Files.Read.All".into()]);
    let ds = Arc::new(OneDrive::new(config, oauth, http, Arc::new(TokioSleeper)));
    let db = Db::sqlite().await?;
    let (_, kb) = new_kb(&db.store, KbType::OneDrive).await?;
    add_folder(&db.store, kb, drive, folder, "/Large").await?;
    let blobs = tempfile::tempdir()?;
    let engine = engine(db.store.clone(), blobs.path(), limits(1_000));
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
        "processed": summary.processed,
        "failed": summary.failed,
        "first_failure": summary.failures.first().map(|f| f.reason.clone()),
    });
    println!("RESULT {result}");
    Ok(())
}
