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

/// The mix: `(kind, how many)`; 20 files in all.
const MIX: [(&str, usize); 7] = [
    ("pdf", 6),
    ("docx", 5),
    ("xlsx", 5),
    ("txt", 1),
    ("csv", 1),
    ("json", 1),
    ("xml", 1),
];

/// Plain text and csv are all text: they stay at this share of `size`, well under the text cap
/// (20 MiB) at the full size of 100 MB. (At 19 MB each, the SQLite store of the child failed the run
/// with "database is locked" on a loaded machine: writing that many chunks holds the write lock
/// longer than the busy timeout.)
const TEXT_FILE_SHARE: f64 = 0.05;

/// The `i`-th file of `kind`, of about `size` bytes, whose text stays under the extractor's cap:
/// PDF pages of prose, each with a photo; Word documents and workbooks of prose and rows with
/// photos as parts; plain text and csv under the cap; a JSON array of records that are mostly
/// numbers and an XML file of records that are mostly attributes.
fn generate(kind: &str, i: usize, size: usize) -> Vec<u8> {
    let seed = 600 + i as u64;
    // About 7 bytes of prose per word.
    let prose = |bytes: usize| kbsync_fixtures::text_corpus(seed, (bytes / 7).max(20));
    match kind {
        "pdf" => {
            let text = prose(size / 100);
            kbsync_fixtures::pdf_with_images(&[&text], size - size / 100, seed)
        }
        "docx" => {
            let text = prose(size / 100);
            let paragraphs: Vec<&str> = text.split("\n\n").collect();
            let media = photos(seed, size - size / 100, 4, "jpeg");
            kbsync_fixtures::docx_with_media(&paragraphs, &media)
        }
        "xlsx" => {
            let text = prose(size / 100);
            let words: Vec<&str> = text.split_whitespace().collect();
            let rows: Vec<Vec<String>> = words
                .chunks(8)
                .enumerate()
                .map(|(r, w)| {
                    vec![
                        (r + 1).to_string(),
                        w.first().copied().unwrap_or("").to_string(),
                        format!("{}.{}", r % 997, r % 10),
                        w.join(" "),
                        ((r * 37) % 10_000).to_string(),
                    ]
                })
                .collect();
            let media = photos(seed, size - size / 100, 2, "png");
            kbsync_fixtures::xlsx_with_media(&[("Data", rows)], &media)
        }
        "txt" => {
            let mut text = format!("text file {i}\n").into_bytes();
            text.extend_from_slice(prose((size as f64 * TEXT_FILE_SHARE) as usize).as_bytes());
            text
        }
        "csv" => {
            let want = (size as f64 * TEXT_FILE_SHARE) as usize;
            let text = prose(want / 2);
            let words: Vec<&str> = text.split_whitespace().collect();
            let mut out = String::from("id,name,amount,note\n");
            let mut r = 0usize;
            while out.len() < want {
                let w = words.get(r % words.len().max(1)).copied().unwrap_or("x");
                let note = words.get((r * 7) % words.len().max(1)).copied().unwrap_or("y");
                out.push_str(&format!("{r},{w},{}.{:02},\"{note} {w}\"\n", r % 9973, r % 100));
                r += 1;
            }
            out.into_bytes()
        }
        "json" => {
            // Records whose strings are a few per cent of their bytes; the rest is numbers.
            let words = prose(4096);
            let words: Vec<&str> = words.split_whitespace().collect();
            let mut out = String::from("{\"dataset\": \"sensor readings\", \"records\": [");
            let mut r = 0usize;
            while out.len() < size {
                if r > 0 {
                    out.push_str(", ");
                }
                let w = words[r % words.len()];
                out.push_str(&format!(
                    "{{\"id\": {r}, \"label\": \"{w} {}\", \"readings\": [",
                    words[(r * 3) % words.len()]
                ));
                for k in 0..96 {
                    if k > 0 {
                        out.push_str(", ");
                    }
                    out.push_str(&format!("{}.{:03}", (r * 31 + k * 7) % 1000, (r + k) % 1000));
                }
                out.push_str("], \"ok\": true}");
                r += 1;
            }
            out.push_str("]}");
            out.into_bytes()
        }
        _ => {
            // XML records whose text nodes are a few per cent of their bytes; the rest is markup.
            let words = prose(4096);
            let words: Vec<&str> = words.split_whitespace().collect();
            let mut out =
                String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<readings source=\"sensors\">\n");
            let mut r = 0usize;
            while out.len() < size {
                let w = words[r % words.len()];
                out.push_str(&format!(
                    "<reading id=\"{r}\" station=\"st-{:04}\" t=\"2026-12-07T10:{:02}:{:02}Z\" a=\"{}.{:03}\" b=\"{}.{:03}\" c=\"{}\" unit=\"mbar\" quality=\"good\"><label>{w}</label></reading>\n",
                    r % 5000,
                    (r / 60) % 60,
                    r % 60,
                    (r * 31) % 1000,
                    r % 1000,
                    (r * 17) % 1000,
                    (r * 7) % 1000,
                    r % 100_000
                ));
                r += 1;
            }
            out.push_str("</readings>\n");
            out.into_bytes()
        }
    }
}

/// `count` photo parts of `bytes` in all, named `image1.ext`, ….
fn photos(seed: u64, bytes: usize, count: usize, ext: &str) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|k| {
            (
                format!("image{}.{ext}", k + 1),
                kbsync_fixtures::noise(seed * 10 + k as u64, bytes / count),
            )
        })
        .collect()
}

/// What one child process saw.
struct ChildRun {
    peak: u64,
    rss_before: u64,
    run_ms: u64,
    processed: u64,
    failed: u64,
    first_failure: Option<String>,
    elapsed: Duration,
}

async fn run_child(g: &Graph, folder_path: &str) -> Result<ChildRun> {
    let folder = g.ctl.item_by_path(&g.drive, folder_path)?;
    let exe = std::env::current_exe()?;
    let t = Instant::now();
    let out = tokio::process::Command::new(exe)
        .arg("memory-child")
        .arg(g.emu.graph_url())
        .arg(g.emu.base_url())
        .arg(g.ctl.tenant_id())
        .arg(&g.drive)
        .arg(&folder.id)
        .arg(folder_path)
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
    Ok(ChildRun {
        peak: get("peak_rss"),
        rss_before: get("rss_before"),
        run_ms: get("run_ms"),
        processed: get("processed"),
        failed: get("failed"),
        first_failure: result
            .get("first_failure")
            .and_then(serde_json::Value::as_str)
            .map(str::to_owned),
        elapsed,
    })
}

pub async fn run(small: bool) -> Result<()> {
    let size = if small { 300_000 } else { 100_000_000 };
    let g = Graph::start(Emulator::builder().seed(6), |_| {}).await?;
    let mut n = 0usize;
    let mut sizes = Vec::new();
    for (kind, count) in MIX {
        let mut bytes = 0usize;
        for i in 0..count {
            let body = generate(kind, i, size);
            bytes += body.len();
            g.ctl
                .put_file(&g.drive, &format!("/Large/{kind}/large-{i}.{kind}"), body)?;
            n += 1;
        }
        sizes.push(format!("{count} {kind} ({:.0} MB)", mb(bytes as u64)));
    }
    let total = run_child(&g, "/Large").await?;
    let mut b = Block::new(format!(
        "6. memory: {n} files of about {:.1} MB of mixed types",
        mb(size as u64)
    ));
    b.line(format!("files: {}", sizes.join(", ")));
    b.line(format!(
        "child process: RSS {:.0} MB before the run, peak {:.0} MB; run {:.1} s ({:.1} s with process start); indexed {}, failed {}",
        mb(total.rss_before),
        mb(total.peak),
        Duration::from_millis(total.run_ms).as_secs_f64(),
        total.elapsed.as_secs_f64(),
        total.processed,
        total.failed
    ));
    if let Some(reason) = &total.first_failure {
        b.line(format!("first failure: {reason}"));
    }
    // One child per type: where the peak comes from.
    let mut per_kind = Vec::new();
    for (kind, count) in MIX {
        let r = run_child(&g, &format!("/Large/{kind}")).await?;
        per_kind.push(format!(
            "{kind} {:.0} MB ({} of {count} indexed, {:.1} s)",
            mb(r.peak),
            r.processed,
            Duration::from_millis(r.run_ms).as_secs_f64()
        ));
    }
    b.line(format!(
        "peak RSS by type, one child each: {}",
        per_kind.join(", ")
    ));
    b.target(
        "peak RSS",
        format!("{:.0} MB", mb(total.peak)),
        "< 200 MB",
        total.peak < 200_000_000,
    );
    // A file refused by size uses no memory: the figure counts only when every file was indexed.
    b.target(
        "files indexed",
        format!("{} of {n}, {} failed", total.processed, total.failed),
        &format!("all {n}"),
        total.processed == n as u64 && total.failed == 0,
    );
    b.print();
    Ok(())
}

/// The child: syncs the folder into a fresh SQLite store and prints `RESULT {json}`.
pub async fn child(args: &[String]) -> Result<()> {
    let [graph_url, base_url, tenant, drive, folder, folder_path] = args else {
        bail!("memory-child GRAPH_URL BASE_URL TENANT DRIVE FOLDER_ID FOLDER_PATH");
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
    add_folder(&db.store, kb, drive, folder, folder_path).await?;
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
