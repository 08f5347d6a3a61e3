//! Users, their API sessions, and sign-in throttling shared by all instances.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbsync_core::{Role, User, UserId};

use crate::Result;

#[derive(Debug, Clone)]
pub struct NewUser {
    pub email: String,
    /// An argon2 PHC string; the store never sees a password. `None` for an account that signs in only
    /// through an OpenID provider.
    pub password_hash: Option<String>,
    pub role: Role,
    pub display_name: Option<String>,
}

#[derive(Debug, Clone)]
pub struct UserCredentials {
    pub user: User,
    /// `None` when the account has no password (it signs in through an OpenID provider).
    pub password_hash: Option<String>,
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

/// An OpenID sign-in in flight, as the browser is sent to the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInFlowRecord {
    /// SHA-256 (hex) of the flow's `state`; the state itself is never stored.
    pub state_hash: String,
    /// SHA-256 (hex) of the secret in the starting browser's cookie.
    pub binding_hash: String,
    /// The local path to go to once signed in.
    pub next_path: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
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

/// Local accounts, the opaque bearer sessions signed in with them (stored only as the token's
/// SHA-256), and the failure counts that throttle sign-in.
#[async_trait]
pub trait UserStore: Send + Sync {
    // --- users -----------------------------------------------------------------------------

    /// Emails are unique regardless of case; a clash is `Conflict`.
    async fn create_user(&self, id: UserId, new: NewUser, now: DateTime<Utc>) -> Result<User>;
    async fn count_users(&self) -> Result<u64>;
    async fn get_user(&self, id: UserId) -> Result<User>;
    /// Looks the email up regardless of case.
    async fn get_credentials_by_email(&self, email: &str) -> Result<UserCredentials>;
    /// The users whose email is one of `emails`, compared case-insensitively (and ignoring
    /// surrounding whitespace), ordered by email; emails without a user are left out.
    async fn users_by_emails(&self, emails: &[String]) -> Result<Vec<User>>;
    /// Every user id (for link grants an admin allowed), in creation order.
    async fn all_user_ids(&self) -> Result<Vec<UserId>>;

    // --- identities at OpenID providers ---------------------------------------------------

    /// The account an OpenID provider's identity (`issuer` + `subject`, compared exactly) belongs to;
    /// `NotFound` when none does.
    async fn user_for_identity(&self, issuer: &str, subject: &str) -> Result<User>;
    /// Records that `issuer` + `subject` signs in as `user_id`. `Conflict` when that identity already
    /// belongs to an account; `InvalidReference` when the user does not exist.
    async fn link_identity(
        &self,
        issuer: &str,
        subject: &str,
        user_id: UserId,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Brings an account up to date with what its provider says at a sign-in: its email (`Conflict` when
    /// another account has it) and display name, and the identity's last sign-in time.
    async fn record_identity_sign_in(
        &self,
        issuer: &str,
        subject: &str,
        email: &str,
        display_name: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<User>;

    /// Records an OpenID sign-in in flight; a state hash already in use is `Conflict`.
    async fn create_sign_in_flow(&self, flow: SignInFlowRecord) -> Result<()>;
    /// Consumes a sign-in in flight: atomically deletes and returns it, so that of several
    /// concurrent callbacks exactly one proceeds. `NotFound` when unknown, taken, or expired at `now`.
    async fn take_sign_in_flow(&self, state_hash: &str, now: DateTime<Utc>) -> Result<SignInFlowRecord>;
    /// Deletes sign-ins in flight that expired by `now`; returns how many.
    async fn delete_expired_sign_in_flows(&self, now: DateTime<Utc>) -> Result<u64>;

    // --- API sessions (opaque bearer tokens, stored only as their SHA-256) -----------------

    async fn create_session(
        &self,
        token_hash: &str,
        user_id: UserId,
        created_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> Result<()>;
    /// The session's user; `NotFound` when the token is unknown or expired at `now`, or its user is
    /// disabled.
    async fn user_for_session(&self, token_hash: &str, now: DateTime<Utc>) -> Result<User>;
    async fn delete_session(&self, token_hash: &str) -> Result<()>;
    /// Deletes sessions expired at `now`; returns how many. Safe to run on every instance at once.
    async fn purge_expired_sessions(&self, now: DateTime<Utc>) -> Result<u64>;

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
    /// Gives back an attempt taken by [`begin_address_attempt`](UserStore::begin_address_attempt)
    /// that turned out to be a success.
    async fn give_back_address_attempt(&self, address: &str) -> Result<()>;
    /// Deletes account failures last recorded before `forget_before` and address windows ended
    /// by `now`; returns how many rows. Safe to run on every instance at once.
    async fn purge_login_failures(&self, now: DateTime<Utc>, forget_before: DateTime<Utc>) -> Result<u64>;
}
