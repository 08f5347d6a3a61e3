//! Inputs and outputs of the [`Store`](crate::Store) that are not domain types.

use chrono::{DateTime, Utc};
use kbsync_core::datasource::DatasourceKind;
use kbsync_core::{KbId, KbType, Role, User, UserId};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    /// An argon2 PHC string; the store never sees a password.
    pub password_hash: String,
    pub role: Role,
}

#[derive(Debug, Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LoginFailures {
    pub count: u32,
    pub last_failure_at: Option<DateTime<Utc>>,
}

/// How failed sign-ins to one account slow further attempts down: after `free_attempts`
/// failures, each further attempt must wait `first_delay · 2^(failures − free_attempts)`, at most
/// `max_delay`, after the previous one. Failures older than `forget_before` no longer count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginBackoff {
    pub free_attempts: u32,
    pub first_delay: chrono::Duration,
    pub max_delay: chrono::Duration,
    pub forget_before: DateTime<Utc>,
}

/// At most `max_failures` failed sign-ins from one client address per `window` (a fixed window
/// that starts with the first failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddressLimit {
    pub max_failures: u32,
    pub window: chrono::Duration,
}

/// Whether a sign-in attempt may be evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginAttempt {
    /// Go ahead; the attempt is already counted as a failure (`failures` of them now), until
    /// a success clears or gives it back.
    Allowed { failures: u32 },
    /// Refused without evaluation until `until`.
    Throttled { until: DateTime<Utc> },
}

#[derive(Debug, Clone)]
pub struct NewKnowledgeBase {
    pub name: String,
    pub description: String,
    pub owner_id: UserId,
    pub kb_type: KbType,
}

/// Fields of a knowledge base that can change; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct KbPatch {
    pub name: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewDocument {
    pub kb_id: KbId,
    pub name: String,
    pub path: String,
    pub mime: String,
    pub size: i64,
    pub content_hash: String,
    pub source_item_id: Option<String>,
    pub web_url: Option<String>,
}

/// Who is asking, for access filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// Reads everything.
    Admin,
    /// Reads what it owns or holds a grant on.
    User(UserId),
}

impl Reader {
    pub fn of(user: &User) -> Reader {
        if user.is_admin() {
            Reader::Admin
        } else {
            Reader::User(user.id)
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub offset: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PageOf<T> {
    pub items: Vec<T>,
    pub total: u64,
}

#[derive(Debug, Clone)]
pub struct SearchQuery<'a> {
    pub text: &'a str,
    pub reader: Reader,
    /// Restrict to these knowledge bases (still filtered by access); empty means all readable.
    pub kb_ids: &'a [KbId],
    pub limit: u32,
}

// --- OAuth connections -----------------------------------------------------------------------

/// A value encrypted by [`TokenCipher`](crate::TokenCipher), with the id of the key that made it.
/// `Debug` shows only the key id.
#[derive(Clone, PartialEq, Eq)]
pub struct Encrypted {
    pub ciphertext: String,
    pub key_id: String,
}

impl std::fmt::Debug for Encrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encrypted")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A pending authorization (the `state` of an authorize request), as it is created.
#[derive(Debug, Clone)]
pub struct NewOAuthState {
    /// SHA-256 of the state, lower-case hex: the state itself is never stored.
    pub state_hash: String,
    pub kb_id: KbId,
    /// Who started the connection.
    pub user_id: UserId,
    pub provider: DatasourceKind,
    /// The PKCE code verifier, encrypted.
    pub code_verifier: Encrypted,
    /// SHA-256 (lower-case hex) of the secret in the cookie of the browser that started the
    /// authorization: the callback completes only in that browser. The secret is never stored.
    pub binding_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// A pending authorization, as taken back by the callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthState {
    pub kb_id: KbId,
    pub user_id: UserId,
    pub provider: DatasourceKind,
    pub code_verifier: Encrypted,
    pub binding_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// An access token as stored, so that every instance can use one that any instance obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAccessToken {
    pub token: Encrypted,
    pub expires_at: DateTime<Utc>,
}

/// The credentials a completed authorization produced.
#[derive(Debug, Clone)]
pub struct NewConnection {
    pub kb_id: KbId,
    pub provider: DatasourceKind,
    pub refresh_token: Encrypted,
    /// The access token that came with the refresh token, when it should be reused.
    pub access_token: Option<StoredAccessToken>,
    /// The directory (tenant) the user signed in to, when known.
    pub tenant: Option<String>,
}

/// Tokens a refresh produced.
#[derive(Debug, Clone)]
pub struct RefreshedTokens {
    /// The rotated refresh token; `None` keeps the stored one (a server that does not rotate).
    pub refresh_token: Option<Encrypted>,
    pub access_token: StoredAccessToken,
}

/// The stored credentials of a knowledge base for a datasource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub kb_id: KbId,
    pub provider: DatasourceKind,
    pub refresh_token: Encrypted,
    pub access_token: Option<StoredAccessToken>,
    pub tenant: Option<String>,
    /// When the user connected (the refresh token was first stored).
    pub stored_at: DateTime<Utc>,
    pub last_refreshed_at: Option<DateTime<Utc>>,
    /// The refresh token was refused (revoked or expired): the user must connect again.
    pub needs_reauth: bool,
    /// The instance currently refreshing the tokens, and until when it may.
    pub refresh_lease: Option<RefreshLease>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshLease {
    pub owner: String,
    pub until: DateTime<Utc>,
}

/// Whether a source is a folder (followed through its change feed) or a single file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Folder,
    File,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Folder => "folder",
            SourceKind::File => "file",
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewSource {
    pub kb_id: KbId,
    pub provider: DatasourceKind,
    pub kind: SourceKind,
    pub drive_id: String,
    pub item_id: String,
    /// Display name and path, as the picker showed them.
    pub name: String,
    pub path: String,
}

/// One picked item a knowledge base syncs from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub id: uuid::Uuid,
    pub kb_id: KbId,
    pub provider: DatasourceKind,
    pub kind: SourceKind,
    pub drive_id: String,
    pub item_id: String,
    pub name: String,
    pub path: String,
    /// A folder's delta link or a file's last content hash; `None` until a round completed.
    pub cursor: Option<String>,
    /// How many files the engine's saved state at `cursor` holds, and how many of them are not
    /// brought in at their current content (to be retried); `None` when unknown. The state itself
    /// is read with [`crate::Store::source_state`], only when a run needs it.
    pub state_files: Option<u64>,
    pub state_pending: Option<u64>,
    /// The engine settings the saved state was decided under (the engine's own text).
    pub state_settings: Option<String>,
    /// When the source first answered 403/404 ([`crate::Store::mark_source_revoked`]); `None`
    /// while it is readable. While set, its documents are left out of search and its sharing
    /// grants nothing.
    pub revoked_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// One read grant that sync derived from a folder source's sharing: `user_id` may read the
/// knowledge base because `source_id`'s sharing names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SyncGrant {
    pub source_id: uuid::Uuid,
    pub user_id: UserId,
}

/// What the sync engine saves with a source's cursor: its state (its own serialization) and the
/// two counts a later run reads without parsing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SavedState<'a> {
    pub json: &'a str,
    /// Files inside the source's subtree.
    pub files: u64,
    /// Files not brought in at their current content (failed, to be retried by the next run).
    pub pending: u64,
    /// The engine settings the state was decided under (size limit, supported types).
    pub settings: &'a str,
}

/// What started a sync run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncTrigger {
    Manual,
    Scheduled,
    Webhook,
}

impl SyncTrigger {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncTrigger::Manual => "manual",
            SyncTrigger::Scheduled => "scheduled",
            SyncTrigger::Webhook => "webhook",
        }
    }
}

/// A file a sync run could not bring in, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncFailure {
    pub item_id: String,
    pub name: String,
    pub reason: String,
}

/// How a sync run ended, as recorded by [`Store::finish_sync_run`](crate::Store::finish_sync_run).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRunOutcome {
    pub status: kbsync_core::SyncStatus,
    pub processed: u64,
    pub failed: u64,
    pub deleted: u64,
    pub skipped: u64,
    pub total_found: u64,
    pub failures: Vec<SyncFailure>,
}

/// One recorded sync run; while it runs, its status is `syncing` and its counts are zero.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRun {
    pub id: uuid::Uuid,
    pub kb_id: KbId,
    pub trigger: SyncTrigger,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub outcome: SyncRunOutcome,
}

/// Where a document is, as a rename or move changes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentLocation {
    pub name: String,
    pub path: String,
    pub web_url: Option<String>,
}

/// A knowledge base the scheduler claimed, with when it was due (`None`: never synced, due at
/// once), so the caller can measure how late it started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedSync {
    pub kb_id: KbId,
    pub due_at: Option<DateTime<Utc>>,
}

/// What a lease holder learns when it renews its sync lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseRenewal {
    /// Still ours; carry on.
    Held,
    /// Still ours, and someone asked (possibly through another instance) to cancel the run.
    CancelRequested,
    /// Another instance took the lease over (ours had expired) or the knowledge base is gone.
    Lost,
}

/// How a finished (or abandoned) run leaves a knowledge base's schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRelease {
    /// When the scheduler should next consider the knowledge base.
    pub next_sync_at: DateTime<Utc>,
    /// Consecutive failed runs (0 after a run that did not fail), for the backoff.
    pub consecutive_failures: u32,
    /// Set when a run actually ran (a released-without-running lease leaves it unchanged).
    pub last_sync_at: Option<DateTime<Utc>>,
    /// The run's error for the KB view; `None` clears it.
    pub last_error: Option<String>,
}

/// Progress of the current run, persisted so every instance can report it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncProgress {
    pub run_id: Option<uuid::Uuid>,
    pub current: u64,
    pub total: u64,
    /// The file being worked on (or the last one finished).
    pub file: Option<String>,
}

/// A knowledge base's sync state as the store keeps it (ARCHITECTURE §1 "sync state", minus
/// what the connection holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncState {
    pub kb_id: KbId,
    pub status: kbsync_core::SyncStatus,
    pub progress: SyncProgress,
    pub last_error: Option<String>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub next_sync_at: Option<DateTime<Utc>>,
    /// The knowledge base's own interval; `None` means the server-wide default.
    pub interval_minutes: Option<u32>,
    pub consecutive_failures: u32,
    /// Whether some instance holds a live lease (a run is going) at the time asked.
    pub running: bool,
    /// A cancel was requested of the run going now (always false when none is running: a flag
    /// left by a run that died means nothing).
    pub cancel_requested: bool,
}
