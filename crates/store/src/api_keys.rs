//! API keys: long-lived bearer credentials for programs, each acting as one account (a person, or a
//! service account) within a scope. Only the key's SHA-256 is stored, with a short prefix of the key
//! for lists.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kbsync_core::{ApiKey, ApiKeyScope, User, UserId};
use uuid::Uuid;

use crate::Result;

/// A key to store. The caller makes the key and hashes it; the store never sees the key.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub user_id: UserId,
    pub name: String,
    pub scope: ApiKeyScope,
    /// Hex SHA-256 of the whole key.
    pub key_hash: String,
    /// The key's first characters, shown in lists.
    pub prefix: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key with the account it acts as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyWithOwner {
    pub key: ApiKey,
    pub owner: User,
}

#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a key. `InvalidReference` when the account does not exist; `Conflict` when a key with
    /// the same hash exists (random keys never clash).
    async fn create_api_key(&self, id: Uuid, new: NewApiKey, now: DateTime<Utc>) -> Result<ApiKey>;
    /// The keys of one account, newest first.
    async fn list_api_keys(&self, user_id: UserId) -> Result<Vec<ApiKey>>;
    /// Every key with its account, newest first.
    async fn list_all_api_keys(&self) -> Result<Vec<KeyWithOwner>>;
    /// Deletes (revokes) a key; with `owner`, only when it belongs to that account. `NotFound` when
    /// there is no such key (or it belongs to someone else).
    async fn delete_api_key(&self, id: Uuid, owner: Option<UserId>) -> Result<()>;
    /// A key with its account, whatever its state. `NotFound` when there is no such key.
    async fn get_api_key(&self, id: Uuid) -> Result<KeyWithOwner>;
    /// Sets whether the key may assert the user a tool server request is for; returns the key.
    /// The store does not check whose key it is: the service allows it for service accounts'
    /// keys only. `NotFound` when there is no such key.
    async fn set_api_key_user_assertion(&self, id: Uuid, trusted: bool) -> Result<KeyWithOwner>;
    /// The key with this hash and its account, when it opens anything at `now`: `NotFound` when the
    /// hash is unknown, the key expired, or its account is disabled.
    async fn api_key_user(&self, key_hash: &str, now: DateTime<Utc>) -> Result<KeyWithOwner>;
    /// Records a use of the key at `now`, unless a use at or after `since` is already recorded (so a
    /// burst of requests writes once). Returns whether it wrote.
    async fn record_api_key_use(&self, id: Uuid, now: DateTime<Utc>, since: DateTime<Utc>) -> Result<bool>;
}
