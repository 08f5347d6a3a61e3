//! Key rotation of stored secrets: every encrypted column (a connection's refresh and access
//! tokens, a pending authorization's PKCE verifier) is stored with the id of the key that
//! encrypted it ([`TokenCipher`]), so a rotation re-encrypts, row by row, what is not yet under
//! the current key. Each row is replaced only if it still holds the ciphertext that was read
//! (a compare-and-set), so a server that writes a fresh token meanwhile is never overwritten,
//! and an interrupted rotation simply runs again.

use async_trait::async_trait;
use kbsync_core::Encrypted;

use crate::{Result, TokenCipher};

/// Which encrypted column a stored secret is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretColumn {
    /// `connections.refresh_token_*`, keyed by knowledge base id.
    RefreshToken,
    /// `connections.access_token_*`, keyed by knowledge base id.
    AccessToken,
    /// `oauth_states.code_verifier_*`, keyed by the state's hash.
    CodeVerifier,
}

impl SecretColumn {
    pub const ALL: [SecretColumn; 3] = [Self::RefreshToken, Self::AccessToken, Self::CodeVerifier];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::RefreshToken => "refresh token",
            Self::AccessToken => "access token",
            Self::CodeVerifier => "PKCE verifier",
        }
    }
}

/// One stored encrypted value and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSecret {
    pub column: SecretColumn,
    /// The row's key: a knowledge base id (connections) or a state hash (pending authorizations).
    pub row: String,
    pub value: Encrypted,
}

/// The encrypted columns, for key rotation. Implemented by both stores; not part of
/// [`Store`](crate::Store): only the operator's `rotate-key` command uses it.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Every stored secret whose key id is not `key_id` (including rows without a key id).
    async fn secrets_not_under_key(&self, key_id: &str) -> Result<Vec<StoredSecret>>;
    /// Replaces `secret`'s value with `new` if the row still holds exactly `secret.value`'s
    /// ciphertext. Returns whether it did.
    async fn replace_secret(&self, secret: &StoredSecret, new: &Encrypted) -> Result<bool>;
}

/// What a rotation did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Rows re-encrypted under the current key.
    pub rotated: u64,
    /// Rows that neither key could decrypt (written under another key, or corrupt): left as
    /// they are.
    pub unreadable: u64,
    /// Rows not under the current key after the pass (0 when the rotation is complete).
    pub remaining: u64,
}

/// Re-encrypts under `cipher`'s current key every stored secret written under another key that
/// `cipher` can decrypt (its previous key, or a row without a key id), one row at a time. Safe
/// to run while servers run and to run again: rows already under the current key are not
/// touched.
pub async fn rotate_secrets<S: SecretStore + ?Sized>(
    store: &S,
    cipher: &TokenCipher,
) -> Result<RotationReport> {
    let mut report = RotationReport::default();
    for secret in store.secrets_not_under_key(cipher.key_id()).await? {
        match cipher.open(&secret.value) {
            Ok(plain) => {
                if store.replace_secret(&secret, &cipher.encrypt(&plain)).await? {
                    report.rotated += 1;
                }
            }
            Err(e) => {
                tracing::warn!(
                    column = secret.column.as_str(),
                    key_id = %secret.value.key_id,
                    error = %e,
                    "cannot re-encrypt a stored secret"
                );
                report.unreadable += 1;
            }
        }
    }
    report.remaining =
        u64::try_from(store.secrets_not_under_key(cipher.key_id()).await?.len()).unwrap_or(u64::MAX);
    Ok(report)
}
