//! Scenarios 2 and 3 on one emulator: a no-op re-sync of a large drive, then an incremental one
//! (files changed, deleted and renamed).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use kbsync_core::KbType;
use kbsync_core::SyncTrigger;
use kbsync_core::datasource::StaticToken;
use kbsync_sync::{RunSummary, SyncEngine};
use msgraph_emulator::Emulator;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::common::{Block, Db, Graph, add_folder, engine, limits, new_kb};

const FILES_PER_FOLDER: usize = 1_000;

/// Requests by kind: delta pages, /content (the 302 to the download URL), download bodies,
/// permissions, other.
#[derive(Debug, Default)]
struct Requests {
    total: u64,
    delta: u64,
    content: u64,
    download: u64,
    permissions: u64,
    other: u64,
}

impl Requests {
    fn from(counts: &BTreeMap<String, u64>) -> Self {
        let mut r = Requests::default();
        for (route, n) in counts {
            r.total += n;
            if route.contains("delta") {
                r.delta += n;
            } else if route.ends_with("/content") {
                r.content += n;
            } else if route.contains("_download") {
                r.download += n;
            } else if route.contains("permissions") {
                r.permissions += n;
            } else {
                r.other += n;
            }
        }
        r
    }

    fn describe(&self) -> String {
        format!(
            "{} requests: {} delta, {} /content, {} download bodies, {} permissions, {} other",
            self.total, self.delta, self.content, self.download, self.permissions, self.other
        )
    }
}

async fn sync(engine: &SyncEngine, g: &Graph, kb: uuid::Uuid) -> Result<(RunSummary, Duration)> {
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
    Ok((summary, t.elapsed()))
}

pub async fn run(small: bool, items: Option<usize>) -> Result<()> {
    let n = items.unwrap_or(if small { 1_000 } else { 100_000 });
    let folders = n.div_ceil(FILES_PER_FOLDER);
    let g = Graph::start(Emulator::builder().seed(3), |_| {}).await?;
    let t = Instant::now();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let f = i / FILES_PER_FOLDER;
        let info = g.ctl.put_file(
            &g.drive,
            &format!("/F{f:03}/note-{i}.txt"),
            format!("note {i} in folder {f}"),
        )?;
        ids.push(info.id);
    }
    let setup = t.elapsed();

    let db = Db::sqlite().await?;
    let (_, kb) = new_kb(&db.store, KbType::OneDrive).await?;
    add_folder(&db.store, kb, &g.drive, &g.root, "/").await?;
    let blobs = tempfile::tempdir()?;
    let engine = engine(db.store.clone(), blobs.path(), limits(2 * n as u64));
    g.ctl.clear_request_log();
    let (first, first_time) = sync(&engine, &g, kb).await?;
    let first_requests = Requests::from(&g.ctl.request_counts().counts);

    // 2. Nothing changed.
    g.ctl.clear_request_log();
    let (noop, noop_time) = sync(&engine, &g, kb).await?;
    let noop_requests = Requests::from(&g.ctl.request_counts().counts);
    let mut b = Block::new(format!(
        "2. no-op re-sync: {n} files in {folders} folders, one folder source (the drive root)"
    ));
    b.line(format!(
        "setup: {n} put_file in {:.1} s; initial sync {:.1} s ({:.0} files/s, {} processed, {} failed), {}",
        setup.as_secs_f64(),
        first_time.as_secs_f64(),
        n as f64 / first_time.as_secs_f64(),
        first.processed,
        first.failed,
        first_requests.describe()
    ));
    b.line(format!(
        "no-op run: {:.1} ms, {} (processed {}, deleted {})",
        noop_time.as_secs_f64() * 1e3,
        noop_requests.describe(),
        noop.processed,
        noop.deleted
    ));
    b.line("floor: 1 request (one delta request per folder source)");
    b.target(
        "requests",
        format!(
            "{} ({:.0}x the floor)",
            noop_requests.total, noop_requests.total as f64
        ),
        "exactly 1",
        noop_requests.total == 1,
    );
    b.target(
        "wall time",
        format!("{:.1} ms", noop_time.as_secs_f64() * 1e3),
        "< 100 ms",
        noop_time < Duration::from_millis(100),
    );
    b.print();

    // 3. 100 changed, 20 deleted, 10 renamed (distinct files, spread over the folders).
    let (changed, deleted, renamed) = if small { (20, 4, 2) } else { (100, 20, 10) };
    let step = n / (changed + deleted + renamed);
    let mut k = 0;
    for _ in 0..changed {
        g.ctl
            .modify_file(&g.drive, &ids[k * step], format!("changed note {k}"))?;
        k += 1;
    }
    for _ in 0..deleted {
        g.ctl.delete(&g.drive, &ids[k * step])?;
        k += 1;
    }
    for _ in 0..renamed {
        g.ctl
            .rename(&g.drive, &ids[k * step], &format!("renamed-{k}.txt"))?;
        k += 1;
    }
    g.ctl.clear_request_log();
    let (inc, inc_time) = sync(&engine, &g, kb).await?;
    let inc_requests = Requests::from(&g.ctl.request_counts().counts);
    // Floor: the delta pages, and one download (/content → its download URL) per changed file.
    let floor = inc_requests.delta + 2 * changed as u64;
    let beyond = inc_requests.total.saturating_sub(floor);
    let mut b = Block::new(format!(
        "3. incremental: {changed} changed, {deleted} deleted, {renamed} renamed in the {n}-file drive"
    ));
    b.line(format!(
        "run: {:.1} ms, {} (processed {}, deleted {}, failed {})",
        inc_time.as_secs_f64() * 1e3,
        inc_requests.describe(),
        inc.processed,
        inc.deleted,
        inc.failed
    ));
    b.line(format!(
        "floor: {} delta page(s) + {changed} downloads x 2 requests (/content 302 + body) = {floor}",
        inc_requests.delta
    ));
    b.target("requests beyond the floor", beyond.to_string(), "0", beyond == 0);
    b.print();
    Ok(())
}
