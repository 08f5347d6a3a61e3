//! `--generate N`: a nested drive of N files of mixed types with realistic sizes and real, extractable text.
//!
//! The tree has top-level department folders and sub-folders down to depth 4, roughly 10–30 files per folder.
//! Every file's bytes are a pure function of (seed, index), produced by the `kbsync-fixtures` generators, so the
//! same seed always gives the same drive. Content is generated on all cores at startup.

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

/// Paragraph texts for one document: 3–24 paragraphs; most files are a few KB, some tens of KB.
fn paragraphs(seed: u64) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let long = rng.random_bool(0.15);
    let n = if long {
        rng.random_range(12..=24)
    } else {
        rng.random_range(3..=8)
    };
    (0..n)
        .map(|k| kbsync_fixtures::text_corpus(seed.wrapping_add(k as u64 * 7919), rng.random_range(40..=160)))
        .collect()
}

fn table(seed: u64, title: &str) -> Vec<Vec<String>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let rows = rng.random_range(10..=120);
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
    let paras = paragraphs(seed);
    let refs: Vec<&str> = paras.iter().map(String::as_str).collect();
    match kind {
        Kind::Txt => format!("{title}\n\n{}\n", paras.join("\n\n")).into_bytes(),
        Kind::Md => kbsync_fixtures::markdown(title, &refs).into_bytes(),
        Kind::Html => kbsync_fixtures::html(title, &refs).into_bytes(),
        Kind::Csv => kbsync_fixtures::csv(&table(seed, title)).into_bytes(),
        Kind::Json => kbsync_fixtures::json_document(title, &refs).into_bytes(),
        Kind::Docx => {
            let mut all = vec![title];
            all.extend(refs.iter().copied());
            kbsync_fixtures::docx(&all)
        }
        Kind::Xlsx => kbsync_fixtures::xlsx(&[("Sheet1", table(seed, title))]),
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

/// Fills `drive_id` with `n` generated files under a nested folder tree.
pub fn generate_drive(
    store: &mut Store,
    drive_id: &str,
    n: usize,
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
    let threads = std::thread::available_parallelism()
        .map_or(2, std::num::NonZero::get)
        .max(1);
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
                            .map(|f| file_bytes(f.kind, f.seed, &f.title))
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
