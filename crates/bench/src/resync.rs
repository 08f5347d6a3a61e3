//! Scenarios 2 and 3 on one emulator: a no-op re-sync of a large drive, then an incremental one
//! (files changed, deleted and renamed). `resync` runs them on OneDrive, `gdrive-resync` on
//! Google Drive, with the same files.

use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use msgraph_emulator::Emulator;

use crate::common::{Block, Db, Graph, engine, limits, new_kb};
use crate::drives::{Drive, GDrive, Which, add_root_source, sync};

const FILES_PER_FOLDER: usize = 1_000;
/// Issue 19's targets: the no-op run under 50 ms, the incremental one under 200 ms.
const NOOP_TARGET: Duration = Duration::from_millis(50);
const INCREMENTAL_TARGET: Duration = Duration::from_millis(200);

pub async fn run(small: bool, items: Option<usize>, which: Which) -> Result<()> {
    match which {
        Which::OneDrive => {
            scenarios(
                small,
                items,
                &Graph::start(Emulator::builder().seed(3), |_| {}).await?,
            )
            .await
        }
        Which::GDrive => scenarios(small, items, &GDrive::start(3).await?).await,
    }
}

async fn scenarios(small: bool, items: Option<usize>, drive: &dyn Drive) -> Result<()> {
    let n = items.unwrap_or(if small { 1_000 } else { 100_000 });
    let folders = n.div_ceil(FILES_PER_FOLDER);
    let label = drive.label();
    let t = std::time::Instant::now();
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let f = i / FILES_PER_FOLDER;
        ids.push(drive.put_file(
            &format!("/F{f:03}/note-{i}.txt"),
            Bytes::from(format!("note {i} in folder {f}")),
        )?);
    }
    let setup = t.elapsed();

    let db = Db::sqlite().await?;
    let (_, kb) = new_kb(&db.store, drive.kind().kb_type()).await?;
    add_root_source(&db.store, kb, drive).await?;
    let blobs = tempfile::tempdir()?;
    let engine = engine(db.store.clone(), blobs.path(), limits(2 * n as u64));
    drive.clear_requests();
    let (first, first_time) = sync(&engine, drive, kb).await?;
    let first_requests = drive.requests();

    // 2. Nothing changed.
    drive.clear_requests();
    let (noop, noop_time) = sync(&engine, drive, kb).await?;
    let noop_requests = drive.requests();
    let mut b = Block::new(format!(
        "2. no-op re-sync, {label}: {n} files in {folders} folders, one folder source (the drive root)"
    ));
    b.line(format!(
        "setup: {n} files put in {:.1} s; initial sync {:.1} s ({:.0} files/s, {} processed, {} failed), {}",
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
    b.line("floor: 1 request (one change-feed request per folder source)");
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
        &format!("< {} ms", NOOP_TARGET.as_millis()),
        noop_time < NOOP_TARGET,
    );
    b.print();

    // 3. 100 changed, 20 deleted, 10 renamed (distinct files, spread over the folders).
    let (changed, deleted, renamed) = if small { (20, 4, 2) } else { (100, 20, 10) };
    let step = n / (changed + deleted + renamed);
    let mut k = 0;
    for _ in 0..changed {
        drive.modify_file(&ids[k * step], Bytes::from(format!("changed note {k}")))?;
        k += 1;
    }
    for _ in 0..deleted {
        drive.delete(&ids[k * step])?;
        k += 1;
    }
    for _ in 0..renamed {
        drive.rename(&ids[k * step], &format!("renamed-{k}.txt"))?;
        k += 1;
    }
    drive.clear_requests();
    let (inc, inc_time) = sync(&engine, drive, kb).await?;
    let inc_requests = drive.requests();
    // Floor: the change-feed pages, and the download of each changed file.
    let per_download = drive.requests_per_download();
    let floor = inc_requests.floor(changed as u64, per_download);
    let beyond = inc_requests.total.saturating_sub(floor);
    let mut b = Block::new(format!(
        "3. incremental, {label}: {changed} changed, {deleted} deleted, {renamed} renamed in the {n}-file drive"
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
        "floor: {} change page(s) + {} ancestor look-up(s) + {changed} downloads x {per_download} request(s) = {floor}",
        inc_requests.listing, inc_requests.ancestors
    ));
    b.target("requests beyond the floor", beyond.to_string(), "0", beyond == 0);
    b.target(
        "wall time",
        format!("{:.1} ms", inc_time.as_secs_f64() * 1e3),
        &format!("< {} ms", INCREMENTAL_TARGET.as_millis()),
        inc_time < INCREMENTAL_TARGET,
    );
    b.print();
    Ok(())
}
