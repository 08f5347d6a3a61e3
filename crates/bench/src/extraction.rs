//! Scenario 8: extraction throughput per file type (as `cargo bench -p kbsync-ingest`), PDF next
//! to `pdftotext` on the same file.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Result;
use kbsync_fixtures as fx;
use kbsync_ingest::{FileKind, IngestConfig, chunk, extract};

use crate::common::{Block, mb};

fn best_of<T>(runs: usize, mut f: impl FnMut() -> Result<T>) -> Result<(Duration, T)> {
    let mut best = Duration::MAX;
    let mut out = f()?;
    for _ in 1..runs {
        let t = Instant::now();
        out = f()?;
        best = best.min(t.elapsed());
    }
    if runs == 1 {
        let t = Instant::now();
        out = f()?;
        best = t.elapsed();
    }
    Ok((best, out))
}

pub fn run(small: bool) -> Result<()> {
    let target_mb = if small { 0.2 } else { 5.0 };
    let runs = if small { 1 } else { 3 };
    let words = (target_mb * 1_000_000.0 / 6.6) as usize;
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
    let mut b = Block::new(format!(
        "8. extraction: ~{target_mb} MB of text per type, best of {runs}, one core (extract only; chunking separately)"
    ));
    b.line(format!(
        "{:<6} {:>8} {:>8} {:>9} {:>10} {:>10}",
        "type", "file MB", "text MB", "ms", "file MB/s", "text MB/s"
    ));
    let dir = tempfile::tempdir()?;
    let mut pdf_line = None;
    let mut pdf_ratio = None;
    for (kind, bytes) in &files {
        let (t, text) = best_of(runs, || Ok(extract(*kind, bytes, &cfg)?))?;
        b.line(format!(
            "{:<6} {:>8.2} {:>8.2} {:>9.1} {:>10.2} {:>10.2}",
            kind.as_str(),
            mb(bytes.len() as u64),
            mb(text.len() as u64),
            t.as_secs_f64() * 1e3,
            mb(bytes.len() as u64) / t.as_secs_f64(),
            mb(text.len() as u64) / t.as_secs_f64()
        ));
        if *kind == FileKind::Pdf {
            let path = dir.path().join("bench.pdf");
            std::fs::write(&path, bytes)?;
            let ours = mb(bytes.len() as u64) / t.as_secs_f64();
            pdf_line = Some(if Command::new("pdftotext").arg("-v").output().is_ok() {
                let (pt, out) = best_of(runs, || {
                    Ok(Command::new("pdftotext")
                        .arg("-enc")
                        .arg("UTF-8")
                        .arg(&path)
                        .arg("-")
                        .output()?)
                })?;
                let theirs = mb(bytes.len() as u64) / pt.as_secs_f64();
                pdf_ratio = Some(ours / theirs);
                format!(
                    "pdf: kbsync (pdf_oxide) {ours:.2} MB/s, pdftotext {theirs:.2} MB/s ({:.2} text MB, process start included): ratio {:.2}x",
                    mb(out.stdout.len() as u64),
                    ours / theirs
                )
            } else {
                format!(
                    "pdf: kbsync (pdf_oxide) {ours:.2} MB/s; pdftotext is not installed (apt-get install poppler-utils)"
                )
            });
        }
    }
    let (t, chunks) = best_of(runs, || Ok(chunk(&corpus, 1000, 100)))?;
    b.line(format!(
        "chunking (1000/100): {:.2} MB of text in {:.1} ms = {:.1} MB/s, {} chunks",
        mb(corpus.len() as u64),
        t.as_secs_f64() * 1e3,
        mb(corpus.len() as u64) / t.as_secs_f64(),
        chunks.len()
    ));
    if let Some(line) = pdf_line {
        b.line(line);
    }
    // Issue 19's target. Its other half (>= 99 % of pdftotext's words, on real PDFs made by TeX,
    // Word and LibreOffice) is not measured by this generated PDF.
    match pdf_ratio {
        Some(ratio) => b.target(
            "PDF MB/s vs pdftotext (generated PDF; word coverage not measured here)",
            format!("{ratio:.2}x"),
            ">= 1.00x",
            ratio >= 1.0,
        ),
        None => b.line("target PDF MB/s >= 1.00x pdftotext: not measured (no pdftotext)"),
    }
    b.print();
    Ok(())
}
