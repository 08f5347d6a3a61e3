//! Scenario 4: the emulator admits R requests per second and answers 429 + Retry-After beyond.

use std::time::Instant;

use anyhow::Result;
use kbsync_core::KbType;
use kbsync_core::SyncTrigger;
use kbsync_core::datasource::StaticToken;
use msgraph_emulator::Emulator;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{Block, Db, Graph, add_folder, engine, limits, new_kb};

pub async fn run(small: bool) -> Result<()> {
    let (n, rate) = if small { (30, 20) } else { (300, 50) };
    // Real clock: the emulator's rate window is its clock's second.
    let g = Graph::start(Emulator::builder().seed(4), |_| {}).await?;
    for i in 0..n {
        g.ctl.put_file(
            &g.drive,
            &format!("/Throttled/t-{i}.txt"),
            format!("throttled note {i}"),
        )?;
    }
    let folder = g.ctl.item_by_path(&g.drive, "/Throttled")?;
    let db = Db::sqlite().await?;
    let (_, kb) = new_kb(&db.store, KbType::OneDrive).await?;
    add_folder(&db.store, kb, &g.drive, &folder.id, "/Throttled").await?;
    let blobs = tempfile::tempdir()?;
    let engine = engine(db.store.clone(), blobs.path(), limits(10 * n as u64));
    g.ctl.clear_request_log();
    g.ctl.set_rate_limit(Some(rate));
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
    let elapsed = t.elapsed().as_secs_f64();
    g.ctl.set_rate_limit(None);
    let log = g.ctl.request_log();
    let total = log.entries.len() as u64;
    let throttled = log.entries.iter().filter(|e| e.status == 429).count() as u64;
    let admitted = total - throttled;
    let ideal = admitted as f64 / f64::from(rate);
    let ratio = elapsed / ideal;
    let mut b = Block::new(format!(
        "4. throttled: {n} files, R = {rate} requests/s, 429 + Retry-After: 1 beyond"
    ));
    b.line(format!(
        "run: {elapsed:.2} s, {total} requests ({admitted} admitted, {throttled} answered 429); processed {}, failed {}",
        summary.processed, summary.failed
    ));
    for f in summary.failures.iter().take(3) {
        b.line(format!("failed: {}: {}", f.name, f.reason));
    }
    b.line(format!("baseline: admitted requests / R = {ideal:.2} s"));
    b.target(
        "failed files",
        summary.failed.to_string(),
        "0",
        summary.failed == 0,
    );
    b.target(
        "time / (requests / R)",
        format!("{ratio:.2}x"),
        "<= 1.15x",
        ratio <= 1.15,
    );
    b.print();
    Ok(())
}
