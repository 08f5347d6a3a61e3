//! The sample domain and `--generate N`: a realistic My Drive (folders, Office/PDF/text files with real text,
//! Google Docs/Sheets/Slides, a shortcut), a shared drive, and items another user shares with the default user.
//! Everything follows from the seed.

use crate::control::mime_for_name;
use crate::store::{Content, DocBody, FOLDER, Grant, Grantee, SHORTCUT, Store, StoreError};
use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const DEFAULT_USER_NAME: &str = "Alex Kim";
pub const DEFAULT_USER_EMAIL: &str = "alex.kim@example.com";
pub const OTHER_USER_NAME: &str = "Blake Rivera";
pub const OTHER_USER_EMAIL: &str = "blake.rivera@example.com";
pub const GROUP_EMAIL: &str = "engineering@example.com";
pub const DOMAIN: &str = "example.com";

/// Users, the group, and nothing else (the state without `--generate`).
pub(crate) fn base_domain(s: &mut Store, now: DateTime<Utc>) {
    let alex = s.add_user(DEFAULT_USER_NAME, DEFAULT_USER_EMAIL, now);
    let blake = s.add_user(OTHER_USER_NAME, OTHER_USER_EMAIL, now);
    s.default_user = alex.clone();
    s.groups
        .insert(GROUP_EMAIL.into(), [alex, blake].into_iter().collect());
}

const TOPICS: &[&str] = &[
    "Roadmap",
    "Budget",
    "Onboarding",
    "Retrospective",
    "Design Review",
    "Pricing",
    "Hiring Plan",
    "Incident",
    "Launch",
    "Survey",
    "Architecture",
    "Contract",
    "Forecast",
    "Handbook",
    "Release Notes",
];

const KINDS: &[&str] = &[
    "docx", "xlsx", "pptx", "pdf", "txt", "md", "csv", "gdoc", "gsheet", "gslides",
];

fn user(email: &str) -> Grantee {
    Grantee::User {
        email_address: email.into(),
    }
}

fn grant(grantee: Grantee, role: &str) -> Grant {
    Grant {
        grantee,
        role: role.into(),
        allow_file_discovery: false,
    }
}

fn paragraphs(seed: u64, words: usize) -> Vec<String> {
    kbsync_fixtures::text_corpus(seed, words)
        .split("\n\n")
        .map(str::to_string)
        .collect()
}

/// One generated item: its name and content, by kind.
fn make(kind: &str, title: &str, seed: u64) -> (String, String, Content) {
    let paras = paragraphs(seed, 80);
    let refs: Vec<&str> = paras.iter().map(String::as_str).collect();
    let rows = |n: usize| -> Vec<Vec<String>> {
        let mut rows = vec![vec![
            "Item".to_string(),
            "Owner".to_string(),
            "Amount".to_string(),
        ]];
        for (i, p) in paras.iter().enumerate().take(n) {
            let word = p.split_whitespace().next().unwrap_or("item").to_string();
            rows.push(vec![
                word,
                format!("team {}", i % 3),
                format!("{}", (seed % 997) as usize * (i + 1)),
            ]);
        }
        rows
    };
    let blob = |ext: &str, bytes: Vec<u8>| {
        let name = format!("{title}.{ext}");
        let mime = mime_for_name(&name).to_string();
        (name, mime, Content::Blob(Bytes::from(bytes)))
    };
    match kind {
        "docx" => blob("docx", kbsync_fixtures::docx(&refs)),
        "xlsx" => blob("xlsx", kbsync_fixtures::xlsx(&[("Sheet1", rows(6))])),
        "pptx" => blob("pptx", kbsync_fixtures::pptx(&refs)),
        "pdf" => blob("pdf", kbsync_fixtures::pdf(&refs)),
        "txt" => blob("txt", paras.join("\n\n").into_bytes()),
        "md" => blob("md", kbsync_fixtures::markdown(title, &refs).into_bytes()),
        "csv" => blob("csv", kbsync_fixtures::csv(&rows(8)).into_bytes()),
        "gdoc" => doc(
            title,
            DocBody::Document {
                paragraphs: paras.clone(),
            },
        ),
        "gsheet" => doc(title, DocBody::Spreadsheet { rows: rows(6) }),
        _ => doc(
            title,
            DocBody::Presentation {
                slides: paras.clone(),
            },
        ),
    }
}

fn doc(title: &str, body: DocBody) -> (String, String, Content) {
    (
        title.to_string(),
        body.mime_type().to_string(),
        Content::Doc(body),
    )
}

/// Fills the domain: `n` files spread over My Drive folders, plus a shortcut, a shared drive with a tenth as many
/// files (at least two) and a folder and a document another user shares with the default user.
pub(crate) fn generate(s: &mut Store, n: usize, seed: u64, now: DateTime<Utc>) -> Result<(), StoreError> {
    if n == 0 {
        return Ok(());
    }
    let mut rng = StdRng::seed_from_u64(seed ^ 0x06e0_d21e);
    let root = s.user(&s.default_user.clone())?.root_id.clone();
    let start = now - Duration::days(120);
    let at = |rng: &mut StdRng| start + Duration::minutes(rng.random_range(0..60 * 24 * 100));

    let mut folders = vec![root.clone()];
    let mut by_name = std::collections::BTreeMap::new();
    for path in [
        "Projects",
        "Projects/Apollo",
        "Projects/Zephyr",
        "Finance",
        "Finance/2025",
        "HR",
        "Marketing",
        "Meeting Notes",
    ] {
        let (parent, name) = match path.rsplit_once('/') {
            Some((p, n)) => (by_name.get(p).cloned().unwrap_or_else(|| root.clone()), n),
            None => (root.clone(), path),
        };
        let t = at(&mut rng);
        let id = s.create(&parent, name, FOLDER, Content::None, None, t)?;
        by_name.insert(path.to_string(), id.clone());
        folders.push(id);
    }

    let mut first_file = None;
    for i in 0..n {
        let kind = KINDS[i % KINDS.len()];
        let topic = TOPICS[rng.random_range(0..TOPICS.len())];
        let title = format!("{topic} {}", i + 1);
        let (name, mime, content) = make(kind, &title, seed.wrapping_mul(31).wrapping_add(i as u64));
        let parent = folders[rng.random_range(0..folders.len())].clone();
        let t = at(&mut rng);
        let id = s.create(&parent, &name, &mime, content, None, t)?;
        first_file.get_or_insert(id);
    }
    if let Some(target) = first_file {
        let name = format!("Shortcut to {}", s.file(&target)?.name);
        s.create(&root, &name, SHORTCUT, Content::None, Some(target), now)?;
    }

    // Sharing inside My Drive: HR with the engineering group, one link-shared handbook.
    if let Some(hr) = by_name.get("HR") {
        s.set_grants(
            hr,
            vec![grant(
                Grantee::Group {
                    email_address: GROUP_EMAIL.into(),
                },
                "reader",
            )],
            now,
        )?;
    }
    let (name, mime, content) = make("gdoc", "Company Handbook", seed ^ 0x4a4d);
    let handbook = s.create(&root, &name, &mime, content, None, now)?;
    s.set_grants(
        &handbook,
        vec![
            Grant {
                grantee: Grantee::Anyone,
                role: "reader".into(),
                allow_file_discovery: false,
            },
            Grant {
                grantee: Grantee::Domain {
                    domain: DOMAIN.into(),
                },
                role: "commenter".into(),
                allow_file_discovery: true,
            },
        ],
        now,
    )?;

    // A shared drive.
    let drive = s.create_drive(
        "Engineering",
        vec![
            grant(user(DEFAULT_USER_EMAIL), "organizer"),
            grant(
                Grantee::Group {
                    email_address: GROUP_EMAIL.into(),
                },
                "writer",
            ),
        ],
        now,
    )?;
    let specs = s.create(&drive, "Specs", FOLDER, Content::None, None, now)?;
    for i in 0..(n / 10).max(2) {
        let kind = KINDS[(i * 3) % KINDS.len()];
        let (name, mime, content) = make(kind, &format!("Spec {}", i + 1), seed ^ (0x5bec + i as u64));
        let parent = if i % 2 == 0 { &specs } else { &drive };
        s.create(parent, &name, &mime, content, None, at(&mut rng))?;
    }

    // Another user's items shared with the default user.
    let blake = s
        .user_by_email(OTHER_USER_EMAIL)
        .map(|u| u.root_id.clone())
        .ok_or_else(|| StoreError::NotFound(OTHER_USER_EMAIL.into()))?;
    let shared = s.create(&blake, "Shared Budget", FOLDER, Content::None, None, now)?;
    let (name, mime, content) = make("xlsx", "Budget 2026", seed ^ 0xb1a4e);
    s.create(&shared, &name, &mime, content, None, now)?;
    s.set_grants(&shared, vec![grant(user(DEFAULT_USER_EMAIL), "reader")], now)?;
    let (name, mime, content) = make("docx", "Q3 Plan", seed ^ 0x93);
    let plan = s.create(&blake, &name, &mime, content, None, now)?;
    s.set_grants(&plan, vec![grant(user(DEFAULT_USER_EMAIL), "writer")], now)?;
    Ok(())
}
