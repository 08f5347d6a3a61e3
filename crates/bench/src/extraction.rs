//! Scenario 8: extraction throughput per file type (as `cargo bench -p kbsync-ingest`), PDF next
//! to `pdftotext` on the same file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
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
    if let Some(ratio) = pdf_ratio {
        b.line(format!(
            "generated PDF: {ratio:.2}x pdftotext's MB/s (the target is judged on real PDFs below)"
        ));
    }
    real_pdfs(&mut b, small, &cfg)?;
    b.print();
    Ok(())
}

/// Where `testing/pdf-corpus/collect.sh` puts the real PDFs (TeX, LibreOffice) it builds from Debian
/// packages; `KBSYNC_PDF_CORPUS` points elsewhere.
const DEFAULT_PDF_CORPUS: &str = "/opt/kbsync-peers/pdf-corpus";

fn pdf_corpus() -> PathBuf {
    std::env::var_os("KBSYNC_PDF_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PDF_CORPUS))
}

/// The words of a text as a multiset: maximal runs of alphanumeric characters.
fn word_counts(text: &str) -> HashMap<&str, usize> {
    let mut counts = HashMap::new();
    for word in text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
    {
        *counts.entry(word).or_insert(0) += 1;
    }
    counts
}

/// How many of `reference`'s words (as a multiset) `ours` contains, and how many words `reference` has.
pub(crate) fn words_found(ours: &str, reference: &str) -> (usize, usize) {
    let ours = word_counts(ours);
    let theirs = word_counts(reference);
    let total = theirs.values().sum();
    let found = theirs
        .iter()
        .map(|(word, n)| (*n).min(ours.get(word).copied().unwrap_or(0)))
        .sum();
    (found, total)
}

fn pdftotext(path: &Path) -> Result<String> {
    let out = Command::new("pdftotext")
        .arg("-enc")
        .arg("UTF-8")
        .arg(path)
        .arg("-")
        .output()?;
    anyhow::ensure!(out.status.success(), "pdftotext failed on {}", path.display());
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Each real PDF through kbsync's extractor and through pdftotext, side by side in one run: MB/s of
/// PDF for both and the share of pdftotext's words that kbsync's text contains.
fn real_pdfs(b: &mut Block, small: bool, cfg: &IngestConfig) -> Result<()> {
    let dir = pdf_corpus();
    let mut files: Vec<(PathBuf, u64)> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("pdf")))
            .filter_map(|p| std::fs::metadata(&p).ok().map(|m| (p, m.len())))
            .collect(),
        Err(_) => Vec::new(),
    };
    if files.is_empty() {
        b.line(format!(
            "real PDFs: skipped, no PDFs in {} (build it with testing/pdf-corpus/collect.sh, or set KBSYNC_PDF_CORPUS)",
            dir.display()
        ));
        b.line("target PDF >= 1.00x pdftotext's MB/s with >= 99 % of its words on real PDFs: not measured");
        return Ok(());
    }
    if Command::new("pdftotext").arg("-v").output().is_err() {
        b.line("real PDFs: skipped, pdftotext is not installed (apt-get install poppler-utils)");
        return Ok(());
    }
    files.sort();
    if small {
        // Only the smallest file: CI stays quick.
        files.sort_by_key(|f| f.1);
        files.truncate(1);
    }
    let runs = if small { 1 } else { 3 };
    b.line(format!(
        "real PDFs in {} (best of {runs}; pdftotext as a subprocess, process start included):",
        dir.display()
    ));
    b.line(format!(
        "{:<28} {:>7} {:>6} {:>11} {:>11} {:>6} {:>8} {:>7}",
        "file", "PDF MB", "pages", "kbsync MB/s", "pdftotext", "ratio", "words", "recall"
    ));
    let (mut bytes_total, mut ours_s, mut theirs_s, mut found_total, mut words_total) =
        (0u64, 0.0, 0.0, 0usize, 0usize);
    let mut worst = f64::MAX;
    for (path, len) in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(path)?;
        let ours = best_of(runs, || Ok(extract(FileKind::Pdf, &bytes, cfg)?));
        let (t_ours, text) = match ours {
            Ok(r) => r,
            Err(e) => {
                b.line(format!("{name:<28} kbsync failed: {e}"));
                continue;
            }
        };
        let (t_theirs, reference) = best_of(runs, || pdftotext(path))?;
        let (found, total) = words_found(&text, &reference);
        let pages = reference.matches('\u{c}').count();
        let recall = if total == 0 {
            1.0
        } else {
            found as f64 / total as f64
        };
        worst = worst.min(recall);
        bytes_total += len;
        ours_s += t_ours.as_secs_f64();
        theirs_s += t_theirs.as_secs_f64();
        found_total += found;
        words_total += total;
        let (a, c) = (mb(*len) / t_ours.as_secs_f64(), mb(*len) / t_theirs.as_secs_f64());
        b.line(format!(
            "{name:<28} {:>7.2} {pages:>6} {a:>11.2} {c:>11.2} {:>5.2}x {total:>8} {:>6.2}%",
            mb(*len),
            a / c,
            recall * 100.0
        ));
    }
    if words_total == 0 {
        b.line("real PDFs: no file could be measured");
        return Ok(());
    }
    let (a, c) = (mb(bytes_total) / ours_s, mb(bytes_total) / theirs_s);
    let recall = found_total as f64 / words_total as f64;
    b.line(format!(
        "{:<28} {:>7.2} {:>6} {a:>11.2} {c:>11.2} {:>5.2}x {words_total:>8} {:>6.2}% (worst file {:.2}%)",
        "total",
        mb(bytes_total),
        "",
        a / c,
        recall * 100.0,
        worst * 100.0
    ));
    b.target(
        "PDF MB/s vs pdftotext on real PDFs (all files together)",
        format!("{:.2}x", a / c),
        ">= 1.00x",
        a >= c,
    );
    b.target(
        "share of pdftotext's words in kbsync's text (real PDFs, all together)",
        format!("{:.2}%", recall * 100.0),
        ">= 99.00%",
        recall >= 0.99,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::words_found;

    #[test]
    fn word_recall_counts_repeated_words_as_a_multiset() {
        assert_eq!(words_found("a b", "a a b"), (2, 3));
        assert_eq!(words_found("a-b, c", "a b\nc"), (3, 3));
        assert_eq!(words_found("", ""), (0, 0));
    }
}
