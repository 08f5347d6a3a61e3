//! `--generate N`: a nested drive of N files of mixed types with realistic sizes and real, extractable text.
//!
//! The tree has top-level department folders and sub-folders down to depth 4, roughly 10–30 files per folder.
//! Every file's bytes are a pure function of (seed, index), produced by the `kbsync-fixtures` generators, so the
//! same seed always gives the same drive. Content is generated on all cores at startup.
//!
//! The natural sizes average ~5.6 KB a file (28 MB for 5,000 files). [`generate_drive_sized`] builds the same
//! tree, names and types with every file's amount of text (paragraphs, table rows) scaled by one factor, chosen
//! so that the drive totals about a given number of bytes.

use crate::store::{Content, Store, StoreError};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::Arc;

const DEPARTMENTS: &[&str] = &[
    "Finance",
    "Engineering",
    "Marketing",
    "Legal",
    "Human Resources",
    "Sales",
    "Operations",
    "Research",
    "Projects",
    "Archive",
    "Customer Success",
    "Design",
];
const SUBFOLDERS: &[&str] = &[
    "Reports",
    "Drafts",
    "Contracts",
    "Meeting Notes",
    "2023",
    "2024",
    "2025",
    "Q1",
    "Q2",
    "Q3",
    "Q4",
    "Planning",
    "Templates",
    "Specifications",
    "Reviews",
    "Budgets",
    "Presentations",
    "Policies",
    "Onboarding",
    "Vendors",
    "Roadmap",
    "Incidents",
    "Proposals",
    "Training",
    "Audits",
];
const TOPICS: &[&str] = &[
    "quarterly summary",
    "project plan",
    "budget overview",
    "meeting notes",
    "design review",
    "vendor contract",
    "release checklist",
    "customer feedback",
    "risk register",
    "team handbook",
    "sales forecast",
    "market analysis",
    "incident report",
    "training guide",
    "architecture notes",
    "hiring plan",
    "status update",
    "policy draft",
    "roadmap",
    "retrospective",
];

/// The file types the generator produces, with their share of files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Txt,
    Md,
    Html,
    Csv,
    Json,
    Docx,
    Xlsx,
    Pptx,
    Pdf,
}

impl Kind {
    fn ext(self) -> &'static str {
        match self {
            Kind::Txt => "txt",
            Kind::Md => "md",
            Kind::Html => "html",
            Kind::Csv => "csv",
            Kind::Json => "json",
            Kind::Docx => "docx",
            Kind::Xlsx => "xlsx",
            Kind::Pptx => "pptx",
            Kind::Pdf => "pdf",
        }
    }
    fn pick(r: u32) -> Kind {
        match r % 100 {
            0..20 => Kind::Txt,
            20..34 => Kind::Md,
            34..44 => Kind::Html,
            44..52 => Kind::Csv,
            52..60 => Kind::Json,
            60..74 => Kind::Docx,
            74..82 => Kind::Xlsx,
            82..90 => Kind::Pptx,
            _ => Kind::Pdf,
        }
    }
}

struct FileSpec {
    folder: usize,
    name: String,
    kind: Kind,
    seed: u64,
    title: String,
}

/// Files sampled to choose the text scale of a sized drive (all of them in a drive of up to this many).
const CALIBRATION_SAMPLE: usize = 10_000;
/// The text scales a sized drive may use.
const SCALES: std::ops::RangeInclusive<f64> = 0.05..=1_000.0;

/// `n` items at a text scale: `n` itself at scale 1, otherwise at least one.
fn scaled(n: usize, scale: f64) -> usize {
    if scale == 1.0 {
        n
    } else {
        // In range: n is small and the scale at most 1,000.
        (n as f64 * scale).round().max(1.0) as usize
    }
}

/// Paragraph texts for one document: 3–24 paragraphs at scale 1; most files are a few KB, some tens of KB.
fn paragraphs(seed: u64, scale: f64) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let long = rng.random_bool(0.15);
    let n = if long {
        rng.random_range(12..=24)
    } else {
        rng.random_range(3..=8)
    };
    let n = scaled(n, scale);
    (0..n)
        .map(|k| kbsync_fixtures::text_corpus(seed.wrapping_add(k as u64 * 7919), rng.random_range(40..=160)))
        .collect()
}

fn table(seed: u64, title: &str, scale: f64) -> Vec<Vec<String>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let rows = scaled(rng.random_range(10..=120), scale);
    let mut out = vec![vec![
        "Item".to_string(),
        "Owner".into(),
        "Amount".into(),
        "Notes".into(),
    ]];
    for r in 0..rows {
        let words = kbsync_fixtures::text_corpus(seed.wrapping_add(r as u64), 6);
        let owner = kbsync_fixtures::text_corpus(seed.wrapping_add(r as u64 + 10_000), 2);
        out.push(vec![
            format!("{title} {}", r + 1),
            owner.trim_end_matches('.').to_string(),
            format!(
                "{}.{:02}",
                rng.random_range(10..100_000),
                rng.random_range(0..100)
            ),
            words,
        ]);
    }
    out
}

/// The bytes of one generated file.
pub fn file_bytes(kind: Kind, seed: u64, title: &str) -> Vec<u8> {
    file_bytes_scaled(kind, seed, title, 1.0)
}

/// The bytes of one generated file with its amount of text (paragraphs, table rows) scaled by `scale`
/// (1.0: [`file_bytes`]).
pub fn file_bytes_scaled(kind: Kind, seed: u64, title: &str, scale: f64) -> Vec<u8> {
    let paras = paragraphs(seed, scale);
    let refs: Vec<&str> = paras.iter().map(String::as_str).collect();
    match kind {
        Kind::Txt => format!("{title}\n\n{}\n", paras.join("\n\n")).into_bytes(),
        Kind::Md => kbsync_fixtures::markdown(title, &refs).into_bytes(),
        Kind::Html => kbsync_fixtures::html(title, &refs).into_bytes(),
        Kind::Csv => kbsync_fixtures::csv(&table(seed, title, scale)).into_bytes(),
        Kind::Json => kbsync_fixtures::json_document(title, &refs).into_bytes(),
        Kind::Docx => {
            let mut all = vec![title];
            all.extend(refs.iter().copied());
            kbsync_fixtures::docx(&all)
        }
        Kind::Xlsx => kbsync_fixtures::xlsx(&[("Sheet1", table(seed, title, scale))]),
        Kind::Pptx => {
            let slides: Vec<String> = refs
                .chunks(2)
                .map(|c| format!("{title}\n{}", c.join("\n")))
                .collect();
            let slides: Vec<&str> = slides.iter().map(String::as_str).collect();
            kbsync_fixtures::pptx(&slides)
        }
        Kind::Pdf => {
            let pages: Vec<String> = refs.chunks(3).map(|c| c.join("\n\n")).collect();
            let mut pages: Vec<&str> = pages.iter().map(String::as_str).collect();
            if pages.is_empty() {
                pages.push(title);
            }
            kbsync_fixtures::pdf(&pages)
        }
    }
}

fn title_case(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// Fills `drive_id` with `n` generated files under a nested folder tree, at their natural sizes.
pub fn generate_drive(
    store: &mut Store,
    drive_id: &str,
    n: usize,
    seed: u64,
    user: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    generate_drive_sized(store, drive_id, n, None, seed, user, now)
}

/// Fills `drive_id` like [`generate_drive`] (the same folders, names and types for the same seed), with every
/// file's text scaled by one factor so that the files total about `total_bytes` (the factor is fitted on the
/// files' sizes at two scales, on a sample of them in drives over 10,000 files; within 0.1 % when the files
/// grow, a few percent when they shrink to a paragraph or two). `None`: natural sizes, as [`generate_drive`].
pub fn generate_drive_sized(
    store: &mut Store,
    drive_id: &str,
    n: usize,
    total_bytes: Option<u64>,
    seed: u64,
    user: &str,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if n == 0 {
        return Ok(());
    }
    let mut rng = StdRng::seed_from_u64(seed ^ 0x6765_6e65_7261_7465);
    let root = store.drive(drive_id)?.root_id.clone();
    // Folders: (id, depth, path). The root only holds a few loose files.
    let mut folders: Vec<(String, usize)> = vec![(root.clone(), 0)];
    let wanted_folders = (n / 20).max(1);
    for (i, dept) in DEPARTMENTS
        .iter()
        .enumerate()
        .take(wanted_folders.min(DEPARTMENTS.len()))
    {
        let _ = i;
        let id = store.create_folder_in(drive_id, &root, dept, user, now)?;
        folders.push((id, 1));
    }
    let mut guard = 0;
    while folders.len() <= wanted_folders && guard < wanted_folders * 20 {
        guard += 1;
        let candidates: Vec<usize> = (1..folders.len()).filter(|&i| folders[i].1 < 4).collect();
        if candidates.is_empty() {
            break;
        }
        let parent = candidates[rng.random_range(0..candidates.len())];
        let (pid, depth) = folders[parent].clone();
        let base = SUBFOLDERS[rng.random_range(0..SUBFOLDERS.len())];
        let name = if rng.random_bool(0.5) {
            base.to_string()
        } else {
            format!("{base} {}", folders.len())
        };
        match store.create_folder_in(drive_id, &pid, &name, user, now) {
            Ok(id) => folders.push((id, depth + 1)),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    let specs: Vec<FileSpec> = (0..n)
        .map(|i| {
            let kind = Kind::pick(rng.random_range(0..100));
            let folder = if folders.len() > 1 && !rng.random_bool(0.02) {
                rng.random_range(1..folders.len())
            } else {
                0
            };
            let topic = TOPICS[rng.random_range(0..TOPICS.len())];
            let title = format!("{} {}", title_case(topic), i + 1);
            FileSpec {
                folder,
                name: format!("{title}.{}", kind.ext()),
                kind,
                seed: crate::ids::mix(seed ^ (i as u64) << 1),
                title,
            }
        })
        .collect();
    let scale = total_bytes.map_or(1.0, |target| scale_for(&specs, target));
    let threads = threads();
    let chunk = specs.len().div_ceil(threads);
    let mut contents: Vec<Arc<Content>> = Vec::with_capacity(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = specs
            .chunks(chunk.max(1))
            .map(|part| {
                s.spawn(move || {
                    // Files are generated in batches and stored as slices of one buffer per batch, so the
                    // long-lived content does not interleave with the generators' temporaries in the heap
                    // (which kept gigabytes resident for 100k files).
                    let mut out = Vec::with_capacity(part.len());
                    for batch in part.chunks(256) {
                        let files: Vec<Vec<u8>> = batch
                            .iter()
                            .map(|f| file_bytes_scaled(f.kind, f.seed, &f.title, scale))
                            .collect();
                        let mut buf = Vec::with_capacity(files.iter().map(Vec::len).sum());
                        let mut ranges = Vec::with_capacity(files.len());
                        for f in &files {
                            ranges.push(buf.len()..buf.len() + f.len());
                            buf.extend_from_slice(f);
                        }
                        drop(files);
                        let shared = Bytes::from(buf);
                        out.extend(ranges.into_iter().map(|r| Content::new(shared.slice(r))));
                    }
                    out
                })
            })
            .collect();
        for h in handles {
            if let Ok(v) = h.join() {
                contents.extend(v);
            }
        }
    });
    for (spec, content) in specs.iter().zip(contents) {
        let parent = &folders[spec.folder].0;
        store.put_file_in(drive_id, parent, &spec.name, content, user, now)?;
    }
    Ok(())
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(2, std::num::NonZero::get)
        .max(1)
}

/// The text scale at which the files total about `target` bytes. A file grows about linearly with the scale,
/// so the total size of the files (or of an evenly spaced sample of them) at two scales gives the line to solve.
fn scale_for(specs: &[FileSpec], target: u64) -> f64 {
    let step = (specs.len() / CALIBRATION_SAMPLE).max(1);
    let sample: Vec<&FileSpec> = specs.iter().step_by(step).collect();
    let per_file = |scale: f64| sample_bytes(&sample, scale) as f64 / sample.len().max(1) as f64;
    let (low, high) = (1.0, 4.0);
    let (at_low, at_high) = (per_file(low), per_file(high));
    let slope = (at_high - at_low) / (high - low);
    if slope <= 0.0 {
        return 1.0;
    }
    let wanted = target as f64 / specs.len().max(1) as f64;
    (low + (wanted - at_low) / slope).clamp(*SCALES.start(), *SCALES.end())
}

/// The total size of the sampled files at a scale, generated on all cores.
fn sample_bytes(sample: &[&FileSpec], scale: f64) -> u64 {
    let chunk = sample.len().div_ceil(threads()).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = sample
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|f| file_bytes_scaled(f.kind, f.seed, &f.title, scale).len() as u64)
                        .sum::<u64>()
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().ok()).sum()
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;
    use sha2::{Digest, Sha256};

    /// A generated drive's files, in name order: (name, size, SHA-1).
    fn drive_files(n: usize, seed: u64, total_bytes: Option<u64>) -> Vec<(String, u64, String)> {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut store = crate::initial_store(
            &crate::Emulator::builder().seed(seed),
            "http://emulator.test",
            now,
        )
        .unwrap();
        let (drive_id, user) = (store.default_drive_id.clone(), store.default_user_id.clone());
        generate_drive_sized(&mut store, &drive_id, n, total_bytes, seed, &user, now).unwrap();
        let mut files: Vec<(String, u64, String)> = store
            .drive(&drive_id)
            .unwrap()
            .items
            .values()
            .filter_map(|i| {
                let c = i.content.as_deref()?;
                Some((i.name.clone(), c.bytes.len() as u64, c.sha1_hash.clone()))
            })
            .collect();
        files.sort();
        files
    }

    /// (file count, total bytes, SHA-256 over every file's name and SHA-1, in name order).
    fn digest(files: &[(String, u64, String)]) -> (usize, u64, String) {
        let mut h = Sha256::new();
        for (name, _, sha1) in files {
            h.update(name.as_bytes());
            h.update(sha1.as_bytes());
        }
        let bytes = files.iter().map(|f| f.1).sum();
        (files.len(), bytes, hex::encode(h.finalize()))
    }

    /// The digests were taken from the generator before sized drives were added.
    #[test]
    fn natural_sizes_give_the_same_drive_as_before_sized_drives_existed() {
        assert_eq!(
            digest(&drive_files(300, 42, None)),
            (
                300,
                1_763_466,
                "c2800ac1d4d60fb5c3c7a3b3696080745fc8cb0df31eb023fbd19abc62837e9c".to_owned()
            )
        );
        assert_eq!(
            digest(&drive_files(40, 7, None)),
            (
                40,
                243_371,
                "bdca2f531ac7f13826f1d38795f966169d0a2099ac5e3253ab45fc689f1c0704".to_owned()
            )
        );
    }

    #[test]
    fn a_sized_drive_has_the_same_files_totalling_about_the_target_deterministically() {
        let natural = drive_files(300, 42, None);
        let names = |files: &[(String, u64, String)]| files.iter().map(|f| f.0.clone()).collect::<Vec<_>>();
        for target in [800_000, 6_000_000] {
            let sized = drive_files(300, 42, Some(target));
            assert_eq!(names(&sized), names(&natural));
            let total: u64 = sized.iter().map(|f| f.1).sum();
            let off = (total as f64 - target as f64).abs() / target as f64;
            assert!(off < 0.03, "{total} bytes for a target of {target}");
            assert_eq!(sized, drive_files(300, 42, Some(target)));
        }
    }
}
