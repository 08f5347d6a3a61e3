//! The kit's PostgreSQL guards remove what a test made, also when the test panics. Skipped with a
//! message when `KBSYNC_TEST_DATABASE_URL` is unset.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use kbsync_kit::{Db, postgres_url};
use sqlx::Connection;

async fn schema_exists(url: &str, schema: &str) -> bool {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    let found: Option<(String,)> =
        sqlx::query_as("SELECT nspname::text FROM pg_namespace WHERE nspname = $1")
            .bind(schema)
            .fetch_optional(&mut conn)
            .await
            .unwrap();
    found.is_some()
}

/// A test body that panics inside a multi-threaded tokio runtime (as `#[tokio::test]` runs it)
/// still leaves no schema behind: the guard's `Drop` removes it while the panic unwinds.
#[test]
fn a_panicking_postgres_test_leaves_no_schema_behind() {
    let Some(url) = postgres_url() else {
        eprintln!("skipped: KBSYNC_TEST_DATABASE_URL is not set");
        return;
    };
    let seen: Arc<Mutex<Option<String>>> = Arc::default();
    let seen_in_test = seen.clone();
    let outcome = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(kbsync_kit::with_test_db(Db::Postgres, |db| async move {
            let schema = db.schema().unwrap().name().to_owned();
            let _store = db.open().await;
            *seen_in_test.lock().unwrap() = Some(schema);
            panic!("the test body fails");
        }))
    })
    .join();
    assert!(outcome.is_err(), "the body should have panicked");
    let schema = seen.lock().unwrap().clone().expect("the body ran");
    let checker = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(
        !checker.block_on(schema_exists(&url, &schema)),
        "schema {schema} was left behind"
    );
}

/// A schema is dropped at the end of a passing test too, and a database likewise.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_and_databases_are_dropped_with_their_guards() {
    let Some(url) = postgres_url() else {
        eprintln!("skipped: KBSYNC_TEST_DATABASE_URL is not set");
        return;
    };
    let schema = kbsync_kit::PgSchema::new(&url, "kbsync_kit_test");
    let name = schema.name().to_owned();
    let _store = schema.store().await;
    assert!(schema_exists(&url, &name).await);
    drop(schema);
    assert!(!schema_exists(&url, &name).await);

    let database = kbsync_kit::PgDatabase::create("kbsync_kit_test").await.unwrap();
    let db_url = database.url().to_owned();
    sqlx::PgConnection::connect(&db_url)
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
    drop(database);
    assert!(sqlx::PgConnection::connect(&db_url).await.is_err());
}
