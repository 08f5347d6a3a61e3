//! Scenario 4: the emulator admits R requests per second and answers 429 + Retry-After beyond.
//! First one knowledge base syncs alone; then two knowledge bases of the same tenant (half the
//! files each) sync at once through one datasource, as the scheduler would run them, so that
//! their requests compete for the tenant's budget.

use std::time::Instant;

use anyhow::Result;
use kbsync_core::datasource::{AccessToken, StaticToken};
use kbsync_core::{KbType, SyncTrigger};
use msgraph_emulator::Emulator;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{Block, Db, Graph, add_folder, engine, limits, new_kb};

pub async fn run(small: bool) -> Result<()> {
    let (n, rate) = if small { (30, 20) } else { (300, 50) };
    for runs in [1, 2] {
        throttled(n, rate, runs).await?;
    }
    Ok(())
}

/// `runs` knowledge bases of one tenant, `n` files in all, synced at once.
async fn throttled(n: usize, rate: u32, runs: usize) -> Result<()> {
    let per_kb = n / runs;
    // Real clock: the emulator's rate window is its clock's second.
    let g = Graph::start(Emulator::builder().seed(4), |_| {}).await?;
    let db = Db::sqlite().await?;
    let blobs = tempfile::tempdir()?;
    let engine = engine(db.store.clone(), blobs.path(), limits(10 * n as u64));
    let mut kbs = Vec::new();
    for k in 0..runs {
        let folder_path = format!("/Throttled-{k}");
        for i in 0..per_kb {
            g.ctl.put_file(
                &g.drive,
                &format!("{folder_path}/t-{i}.txt"),
                format!("throttled note {k}/{i}"),
            )?;
        }
        let folder = g.ctl.item_by_path(&g.drive, &folder_path)?;
        let (_, kb) = new_kb(&db.store, KbType::OneDrive).await?;
        add_folder(&db.store, kb, &g.drive, &folder.id, &folder_path).await?;
        // Each run has its own token, as two connections of one tenant would.
        let token = g.ctl.mint_access_token_for(
            &g.ctl.default_user_id(),
            &["Files.Read.All", "Sites.Read.All"],
            chrono::Duration::hours(24),
        )?;
        kbs.push((kb, StaticToken(AccessToken::new(token))));
    }
    g.ctl.clear_request_log();
    g.ctl.set_rate_limit(Some(rate));
    let t = Instant::now();
    let summaries = futures::future::try_join_all(kbs.iter().map(|(kb, token)| {
        engine.run(
            Uuid::new_v4(),
            *kb,
            g.ds.as_ref(),
            token,
            SyncTrigger::Manual,
            CancellationToken::new(),
        )
    }))
    .await?;
    let elapsed = t.elapsed().as_secs_f64();
    g.ctl.set_rate_limit(None);
    let log = g.ctl.request_log();
    let total = log.entries.len() as u64;
    let throttled = log.entries.iter().filter(|e| e.status == 429).count() as u64;
    let admitted = total - throttled;
    let ideal = admitted as f64 / f64::from(rate);
    let ratio = elapsed / ideal;
    let processed: u64 = summaries.iter().map(|s| s.processed).sum();
    let failed: u64 = summaries.iter().map(|s| s.failed).sum();
    let mut b = Block::new(format!(
        "4. throttled: {runs} knowledge base(s) of one tenant at once, {per_kb} files each, R = {rate} requests/s, \
         429 + Retry-After: 1 beyond"
    ));
    b.line(format!(
        "run: {elapsed:.2} s, {total} requests ({admitted} admitted, {throttled} answered 429); processed {processed}, \
         failed {failed}"
    ));
    for f in summaries.iter().flat_map(|s| s.failures.iter()).take(3) {
        b.line(format!("failed: {}: {}", f.name, f.reason));
    }
    b.line(format!("baseline: admitted requests / R = {ideal:.2} s"));
    b.target("failed files", failed.to_string(), "0", failed == 0);
    b.target(
        "time / (requests / R)",
        format!("{ratio:.2}x"),
        "<= 1.10x",
        ratio <= 1.10,
    );
    b.print();
    Ok(())
}
