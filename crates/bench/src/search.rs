//! Scenario 7: search latency over a large index while a writer indexes documents through the
//! store, as a sync does.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::Result;
use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use kbsync_core::{KbId, KbType};
use kbsync_store::{DocumentAcl, NewDocument, Reader, SearchQuery, Store};
use uuid::Uuid;

use crate::common::{Block, Db, new_kb, quantile};

const CHUNKS_PER_DOCUMENT: usize = 20;
const CHUNK_WORDS: usize = 160;
/// Distinct access lists over the loaded documents (each names a group, a user id and an address).
const DISTINCT_ACLS: u64 = 10_000;
/// Groups the access lists name; the document-level reader is a member of a tenth of them.
const GROUPS: u64 = 1_000;
/// The writer's pace during the queries: 50 documents (1,000 chunks) a second.
const WRITER_DOCUMENTS_PER_SECOND: f64 = 50.0;

/// The access list of document `d`: one of [`DISTINCT_ACLS`], as permission sync writes them.
fn acl_of(d: u64) -> DocumentAcl {
    let acl = d % DISTINCT_ACLS;
    DocumentAcl {
        source_item_id: format!("item-{d}"),
        principals: vec![
            format!("group:g-{}", acl % GROUPS),
            format!("user:u-{acl}"),
            format!("email:person-{acl}@example.com"),
        ],
    }
}

fn chunks_of(d: u64) -> Vec<String> {
    let text = kbsync_fixtures::text_corpus(d, CHUNK_WORDS * CHUNKS_PER_DOCUMENT);
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut chunks: Vec<String> = words.chunks(CHUNK_WORDS).map(|w| w.join(" ")).collect();
    // A rare marker in one document in a thousand, for selective queries.
    if d.is_multiple_of(1000)
        && let Some(first) = chunks.first_mut()
    {
        first.push_str(" quasarmarker");
    }
    chunks
}

/// Indexes document `d`; `with_acl`: with its access list first, as a sync's later documents
/// have one (the initial load writes them all afterwards, in batches).
async fn index(store: &Arc<dyn Store>, kb: KbId, d: u64, with_acl: bool) -> Result<()> {
    let chunks = chunks_of(d);
    let doc = store
        .create_document(
            Uuid::new_v4(),
            NewDocument {
                kb_id: kb,
                name: format!("doc-{d}.txt"),
                path: format!("/doc-{d}.txt"),
                mime: "text/plain".into(),
                size: 1000,
                content_hash: format!("{d:064x}"),
                source_item_id: Some(format!("item-{d}")),
                web_url: None,
            },
            Utc::now(),
        )
        .await?;
    if with_acl {
        store.set_document_acls(kb, &[acl_of(d)], Utc::now()).await?;
    }
    let chunks: Vec<kbsync_core::Chunk> = chunks.into_iter().map(Into::into).collect();
    store.complete_document(doc.id, &chunks, Utc::now()).await?;
    Ok(())
}

pub async fn run(small: bool, chunks: Option<usize>) -> Result<()> {
    let total = chunks.unwrap_or(if small { 2_000 } else { 1_000_000 });
    let queries = if small { 20 } else { 200 };
    for db in Db::all().await? {
        one(&db, total, queries).await?;
    }
    Ok(())
}

async fn one(db: &Db, total: usize, queries: usize) -> Result<()> {
    let store = db.store.clone();
    let (owner, kb) = new_kb(&store, KbType::Local).await?;
    let documents = total.div_ceil(CHUNKS_PER_DOCUMENT) as u64;
    let t = Instant::now();
    // Four writers at once, as concurrent files of a sync index.
    db.bulk_load(|| async {
        futures::stream::iter(0..documents)
            .map(|d| index(&store, kb, d, false))
            .buffer_unordered(4)
            .try_collect::<Vec<()>>()
            .await
            .map(drop)
    })
    .await?;
    let build = t.elapsed().as_secs_f64();

    // Every loaded document gets its access list, in batches as a full permission read writes them.
    let t = Instant::now();
    let all: Vec<DocumentAcl> = (0..documents).map(acl_of).collect();
    for batch in all.chunks(2_000) {
        store.set_document_acls(kb, batch, Utc::now()).await?;
    }
    let acl_secs = t.elapsed().as_secs_f64();
    // A reader who is not the owner and holds no grant: a member of a tenth of the groups, so
    // the access lists let them read a tenth of the documents.
    let reader = crate::common::new_user(&store).await?;
    for g in 0..GROUPS / 10 {
        store
            .replace_group_members(
                &format!("group:g-{g}"),
                &[format!("user:reader-{reader}")],
                Utc::now(),
            )
            .await?;
    }
    store
        .add_user_principal(reader, &format!("user:reader-{reader}"))
        .await?;

    // The writer: indexes further documents into the same knowledge base until the queries end,
    // at most WRITER_DOCUMENTS_PER_SECOND (a sync's pace: scenario 1 indexes ~270 files/s, most
    // of them a chunk or two; these documents have 20 chunks). Unpaced, a writer on the same two
    // cores as the queries grows a small index many times over while it is being measured.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (store, stop, written) = (store.clone(), stop.clone(), written.clone());
        tokio::spawn(async move {
            let mut pace = tokio::time::interval(std::time::Duration::from_secs_f64(
                1.0 / WRITER_DOCUMENTS_PER_SECOND,
            ));
            pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut d = documents;
            while !stop.load(Ordering::Relaxed) {
                pace.tick().await;
                index(&store, kb, d, true).await?;
                written.fetch_add(1, Ordering::Relaxed);
                d += 1;
            }
            anyhow::Ok(())
        })
    };

    let vocabulary: Vec<String> = kbsync_fixtures::text_corpus(999_999, 2_000)
        .split_whitespace()
        .map(|w| w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase())
        .filter(|w| w.len() > 3)
        .collect();
    let word = |i: usize| vocabulary[i % vocabulary.len()].clone();
    type Maker<'a> = Box<dyn Fn(usize) -> String + 'a>;
    let shapes: [(&str, Maker); 3] = [
        ("one word", Box::new(word)),
        (
            "two words",
            Box::new(|i| format!("{} {}", word(i), word(i * 7 + 3))),
        ),
        ("rare word", Box::new(|_| "quasarmarker".to_owned())),
    ];
    let mut b = Block::new(format!(
        "7. search on {}: {total} chunks ({documents} documents, {} distinct access lists), limit 10, while a writer indexes",
        db.label,
        documents.min(DISTINCT_ACLS)
    ));
    b.line(format!(
        "index build: {:.0} s, {:.0} chunks/s (4 writers{})",
        build,
        total as f64 / build,
        if db.label == "PostgreSQL" {
            "; GIN index built after the load"
        } else {
            ""
        }
    ));
    b.line(format!(
        "access lists written: {acl_secs:.0} s ({:.0} documents/s, chunks included)",
        documents as f64 / acl_secs
    ));
    let started = Instant::now();
    let mut worst_p99: f64 = 0.0;
    let readers = [("owner", owner), ("reader of 10% by group", reader)];
    for ((shape, make), (who, as_user)) in shapes
        .iter()
        .flat_map(|shape| readers.iter().map(move |r| (shape, r)))
    {
        let mut latencies = Vec::with_capacity(queries);
        let mut hits = 0usize;
        for i in 0..queries {
            let q = make(i);
            let t = Instant::now();
            let found = store
                .search(SearchQuery {
                    text: &q,
                    reader: Reader::User(*as_user),
                    kb_ids: &[],
                    limit: 10,
                })
                .await?;
            latencies.push(t.elapsed().as_secs_f64() * 1e3);
            hits += found.len();
        }
        latencies.sort_by(f64::total_cmp);
        let p99 = quantile(&latencies, 0.99);
        worst_p99 = worst_p99.max(p99);
        b.line(format!(
            "{shape:<10} {who:<23} p50 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} ms  {:.1} hits/query",
            quantile(&latencies, 0.5),
            p99,
            quantile(&latencies, 1.0),
            hits as f64 / queries as f64
        ));
    }
    stop.store(true, Ordering::Relaxed);
    writer.await??;
    let secs = started.elapsed().as_secs_f64();
    let w = written.load(Ordering::Relaxed);
    b.line(format!(
        "writer: {w} documents ({} chunks) indexed during the {:.1} s of queries (paced at most {WRITER_DOCUMENTS_PER_SECOND} documents/s)",
        w * CHUNKS_PER_DOCUMENT as u64,
        secs
    ));
    b.target(
        "p99 (worst shape)",
        format!("{worst_p99:.2} ms"),
        "< 20 ms",
        worst_p99 < 20.0,
    );
    b.print();
    Ok(())
}
