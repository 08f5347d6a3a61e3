//! The SQL of [`AccountStore`](crate::AccountStore), the same text on both databases.
//!
//! Changes that could leave the instance without an enabled admin run in a write transaction that
//! first touches every enabled admin's row: PostgreSQL then holds their row locks, SQLite its write
//! lock, so two administrators demoting each other at once cannot both succeed.

use crate::Result;

/// An account's columns and how it signs in, from `users u`.
macro_rules! account_cols {
    () => {
        "u.id, u.email, u.role, u.display_name, u.disabled_at, u.kind, u.created_at, \
         u.password_hash IS NOT NULL AS has_password, \
         EXISTS (SELECT 1 FROM user_identities i WHERE i.user_id = u.id) AS has_provider_identity"
    };
}

pub(crate) use account_cols;

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct AccountRow {
    #[sqlx(flatten)]
    pub user: crate::sql::users::UserRow,
    pub has_password: bool,
    pub has_provider_identity: bool,
}

impl AccountRow {
    pub(crate) fn into_account(self) -> Result<crate::Account> {
        Ok(crate::Account {
            user: self.user.into_user()?,
            has_password: self.has_password,
            has_provider_identity: self.has_provider_identity,
        })
    }
}

/// Writes `impl AccountStore for $ty`. `$ty` provides what `sql/mod.rs` lists.
macro_rules! impl_account_store {
    ($ty:ty) => {
        impl $ty {
            /// In a write transaction: locks every enabled admin's row (see the module's doc), then
            /// refuses with [`LAST_ADMIN`](crate::accounts::LAST_ADMIN) when `id` is an enabled admin
            /// and no other enabled admin exists. `NotFound` for an unknown account.
            async fn guard_last_admin(
                tx: &mut DbConnection,
                id: &str,
                losing_admin: bool,
            ) -> $crate::Result<()> {
                sqlx::query("UPDATE users SET role = role WHERE role = 'admin' AND disabled_at IS NULL")
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                let row: Option<(String, Option<i64>)> =
                    sqlx::query_as("SELECT role, disabled_at FROM users WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                let (role, disabled_at) = row.ok_or($crate::StoreError::NotFound)?;
                if losing_admin && role == "admin" && disabled_at.is_none() {
                    let others: i64 = sqlx::query_scalar(
                        "SELECT COUNT(*) FROM users WHERE role = 'admin' AND disabled_at IS NULL AND id <> $1",
                    )
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                    if others == 0 {
                        return Err($crate::StoreError::Conflict(
                            $crate::accounts::LAST_ADMIN.to_owned(),
                        ));
                    }
                }
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::AccountStore for $ty {
            async fn list_accounts(
                &self,
                page: $crate::Page,
            ) -> $crate::Result<$crate::PageOf<$crate::Account>> {
                let rows = sqlx::query_as::<_, $crate::sql::accounts::AccountRow>(concat!(
                    "SELECT ",
                    $crate::sql::accounts::account_cols!(),
                    " FROM users u ORDER BY u.email_lower, u.id LIMIT $1 OFFSET $2"
                ))
                .bind(i64::from(page.limit))
                .bind($crate::convert::to_i64(page.offset))
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(Self::err)?;
                Ok($crate::PageOf {
                    items: $crate::convert::collect(rows, $crate::sql::accounts::AccountRow::into_account)?,
                    total: $crate::convert::to_u64(total)?,
                })
            }

            async fn get_account(&self, id: kbsync_core::UserId) -> $crate::Result<$crate::Account> {
                sqlx::query_as::<_, $crate::sql::accounts::AccountRow>(concat!(
                    "SELECT ",
                    $crate::sql::accounts::account_cols!(),
                    " FROM users u WHERE u.id = $1"
                ))
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?
                .into_account()
            }

            async fn create_service_account(
                &self,
                id: kbsync_core::UserId,
                email: &str,
                name: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<kbsync_core::User> {
                use $crate::convert::*;
                let created_at = truncate_ms(now)?;
                sqlx::query(
                    "INSERT INTO users (id, email, email_lower, password_hash, role, display_name, kind, created_at) \
                     VALUES ($1, $2, $3, NULL, 'user', $4, 'service', $5)",
                )
                .bind(id.to_string())
                .bind(email)
                .bind(email_key(email))
                .bind(name)
                .bind(ms(created_at))
                .execute(&self.pool)
                .await
                .map_err(|e| match Self::err(e) {
                    $crate::StoreError::Conflict(_) => {
                        $crate::StoreError::Conflict(format!("an account with email {email} (or that id)"))
                    }
                    other => other,
                })?;
                Ok(kbsync_core::User {
                    id,
                    email: email.to_owned(),
                    role: kbsync_core::Role::User,
                    display_name: Some(name.to_owned()),
                    disabled: false,
                    kind: kbsync_core::UserKind::Service,
                    created_at,
                })
            }

            async fn change_account(
                &self,
                id: kbsync_core::UserId,
                change: $crate::AccountChange,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<kbsync_core::User> {
                let uid = id.to_string();
                let losing_admin = change.role.is_some_and(|r| r != kbsync_core::Role::Admin)
                    || change.disabled == Some(true);
                let mut tx = self.begin_write().await?;
                Self::guard_last_admin(&mut *tx, &uid, losing_admin).await?;
                if let Some(role) = change.role {
                    sqlx::query("UPDATE users SET role = $2 WHERE id = $1")
                        .bind(&uid)
                        .bind(role.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                }
                match change.disabled {
                    Some(true) => {
                        // Keeps the first time it was disabled.
                        sqlx::query(
                            "UPDATE users SET disabled_at = COALESCE(disabled_at, $2) WHERE id = $1",
                        )
                        .bind(&uid)
                        .bind($crate::convert::ms(now))
                        .execute(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                            .bind(&uid)
                            .execute(&mut *tx)
                            .await
                            .map_err(Self::err)?;
                    }
                    Some(false) => {
                        sqlx::query("UPDATE users SET disabled_at = NULL WHERE id = $1")
                            .bind(&uid)
                            .execute(&mut *tx)
                            .await
                            .map_err(Self::err)?;
                    }
                    None => {}
                }
                let row = sqlx::query_as::<_, $crate::sql::users::UserRow>(concat!(
                    "SELECT ",
                    $crate::sql::users::user_cols!(),
                    " FROM users WHERE id = $1"
                ))
                .bind(&uid)
                .fetch_one(&mut *tx)
                .await
                .map_err(Self::err)?;
                tx.commit().await.map_err(Self::err)?;
                row.into_user()
            }

            async fn set_password_hash(
                &self,
                id: kbsync_core::UserId,
                phc: &str,
                keep_session: Option<&str>,
            ) -> $crate::Result<()> {
                let uid = id.to_string();
                let mut tx = self.begin_write().await?;
                let done = sqlx::query("UPDATE users SET password_hash = $2 WHERE id = $1")
                    .bind(&uid)
                    .bind(phc)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND ($2 IS NULL OR token_hash <> $2)")
                    .bind(&uid)
                    .bind(keep_session)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            async fn owned_kbs(&self, id: kbsync_core::UserId) -> $crate::Result<Vec<kbsync_core::KbId>> {
                let ids: Vec<String> = sqlx::query_scalar(
                    "SELECT id FROM knowledge_bases WHERE owner_id = $1 ORDER BY created_at, id",
                )
                .bind(id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                ids.iter().map(|id| $crate::convert::parse_uuid(id)).collect()
            }

            async fn delete_account(
                &self,
                id: kbsync_core::UserId,
                transfer_to: Option<kbsync_core::UserId>,
            ) -> $crate::Result<()> {
                let uid = id.to_string();
                let mut tx = self.begin_write().await?;
                Self::guard_last_admin(&mut *tx, &uid, true).await?;
                match transfer_to {
                    Some(to) if to == id => {
                        return Err($crate::StoreError::InvalidReference(
                            "knowledge bases cannot be transferred to the account being deleted".to_owned(),
                        ));
                    }
                    Some(to) => {
                        let kind: Option<String> = sqlx::query_scalar("SELECT kind FROM users WHERE id = $1")
                            .bind(to.to_string())
                            .fetch_optional(&mut *tx)
                            .await
                            .map_err(Self::err)?;
                        match kind.as_deref() {
                            Some("person") => {}
                            Some(_) => {
                                return Err($crate::StoreError::InvalidReference(
                                    "knowledge bases can be transferred only to a person's account".to_owned(),
                                ));
                            }
                            None => {
                                return Err($crate::StoreError::InvalidReference(format!("unknown user {to}")));
                            }
                        }
                        sqlx::query("UPDATE knowledge_bases SET owner_id = $2 WHERE owner_id = $1")
                            .bind(&uid)
                            .bind(to.to_string())
                            .execute(&mut *tx)
                            .await
                            .map_err(Self::err)?;
                    }
                    None => {
                        let owned: i64 =
                            sqlx::query_scalar("SELECT COUNT(*) FROM knowledge_bases WHERE owner_id = $1")
                                .bind(&uid)
                                .fetch_one(&mut *tx)
                                .await
                                .map_err(Self::err)?;
                        if owned > 0 {
                            return Err($crate::StoreError::Conflict(
                                $crate::accounts::STILL_OWNS_KNOWLEDGE_BASES.to_owned(),
                            ));
                        }
                    }
                }
                sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(&uid)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }
        }
    };
}

pub(crate) use impl_account_store;
