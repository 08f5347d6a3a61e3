//! Persistence for kbsync: one [`Store`] trait, implemented for SQLite (the embedded default) and
//! PostgreSQL (several instances sharing one database), plus the content-addressed [`BlobStore`].
//!
//! All SQL lives in this crate. Both implementations pass the same conformance suite
//! (`tests/store/conformance/`).

mod blob;
mod common;
mod crypto;
mod error;
mod postgres;
mod shared;
mod sqlite;
mod types;

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbsync_core::{
    AccessGrant, Document, DocumentId, KbId, KnowledgeBase, Permission, SearchHit, User, UserId,
};

pub use blob::{BlobError, BlobStore, StoredBlob};
pub use common::SEARCH_DEPTH;
pub use crypto::{CryptoError, TokenCipher};
pub use error::StoreError;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use types::*;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

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

/// Everything kbsync persists, behind one interface.
///
/// Errors: a missing row is [`StoreError::NotFound`]; a unique-key clash is
/// [`StoreError::Conflict`]; a reference to a row that does not exist is
/// [`StoreError::InvalidReference`]; a database that cannot be reached is
/// [`StoreError::Unavailable`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    fn backend(&self) -> Backend;

    /// Applies pending migrations; safe to call on every start and from several instances at once.
    async fn migrate(&self) -> Result<()>;

    /// Succeeds when the database answers a trivial query.
    async fn ping(&self) -> Result<()>;

    // --- users -----------------------------------------------------------------------------

    /// Emails are unique regardless of case; a clash is `Conflict`.
    async fn create_user(&self, id: UserId, new: NewUser, now: DateTime<Utc>) -> Result<User>;
    async fn count_users(&self) -> Result<u64>;
    async fn get_user(&self, id: UserId) -> Result<User>;
    /// Looks the email up regardless of case.
    async fn get_credentials_by_email(&self, email: &str) -> Result<UserCredentials>;

    // --- API sessions (opaque bearer tokens, stored only as their SHA-256) -----------------

    async fn create_session(
        &self,
        token_hash: &str,
        user_id: UserId,
        created_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()>;
    /// The session's user; `NotFound` when the token is unknown or expired at `now`.
    async fn user_for_session(&self, token_hash: &str, now: DateTime<Utc>) -> Result<User>;
    async fn delete_session(&self, token_hash: &str) -> Result<()>;

    // --- login throttling (shared by all instances) ----------------------------------------

    /// Failures recorded for an email (case-insensitive); zero when none.
    async fn login_failures(&self, email: &str) -> Result<LoginFailures>;
    /// Takes one sign-in attempt at an account (email, case-insensitive) under `backoff`, in one
    /// atomic statement: when the account is not waiting out a delay at `now`, the attempt is
    /// counted as a failure at once (a success then clears the count) and the next delay starts;
    /// otherwise nothing changes and the answer says until when to wait. However many attempts
    /// race, each failure count is handed out once, so no more than the free attempts get through.
    async fn begin_login_attempt(
        &self,
        email: &str,
        now: DateTime<Utc>,
        backoff: &LoginBackoff,
    ) -> Result<LoginAttempt>;
    async fn clear_login_failures(&self, email: &str) -> Result<()>;
    /// Takes one sign-in attempt from a client address under `limit`, atomically: counted as a
    /// failure in the address's current window (a success gives it back), refused once the
    /// window holds more than `max_failures`.
    async fn begin_address_attempt(
        &self,
        address: &str,
        now: DateTime<Utc>,
        limit: &AddressLimit,
    ) -> Result<LoginAttempt>;
    /// Gives back an attempt taken by [`begin_address_attempt`](Store::begin_address_attempt)
    /// that turned out to be a success.
    async fn give_back_address_attempt(&self, address: &str) -> Result<()>;

    // --- housekeeping (safe to run on every instance at once) ------------------------------

    /// Deletes sessions expired at `now`; returns how many.
    async fn purge_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64>;
    /// Deletes account failures last recorded before `forget_before` and address windows ended
    /// by `now`; returns how many rows.
    async fn purge_login_failures(&self, now: DateTime<Utc>, forget_before: DateTime<Utc>) -> Result<u64>;
    /// Deletes finished sync runs (with their failed files) that ended before `finished_before`,
    /// except each knowledge base's `keep_per_kb` most recent runs; running runs are never
    /// deleted. Returns how many runs.
    async fn purge_sync_runs(&self, finished_before: DateTime<Utc>, keep_per_kb: u32) -> Result<u64>;

    // --- knowledge bases -------------------------------------------------------------------

    async fn create_kb(&self, id: KbId, new: NewKnowledgeBase, now: DateTime<Utc>) -> Result<KnowledgeBase>;
    async fn get_kb(&self, id: KbId) -> Result<KnowledgeBase>;
    /// The knowledge bases a reader may read, newest first, with the total count.
    async fn list_readable_kbs(&self, reader: Reader, page: Page) -> Result<PageOf<KnowledgeBase>>;
    async fn update_kb(&self, id: KbId, patch: KbPatch, now: DateTime<Utc>) -> Result<KnowledgeBase>;
    /// Deletes the knowledge base with its documents, chunks and grants. Returns the content
    /// hashes that no remaining document references, so their blobs can be removed.
    async fn delete_kb(&self, id: KbId) -> Result<Vec<String>>;

    // --- access grants ---------------------------------------------------------------------

    /// The strongest permission any grant (manual or sync) gives this user on this knowledge base.
    async fn strongest_grant(&self, kb_id: KbId, user_id: UserId) -> Result<Option<Permission>>;
    async fn list_grants(&self, kb_id: KbId) -> Result<Vec<AccessGrant>>;
    /// Replaces the manual grants of a knowledge base (sync grants are untouched). A user listed
    /// under both gets write. An unknown user id is `InvalidReference` and changes nothing.
    async fn set_manual_grants(&self, kb_id: KbId, read: &[UserId], write: &[UserId]) -> Result<()>;

    // --- documents and their chunks --------------------------------------------------------

    /// Creates a document in status `pending`.
    async fn create_document(&self, id: DocumentId, new: NewDocument, now: DateTime<Utc>)
    -> Result<Document>;
    async fn get_document(&self, kb_id: KbId, id: DocumentId) -> Result<Document>;
    /// A knowledge base's documents ordered by path, with the total count.
    async fn list_documents(&self, kb_id: KbId, page: Page) -> Result<PageOf<Document>>;
    /// Atomically replaces the document's chunks and marks it `processed` (clearing any error).
    async fn complete_document(&self, id: DocumentId, chunks: &[String], now: DateTime<Utc>) -> Result<()>;
    /// Marks the document `failed` with a readable reason and removes any chunks it had.
    async fn fail_document(&self, id: DocumentId, error: &str, now: DateTime<Utc>) -> Result<()>;
    /// Deletes the document and its chunks. Returns its content hash when no other document
    /// references it any more (so the blob can be removed).
    async fn delete_document(&self, kb_id: KbId, id: DocumentId) -> Result<Option<String>>;
    /// Documents still `pending`, oldest first: work an earlier process did not finish.
    async fn pending_documents(&self, limit: u32) -> Result<Vec<Document>>;

    // --- search ----------------------------------------------------------------------------

    /// Full-text search over processed documents of the knowledge bases the reader may read
    /// (optionally narrowed to `kb_ids`), leaving out documents of a source marked revoked. One hit per document (its best chunk), best first.
    /// The query is plain user text: it is never interpreted as query syntax.
    async fn search(&self, query: SearchQuery<'_>) -> Result<Vec<SearchHit>>;

    // --- OAuth: pending authorizations -----------------------------------------------------
    //
    // A pending authorization lives in the database (not in process memory) so that any instance
    // can serve the callback. Its state is stored only as a SHA-256 hash.

    /// Records a pending authorization. An unknown knowledge base or user is
    /// `InvalidReference`; a state hash already in use is `Conflict`.
    async fn create_oauth_state(&self, state: NewOAuthState) -> Result<()>;
    /// Consumes a pending authorization: atomically deletes the row and returns it, so that of
    /// several concurrent takes exactly one succeeds. `NotFound` when the hash is unknown, already
    /// taken, or the state expired at `now` (an expired row is deleted too).
    async fn take_oauth_state(&self, state_hash: &str, now: DateTime<Utc>) -> Result<OAuthState>;
    /// Deletes every pending authorization expired at `now`; returns how many.
    async fn delete_expired_oauth_states(&self, now: DateTime<Utc>) -> Result<u64>;

    // --- OAuth: connections ----------------------------------------------------------------

    /// The stored connection of a knowledge base; `NotFound` when it has none.
    async fn get_connection(&self, kb_id: KbId) -> Result<Connection>;
    /// Stores the credentials of a completed authorization, replacing any earlier connection of
    /// the knowledge base: `stored_at` becomes `now`, `needs_reauth` false, and any refresh lease
    /// and refresh time are cleared. A knowledge base whose sync status was `needs_reauth` goes
    /// back to `idle`. An unknown knowledge base is `InvalidReference`.
    async fn upsert_connection(&self, new: NewConnection, now: DateTime<Utc>) -> Result<Connection>;
    /// Forgets the connection of a knowledge base (a sync status of `needs_reauth` goes back to
    /// `idle`: there is nothing left to re-authorize) and, in the same transaction, withdraws
    /// every read grant sync gave from its sources' sharing (manual grants stay); the sharing is
    /// read again after a reconnect. `NotFound` when it has none.
    async fn delete_connection(&self, kb_id: KbId) -> Result<()>;
    /// Takes the refresh lease of a connection for `owner` until `until`, when no one holds it or
    /// the holder's lease has expired at `now` (one atomic conditional update, so of several
    /// instances trying at once exactly one gets it). Returns whether `owner` now holds it; a lease
    /// `owner` itself holds is not taken again (false). `NotFound` when there is no connection.
    async fn try_acquire_refresh_lease(
        &self,
        kb_id: KbId,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> Result<bool>;
    /// Stores what a refresh produced and releases the lease, only while `owner` holds the lease:
    /// the rotated refresh token (when there is one), the access token with its expiry,
    /// `last_refreshed_at = now` and `needs_reauth = false`. Returns false, changing nothing, when
    /// `owner` does not hold the lease (it expired and was taken, or the user connected again).
    async fn store_refreshed_tokens(
        &self,
        kb_id: KbId,
        owner: &str,
        tokens: RefreshedTokens,
        now: DateTime<Utc>,
    ) -> Result<bool>;
    /// Releases the refresh lease if `owner` holds it (otherwise does nothing).
    async fn release_refresh_lease(&self, kb_id: KbId, owner: &str) -> Result<()>;
    /// Records that the refresh token was refused (revoked or expired), only while `owner` holds
    /// the refresh lease (so a refusal of an old token never marks a connection the user has just
    /// renewed): sets `needs_reauth` (since `now`, unless it was already set), drops the stored
    /// access token, releases the lease and sets the knowledge base's sync status to
    /// `needs_reauth`. Returns whether it did.
    async fn mark_needs_reauth(&self, kb_id: KbId, owner: &str, now: DateTime<Utc>) -> Result<bool>;
    /// Withdraws the sync grants of every knowledge base whose connection has needed
    /// re-authorization since `needs_reauth_since` or earlier (manual grants stay), and makes
    /// their next run read the sharing again. Returns those knowledge bases (only ones that still
    /// had sync grants, so calling it again returns nothing new).
    async fn withdraw_lapsed_sync_grants(&self, needs_reauth_since: DateTime<Utc>) -> Result<Vec<KbId>>;

    // --- sources and sync runs -------------------------------------------------------------

    /// Adds a source to a knowledge base. Adding an item the knowledge base already syncs from
    /// (same drive and item) is harmless: the existing source is returned unchanged. An unknown
    /// knowledge base is `InvalidReference`.
    async fn add_source(&self, id: uuid::Uuid, new: NewSource, now: DateTime<Utc>) -> Result<Source>;
    /// A knowledge base's sources, oldest first.
    async fn list_sources(&self, kb_id: KbId) -> Result<Vec<Source>>;
    /// Saves a source's cursor together with the engine's state at that cursor, in one write
    /// (`None` forgets them). `NotFound` when the source is gone.
    async fn set_source_cursor(
        &self,
        source_id: uuid::Uuid,
        cursor: Option<&str>,
        state: Option<SavedState<'_>>,
    ) -> Result<()>;
    /// Moves a source's cursor on without touching its saved state (a round that changed
    /// nothing). `NotFound` when the source is gone or has no cursor yet.
    async fn advance_source_cursor(&self, source_id: uuid::Uuid, cursor: &str) -> Result<()>;
    /// The engine's saved state of a source (`None` when it has none). `NotFound` when the source
    /// is gone.
    async fn source_state(&self, source_id: uuid::Uuid) -> Result<Option<String>>;
    /// When the knowledge base's sync grants were last computed from its sources' sharing
    /// ([`Store::replace_sync_grants`]); `None` when they must be computed again: never done, or
    /// sources were added or removed, or a user was created since. `NotFound` for an unknown
    /// knowledge base.
    async fn sharing_read_at(&self, kb_id: KbId) -> Result<Option<DateTime<Utc>>>;
    /// Makes the next run of one knowledge base (`Some`), or of every one (`None`: the sharing
    /// policy may have changed with the settings), read its sharing again. An unknown knowledge
    /// base is not an error.
    async fn forget_sharing_reads(&self, kb_id: Option<KbId>) -> Result<()>;
    /// Sets a knowledge base's sync status. `NotFound` when it does not exist.
    async fn set_sync_status(&self, kb_id: KbId, status: kbsync_core::SyncStatus) -> Result<()>;
    /// Marks a source that answered 403/404: `revoked_at` is set (an earlier mark is kept), its
    /// documents leave search (they are kept until the loss is confirmed), and the read grants
    /// only its sharing gave are withdrawn, in one transaction. `NotFound` when the source is gone.
    async fn mark_source_revoked(&self, source_id: uuid::Uuid, now: DateTime<Utc>) -> Result<()>;
    /// The source answers again: clears `revoked_at` (its documents are searchable again) and
    /// makes the next permission sync read the knowledge base's sharing. `NotFound` when the
    /// source is gone.
    async fn clear_source_revoked(&self, source_id: uuid::Uuid) -> Result<()>;
    /// The documents that came from a source (hidden ones included), ordered by path.
    async fn source_documents(&self, source_id: uuid::Uuid) -> Result<Vec<Document>>;
    /// The document of a knowledge base that mirrors a remote item, if any.
    async fn document_by_source_item(&self, kb_id: KbId, source_item_id: &str) -> Result<Option<Document>>;
    /// Creates or replaces the document of a knowledge base that mirrors `new.source_item_id`
    /// (required: `InvalidReference` without it): an existing document keeps its id, gets the new
    /// metadata and content hash, loses its chunks and goes back to `pending`; otherwise a
    /// `pending` document with `id` is created. Returns the document and the content hash it
    /// replaced when no document references that hash any more (so its blob can be removed).
    async fn upsert_source_document(
        &self,
        id: DocumentId,
        source_id: uuid::Uuid,
        new: NewDocument,
        now: DateTime<Utc>,
    ) -> Result<(Document, Option<String>)>;
    /// A rename or move: changes name, path and web URL only (content, chunks and status stay).
    async fn update_document_location(
        &self,
        kb_id: KbId,
        id: DocumentId,
        location: DocumentLocation,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Records the start of a sync run (status `syncing`, counts zero).
    async fn create_sync_run(
        &self,
        id: uuid::Uuid,
        kb_id: KbId,
        trigger: SyncTrigger,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Records how a run ended. `outcome.failures` are appended after the failures already
    /// recorded with [`record_sync_failures`](Store::record_sync_failures) (pass only those not
    /// recorded yet); the counts are taken as given. `NotFound` when the run is unknown.
    async fn finish_sync_run(
        &self,
        id: uuid::Uuid,
        outcome: &SyncRunOutcome,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// A knowledge base's most recent runs, newest first, with their failed files.
    async fn list_sync_runs(&self, kb_id: KbId, limit: u32) -> Result<Vec<SyncRun>>;

    // --- scheduling, leases and progress ---------------------------------------------------
    //
    // A sync lease (owner, expiry) marks the one instance running a knowledge base's sync. A lease
    // is live while `now < expiry`; an expired lease is stale and may be taken over, but until
    // someone takes it its owner still holds it (it can renew or release it).

    /// Claims up to `limit` due knowledge bases for `owner` until `lease_until`, in one atomic
    /// step (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: one UPDATE), so no two callers ever
    /// claim the same one. Due: its type is a datasource (not `local`), it has a source and a
    /// connection that is not `needs_reauth`, no live lease at `now` (an expired one is stale and
    /// taken over), and `next_sync_at` is unset or not after `now`. Taken in claim order: never
    /// scheduled (`next_sync_at` unset) first, then oldest `next_sync_at`, then by id; the result
    /// is in that order. Claiming clears a pending cancel request. A PostgreSQL claimer may come
    /// back with fewer than `limit` while due rows remain, when it skipped rows another claimer
    /// was taking: callers claim again on their next tick.
    async fn claim_due_syncs(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ClaimedSync>>;
    /// Takes the lease of one knowledge base whatever its schedule, type or connection (a manual
    /// run), when it is free or expired at `now`, and clears a pending cancel request. `false`
    /// when a live lease holds it (`owner`'s own included: not re-entrant). `NotFound` when the
    /// knowledge base does not exist.
    async fn try_claim_sync(
        &self,
        kb_id: KbId,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<bool>;
    /// Extends `owner`'s lease to `lease_until` (also one that expired but was not taken over)
    /// and reports whether a cancel was requested. `Lost` when another owner holds the lease,
    /// none does, or the knowledge base is gone.
    async fn renew_sync_lease(
        &self,
        kb_id: KbId,
        owner: &str,
        lease_until: DateTime<Utc>,
    ) -> Result<LeaseRenewal>;
    /// Ends `owner`'s lease and records the schedule that follows: clears the lease and any
    /// cancel request, sets `next_sync_at`, the consecutive failures and the last error (`None`
    /// clears it), and `last_sync_at` only when given. A lease `owner` no longer holds is left
    /// alone and nothing changes (returns `false`; also for an unknown knowledge base).
    async fn release_sync(&self, kb_id: KbId, owner: &str, release: &SyncRelease) -> Result<bool>;
    /// Asks whoever runs the knowledge base's sync to stop (the holder sees it on its next
    /// renew); `false`, changing nothing, when no run holds a live lease at `now`. `NotFound`
    /// when the knowledge base does not exist.
    async fn request_sync_cancel(&self, kb_id: KbId, now: DateTime<Utc>) -> Result<bool>;
    /// Sets when the scheduler next considers the knowledge base (e.g. now, after sources were
    /// added or a connection restored). `NotFound` when it does not exist.
    async fn schedule_sync(&self, kb_id: KbId, next_sync_at: DateTime<Utc>) -> Result<()>;
    /// Sets (or with `None` clears) a knowledge base's own sync interval; `next_sync_at` is left
    /// as it is. `NotFound` when it does not exist.
    async fn set_sync_interval(&self, kb_id: KbId, minutes: Option<u32>) -> Result<()>;
    /// Persists the current run's progress (it stays after the run, as the last run's). `NotFound`
    /// when the knowledge base is gone.
    async fn set_sync_progress(&self, kb_id: KbId, progress: &SyncProgress) -> Result<()>;
    /// A knowledge base's sync state; `running` is judged against `now`. `NotFound` when it does
    /// not exist.
    async fn get_sync_state(&self, kb_id: KbId, now: DateTime<Utc>) -> Result<SyncState>;
    /// Marks every run of the knowledge base still recorded as `syncing` as `failed` with
    /// `finished_at = now` (a process died mid-run); returns how many there were. Call it only
    /// while holding the knowledge base's lease, before creating the new run.
    async fn close_interrupted_runs(&self, kb_id: KbId, now: DateTime<Utc>) -> Result<u64>;
    /// Appends failed files to a run as they happen (so they survive a crash and every instance
    /// can report them), after those already recorded; `finish_sync_run` appends its own after
    /// these. Concurrent appends to one run are safe. `NotFound` when the run is unknown.
    async fn record_sync_failures(&self, run_id: uuid::Uuid, failures: &[SyncFailure]) -> Result<()>;
    /// A run's failed files after the first `skip`, in the order they were recorded (empty for
    /// an unknown run).
    async fn list_sync_failures(&self, run_id: uuid::Uuid, skip: u64) -> Result<Vec<SyncFailure>>;
    /// Removes a source of a knowledge base and the documents that came from it (with their
    /// chunks, so they leave search at once), and withdraws the sync grants that only its sharing
    /// gave, in one transaction; returns the content hashes, sorted, that no remaining document
    /// (in any knowledge base) references, so their blobs can be removed. `NotFound` when the
    /// source is not one of that knowledge base's.
    async fn delete_source(&self, kb_id: KbId, source_id: uuid::Uuid) -> Result<Vec<String>>;
    /// Replaces, in one transaction, the knowledge base's grants that came from sync with read
    /// grants for the users in `grants`, each recorded with the source whose sharing gave it
    /// (duplicates ignored); a source marked revoked grants nothing; grants given by hand are
    /// untouched (a user may hold both). `NotFound` when the knowledge base does not exist; an
    /// unknown user, or a source that is not one of the knowledge base's, is `InvalidReference`
    /// and changes nothing. Records `now` as the time the sharing was read
    /// ([`Store::sharing_read_at`]).
    async fn replace_sync_grants(&self, kb_id: KbId, grants: &[SyncGrant], now: DateTime<Utc>) -> Result<()>;
    /// The users whose email is one of `emails`, compared case-insensitively (and ignoring
    /// surrounding whitespace), ordered by email; emails without a user are left out.
    async fn users_by_emails(&self, emails: &[String]) -> Result<Vec<User>>;
    /// Every user id (for link grants an admin allowed), in creation order.
    async fn all_user_ids(&self) -> Result<Vec<UserId>>;
}
