//! The SQL both databases share, one file per area. Both use `$1`-style placeholders, millisecond
//! timestamps and text ids (see [`convert`](crate::convert)), so one text serves SQLite and
//! PostgreSQL; each file holds its area's row types (with their mapping to domain types) and a
//! macro that writes the area's trait impl for a store type. [`impl_store_areas!`] invokes them
//! all; `SqliteStore` and `PostgresStore` each invoke it once.
//!
//! What differs per database is written in `sqlite/` and `postgres/` and reached through inherent
//! items the store type provides:
//!
//! - `BACKEND: Backend`, `fn err(sqlx::Error) -> StoreError` (error mapping for that backend),
//!   a `pool` field, and `begin_write()`: a transaction that may write (SQLite takes the write
//!   lock up front);
//! - `migrate()` (migrations, `*/migrate.rs`);
//! - `insert_chunks(conn, document_id, kb_id, chunks)` and `complete_document_impl(id, chunks,
//!   now)` (`*/documents.rs`), which may use `write_completed_document` from
//!   [`documents`];
//! - `lock_name(conn, name)`: serializes the rest of a write transaction with the others that
//!   lock the same name (PostgreSQL: a transaction-scoped advisory lock; SQLite: nothing, its
//!   write transactions are serial already);
//! - `CLAIM_DUE_SYNCS`, built with [`schedule::claim_due_syncs_sql!`] and the database's lock
//!   clause;
//! - and, in the invoking module, the type alias `DbConnection` (the backend's connection type).
//!
//! Search differs throughout, so [`SearchStore`](crate::SearchStore) is implemented in
//! `sqlite/search.rs` and `postgres/search.rs` instead.
//!
//! Helpers one area calls inside another's transaction are inherent functions generated next to
//! the SQL they belong to: `withdraw_document_access` and `kb_exists` in
//! [`knowledge_bases`]. A macro calls another area's trait method by its full path
//! (`$crate::KnowledgeBaseStore::forget_sharing_reads(self, …)`), so the invoking module needs no
//! trait imports.

pub(crate) mod access;
pub(crate) mod accounts;
pub(crate) mod api_keys;
pub(crate) mod connections;
pub(crate) mod database;
pub(crate) mod documents;
pub(crate) mod knowledge_bases;
pub(crate) mod orphans;
pub(crate) mod publications;
pub(crate) mod runs;
pub(crate) mod schedule;
pub(crate) mod secrets;
pub(crate) mod sources;
pub(crate) mod subscriptions;
pub(crate) mod users;

/// Writes every area's trait impl whose SQL is shared (all but search) for `$ty`.
macro_rules! impl_store_areas {
    ($ty:ty) => {
        $crate::sql::database::impl_database_store!($ty);
        $crate::sql::users::impl_user_store!($ty);
        $crate::sql::knowledge_bases::impl_knowledge_base_store!($ty);
        $crate::sql::documents::impl_document_store!($ty);
        $crate::sql::connections::impl_connection_store!($ty);
        $crate::sql::sources::impl_source_store!($ty);
        $crate::sql::schedule::impl_schedule_store!($ty);
        $crate::sql::runs::impl_run_store!($ty);
        $crate::sql::access::impl_access_store!($ty);
        $crate::sql::accounts::impl_account_store!($ty);
        $crate::sql::api_keys::impl_api_key_store!($ty);
        $crate::sql::publications::impl_publication_store!($ty);
        $crate::sql::subscriptions::impl_subscription_store!($ty);
        $crate::sql::orphans::impl_orphan_blob_store!($ty);
        $crate::sql::secrets::impl_secret_store!($ty);
    };
}

pub(crate) use impl_store_areas;
