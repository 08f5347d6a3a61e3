//! Connections (a knowledge base's stored credentials for a datasource, with the single-flight
//! refresh lease) and the pending OAuth authorizations that create them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbsync_core::datasource::DatasourceKind;
use kbsync_core::{Connection, ConnectionCredentials, Encrypted, KbId, StoredAccessToken, UserId};

use crate::Result;

/// A pending authorization (the `state` of an authorize request), as it is created.
#[derive(Debug, Clone)]
pub struct NewOAuthState {
    /// SHA-256 of the state, lower-case hex: the state itself is never stored.
    pub state_hash: String,
    pub kb_id: KbId,
    /// Who started the connection.
    pub user_id: UserId,
    pub datasource: DatasourceKind,
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
    pub datasource: DatasourceKind,
    pub code_verifier: Encrypted,
    pub binding_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// The credentials a completed authorization produced (or, for an app-only connection, the record that the
/// knowledge base syncs as the organisation's application).
#[derive(Debug, Clone)]
pub struct NewConnection {
    pub kb_id: KbId,
    pub datasource: DatasourceKind,
    pub credentials: ConnectionCredentials,
    /// The user's refresh token: required for a delegated connection, absent for an app-only one.
    pub refresh_token: Option<Encrypted>,
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

/// Connections and pending authorizations. A pending authorization lives in the database (not
/// in process memory) so that any instance can serve the callback; its state is stored only as a
/// SHA-256 hash. Tokens are stored encrypted ([`TokenCipher`](crate::TokenCipher)).
#[async_trait]
pub trait ConnectionStore: Send + Sync {
    // --- pending authorizations ------------------------------------------------------------

    /// Records a pending authorization. An unknown knowledge base or user is
    /// `InvalidReference`; a state hash already in use is `Conflict`.
    async fn create_oauth_state(&self, state: NewOAuthState) -> Result<()>;
    /// Consumes a pending authorization: atomically deletes the row and returns it, so that of
    /// several concurrent takes exactly one succeeds. `NotFound` when the hash is unknown, already
    /// taken, or the state expired at `now` (an expired row is deleted too).
    async fn take_oauth_state(&self, state_hash: &str, now: DateTime<Utc>) -> Result<OAuthState>;
    /// Deletes every pending authorization expired at `now`; returns how many.
    async fn delete_expired_oauth_states(&self, now: DateTime<Utc>) -> Result<u64>;

    // --- connections -----------------------------------------------------------------------

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
}
