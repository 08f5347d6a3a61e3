//! What is particular to one database: connecting, schema names, migrations from several instances.

use super::*;
use kbsync_store::UserStore;

#[tokio::test]
async fn connect_rejects_unknown_url_scheme_as_invalid_url() {
    let err = kbsync_store::connect("mysql://localhost/x").await.err().unwrap();
    assert!(matches!(err, StoreError::InvalidUrl(_)), "{err:?}");
}

#[tokio::test]
async fn sqlite_connect_creates_missing_file_and_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/data/kbsync.db");
    let store = kbsync_store::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    store.ping().await.unwrap();
    assert!(path.exists());
}

#[tokio::test]
#[expect(
    clippy::disallowed_methods,
    reason = "asserts the failure arrives promptly in real time"
)]
async fn postgres_connect_to_unreachable_server_is_unavailable_promptly() {
    let started = std::time::Instant::now();
    // Port 1 on loopback: nothing listens there.
    let err = PostgresStore::connect("postgres://postgres@127.0.0.1:1/none")
        .await
        .err()
        .unwrap();
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn postgres_connect_in_schema_rejects_unsafe_schema_names() {
    for bad in ["", "Upper", "semi;colon", "quote\"", "1abc", &"a".repeat(64)] {
        let err = PostgresStore::connect_in_schema("postgres://postgres@127.0.0.1:1/none", bad)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, StoreError::InvalidUrl(_)), "{bad:?}: {err:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_migrations_from_several_instances_apply_once() {
    let Some(schema) = kbsync_kit::PgSchema::from_env("kbsync_test") else {
        return;
    };
    let mut stores = Vec::new();
    for _ in 0..4 {
        stores.push(
            PostgresStore::connect_in_schema(schema.url(), schema.name())
                .await
                .unwrap(),
        );
    }
    let results = futures::future::join_all(stores.iter().map(|s| s.migrate())).await;
    for r in results {
        r.unwrap();
    }
    let s: &dyn Store = &stores[0];
    user(s, "after@example.com", Role::User).await;
    assert_eq!(stores[3].count_users().await.unwrap(), 1);
}
