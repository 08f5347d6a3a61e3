//! The SQL of [`ApiKeyStore`](crate::ApiKeyStore), the same text on both databases.

use kbsync_core::ApiKey;

use crate::Result;
use crate::convert::{from_ms, parse_enum, parse_uuid};

/// A key's columns (aliased so that they can sit beside an account's in a join), from `api_keys k`.
macro_rules! api_key_cols {
    () => {
        "k.id AS key_id, k.user_id AS key_user_id, k.name AS key_name, k.scope AS key_scope, \
         k.prefix AS key_prefix, k.created_at AS key_created_at, k.expires_at AS key_expires_at, \
         k.last_used_at AS key_last_used_at, k.trusted_user_assertion AS key_trusted_user_assertion"
    };
}

pub(crate) use api_key_cols;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ApiKeyRow {
    pub key_id: String,
    pub key_user_id: String,
    pub key_name: String,
    pub key_scope: String,
    pub key_prefix: String,
    pub key_created_at: i64,
    pub key_expires_at: Option<i64>,
    pub key_last_used_at: Option<i64>,
    pub key_trusted_user_assertion: bool,
}

impl ApiKeyRow {
    pub(crate) fn into_key(self) -> Result<ApiKey> {
        Ok(ApiKey {
            id: parse_uuid(&self.key_id)?,
            user_id: parse_uuid(&self.key_user_id)?,
            name: self.key_name,
            scope: parse_enum(&self.key_scope)?,
            prefix: self.key_prefix,
            created_at: from_ms(self.key_created_at)?,
            expires_at: self.key_expires_at.map(from_ms).transpose()?,
            last_used_at: self.key_last_used_at.map(from_ms).transpose()?,
            trusted_user_assertion: self.key_trusted_user_assertion,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct KeyWithOwnerRow {
    #[sqlx(flatten)]
    pub key: ApiKeyRow,
    #[sqlx(flatten)]
    pub owner: crate::sql::users::UserRow,
}

impl KeyWithOwnerRow {
    pub(crate) fn into_key_with_owner(self) -> Result<crate::KeyWithOwner> {
        Ok(crate::KeyWithOwner {
            key: self.key.into_key()?,
            owner: self.owner.into_user()?,
        })
    }
}

/// Writes `impl ApiKeyStore for $ty`. `$ty` provides what `sql/mod.rs` lists.
macro_rules! impl_api_key_store {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::ApiKeyStore for $ty {
            async fn create_api_key(
                &self,
                id: uuid::Uuid,
                new: $crate::NewApiKey,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<kbsync_core::ApiKey> {
                use $crate::convert::*;
                let created_at = truncate_ms(now)?;
                let expires_at = new.expires_at.map(truncate_ms).transpose()?;
                sqlx::query(
                    "INSERT INTO api_keys (id, user_id, name, scope, key_hash, prefix, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(id.to_string())
                .bind(new.user_id.to_string())
                .bind(&new.name)
                .bind(new.scope.as_str())
                .bind(&new.key_hash)
                .bind(&new.prefix)
                .bind(ms(created_at))
                .bind(expires_at.map(ms))
                .execute(&self.pool)
                .await
                .map_err(|e| match Self::err(e) {
                    $crate::StoreError::InvalidReference(_) => {
                        $crate::StoreError::InvalidReference(format!("unknown user {}", new.user_id))
                    }
                    $crate::StoreError::Conflict(_) => {
                        $crate::StoreError::Conflict("an API key with that id or hash".to_owned())
                    }
                    other => other,
                })?;
                Ok(kbsync_core::ApiKey {
                    id,
                    user_id: new.user_id,
                    name: new.name,
                    scope: new.scope,
                    prefix: new.prefix,
                    created_at,
                    expires_at,
                    last_used_at: None,
                    trusted_user_assertion: false,
                })
            }

            async fn list_api_keys(
                &self,
                user_id: kbsync_core::UserId,
            ) -> $crate::Result<Vec<kbsync_core::ApiKey>> {
                let rows = sqlx::query_as::<_, $crate::sql::api_keys::ApiKeyRow>(concat!(
                    "SELECT ",
                    $crate::sql::api_keys::api_key_cols!(),
                    " FROM api_keys k WHERE k.user_id = $1 ORDER BY k.created_at DESC, k.id DESC"
                ))
                .bind(user_id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                $crate::convert::collect(rows, $crate::sql::api_keys::ApiKeyRow::into_key)
            }

            async fn list_all_api_keys(&self) -> $crate::Result<Vec<$crate::KeyWithOwner>> {
                let rows = sqlx::query_as::<_, $crate::sql::api_keys::KeyWithOwnerRow>(concat!(
                    "SELECT ",
                    $crate::sql::api_keys::api_key_cols!(),
                    ", u.id, u.email, u.role, u.display_name, u.disabled_at, u.kind, u.created_at \
                     FROM api_keys k JOIN users u ON u.id = k.user_id \
                     ORDER BY k.created_at DESC, k.id DESC"
                ))
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                $crate::convert::collect(rows, $crate::sql::api_keys::KeyWithOwnerRow::into_key_with_owner)
            }

            async fn delete_api_key(
                &self,
                id: uuid::Uuid,
                owner: Option<kbsync_core::UserId>,
            ) -> $crate::Result<()> {
                let done = sqlx::query("DELETE FROM api_keys WHERE id = $1 AND ($2 IS NULL OR user_id = $2)")
                    .bind(id.to_string())
                    .bind(owner.map(|o| o.to_string()))
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                Ok(())
            }

            async fn set_api_key_user_assertion(
                &self,
                id: uuid::Uuid,
                trusted: bool,
            ) -> $crate::Result<$crate::KeyWithOwner> {
                let done = sqlx::query("UPDATE api_keys SET trusted_user_assertion = $2 WHERE id = $1")
                    .bind(id.to_string())
                    .bind(trusted)
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                self.get_api_key(id).await
            }

            async fn get_api_key(&self, id: uuid::Uuid) -> $crate::Result<$crate::KeyWithOwner> {
                sqlx::query_as::<_, $crate::sql::api_keys::KeyWithOwnerRow>(concat!(
                    "SELECT ",
                    $crate::sql::api_keys::api_key_cols!(),
                    ", u.id, u.email, u.role, u.display_name, u.disabled_at, u.kind, u.created_at \
                     FROM api_keys k JOIN users u ON u.id = k.user_id WHERE k.id = $1"
                ))
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?
                .into_key_with_owner()
            }

            async fn api_key_user(
                &self,
                key_hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<$crate::KeyWithOwner> {
                sqlx::query_as::<_, $crate::sql::api_keys::KeyWithOwnerRow>(concat!(
                    "SELECT ",
                    $crate::sql::api_keys::api_key_cols!(),
                    ", u.id, u.email, u.role, u.display_name, u.disabled_at, u.kind, u.created_at \
                     FROM api_keys k JOIN users u ON u.id = k.user_id \
                     WHERE k.key_hash = $1 AND (k.expires_at IS NULL OR k.expires_at > $2) \
                     AND u.disabled_at IS NULL"
                ))
                .bind(key_hash)
                .bind($crate::convert::ms(now))
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?
                .into_key_with_owner()
            }

            async fn record_api_key_use(
                &self,
                id: uuid::Uuid,
                now: chrono::DateTime<chrono::Utc>,
                since: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<bool> {
                let done = sqlx::query(
                    "UPDATE api_keys SET last_used_at = $2 \
                     WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
                )
                .bind(id.to_string())
                .bind($crate::convert::ms(now))
                .bind($crate::convert::ms(since))
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(done.rows_affected() > 0)
            }
        }
    };
}

pub(crate) use impl_api_key_store;
