//! `kbsync-bench`: kbsync against the in-process Graph and Google Drive emulators on loopback,
//! one block per scenario with its figures, baseline, ratio and target. See docs/benchmarks.md.
//!
//! ```sh
//! cargo run --release -p kbsync-bench -- all            # every scenario at full size
//! cargo run --release -p kbsync-bench -- all --small    # tiny sizes, seconds (CI)
//! cargo run --release -p kbsync-bench -- scheduler      # one scenario
//! ```
//! PostgreSQL (scenarios 1, 5, 7, 9 and 10) when KBSYNC_BENCH_DATABASE_URL or KBSYNC_TEST_DATABASE_URL is
//! set, in a schema of its own dropped afterwards.
#![allow(
    clippy::disallowed_methods,
    reason = "benchmarks measure wall time and stamp the rows they write with it"
)]

mod common;
mod counting;
mod drives;
mod extraction;
mod freshness;
mod initial;
mod load;
mod memory;
mod million;
mod openwebui;
mod resync;
mod scheduler;
mod search;
mod throttled;

use std::time::Instant;

use anyhow::{Result, bail};
use clap::Parser;

use crate::drives::Which;

const SCENARIOS: &[&str] = &[
    "initial",
    "gdrive-initial",
    "resync",
    "gdrive-resync",
    "throttled",
    "scheduler",
    "memory",
    "search",
    "extraction",
    "freshness",
    "load",
    "million",
];

#[derive(Parser, Debug)]
#[command(
    name = "kbsync-bench",
    about = "Benchmarks of kbsync against the in-process Graph and Google Drive emulators"
)]
struct Args {
    /// all, or one of: initial (1), resync (2 no-op + 3 incremental; also `noop`, `incremental`),
    /// gdrive-initial and gdrive-resync (1, 2 and 3 on Google Drive; also `gdrive-noop`, `gdrive-incremental`),
    /// throttled (4), scheduler (5), memory (6), search (7), extraction (8), freshness (9), load (10),
    /// million (11); not in
    /// `all`:
    /// openwebui-publish (needs a real Open WebUI).
    scenario: String,
    /// Tiny sizes that run in seconds (CI: the harness must not rot).
    #[arg(long)]
    small: bool,
    /// Files in the drive of scenarios 2 and 3, on both datasources (default 100,000; 1,000 with --small).
    #[arg(long)]
    drive_items: Option<usize>,
    /// Chunks in the index of scenario 7 (default 1,000,000; 2,000 with --small).
    #[arg(long)]
    search_chunks: Option<usize>,
    /// Files in the drive of scenario 10 (default 10,000; 150 with --small).
    #[arg(long)]
    load_files: Option<usize>,
    /// API clients of scenario 10 (default 100; 20 with --small).
    #[arg(long)]
    load_clients: Option<usize>,
    /// Items in the generated drive of scenario 11 (default 1,000,000; 20,000 with --small).
    #[arg(long)]
    million_items: Option<u64>,
    /// Internal: the arguments of `memory-child` and `million-child`.
    #[arg(hide = true, trailing_var_arg = true)]
    rest: Vec<String>,
}

fn main() -> Result<()> {
    // The extraction worker of the process-isolation figures: no runtime, just the worker loop.
    if std::env::args().nth(1).as_deref() == Some("extract-worker") {
        let memory = kbsync_ingest::worker::memory_limit_from_args(std::env::args())
            .unwrap_or(kbsync_ingest::WorkerCommand::DEFAULT_MEMORY_LIMIT_MB);
        return Ok(kbsync_ingest::worker::run_worker(memory)?);
    }
    bench()
}

#[tokio::main]
async fn bench() -> Result<()> {
    let args = Args::parse();
    if args.scenario == "memory-child" {
        return memory::child(&args.rest).await;
    }
    if args.scenario == "million-child" {
        return million::child(&args.rest).await;
    }
    let chosen: Vec<&str> = match args.scenario.as_str() {
        "all" => SCENARIOS.to_vec(),
        "noop" | "incremental" => vec!["resync"],
        "gdrive-noop" | "gdrive-incremental" => vec!["gdrive-resync"],
        // Needs a real Open WebUI (skips without one), so not part of `all`.
        "openwebui-publish" => vec!["openwebui-publish"],
        s if SCENARIOS.contains(&s) => vec![s],
        other => bail!("unknown scenario {other}: all, {}", SCENARIOS.join(", ")),
    };
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let memory_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
    println!(
        "kbsync-bench: {} scenario(s){}, {cores} cores, {memory_gib:.1} GiB, {} build\n",
        chosen.len(),
        if args.small { " at small sizes" } else { "" },
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    let started = Instant::now();
    for s in chosen {
        let t = Instant::now();
        match s {
            "initial" => initial::run(args.small, Which::OneDrive).await?,
            "gdrive-initial" => initial::run(args.small, Which::GDrive).await?,
            "resync" => resync::run(args.small, args.drive_items, Which::OneDrive).await?,
            "gdrive-resync" => resync::run(args.small, args.drive_items, Which::GDrive).await?,
            "throttled" => throttled::run(args.small).await?,
            "scheduler" => scheduler::run(args.small).await?,
            "memory" => memory::run(args.small).await?,
            "search" => search::run(args.small, args.search_chunks).await?,
            "extraction" => extraction::run(args.small)?,
            "freshness" => freshness::run(args.small).await?,
            "load" => load::run(args.small, args.load_files, args.load_clients).await?,
            "million" => million::run(args.small, args.million_items).await?,
            "openwebui-publish" => openwebui::run(args.small).await?,
            _ => bail!("unknown scenario {s}"),
        }
        println!("  ({s}: {:.1} s)\n", t.elapsed().as_secs_f64());
    }
    println!("all done in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
