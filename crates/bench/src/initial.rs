//! Scenario 1: the initial sync of a generated drive of mixed real documents, next to a plain
//! concurrent HTTP client fetching the same bytes and to the same files ingested from local disk.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use kbsync_core::KbType;
use kbsync_core::SyncTrigger;
use kbsync_core::datasource::StaticToken;
use kbsync_ingest::{Extractor, FileKind, IngestConfig, Isolation};
use kbsync_store::{BlobStore, NewDocument};
use kbsync_sync::SyncLimits;
use msgraph_emulator::Emulator;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{Block, Db, Graph, add_folder, engine_with, limits, mb, new_kb, worker_isolation};

/// The drive: 5,000 files, about 100 MB of mixed types.
const FILES: usize = 5_000;
const TOTAL_BYTES: u64 = 100_000_000;
/// `--small`: a few files at the generator's natural sizes.
const SMALL_FILES: usize = 150;
/// Sync runs per isolation mode (alternating).
const ROUNDS: usize = 2;

pub async fn run(small: bool) -> Result<()> {
    let (n, builder) = if small {
        (SMALL_FILES, Emulator::builder().seed(42).generate(SMALL_FILES))
    } else {
        (
            FILES,
            Emulator::builder().seed(42).generate_sized(FILES, TOTAL_BYTES),
        )
    };
    let concurrency = SyncLimits::default().concurrency;
    let started = Instant::now();
    let g = Graph::start(builder, |_| {}).await?;
    let files = g.files()?;
    let bytes: u64 = files.iter().map(|f| f.2).sum();
    let setup = started.elapsed();

    // kbsync: a full run of a fresh knowledge base over the whole drive, with parsers in worker
    // processes (production's default) and on the engine's own threads, alternately, ROUNDS times
    // each; the best run of each mode counts (the machine is shared, so the slower runs are noise).
    let sync_once = |isolation: Isolation| {
        let g = &g;
        async move {
            let db = Db::sqlite().await?;
            let (_, kb) = new_kb(&db.store, KbType::OneDrive).await?;
            add_folder(&db.store, kb, &g.drive, &g.root, "/").await?;
            let blobs = tempfile::tempdir()?;
            let extractor = Extractor::with_isolation(IngestConfig::default(), isolation);
            let engine = engine_with(
                db.store.clone(),
                blobs.path(),
                limits(2 * n as u64),
                extractor.clone(),
            );
            g.ctl.clear_request_log();
            let t = Instant::now();
            let summary = engine
                .run(
                    Uuid::new_v4(),
                    kb,
                    g.ds.as_ref(),
                    &StaticToken(g.token.clone()),
                    SyncTrigger::Manual,
                    CancellationToken::new(),
                )
                .await?;
            let took = t.elapsed();
            extractor.shutdown().await;
            let requests: u64 = g.ctl.request_counts().counts.values().sum();
            anyhow::Ok((took, summary, requests))
        }
    };
    let mut in_process: Option<(Duration, _, u64)> = None;
    let mut isolated: Option<(Duration, _, u64)> = None;
    let mut all_runs = Vec::new();
    for _ in 0..ROUNDS {
        let run = sync_once(worker_isolation()?).await?;
        all_runs.push(format!("process {:.2} s", run.0.as_secs_f64()));
        if isolated.as_ref().is_none_or(|best| run.0 < best.0) {
            isolated = Some(run);
        }
        let run = sync_once(Isolation::Thread).await?;
        all_runs.push(format!("thread {:.2} s", run.0.as_secs_f64()));
        if in_process.as_ref().is_none_or(|best| run.0 < best.0) {
            in_process = Some(run);
        }
    }
    let (Some((kbsync, summary, requests)), Some((threads, thread_summary, _))) = (isolated, in_process)
    else {
        bail!("no sync run");
    };
    if thread_summary.processed != summary.processed || thread_summary.failed != summary.failed {
        bail!(
            "the two isolation modes disagree: process {} processed / {} failed, thread {} / {}",
            summary.processed,
            summary.failed,
            thread_summary.processed,
            thread_summary.failed
        );
    }

    // Baseline 1: the same bytes through a plain concurrent client (the Graph way: /content → 302
    // → download URL), no processing.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let graph_url = g.emu.graph_url().trim_end_matches('/').to_owned();
    let base = g.emu.base_url().trim_end_matches('/').to_owned();
    let t = Instant::now();
    let fetched: Vec<(String, bytes::Bytes)> = futures::stream::iter(files.iter().cloned())
        .map(|(id, path, _)| {
            let client = &client;
            let url = format!("{graph_url}/drives/{}/items/{id}/content", g.drive);
            let base = &base;
            let token = g.token.secret().to_owned();
            async move {
                let r = client.get(&url).bearer_auth(token).send().await?;
                let location = r
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .context("no download URL in the /content answer")?
                    .to_owned();
                let location = if location.starts_with('/') {
                    format!("{base}{location}")
                } else {
                    location
                };
                let body = client
                    .get(&location)
                    .send()
                    .await?
                    .error_for_status()?
                    .bytes()
                    .await?;
                anyhow::Ok((path, body))
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let network = t.elapsed();
    let fetched_bytes: u64 = fetched.iter().map(|f| f.1.len() as u64).sum();
    if fetched_bytes != bytes {
        bail!("the baseline fetched {fetched_bytes} bytes, the drive holds {bytes}");
    }

    // Baseline 2: the same files from local disk through kbsync's pipeline (blob store,
    // extraction, chunking, indexing), no network.
    let disk = tempfile::tempdir()?;
    let mut paths = Vec::with_capacity(fetched.len());
    for (i, (path, body)) in fetched.iter().enumerate() {
        let name = path.rsplit('/').next().unwrap_or(path).to_owned();
        let local = disk.path().join(format!("{i}-{name}"));
        std::fs::write(&local, body)?;
        paths.push((name, local));
    }
    drop(fetched);
    let local_db = Db::sqlite().await?;
    let (_, local_kb) = new_kb(&local_db.store, KbType::Local).await?;
    let local_blobs = tempfile::tempdir()?;
    let blob_store = BlobStore::new(local_blobs.path());
    let extractor = Extractor::new(IngestConfig::default());
    let t = Instant::now();
    let outcomes: Vec<bool> = futures::stream::iter(paths)
        .map(|(name, local)| {
            let store = local_db.store.clone();
            let blob_store = blob_store.clone();
            let extractor = extractor.clone();
            async move {
                let Some(kind) = FileKind::detect(&name, None) else {
                    return anyhow::Ok(false);
                };
                let bytes = tokio::fs::read(&local).await?;
                let blob = blob_store.put_bytes(&bytes).await?;
                let doc = store
                    .create_document(
                        Uuid::new_v4(),
                        NewDocument {
                            kb_id: local_kb,
                            name: name.clone(),
                            path: format!("/{name}"),
                            mime: kind.mime().to_owned(),
                            size: i64::try_from(bytes.len())?,
                            content_hash: blob.hash.clone(),
                            source_item_id: None,
                            web_url: None,
                        },
                        Utc::now(),
                    )
                    .await?;
                match extractor.process(kind, bytes::Bytes::from(bytes)).await {
                    Ok(chunks) => {
                        let chunks: Vec<kbsync_core::Chunk> =
                            chunks.into_iter().map(|c| c.text.into()).collect();
                        store.complete_document(doc.id, &chunks, Utc::now()).await?;
                        Ok(true)
                    }
                    Err(e) => {
                        store.fail_document(doc.id, &e.to_string(), Utc::now()).await?;
                        Ok(false)
                    }
                }
            }
        })
        .buffer_unordered(concurrency)
        .try_collect()
        .await?;
    let local = t.elapsed();
    let local_ok = outcomes.iter().filter(|o| **o).count();

    let rate = |d: Duration| {
        format!(
            "{:>8.2} s  {:>8.1} files/s  {:>7.2} MB/s",
            d.as_secs_f64(),
            n as f64 / d.as_secs_f64(),
            mb(bytes) / d.as_secs_f64()
        )
    };
    let ratio = kbsync.as_secs_f64() / network.as_secs_f64();
    let mut b = Block::new(format!(
        "1. initial sync: {n} files, {:.1} MB of mixed types, concurrency {concurrency}",
        mb(bytes)
    ));
    let generated = if small {
        format!("generate({n})")
    } else {
        format!("generate_sized({n}, {:.0} MB)", mb(TOTAL_BYTES))
    };
    b.line(format!(
        "emulator start with {generated}: {:.1} s",
        setup.as_secs_f64()
    ));
    b.line(format!(
        "kbsync sync run           {}  ({} processed, {} failed, {} skipped; {requests} Graph requests; \
         parsers in worker processes, best of {ROUNDS})",
        rate(kbsync),
        summary.processed,
        summary.failed,
        summary.skipped
    ));
    b.line(format!(
        "  same, parsers in-process {}  (best of {ROUNDS}; every run: {})",
        rate(threads),
        all_runs.join(", ")
    ));
    let overhead = (kbsync.as_secs_f64() / threads.as_secs_f64() - 1.0) * 100.0;
    let p = &summary.phases;
    b.line(format!(
        "  where its time went: enumerate {:.2} s, plan {:.2} s, permissions {:.2} s of {:.2} s wall; summed over \
         files: download {:.2} s, extract {:.2} s, index {:.2} s",
        p.enumerate.as_secs_f64(),
        p.plan.as_secs_f64(),
        p.permissions.as_secs_f64(),
        p.wall.as_secs_f64(),
        p.download.as_secs_f64(),
        p.extract.as_secs_f64(),
        p.index.as_secs_f64()
    ));
    b.line(format!("baseline: HTTP fetch only {}", rate(network)));
    b.line(format!(
        "baseline: local disk      {}  ({local_ok} indexed; same pipeline, no network)",
        rate(local)
    ));
    b.line(format!(
        "ratio kbsync / local-disk ingest: {:.2}x",
        kbsync.as_secs_f64() / local.as_secs_f64()
    ));
    b.target(
        "ratio kbsync / network baseline",
        format!("{ratio:.2}x"),
        "<= 1.5x",
        ratio <= 1.5,
    );
    b.target(
        "process isolation overhead vs in-process",
        format!("{overhead:+.1} %"),
        "< 10 %",
        overhead < 10.0,
    );
    b.print();
    drop(local_db);
    Ok(())
}
