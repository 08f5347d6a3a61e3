//! Search latency over a large index, on SQLite and PostgreSQL.
//!
//! `cargo bench -p kbsync-server --bench search -- [--chunks N] [--queries Q] [--db sqlite|postgres|both]`
//! PostgreSQL uses `KBSYNC_TEST_DATABASE_URL` (a fresh schema, dropped afterwards).
//! Prints a markdown table: index size, build rate, and p50/p99/max latency per query shape.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
#![allow(
    clippy::disallowed_methods,
    reason = "a benchmark measures wall time and stamps its rows with it"
)]

use std::{sync::Arc, time::Instant};

use chrono::Utc;
use kbsync_core::{KbType, Role};
use kbsync_store::{NewDocument, NewKnowledgeBase, NewUser, Reader, SearchQuery, SqliteStore, Store};
use uuid::Uuid;

const CHUNKS_PER_DOCUMENT: usize = 20;
const CHUNK_WORDS: usize = 160;

/// Builds the i-th query of one shape.
type QueryMaker<'a> = Box<dyn Fn(usize) -> String + 'a>;

struct Args {
    chunks: usize,
    queries: usize,
    db: String,
}

fn args() -> Args {
    let mut a = Args {
        chunks: 100_000,
        queries: 300,
        db: "both".into(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--chunks" => a.chunks = it.next().unwrap().parse().unwrap(),
            "--queries" => a.queries = it.next().unwrap().parse().unwrap(),
            "--db" => a.db = it.next().unwrap(),
            _ => {} // cargo bench passes --bench
        }
    }
    a
}

#[tokio::main]
async fn main() {
    let args = args();
    println!(
        "| database | chunks | index build (chunks/s) | query | p50 ms | p99 ms | max ms | hits/query |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    if args.db == "sqlite" || args.db == "both" {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("bench.sqlite").display());
        let store: Arc<dyn Store> = Arc::new(SqliteStore::connect(&url).await.unwrap());
        run("SQLite", store, &args).await;
    }
    if args.db == "postgres" || args.db == "both" {
        // A schema of its own, dropped afterwards (skipped with a message when none is configured).
        if let Some(schema) = kbsync_kit::PgSchema::from_env("bench") {
            run("PostgreSQL", schema.store().await, &args).await;
        }
    }
}

async fn run(label: &str, store: Arc<dyn Store>, args: &Args) {
    store.migrate().await.unwrap();
    let now = Utc::now();
    let user = store
        .create_user(
            Uuid::new_v4(),
            NewUser {
                email: format!("{}@bench", Uuid::new_v4()),
                password_hash: Some("x".into()),
                display_name: None,
                role: Role::User,
            },
            now,
        )
        .await
        .unwrap();
    let kb = store
        .create_kb(
            Uuid::new_v4(),
            NewKnowledgeBase {
                name: "bench".into(),
                description: String::new(),
                owner_id: user.id,
                kb_type: KbType::Local,
            },
            now,
        )
        .await
        .unwrap();

    // Build the index: documents of CHUNKS_PER_DOCUMENT chunks of deterministic prose.
    let documents = args.chunks.div_ceil(CHUNKS_PER_DOCUMENT);
    let started = Instant::now();
    for d in 0..documents {
        let text = kbsync_fixtures::text_corpus(d as u64, CHUNK_WORDS * CHUNKS_PER_DOCUMENT);
        let words: Vec<&str> = text.split_whitespace().collect();
        let mut chunks: Vec<String> = words.chunks(CHUNK_WORDS).map(|w| w.join(" ")).collect();
        // A rare marker in one document in a thousand, for selective queries.
        if d % 1000 == 0 {
            chunks[0].push_str(" quasarmarker");
        }
        let doc = store
            .create_document(
                Uuid::new_v4(),
                NewDocument {
                    kb_id: kb.id,
                    name: format!("doc-{d}.txt"),
                    path: format!("/doc-{d}.txt"),
                    mime: "text/plain".into(),
                    size: text.len() as i64,
                    content_hash: format!("{:064x}", d),
                    source_item_id: None,
                    web_url: None,
                },
                now,
            )
            .await
            .unwrap();
        let chunks: Vec<kbsync_core::Chunk> = chunks.into_iter().map(Into::into).collect();
        store.complete_document(doc.id, &chunks, now).await.unwrap();
    }
    let build_rate = (documents * CHUNKS_PER_DOCUMENT) as f64 / started.elapsed().as_secs_f64();

    let vocabulary: Vec<String> = kbsync_fixtures::text_corpus(999_999, 2_000)
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
        .filter(|w| w.len() > 3)
        .collect();
    let shapes: [(&str, QueryMaker); 3] = [
        ("one word", Box::new(|i| vocabulary[i % vocabulary.len()].clone())),
        (
            "two words",
            Box::new(|i| {
                format!(
                    "{} {}",
                    vocabulary[i % vocabulary.len()],
                    vocabulary[(i * 7 + 3) % vocabulary.len()]
                )
            }),
        ),
        ("rare word", Box::new(|_| "quasarmarker".to_owned())),
    ];
    for (shape, make) in shapes {
        let mut latencies = Vec::with_capacity(args.queries);
        let mut hits = 0usize;
        for i in 0..args.queries {
            let q = make(i);
            let t = Instant::now();
            let found = store
                .search(SearchQuery {
                    text: &q,
                    reader: Reader::User(user.id),
                    kb_ids: &[],
                    limit: 10,
                })
                .await
                .unwrap();
            latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            hits += found.len();
        }
        latencies.sort_by(|a, b| a.total_cmp(b));
        let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
        println!(
            "| {label} | {} | {build_rate:.0} | {shape} | {:.2} | {:.2} | {:.2} | {:.1} |",
            documents * CHUNKS_PER_DOCUMENT,
            pct(0.5),
            pct(0.99),
            latencies[latencies.len() - 1],
            hits as f64 / args.queries as f64
        );
    }
}
