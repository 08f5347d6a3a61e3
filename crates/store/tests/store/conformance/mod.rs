//! The store conformance suite: one set of test bodies per area of the store, each run on SQLite
//! and PostgreSQL by the kit's `on_both_databases!`. This module holds the fixtures the areas share.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};
use kbsync_core::datasource::DatasourceKind;
use kbsync_core::{
    AccessGrant, DocumentStatus, GrantOrigin, KbId, KbType, Permission, Role, SyncStatus, UserId,
};
use kbsync_core::{CharSpan, Chunk};
use kbsync_core::{
    Connection, ConnectionCredentials, Encrypted, RefreshLease, SourceKind, StoredAccessToken, SyncFailure,
    SyncPhaseTimes, SyncProgress, SyncRunOutcome, SyncState, SyncTrigger,
};
use kbsync_store::{
    AddressLimit, ClaimedSync, DocumentLocation, ItemSelection, KbPatch, LeaseRenewal, LoginAttempt,
    LoginBackoff, NewConnection, NewDocument, NewKnowledgeBase, NewOAuthState, NewSource, NewUser,
    OAuthState, Page, PostgresStore, Reader, RefreshedTokens, RetrieveQuery, RoundPage, SavedItems,
    SearchQuery, SourceItem, Store, StoreError, SyncRelease,
};
use uuid::Uuid;

mod access;
mod accounts;
mod api_keys;
mod backends;
mod blobs;
mod connections;
mod documents;
mod identities;
mod knowledge_bases;
mod publications;
mod quarantine;
mod scheduling;
mod search;
mod sources;
mod subscriptions;
mod users;

/// A folder source `/Docs` of `kb_id` on drive `drive-1`.
fn new_source(kb_id: KbId, item_id: &str) -> NewSource {
    kbsync_kit::fixtures::onedrive_source(kb_id, SourceKind::Folder, "drive-1", item_id, "/Docs")
}

fn t(offset_secs: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(1_750_000_000_123).unwrap() + Duration::seconds(offset_secs)
}

async fn user(s: &dyn Store, email: &str, role: Role) -> UserId {
    kbsync_kit::fixtures::user_with_email(s, email, role, t(0)).await
}

async fn kb_at(s: &dyn Store, owner: UserId, name: &str, at: DateTime<Utc>) -> KbId {
    let id = Uuid::new_v4();
    s.create_kb(
        id,
        NewKnowledgeBase {
            name: name.into(),
            description: format!("{name} description"),
            owner_id: owner,
            kb_type: KbType::Local,
        },
        at,
    )
    .await
    .unwrap();
    id
}

async fn kb(s: &dyn Store, owner: UserId, name: &str) -> KbId {
    kb_at(s, owner, name, t(0)).await
}

fn new_doc(kb_id: KbId, path: &str, hash: &str) -> NewDocument {
    let name = path.rsplit('/').next().unwrap_or(path).to_owned();
    NewDocument {
        kb_id,
        name,
        path: path.into(),
        mime: "text/plain".into(),
        size: 42,
        content_hash: hash.into(),
        source_item_id: Some(format!("item-{path}")),
        web_url: Some(format!("https://drive.example/{path}")),
    }
}

fn hash(n: u32) -> String {
    format!("{n:064x}")
}

async fn doc_at(s: &dyn Store, kb_id: KbId, path: &str, hash: &str, at: DateTime<Utc>) -> Uuid {
    let id = Uuid::new_v4();
    s.create_document(id, new_doc(kb_id, path, hash), at)
        .await
        .unwrap();
    id
}

/// A processed document whose chunks are `chunks`.
async fn indexed(s: &dyn Store, kb_id: KbId, path: &str, chunks: &[&str]) -> Uuid {
    let id = doc_at(s, kb_id, path, &hash(rand_u32()), t(0)).await;
    let chunks: Vec<kbsync_core::Chunk> = chunks.iter().map(|c| (*c).into()).collect();
    s.complete_document(id, &chunks, t(1)).await.unwrap();
    id
}

fn rand_u32() -> u32 {
    Uuid::new_v4().as_u128() as u32
}

fn q<'a>(text: &'a str, reader: Reader) -> SearchQuery<'a> {
    SearchQuery {
        text,
        reader,
        kb_ids: &[],
        limit: 20,
    }
}

async fn search_ids(s: &dyn Store, query: SearchQuery<'_>) -> Vec<Uuid> {
    s.search(query)
        .await
        .unwrap()
        .into_iter()
        .map(|h| h.document_id)
        .collect()
}

fn page(limit: u32, offset: u64) -> Page {
    Page { limit, offset }
}

fn enc(text: &str) -> Encrypted {
    Encrypted {
        ciphertext: format!("ct-{text}"),
        key_id: "key1".into(),
    }
}

async fn kb_with_owner(s: &dyn Store) -> (UserId, KbId) {
    let owner = user(s, &format!("o{}@example.com", rand_u32()), Role::User).await;
    let kb_id = kb(s, owner, "connected").await;
    (owner, kb_id)
}

fn new_connection(kb_id: KbId, refresh: &str) -> NewConnection {
    NewConnection {
        kb_id,
        datasource: DatasourceKind::OneDrive,
        credentials: ConnectionCredentials::Delegated,
        refresh_token: Some(enc(refresh)),
        access_token: Some(StoredAccessToken {
            token: enc("access-0"),
            expires_at: t(3600),
        }),
        tenant: Some("tenant-1".into()),
    }
}

fn failure(n: u32) -> SyncFailure {
    SyncFailure {
        item_id: format!("item-{n}"),
        name: format!("file-{n}.pdf"),
        reason: format!("reason {n}"),
    }
}

fn outcome_with(status: SyncStatus, failures: Vec<SyncFailure>) -> SyncRunOutcome {
    SyncRunOutcome {
        status,
        processed: 1,
        failed: failures.len() as u64,
        deleted: 0,
        skipped: 0,
        quarantined: 0,
        total_found: 1 + failures.len() as u64,
        failures,
        phases: None,
    }
}

fn sorted(mut users: Vec<UserId>) -> Vec<UserId> {
    users.sort();
    users
}
