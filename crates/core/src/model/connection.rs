//! A knowledge base's connection to a datasource: the credentials a completed authorization
//! left, as the store keeps them (encrypted) and the OAuth manager and scheduler read them.

use chrono::{DateTime, Utc};

use super::KbId;
use crate::datasource::DatasourceKind;

/// A value encrypted at rest (the store's token cipher made it), with the id of the key that
/// made it, so keys can be rotated. `Debug` shows only the key id: the ciphertext stays out of
/// logs.
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

/// An access token as stored, so that every instance can use one that any instance obtained.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAccessToken {
    pub token: Encrypted,
    pub expires_at: DateTime<Utc>,
}

/// Whose authority a connection syncs with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ConnectionCredentials {
    /// A user signed in and delegated access (authorization code): the connection holds their refresh token
    /// and sees what they see.
    #[default]
    Delegated,
    /// The organisation's application itself (client credentials, configured by the operator): no user and
    /// no refresh token; it sees what an administrator consented the application to read.
    AppOnly,
}

impl ConnectionCredentials {
    /// Its name in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionCredentials::Delegated => "delegated",
            ConnectionCredentials::AppOnly => "app_only",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "delegated" => Some(ConnectionCredentials::Delegated),
            "app_only" => Some(ConnectionCredentials::AppOnly),
            _ => None,
        }
    }
}

/// The stored credentials of a knowledge base for a datasource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    pub kb_id: KbId,
    pub datasource: DatasourceKind,
    pub credentials: ConnectionCredentials,
    /// The user's refresh token; `None` for an app-only connection.
    pub refresh_token: Option<Encrypted>,
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

/// Who holds the single-flight refresh of a connection's tokens, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshLease {
    pub owner: String,
    pub until: DateTime<Utc>,
}
