//! Search at scale: 1,000,000 chunks. Ignored by default (it takes minutes to load); run with
//! `cargo test -p kbsync-store --release --test store scale -- --ignored --nocapture`
//! (with `KBSYNC_TEST_DATABASE_URL` set for the PostgreSQL variant).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::DateTime;
use kbsync_core::{KbType, Role};
use kbsync_store::{NewDocument, Reader, SearchQuery, Store};
use uuid::Uuid;

const DOCS: usize = 1_000;
const CHUNKS_PER_DOC: usize = 1_000;

/// A deterministic pseudo-random word: "w<n>" with n skewed so low numbers are common.
fn word(state: &mut u64) -> String {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let r = (*state >> 33) as f64 / (1u64 << 31) as f64;
    let n = (r * r * r * 50_000.0) as u64;
    format!("w{n}")
}

#[expect(clippy::disallowed_methods, reason = "measures real query and load times")]
async fn load_and_measure(s: Arc<dyn Store>) {
    let now = DateTime::UNIX_EPOCH;
    let owner = kbsync_kit::fixtures::user(&*s, Role::User, now).await;
    let stranger = kbsync_kit::fixtures::user(&*s, Role::User, now).await;
    let mut kbs = Vec::new();
    for i in 0..10 {
        let kb_owner = if i == 0 { stranger } else { owner };
        kbs.push(kbsync_kit::fixtures::kb(&*s, kb_owner, &format!("kb{i}"), KbType::Local, now).await);
    }
    let started = Instant::now();
    let mut state = 42u64;
    for d in 0..DOCS {
        let id = Uuid::new_v4();
        s.create_document(
            id,
            NewDocument {
                kb_id: kbs[d % kbs.len()],
                name: format!("d{d}"),
                path: format!("/d{d}"),
                mime: "text/plain".into(),
                size: 1,
                content_hash: format!("{d:064}"),
                source_item_id: None,
                web_url: None,
            },
            now,
        )
        .await
        .unwrap();
        let chunks: Vec<kbsync_core::Chunk> = (0..CHUNKS_PER_DOC)
            .map(|_| {
                (0..40)
                    .map(|_| word(&mut state))
                    .collect::<Vec<_>>()
                    .join(" ")
                    .into()
            })
            .collect();
        s.complete_document(id, &chunks, now).await.unwrap();
    }
    eprintln!(
        "{:?}: loaded {} chunks in {:?}",
        s.backend(),
        DOCS * CHUNKS_PER_DOC,
        started.elapsed()
    );

    for (text, reader) in [
        ("w49000", Reader::Admin),
        ("w20000 w20001", Reader::User(owner)),
        ("w5000", Reader::User(stranger)),
        ("w1000", Reader::User(owner)),
        ("w0", Reader::Admin),
    ] {
        let started = Instant::now();
        let hits = s
            .search(SearchQuery {
                text,
                reader,
                kb_ids: &[],
                limit: 20,
            })
            .await
            .unwrap();
        let took = started.elapsed();
        eprintln!(
            "{:?}: {text:?} as {reader:?}: {} hits in {took:?}",
            s.backend(),
            hits.len()
        );
        assert!(took < Duration::from_secs(10), "{text}: {took:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "loads a million chunks; run explicitly"]
async fn sqlite_search_with_a_million_chunks() {
    let db = kbsync_kit::TestDb::new(kbsync_kit::Db::Sqlite, "kbsync_scale").unwrap();
    load_and_measure(db.open().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "loads a million chunks; run explicitly"]
async fn postgres_search_with_a_million_chunks() {
    let Some(schema) = kbsync_kit::PgSchema::from_env("kbsync_scale") else {
        return;
    };
    load_and_measure(schema.store().await).await;
}
