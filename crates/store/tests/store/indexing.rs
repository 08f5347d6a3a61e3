//! Indexing under load: `complete_document` called from many tasks at once (on SQLite the calls
//! are queued and one writer writes them together, in one transaction: `src/sqlite/index_writer.rs`),
//! a document deleted before its call failing alone among the others, and PostgreSQL writing a
//! document's chunks in one INSERT statement. Each body runs on SQLite and, through the kit, on
//! PostgreSQL when `KBSYNC_TEST_DATABASE_URL` is set, with a pool on the test's schema there for
//! looking under the store.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use kbsync_core::{DocumentStatus, KbId, KbType, Role, UserId};
use kbsync_store::{NewDocument, Reader, SearchQuery, Store, StoreError};
use tokio::sync::Barrier;
use uuid::Uuid;

/// Runs a body with a fresh store and, on PostgreSQL, a pool on the test's schema too, for
/// looking under the store.
async fn run<F, Fut>(db: kbsync_kit::Db, body: F)
where
    F: FnOnce(Arc<dyn Store>, Option<sqlx::PgPool>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some(test_db) = kbsync_kit::TestDb::new(db, "kbsync_test") else {
        return;
    };
    let store = test_db.open().await;
    let raw = match test_db.schema() {
        Some(schema) => Some(schema.raw_pool().await),
        None => None,
    };
    body(store, raw.clone()).await;
    if let Some(raw) = raw {
        raw.close().await;
    }
}

kbsync_kit::on_both_databases!(run = run;
    concurrent_complete_document_calls_from_many_tasks_all_land_and_are_searchable,
    a_document_deleted_while_others_complete_alongside_fails_alone_with_not_found,
);

// --- fixtures --------------------------------------------------------------------------------

fn t(offset_secs: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_750_000_000_123).unwrap() + chrono::Duration::seconds(offset_secs)
}

async fn owner_and_kb(s: &dyn Store) -> (UserId, KbId) {
    let owner = kbsync_kit::fixtures::user(s, Role::User, t(0)).await;
    let kb = kbsync_kit::fixtures::kb(s, owner, "k", KbType::Local, t(0)).await;
    (owner, kb)
}

async fn pending_docs(s: &dyn Store, kb_id: KbId, n: usize) -> Vec<Uuid> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let id = Uuid::new_v4();
        s.create_document(
            id,
            NewDocument {
                kb_id,
                name: format!("d{i}.txt"),
                path: format!("/d{i}.txt"),
                mime: "text/plain".into(),
                size: 1,
                content_hash: format!("{i:064x}"),
                source_item_id: None,
                web_url: None,
            },
            t(0),
        )
        .await
        .unwrap();
        ids.push(id);
    }
    ids
}

/// Three chunks per document: one with a word of its own, two with words every document has.
fn chunks_of(i: usize) -> Vec<kbsync_core::Chunk> {
    vec![
        format!("report number{i:03} opening").into(),
        "shared middle words".into(),
        format!("closing shared number{i:03}").into(),
    ]
}

/// Completes every document from a task of its own, all released at once; the results in
/// document order.
async fn complete_all_at_once(s: &Arc<dyn Store>, ids: &[Uuid]) -> Vec<Result<(), StoreError>> {
    let barrier = Arc::new(Barrier::new(ids.len()));
    let tasks: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(i, &id)| {
            let (s, barrier) = (s.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                s.complete_document(id, &chunks_of(i), t(1)).await
            })
        })
        .collect();
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

async fn search(s: &dyn Store, owner: UserId, text: &str, limit: u32) -> Vec<Uuid> {
    s.search(SearchQuery {
        text,
        reader: Reader::User(owner),
        kb_ids: &[],
        limit,
    })
    .await
    .unwrap()
    .into_iter()
    .map(|h| h.document_id)
    .collect()
}

// --- bodies ----------------------------------------------------------------------------------

async fn concurrent_complete_document_calls_from_many_tasks_all_land_and_are_searchable(
    s: Arc<dyn Store>,
    _: Option<sqlx::PgPool>,
) {
    const N: usize = 64;
    let (owner, kb) = owner_and_kb(&*s).await;
    let ids = pending_docs(&*s, kb, N).await;
    for (i, result) in complete_all_at_once(&s, &ids).await.into_iter().enumerate() {
        result.unwrap_or_else(|e| panic!("document {i}: {e}"));
    }
    for (i, &id) in ids.iter().enumerate() {
        let doc = s.get_document(kb, id).await.unwrap();
        assert_eq!(
            (doc.status, doc.updated_at),
            (DocumentStatus::Processed, t(1)),
            "document {i}"
        );
        assert_eq!(search(&*s, owner, &format!("number{i:03}"), 10).await, vec![id]);
    }
    let mut everyone = search(&*s, owner, "shared", 1_000).await;
    everyone.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(everyone, want);
}

async fn a_document_deleted_while_others_complete_alongside_fails_alone_with_not_found(
    s: Arc<dyn Store>,
    _: Option<sqlx::PgPool>,
) {
    const N: usize = 24;
    const GONE: usize = 11;
    let (owner, kb) = owner_and_kb(&*s).await;
    let ids = pending_docs(&*s, kb, N).await;
    s.delete_document(kb, ids[GONE], t(0)).await.unwrap();
    let results = complete_all_at_once(&s, &ids).await;
    for (i, result) in results.into_iter().enumerate() {
        if i == GONE {
            assert!(matches!(result, Err(StoreError::NotFound)), "{result:?}");
            assert!(search(&*s, owner, &format!("number{i:03}"), 10).await.is_empty());
        } else {
            result.unwrap_or_else(|e| panic!("document {i}: {e}"));
            assert_eq!(
                search(&*s, owner, &format!("number{i:03}"), 10).await,
                vec![ids[i]]
            );
        }
    }
    assert_eq!(search(&*s, owner, "shared", 1_000).await.len(), N - 1);
}

/// PostgreSQL only: a statement-level trigger counts the INSERT statements on `chunks`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_inserts_a_documents_chunks_in_one_statement_all_there_in_order() {
    run(
        kbsync_kit::Db::Postgres,
        |s: Arc<dyn Store>, raw: Option<sqlx::PgPool>| async move {
            let raw = raw.unwrap();
            sqlx::raw_sql(
                "CREATE TABLE chunk_insert_statements (n BIGINT NOT NULL); \
             INSERT INTO chunk_insert_statements VALUES (0); \
             CREATE FUNCTION count_chunk_insert() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN UPDATE chunk_insert_statements SET n = n + 1; RETURN NULL; END $$; \
             CREATE TRIGGER count_chunk_inserts AFTER INSERT ON chunks \
             FOR EACH STATEMENT EXECUTE FUNCTION count_chunk_insert();",
            )
            .execute(&raw)
            .await
            .unwrap();
            let (owner, kb) = owner_and_kb(&*s).await;
            let id = pending_docs(&*s, kb, 1).await[0];
            // More chunks than one INSERT per row could bind (65,535 parameters, 4 per row).
            let chunks: Vec<kbsync_core::Chunk> = (0..20_000)
                .map(|i| format!("chunk{i:05} of the long one").into())
                .collect();
            s.complete_document(id, &chunks, t(1)).await.unwrap();

            let statements: i64 = sqlx::query_scalar("SELECT n FROM chunk_insert_statements")
                .fetch_one(&raw)
                .await
                .unwrap();
            assert_eq!(statements, 1);
            let rows: Vec<(i64, String)> =
                sqlx::query_as("SELECT ordinal, text FROM chunks WHERE document_id = $1 ORDER BY id")
                    .bind(id.to_string())
                    .fetch_all(&raw)
                    .await
                    .unwrap();
            let want: Vec<(i64, String)> = chunks
                .iter()
                .cloned()
                .enumerate()
                .map(|(i, c)| (i as i64, c.text))
                .collect();
            assert_eq!(rows, want);
            assert_eq!(search(&*s, owner, "chunk19999", 10).await, vec![id]);
        },
    )
    .await;
}
