//! The SQL of [`ConnectionStore`](crate::ConnectionStore): pending authorizations and connections,
//! the same text on both databases.

use kbsync_core::{Connection, ConnectionCredentials, Encrypted, RefreshLease, StoredAccessToken};

use crate::convert::{from_ms, parse_datasource, parse_uuid};
use crate::{OAuthState, Result};

macro_rules! connection_cols {
    () => {
        "kb_id, datasource, credentials, refresh_token_ciphertext, refresh_token_key_id, \
         access_token_ciphertext, access_token_key_id, access_expires_at, tenant, stored_at, \
         last_refreshed_at, needs_reauth, refresh_lease_owner, refresh_lease_until"
    };
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct OAuthStateRow {
    pub kb_id: String,
    pub user_id: String,
    pub datasource: String,
    pub code_verifier_ciphertext: String,
    pub code_verifier_key_id: String,
    pub binding_hash: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl OAuthStateRow {
    pub(crate) fn into_state(self) -> Result<OAuthState> {
        Ok(OAuthState {
            kb_id: parse_uuid(&self.kb_id)?,
            user_id: parse_uuid(&self.user_id)?,
            datasource: parse_datasource(&self.datasource)?,
            code_verifier: Encrypted {
                ciphertext: self.code_verifier_ciphertext,
                key_id: self.code_verifier_key_id,
            },
            binding_hash: self.binding_hash,
            created_at: from_ms(self.created_at)?,
            expires_at: from_ms(self.expires_at)?,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ConnectionRow {
    pub kb_id: String,
    pub datasource: String,
    pub credentials: String,
    pub refresh_token_ciphertext: Option<String>,
    pub refresh_token_key_id: Option<String>,
    pub access_token_ciphertext: Option<String>,
    pub access_token_key_id: Option<String>,
    pub access_expires_at: Option<i64>,
    pub tenant: Option<String>,
    pub stored_at: i64,
    pub last_refreshed_at: Option<i64>,
    pub needs_reauth: bool,
    pub refresh_lease_owner: Option<String>,
    pub refresh_lease_until: Option<i64>,
}

impl ConnectionRow {
    pub(crate) fn into_connection(self) -> Result<Connection> {
        let access_token = match (
            self.access_token_ciphertext,
            self.access_token_key_id,
            self.access_expires_at,
        ) {
            (Some(ciphertext), Some(key_id), Some(expires_at)) => Some(StoredAccessToken {
                token: Encrypted { ciphertext, key_id },
                expires_at: from_ms(expires_at)?,
            }),
            _ => None,
        };
        let refresh_lease = match (self.refresh_lease_owner, self.refresh_lease_until) {
            (Some(owner), Some(until)) => Some(RefreshLease {
                owner,
                until: from_ms(until)?,
            }),
            _ => None,
        };
        let credentials = ConnectionCredentials::parse(&self.credentials).ok_or_else(|| {
            crate::StoreError::Corrupt(format!("unknown connection credentials {:?}", self.credentials))
        })?;
        let refresh_token = match (self.refresh_token_ciphertext, self.refresh_token_key_id) {
            (Some(ciphertext), Some(key_id)) => Some(Encrypted { ciphertext, key_id }),
            _ => None,
        };
        Ok(Connection {
            kb_id: parse_uuid(&self.kb_id)?,
            datasource: parse_datasource(&self.datasource)?,
            credentials,
            refresh_token,
            access_token,
            tenant: self.tenant,
            stored_at: from_ms(self.stored_at)?,
            last_refreshed_at: self.last_refreshed_at.map(from_ms).transpose()?,
            needs_reauth: self.needs_reauth,
            refresh_lease,
        })
    }
}

/// Writes `impl ConnectionStore for $ty`. `$ty` provides what `sql/mod.rs` lists.
macro_rules! impl_connection_store {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::ConnectionStore for $ty {
            // --- pending authorizations ----------------------------------------------------

            async fn create_oauth_state(&self, state: $crate::NewOAuthState) -> $crate::Result<()> {
                use $crate::convert::ms;
                sqlx::query(
                    "INSERT INTO oauth_states (state_hash, kb_id, user_id, datasource, \
                     code_verifier_ciphertext, code_verifier_key_id, binding_hash, created_at, \
                     expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&state.state_hash)
                .bind(state.kb_id.to_string())
                .bind(state.user_id.to_string())
                .bind(state.datasource.as_str())
                .bind(&state.code_verifier.ciphertext)
                .bind(&state.code_verifier.key_id)
                .bind(&state.binding_hash)
                .bind(ms(state.created_at))
                .bind(ms(state.expires_at))
                .execute(&self.pool)
                .await
                .map_err(|e| match Self::err(e) {
                    $crate::StoreError::InvalidReference(_) => $crate::StoreError::InvalidReference(
                        format!("unknown knowledge base {} or user {}", state.kb_id, state.user_id),
                    ),
                    $crate::StoreError::Conflict(_) => {
                        $crate::StoreError::Conflict("oauth state".to_owned())
                    }
                    other => other,
                })?;
                Ok(())
            }

            async fn take_oauth_state(
                &self,
                state_hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<$crate::OAuthState> {
                let row = sqlx::query_as::<_, $crate::sql::connections::OAuthStateRow>(
                    "DELETE FROM oauth_states WHERE state_hash = $1 RETURNING kb_id, user_id, \
                     datasource, code_verifier_ciphertext, code_verifier_key_id, binding_hash, \
                     created_at, expires_at",
                )
                .bind(state_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?;
                if row.expires_at <= $crate::convert::ms(now) {
                    return Err($crate::StoreError::NotFound);
                }
                row.into_state()
            }

            async fn delete_expired_oauth_states(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<u64> {
                let done = sqlx::query("DELETE FROM oauth_states WHERE expires_at <= $1")
                    .bind($crate::convert::ms(now))
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                Ok(done.rows_affected())
            }

            // --- connections ---------------------------------------------------------------

            async fn get_connection(
                &self,
                kb_id: kbsync_core::KbId,
            ) -> $crate::Result<kbsync_core::Connection> {
                sqlx::query_as::<_, $crate::sql::connections::ConnectionRow>(concat!(
                    "SELECT ",
                    $crate::sql::connections::connection_cols!(),
                    " FROM connections WHERE kb_id = $1"
                ))
                .bind(kb_id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?
                .into_connection()
            }

            async fn upsert_connection(
                &self,
                new: $crate::NewConnection,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<kbsync_core::Connection> {
                use $crate::convert::ms;
                let kb = new.kb_id.to_string();
                let (access_ciphertext, access_key_id, access_expires_at) = match &new.access_token {
                    Some(a) => (
                        Some(a.token.ciphertext.clone()),
                        Some(a.token.key_id.clone()),
                        Some(ms(a.expires_at)),
                    ),
                    None => (None, None, None),
                };
                let mut tx = self.begin_write().await?;
                let row = sqlx::query_as::<_, $crate::sql::connections::ConnectionRow>(concat!(
                    "INSERT INTO connections (kb_id, datasource, refresh_token_ciphertext, \
                     refresh_token_key_id, access_token_ciphertext, access_token_key_id, \
                     access_expires_at, tenant, stored_at, last_refreshed_at, needs_reauth, \
                     refresh_lease_owner, refresh_lease_until, credentials) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, FALSE, NULL, NULL, $10) \
                     ON CONFLICT (kb_id) DO UPDATE SET datasource = excluded.datasource, \
                     credentials = excluded.credentials, \
                     refresh_token_ciphertext = excluded.refresh_token_ciphertext, \
                     refresh_token_key_id = excluded.refresh_token_key_id, \
                     access_token_ciphertext = excluded.access_token_ciphertext, \
                     access_token_key_id = excluded.access_token_key_id, \
                     access_expires_at = excluded.access_expires_at, tenant = excluded.tenant, \
                     stored_at = excluded.stored_at, last_refreshed_at = NULL, needs_reauth = FALSE, \
                     needs_reauth_since = NULL, refresh_lease_owner = NULL, refresh_lease_until = NULL \
                     RETURNING ",
                    $crate::sql::connections::connection_cols!()
                ))
                .bind(&kb)
                .bind(new.datasource.as_str())
                .bind(new.refresh_token.as_ref().map(|r| r.ciphertext.clone()))
                .bind(new.refresh_token.as_ref().map(|r| r.key_id.clone()))
                .bind(access_ciphertext)
                .bind(access_key_id)
                .bind(access_expires_at)
                .bind(&new.tenant)
                .bind(ms(now))
                .bind(new.credentials.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| match Self::err(e) {
                    $crate::StoreError::InvalidReference(_) => $crate::StoreError::InvalidReference(
                        format!("unknown knowledge base {}", new.kb_id),
                    ),
                    other => other,
                })?;
                sqlx::query(
                    "UPDATE knowledge_bases SET sync_status = 'idle' \
                     WHERE id = $1 AND sync_status = 'needs_reauth'",
                )
                .bind(&kb)
                .execute(&mut *tx)
                .await
                .map_err(Self::err)?;
                tx.commit().await.map_err(Self::err)?;
                row.into_connection()
            }

            async fn delete_connection(&self, kb_id: kbsync_core::KbId) -> $crate::Result<()> {
                let kb = kb_id.to_string();
                let mut tx = self.begin_write().await?;
                let deleted = sqlx::query("DELETE FROM connections WHERE kb_id = $1")
                    .bind(&kb)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                if deleted.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                sqlx::query(
                    "UPDATE knowledge_bases SET sync_status = 'idle' \
                     WHERE id = $1 AND sync_status = 'needs_reauth'",
                )
                .bind(&kb)
                .execute(&mut *tx)
                .await
                .map_err(Self::err)?;
                // Disconnected: the permissions it read no longer speak for the drive.
                Self::withdraw_document_access(&mut tx, &kb).await?;
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            async fn try_acquire_refresh_lease(
                &self,
                kb_id: kbsync_core::KbId,
                owner: &str,
                now: chrono::DateTime<chrono::Utc>,
                until: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<bool> {
                use $crate::convert::ms;
                let kb = kb_id.to_string();
                let taken = sqlx::query(
                    "UPDATE connections SET refresh_lease_owner = $2, refresh_lease_until = $4 \
                     WHERE kb_id = $1 AND (refresh_lease_owner IS NULL \
                     OR refresh_lease_until IS NULL OR refresh_lease_until <= $3)",
                )
                .bind(&kb)
                .bind(owner)
                .bind(ms(now))
                .bind(ms(until))
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                if taken.rows_affected() == 1 {
                    return Ok(true);
                }
                let exists = sqlx::query("SELECT 1 FROM connections WHERE kb_id = $1")
                    .bind(&kb)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(Self::err)?;
                match exists {
                    Some(_) => Ok(false),
                    None => Err($crate::StoreError::NotFound),
                }
            }

            async fn store_refreshed_tokens(
                &self,
                kb_id: kbsync_core::KbId,
                owner: &str,
                tokens: $crate::RefreshedTokens,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<bool> {
                use $crate::convert::ms;
                let (refresh_ciphertext, refresh_key_id) = match &tokens.refresh_token {
                    Some(r) => (Some(r.ciphertext.clone()), Some(r.key_id.clone())),
                    None => (None, None),
                };
                let done = sqlx::query(
                    "UPDATE connections SET \
                     refresh_token_ciphertext = COALESCE($3, refresh_token_ciphertext), \
                     refresh_token_key_id = COALESCE($4, refresh_token_key_id), \
                     access_token_ciphertext = $5, access_token_key_id = $6, access_expires_at = $7, \
                     last_refreshed_at = $8, needs_reauth = FALSE, needs_reauth_since = NULL, \
                     refresh_lease_owner = NULL, refresh_lease_until = NULL \
                     WHERE kb_id = $1 AND refresh_lease_owner = $2",
                )
                .bind(kb_id.to_string())
                .bind(owner)
                .bind(refresh_ciphertext)
                .bind(refresh_key_id)
                .bind(&tokens.access_token.token.ciphertext)
                .bind(&tokens.access_token.token.key_id)
                .bind(ms(tokens.access_token.expires_at))
                .bind(ms(now))
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn release_refresh_lease(
                &self,
                kb_id: kbsync_core::KbId,
                owner: &str,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "UPDATE connections SET refresh_lease_owner = NULL, refresh_lease_until = NULL \
                     WHERE kb_id = $1 AND refresh_lease_owner = $2",
                )
                .bind(kb_id.to_string())
                .bind(owner)
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(())
            }

            async fn mark_needs_reauth(
                &self,
                kb_id: kbsync_core::KbId,
                owner: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<bool> {
                let kb = kb_id.to_string();
                let mut tx = self.begin_write().await?;
                let marked = sqlx::query(
                    "UPDATE connections SET needs_reauth = TRUE, \
                     needs_reauth_since = CASE WHEN needs_reauth THEN COALESCE(needs_reauth_since, $3) \
                     ELSE $3 END, access_token_ciphertext = NULL, \
                     access_token_key_id = NULL, access_expires_at = NULL, \
                     refresh_lease_owner = NULL, refresh_lease_until = NULL \
                     WHERE kb_id = $1 AND refresh_lease_owner = $2",
                )
                .bind(&kb)
                .bind(owner)
                .bind($crate::convert::ms(now))
                .execute(&mut *tx)
                .await
                .map_err(Self::err)?;
                if marked.rows_affected() == 0 {
                    return Ok(false);
                }
                sqlx::query("UPDATE knowledge_bases SET sync_status = 'needs_reauth' WHERE id = $1")
                    .bind(&kb)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                tx.commit().await.map_err(Self::err)?;
                Ok(true)
            }
        }
    };
}

pub(crate) use impl_connection_store;

pub(crate) use connection_cols;
