//! Persistence for kbsync: SQLite (the embedded default) and PostgreSQL (several instances
//! sharing one database) behind one interface, plus the content-addressed [`BlobStore`]. All SQL
//! lives in this crate; both databases pass the same conformance suite (`tests/store/conformance/`).
//!
//! # Layout
//!
//! **The interface, by area.** Each area is a trait in its own module, with the parameter types
//! its methods take:
//!
//! | area | trait | module |
//! |---|---|---|
//! | the database itself (backend, migrations, ping) | [`DatabaseStore`] | `database` |
//! | users, sessions, login throttling | [`UserStore`] | `users` |
//! | knowledge bases, manual grants | [`KnowledgeBaseStore`] | `knowledge_bases` |
//! | documents and their chunks | [`DocumentStore`] | `documents` |
//! | full-text search | [`SearchStore`] | `search` |
//! | connections and pending OAuth authorizations | [`ConnectionStore`] | `connections` |
//! | sources, cursors and saved state | [`SourceStore`] | `sources` |
//! | scheduling, sync leases, sync state | [`ScheduleStore`] | `schedule` |
//! | sync runs and their failed files | [`RunStore`] | `runs` |
//! | document access lists, group members, user principals | [`AccessStore`] | `access` |
//! | account administration, service accounts | [`AccountStore`] | `accounts` |
//! | API keys | [`ApiKeyStore`] | `api_keys` |
//! | orphan blob candidates and the blob collector | [`OrphanBlobStore`] | `orphans` |
//! | encrypted columns, for key rotation (not part of [`Store`]) | [`SecretStore`] | `secrets` |
//!
//! [`Store`] is all of them at once, implemented for every type that implements them all, so
//! callers hold an `Arc<dyn Store>` (or take `S: Store`) and call any area's methods without
//! importing the area traits. Code that needs only one area may ask for just that trait; code
//! that calls methods on a concrete [`SqliteStore`] or [`PostgresStore`] imports the area traits
//! it uses (their `migrate` is also an inherent method, for opening a store by hand). The
//! domain types the store returns (knowledge bases, documents, sources, connections, sync runs,
//! sync state) are defined in `kbsync_core`.
//!
//! **The SQL both databases share** is in `sql/`, one file per area (`sql/sources.rs` holds every
//! statement about sources, with the row types it reads): a macro per area writes that area's
//! trait impl, and both store types invoke all of them. Both databases take the same SQL text:
//! `$1` placeholders, timestamps as milliseconds, ids as text (`convert`).
//!
//! **What differs per database** is in `sqlite/` and `postgres/`, by area: opening the database
//! (`mod.rs`), migrations (`migrate.rs`, with `migrations/sqlite` and `migrations/postgres`), how
//! chunks are written (`documents.rs`: SQLite batches them for FTS5, PostgreSQL computes their
//! `tsvector`), search (`search.rs`: FTS5 with bm25, or `tsvector` with a GIN index; the text
//! handling both share is `search_text`), and the lock clause of the scheduler's claim
//! (`CLAIM_DUE_SYNCS`). `sql/mod.rs` lists exactly what each database provides to the shared SQL.
//!
//! Errors: a missing row is [`StoreError::NotFound`]; a unique-key clash is
//! [`StoreError::Conflict`]; a reference to a row that does not exist is
//! [`StoreError::InvalidReference`]; a database that cannot be reached is
//! [`StoreError::Unavailable`].

mod access;
mod accounts;
mod api_keys;
mod blob;
mod connections;
mod convert;
mod crypto;
mod database;
mod documents;
mod error;
mod knowledge_bases;
mod orphans;
mod page;
mod postgres;
mod publications;
mod rank;
mod runs;
mod schedule;
mod search;
mod search_text;
mod secrets;
mod sources;
mod sql;
mod sqlite;
mod subscriptions;
mod users;

use std::sync::Arc;

pub use access::{AccessStore, DocumentAcl, EVERYONE, NamedGroup, acl_id};
pub use accounts::{Account, AccountChange, AccountStore, LAST_ADMIN, STILL_OWNS_KNOWLEDGE_BASES};
pub use api_keys::{ApiKeyStore, KeyWithOwner, NewApiKey};
pub use blob::{BlobError, BlobStore, HeldBlob, StoredBlob};
pub use connections::{ConnectionStore, NewConnection, NewOAuthState, OAuthState, RefreshedTokens};
pub use crypto::{CryptoError, TokenCipher};
pub use database::{Backend, DatabaseStore};
pub use documents::{DocumentLocation, DocumentStore, NewDocument, QUARANTINE_STRIKES, QuarantinedDocument};
pub use error::StoreError;
pub use knowledge_bases::{KbPatch, KnowledgeBaseStore, NewKnowledgeBase, Reader};
pub use orphans::{CollectedBlobs, OrphanBlobStore, collect_blobs};
pub use page::{Page, PageOf};
pub use postgres::PostgresStore;
pub use publications::{PUBLISH_HISTORY, PublicationStore};
pub use runs::{RunActivity, RunStore};
pub use schedule::{ClaimedSync, LeaseRenewal, ScheduleStore, SyncRelease};
pub use search::{RetrieveQuery, SEARCH_DEPTH, SearchQuery, SearchStore};
pub use secrets::{RotationReport, SecretColumn, SecretStore, StoredSecret, rotate_secrets};
pub use sources::{ItemSelection, NewSource, RoundPage, SavedItems, SourceItem, SourceStore};
pub use sqlite::SqliteStore;
pub use subscriptions::{DriveSubscription, SubscriptionStatus, SubscriptionStore, WatchedDrive};
pub use users::{
    AddressLimit, LoginAttempt, LoginBackoff, LoginFailures, NewUser, SignInFlowRecord, UserCredentials,
    UserStore,
};

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything kbsync persists: every area's trait at once. Implemented for every type that
/// implements them all; nothing implements it by hand. The area traits' methods are callable on
/// a `dyn Store` and on any `S: Store` without importing those traits.
pub trait Store:
    DatabaseStore
    + UserStore
    + KnowledgeBaseStore
    + DocumentStore
    + SearchStore
    + ConnectionStore
    + SourceStore
    + ScheduleStore
    + RunStore
    + AccessStore
    + AccountStore
    + ApiKeyStore
    + PublicationStore
    + SubscriptionStore
    + OrphanBlobStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: DatabaseStore
        + UserStore
        + KnowledgeBaseStore
        + DocumentStore
        + SearchStore
        + ConnectionStore
        + SourceStore
        + ScheduleStore
        + RunStore
        + AccessStore
        + AccountStore
        + ApiKeyStore
        + PublicationStore
        + SubscriptionStore
        + OrphanBlobStore
        + Send
        + Sync
        + 'static
{
}

/// Opens the store a URL names and runs its migrations: `sqlite://PATH` (created when missing) or
/// `postgres://…` / `postgresql://…`.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    let store: Arc<dyn Store> = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Arc::new(PostgresStore::connect(url).await?)
    } else if url.starts_with("sqlite:") {
        Arc::new(SqliteStore::connect(url).await?)
    } else {
        return Err(StoreError::InvalidUrl(
            "the database URL must start with sqlite: or postgres://".to_owned(),
        ));
    };
    store.migrate().await?;
    Ok(store)
}
