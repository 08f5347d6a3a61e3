#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(clippy::disallowed_methods, reason = "a benchmark measures wall time")]
//! Extraction throughput per file type (`cargo bench -p kbsync-ingest`).
//!
//! Generates a corpus of several MB per type with kbsync-fixtures, extracts each file three times and
//! keeps the best time. For PDF it also runs `pdftotext` (poppler-utils) on the same file, if installed.
//! Prints a markdown table. `KBSYNC_BENCH_MB` scales the corpus (default 5 MB of text per type).

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use kbsync_fixtures as fx;
use kbsync_ingest::{FileKind, IngestConfig, chunk, extract};

const RUNS: usize = 3;

fn best_of<T>(mut f: impl FnMut() -> T) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut out = None;
    for _ in 0..RUNS {
        let t = Instant::now();
        let r = f();
        best = best.min(t.elapsed());
        out = Some(r);
    }
    (best, out.unwrap())
}

fn mb(n: usize) -> f64 {
    n as f64 / 1e6
}

fn main() {
    let target_mb: usize = std::env::var("KBSYNC_BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    // ~6.6 bytes per word in the corpus
    let words = target_mb * 1_000_000 / 66 * 10;
    let corpus = fx::text_corpus(42, words);
    let cfg = IngestConfig {
        max_text_bytes: 200 << 20,
        per_file_timeout: Duration::from_secs(600),
        ..Default::default()
    };
    let files: Vec<(FileKind, Vec<u8>)> = fx::corpus::every_type(&corpus)
        .into_iter()
        .filter_map(|(name, bytes)| FileKind::detect(name, None).map(|kind| (kind, bytes)))
        .collect();

    println!(
        "Extraction throughput, best of {RUNS} (release build; corpus {} words, seed 42)\n",
        words
    );
    println!("| type | file MB | text MB | best time (ms) | file MB/s | text MB/s | pdftotext MB/s (file) |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let dir = std::env::temp_dir().join(format!("kbsync-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (kind, bytes) in &files {
        let (t, text) = best_of(|| extract(*kind, black_box(bytes), &cfg).unwrap());
        let pdftotext = if *kind == FileKind::Pdf {
            let path = dir.join("bench.pdf");
            std::fs::write(&path, bytes).unwrap();
            let probe = Command::new("pdftotext").arg("-v").output();
            if probe.is_ok() {
                let (pt, out) = best_of(|| {
                    Command::new("pdftotext")
                        .arg("-enc")
                        .arg("UTF-8")
                        .arg(&path)
                        .arg("-")
                        .output()
                        .unwrap()
                });
                assert!(out.status.success());
                format!(
                    "{:.2} ({} text MB)",
                    mb(bytes.len()) / pt.as_secs_f64(),
                    format_args!("{:.2}", mb(out.stdout.len()))
                )
            } else {
                "not installed".to_string()
            }
        } else {
            String::new()
        };
        println!(
            "| {} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {} |",
            kind.as_str(),
            mb(bytes.len()),
            mb(text.len()),
            t.as_secs_f64() * 1000.0,
            mb(bytes.len()) / t.as_secs_f64(),
            mb(text.len()) / t.as_secs_f64(),
            pdftotext
        );
    }
    let (t, chunks) = best_of(|| chunk(black_box(&corpus), 1000, 100));
    println!(
        "| chunk (1000/100) | | {:.2} | {:.0} | | {:.2} | {} chunks |",
        mb(corpus.len()),
        t.as_secs_f64() * 1000.0,
        mb(corpus.len()) / t.as_secs_f64(),
        chunks.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
