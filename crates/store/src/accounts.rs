//! Account administration: the list of accounts with how each signs in, role and disabled changes
//! that never leave the instance without an enabled admin, password changes that end sessions,
//! service accounts, and deleting an account.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbsync_core::{KbId, Role, User, UserId};

use crate::{Page, PageOf, Result};

/// An account as administrators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub user: User,
    /// Whether it may sign in with a password.
    pub has_password: bool,
    /// Whether an OpenID provider's identity is linked to it.
    pub has_provider_identity: bool,
}

/// What an administrator changes on an account; `None` leaves a field as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AccountChange {
    pub role: Option<Role>,
    pub disabled: Option<bool>,
}

/// Why a change to an account was refused: the message an administrator reads (store errors are
/// `Conflict` with these texts).
pub const LAST_ADMIN: &str = "no enabled admin would remain: make another account admin first";
pub const STILL_OWNS_KNOWLEDGE_BASES: &str = "the account still owns knowledge bases";

#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Every account (service accounts included), ordered by email, with the total.
    async fn list_accounts(&self, page: Page) -> Result<PageOf<Account>>;
    async fn get_account(&self, id: UserId) -> Result<Account>;
    /// Creates a service account: no password, never signs in, role `user`. `Conflict` when the email
    /// (a synthetic one the caller makes) is taken.
    async fn create_service_account(
        &self,
        id: UserId,
        email: &str,
        name: &str,
        now: DateTime<Utc>,
    ) -> Result<User>;
    /// Changes an account's role and/or disabled flag in one transaction; disabling also deletes its
    /// sessions (its keys stop opening anything while it is disabled). `Conflict` ([`LAST_ADMIN`])
    /// when no enabled admin would remain; `NotFound` for an unknown account.
    async fn change_account(&self, id: UserId, change: AccountChange, now: DateTime<Utc>) -> Result<User>;
    /// Replaces an account's password hash and deletes its sessions, except the one whose token hash
    /// is `keep_session`. `NotFound` for an unknown account.
    async fn set_password_hash(&self, id: UserId, phc: &str, keep_session: Option<&str>) -> Result<()>;
    /// The knowledge bases an account owns.
    async fn owned_kbs(&self, id: UserId) -> Result<Vec<KbId>>;
    /// Deletes an account with its sessions, keys, grants, identities and principals. With
    /// `transfer_to`, its knowledge bases move to that account first (`InvalidReference` when it does
    /// not exist, is the same account, or is a service account); without, `Conflict` ([`STILL_OWNS_KNOWLEDGE_BASES`]) while it
    /// owns any. `Conflict` ([`LAST_ADMIN`]) when it is the last enabled admin; `NotFound` for an
    /// unknown account.
    async fn delete_account(&self, id: UserId, transfer_to: Option<UserId>) -> Result<()>;
}
