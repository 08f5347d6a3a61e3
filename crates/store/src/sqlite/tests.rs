//! SQLite-only checks: the FTS5 index stays consistent with `chunks`, and an in-memory database
//! keeps its data. Also key rotation's SQL (`SecretStore` is not part of `Store`, so the
//! conformance suite does not reach it; the `kbsync rotate-key` process tests run it on both
//! databases).

use chrono::DateTime;
use kbsync_core::{KbId, KbType, Role};
use uuid::Uuid;

use super::*;
use kbsync_core::SourceKind;
use kbsync_core::datasource::DatasourceKind;

use crate::{
    DocumentStore, KnowledgeBaseStore, NewDocument, NewKnowledgeBase, NewSource, NewUser, SourceStore,
    UserStore,
};

/// A migrated store in a temporary directory (`file` below it) with one user's knowledge base.
pub(super) async fn store_with_kb(file: &str) -> (tempfile::TempDir, SqliteStore, KbId) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join(file).display());
    let store = SqliteStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    let now = DateTime::UNIX_EPOCH;
    let owner = Uuid::new_v4();
    store
        .create_user(
            owner,
            NewUser {
                email: "o@x.test".into(),
                password_hash: Some("h".into()),
                display_name: None,
                role: Role::User,
            },
            now,
        )
        .await
        .unwrap();
    let kb = Uuid::new_v4();
    store
        .create_kb(
            kb,
            NewKnowledgeBase {
                name: "k".into(),
                description: String::new(),
                owner_id: owner,
                kb_type: KbType::Local,
            },
            now,
        )
        .await
        .unwrap();
    (dir, store, kb)
}

async fn fts_integrity(store: &SqliteStore) {
    sqlx::query("INSERT INTO chunks_fts (chunks_fts, rank) VALUES ('integrity-check', 1)")
        .execute(&store.pool)
        .await
        .unwrap();
}

#[tokio::test]
async fn fts_index_stays_consistent_through_replace_fail_and_cascading_deletes() {
    let (_dir, store, kb) = store_with_kb("sub/dir/kb.db").await;
    let now = DateTime::UNIX_EPOCH;
    let mut docs = Vec::new();
    for i in 0..3 {
        let id = Uuid::new_v4();
        store
            .create_document(
                id,
                NewDocument {
                    kb_id: kb,
                    name: format!("d{i}"),
                    path: format!("/d{i}"),
                    mime: "text/plain".into(),
                    size: 1,
                    content_hash: format!("{i:064}"),
                    source_item_id: None,
                    web_url: None,
                },
                now,
            )
            .await
            .unwrap();
        store
            .complete_document(id, &["alpha beta".into(), "gamma".into()], now)
            .await
            .unwrap();
        docs.push(id);
    }
    store
        .complete_document(docs[0], &["delta".into()], now)
        .await
        .unwrap();
    fts_integrity(&store).await;
    store.fail_document(docs[1], "broken", now).await.unwrap();
    fts_integrity(&store).await;
    store.delete_kb(kb, chrono::DateTime::UNIX_EPOCH).await.unwrap();
    fts_integrity(&store).await;
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH 'alpha'")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn fts_index_stays_consistent_when_a_source_is_deleted() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    let now = DateTime::UNIX_EPOCH;
    let owner = Uuid::new_v4();
    store
        .create_user(
            owner,
            NewUser {
                email: "o@x.test".into(),
                password_hash: Some("h".into()),
                display_name: None,
                role: Role::User,
            },
            now,
        )
        .await
        .unwrap();
    let kb = Uuid::new_v4();
    store
        .create_kb(
            kb,
            NewKnowledgeBase {
                name: "k".into(),
                description: String::new(),
                owner_id: owner,
                kb_type: KbType::OneDrive,
            },
            now,
        )
        .await
        .unwrap();
    let mut sources = Vec::new();
    for s in 0..2 {
        let source = store
            .add_source(
                Uuid::new_v4(),
                NewSource {
                    kb_id: kb,
                    datasource: DatasourceKind::OneDrive,
                    kind: SourceKind::Folder,
                    drive_id: "d".into(),
                    item_id: format!("folder{s}"),
                    name: "f".into(),
                    path: "/f".into(),
                },
                now,
            )
            .await
            .unwrap();
        for i in 0..3 {
            let (doc, _) = store
                .upsert_source_document(
                    Uuid::new_v4(),
                    source.id,
                    NewDocument {
                        kb_id: kb,
                        name: format!("d{s}{i}"),
                        path: format!("/d{s}{i}"),
                        mime: "text/plain".into(),
                        size: 1,
                        content_hash: format!("{s}{i:063}"),
                        source_item_id: Some(format!("item{s}{i}")),
                        web_url: None,
                    },
                    now,
                )
                .await
                .unwrap();
            store
                .complete_document(doc.id, &[format!("alpha s{s}").into(), "gamma".into()], now)
                .await
                .unwrap();
        }
        sources.push(source.id);
    }
    store
        .delete_source(kb, sources[0], chrono::DateTime::UNIX_EPOCH)
        .await
        .unwrap();
    fts_integrity(&store).await;
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH 'alpha'")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(left, 3);
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM chunks_fts WHERE chunks_fts MATCH 's0'")
        .fetch_one(&store.pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
}

#[tokio::test]
async fn in_memory_database_keeps_its_data_across_calls() {
    let store = SqliteStore::connect("sqlite::memory:").await.unwrap();
    store.migrate().await.unwrap();
    assert_eq!(store.count_users().await.unwrap(), 0);
}

/// A delegated connection of `kb` whose tokens `cipher` encrypted.
fn connection(kb: KbId, cipher: &crate::TokenCipher, refresh: &str) -> crate::NewConnection {
    crate::NewConnection {
        kb_id: kb,
        datasource: DatasourceKind::OneDrive,
        credentials: kbsync_core::ConnectionCredentials::Delegated,
        refresh_token: Some(cipher.encrypt(refresh)),
        access_token: Some(kbsync_core::StoredAccessToken {
            token: cipher.encrypt("access"),
            expires_at: DateTime::UNIX_EPOCH,
        }),
        tenant: None,
    }
}

#[tokio::test]
async fn rotation_rewrites_rows_under_the_previous_key_once_and_leaves_unknown_keys_counted() {
    use crate::{ConnectionStore, TokenCipher, rotate_secrets};
    let (_dir, store, kb) = store_with_kb("rotate.sqlite").await;
    let now = DateTime::UNIX_EPOCH;
    let old = TokenCipher::new("old key", None).unwrap();
    let cipher = TokenCipher::new("new key", Some("old key")).unwrap();
    store
        .upsert_connection(connection(kb, &old, "refresh"), now)
        .await
        .unwrap();

    let report = rotate_secrets(&store, &cipher).await.unwrap();
    assert_eq!((report.rotated, report.unreadable, report.remaining), (2, 0, 0));
    let c = store.get_connection(kb).await.unwrap();
    let refresh = c.refresh_token.unwrap();
    assert_eq!(refresh.key_id, cipher.key_id());
    assert_eq!(cipher.open(&refresh).unwrap(), "refresh");
    assert_eq!(cipher.open(&c.access_token.unwrap().token).unwrap(), "access");
    assert_eq!(
        rotate_secrets(&store, &cipher).await.unwrap(),
        crate::RotationReport::default(),
        "a second run has nothing to do"
    );

    // A row under a key the cipher does not know stays, counted.
    let stranger = TokenCipher::new("someone else's key", None).unwrap();
    store
        .upsert_connection(connection(kb, &stranger, "refresh"), now)
        .await
        .unwrap();
    let report = rotate_secrets(&store, &cipher).await.unwrap();
    assert_eq!((report.rotated, report.unreadable, report.remaining), (0, 2, 2));
}

#[tokio::test]
async fn a_row_rewritten_after_it_was_read_is_not_replaced_by_the_rotation() {
    use crate::{ConnectionStore, SecretStore, TokenCipher};
    let (_dir, store, kb) = store_with_kb("race.sqlite").await;
    let now = DateTime::UNIX_EPOCH;
    let old = TokenCipher::new("old key", None).unwrap();
    let cipher = TokenCipher::new("new key", Some("old key")).unwrap();
    store
        .upsert_connection(connection(kb, &old, "first"), now)
        .await
        .unwrap();
    let read = store.secrets_not_under_key(cipher.key_id()).await.unwrap();
    assert_eq!(read.len(), 2);
    // A server stores new tokens (under the new key) between the read and the write.
    store
        .upsert_connection(connection(kb, &cipher, "second"), now)
        .await
        .unwrap();
    for secret in &read {
        assert!(
            !store
                .replace_secret(secret, &cipher.encrypt("stale"))
                .await
                .unwrap()
        );
    }
    let c = store.get_connection(kb).await.unwrap();
    assert_eq!(cipher.open(&c.refresh_token.unwrap()).unwrap(), "second");
}

#[tokio::test]
async fn a_state_saved_as_one_document_is_read_until_its_items_are_saved_as_rows() {
    let (_dir, store, kb) = store_with_kb("legacy.db").await;
    let now = DateTime::UNIX_EPOCH;
    let source = store
        .add_source(
            Uuid::new_v4(),
            NewSource {
                kb_id: kb,
                datasource: DatasourceKind::OneDrive,
                kind: SourceKind::Folder,
                drive_id: "d".into(),
                item_id: "root".into(),
                name: "Docs".into(),
                path: "/Docs".into(),
            },
            now,
        )
        .await
        .unwrap();
    // As an earlier version saved it.
    sqlx::query("INSERT INTO source_states (source_id, state) VALUES ($1, $2)")
        .bind(source.id.to_string())
        .bind(r#"{"items":{}}"#)
        .execute(&store.pool)
        .await
        .unwrap();
    assert_eq!(
        store.legacy_source_state(source.id).await.unwrap().as_deref(),
        Some(r#"{"items":{}}"#)
    );
    let row = crate::SourceItem {
        item_id: "root".into(),
        parent_id: None,
        owned: false,
        pending: false,
        data: "{}".into(),
    };
    let saved = crate::SavedItems {
        upsert: std::slice::from_ref(&row),
        remove: &[],
        files: 0,
        pending: 0,
        settings: "",
    };
    store.save_source_items(source.id, "delta", saved).await.unwrap();
    assert_eq!(store.legacy_source_state(source.id).await.unwrap(), None);
    assert_eq!(
        store
            .source_items(source.id, crate::ItemSelection::All)
            .await
            .unwrap(),
        [row]
    );
}
