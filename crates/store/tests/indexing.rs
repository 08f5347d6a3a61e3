//! Indexing under load: `complete_document` called from many tasks at once (SQLite writes such
//! calls together, in one transaction), a document deleted while its call waits, and how
//! PostgreSQL inserts a document's chunks. Each body runs on SQLite (a fresh file) and on
//! PostgreSQL (a fresh schema in `KBSYNC_TEST_DATABASE_URL`; skipped with a message when unset),
//! as in `conformance.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use futures::FutureExt;
use kbsync_core::{DocumentStatus, KbId, KbType, Role, UserId};
use kbsync_store::{
    NewDocument, NewKnowledgeBase, NewUser, PostgresStore, Reader, SearchQuery, Store, StoreError,
};
use tokio::sync::Barrier;
use uuid::Uuid;

const PG_ENV: &str = "KBSYNC_TEST_DATABASE_URL";

// --- harness ---------------------------------------------------------------------------------

async fn run_sqlite<F, Fut>(body: F)
where
    F: FnOnce(Arc<dyn Store>, Option<sqlx::PgPool>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("kbsync.db").display());
    body(kbsync_store::connect(&url).await.unwrap(), None).await;
}

/// Also hands the body a pool on the test's schema, for looking under the store.
async fn run_postgres<F, Fut>(body: F)
where
    F: FnOnce(Arc<dyn Store>, Option<sqlx::PgPool>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Ok(url) = std::env::var(PG_ENV) else {
        eprintln!("skipped: {PG_ENV} is not set, so this PostgreSQL variant did not run");
        return;
    };
    let schema = format!("kbsync_test_{}", Uuid::new_v4().simple());
    let store = PostgresStore::connect_in_schema(&url, &schema)
        .await
        .unwrap_or_else(|e| panic!("{PG_ENV} is set but PostgreSQL is unusable: {e}"));
    store.migrate().await.unwrap();
    let raw = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect_with(
            url.parse::<sqlx::postgres::PgConnectOptions>()
                .unwrap()
                .options([("search_path", &schema)]),
        )
        .await
        .unwrap();
    let outcome = AssertUnwindSafe(body(Arc::new(store), Some(raw.clone())))
        .catch_unwind()
        .await;
    raw.close().await;
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// Declares each body once per backend: `sqlite::NAME` and `postgres::NAME`.
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::run_sqlite(super::$name).await } )*
        }
        mod postgres {
            $( #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
               async fn $name() { super::run_postgres(super::$name).await } )*
        }
    };
}

on_both!(
    concurrent_complete_document_calls_from_many_tasks_all_land_and_are_searchable,
    a_document_deleted_while_others_complete_alongside_fails_alone_with_not_found,
);

// --- fixtures --------------------------------------------------------------------------------

fn t(offset_secs: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_750_000_000_123).unwrap() + chrono::Duration::seconds(offset_secs)
}

async fn owner_and_kb(s: &dyn Store) -> (UserId, KbId) {
    let owner = Uuid::new_v4();
    s.create_user(
        owner,
        NewUser {
            email: format!("{owner}@example.com"),
            password_hash: "$argon2id$x".into(),
            role: Role::User,
        },
        t(0),
    )
    .await
    .unwrap();
    let kb = Uuid::new_v4();
    s.create_kb(
        kb,
        NewKnowledgeBase {
            name: "k".into(),
            description: String::new(),
            owner_id: owner,
            kb_type: KbType::Local,
        },
        t(0),
    )
    .await
    .unwrap();
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
fn chunks_of(i: usize) -> Vec<String> {
    vec![
        format!("report number{i:03} opening"),
        "shared middle words".to_owned(),
        format!("closing shared number{i:03}"),
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
    s.delete_document(kb, ids[GONE]).await.unwrap();
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
    run_postgres(|s: Arc<dyn Store>, raw: Option<sqlx::PgPool>| async move {
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
        let chunks: Vec<String> = (0..20_000)
            .map(|i| format!("chunk{i:05} of the long one"))
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
            .map(|(i, c)| (i as i64, c))
            .collect();
        assert_eq!(rows, want);
        assert_eq!(search(&*s, owner, "chunk19999", 10).await, vec![id]);
    })
    .await;
}
