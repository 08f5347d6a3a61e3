//! The SQL of [`UserStore`](crate::UserStore): users, sessions and login throttling, the same text on
//! both databases.

use kbsync_core::User;

use crate::Result;
use crate::convert::{from_ms, parse_enum, parse_uuid};

macro_rules! user_cols {
    () => {
        "id, email, role, display_name, disabled_at, kind, created_at"
    };
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct UserRow {
    pub id: String,
    pub email: String,
    pub role: String,
    pub display_name: Option<String>,
    pub disabled_at: Option<i64>,
    pub kind: String,
    pub created_at: i64,
}

impl UserRow {
    pub(crate) fn into_user(self) -> Result<User> {
        Ok(User {
            id: parse_uuid(&self.id)?,
            email: self.email,
            role: parse_enum(&self.role)?,
            display_name: self.display_name,
            disabled: self.disabled_at.is_some(),
            kind: parse_enum(&self.kind)?,
            created_at: from_ms(self.created_at)?,
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CredentialsRow {
    #[sqlx(flatten)]
    pub user: UserRow,
    pub password_hash: Option<String>,
}

/// Writes `impl UserStore for $ty`. `$ty` provides what `sql/mod.rs` lists.
macro_rules! impl_user_store {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::UserStore for $ty {
            // --- users ---------------------------------------------------------------------

            async fn create_user(
                &self,
                id: kbsync_core::UserId,
                new: $crate::NewUser,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<kbsync_core::User> {
                use $crate::convert::*;
                let created_at = truncate_ms(now)?;
                sqlx::query(
                    "INSERT INTO users (id, email, email_lower, password_hash, role, display_name, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(id.to_string())
                .bind(&new.email)
                .bind(email_key(&new.email))
                .bind(&new.password_hash)
                .bind(new.role.as_str())
                .bind(&new.display_name)
                .bind(ms(created_at))
                .execute(&self.pool)
                .await
                .map_err(|e| match Self::err(e) {
                    $crate::StoreError::Conflict(_) => $crate::StoreError::Conflict(format!(
                        "a user with email {} (or that id) already exists",
                        new.email
                    )),
                    other => other,
                })?;
                // A new account may be one a drive's sharing names: every knowledge base reads its
                // sharing again on its next run.
                $crate::KnowledgeBaseStore::forget_sharing_reads(self, None).await?;
                Ok(kbsync_core::User {
                    id,
                    email: new.email,
                    role: new.role,
                    display_name: new.display_name,
                    disabled: false,
                    kind: kbsync_core::UserKind::Person,
                    created_at,
                })
            }

            async fn count_users(&self) -> $crate::Result<u64> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(Self::err)?;
                $crate::convert::to_u64(n)
            }

            async fn get_user(&self, id: kbsync_core::UserId) -> $crate::Result<kbsync_core::User> {
                sqlx::query_as::<_, $crate::sql::users::UserRow>(concat!(
                    "SELECT ",
                    $crate::sql::users::user_cols!(),
                    " FROM users WHERE id = $1"
                ))
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?
                .into_user()
            }

            async fn get_credentials_by_email(&self, email: &str) -> $crate::Result<$crate::UserCredentials> {
                let row = sqlx::query_as::<_, $crate::sql::users::CredentialsRow>(concat!(
                    "SELECT ",
                    $crate::sql::users::user_cols!(),
                    ", password_hash FROM users WHERE email_lower = $1"
                ))
                .bind($crate::convert::email_key(email))
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?;
                Ok($crate::UserCredentials {
                    user: row.user.into_user()?,
                    password_hash: row.password_hash,
                })
            }

            async fn users_by_emails(&self, emails: &[String]) -> $crate::Result<Vec<kbsync_core::User>> {
                let keys: std::collections::BTreeSet<String> = emails
                    .iter()
                    .map(|e| $crate::convert::email_key(e))
                    .collect();
                let keys: Vec<String> = keys.into_iter().collect();
                let mut users = Vec::new();
                // Bounded batches keep every statement under the backends' bind-parameter limits.
                for batch in keys.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::new(concat!(
                        "SELECT ",
                        $crate::sql::users::user_cols!(),
                        " FROM users WHERE email_lower IN ("
                    ));
                    let mut list = qb.separated(", ");
                    for key in batch {
                        list.push_bind(key.clone());
                    }
                    qb.push(")");
                    let rows: Vec<$crate::sql::users::UserRow> = qb
                        .build_query_as()
                        .fetch_all(&self.pool)
                        .await
                        .map_err(Self::err)?;
                    for row in rows {
                        users.push(row.into_user()?);
                    }
                }
                users.sort_by(|a, b| {
                    a.email
                        .to_lowercase()
                        .cmp(&b.email.to_lowercase())
                        .then(a.id.cmp(&b.id))
                });
                Ok(users)
            }

            async fn all_user_ids(&self) -> $crate::Result<Vec<kbsync_core::UserId>> {
                let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM users ORDER BY created_at, id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(Self::err)?;
                ids.iter()
                    .map(|id| $crate::convert::parse_uuid(id))
                    .collect()
            }

            // --- identities at OpenID providers -------------------------------------------

            async fn user_for_identity(&self, issuer: &str, subject: &str) -> $crate::Result<kbsync_core::User> {
                sqlx::query_as::<_, $crate::sql::users::UserRow>(
                    "SELECT u.id, u.email, u.role, u.display_name, u.disabled_at, u.kind, u.created_at \
                     FROM user_identities i JOIN users u ON u.id = i.user_id \
                     WHERE i.issuer = $1 AND i.subject = $2",
                )
                .bind(issuer)
                .bind(subject)
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?
                .into_user()
            }

            async fn link_identity(
                &self,
                issuer: &str,
                subject: &str,
                user_id: kbsync_core::UserId,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                let now = $crate::convert::ms(now);
                sqlx::query(
                    "INSERT INTO user_identities (issuer, subject, user_id, created_at, last_sign_in_at) \
                     VALUES ($1, $2, $3, $4, $4)",
                )
                .bind(issuer)
                .bind(subject)
                .bind(user_id.to_string())
                .bind(now)
                .execute(&self.pool)
                .await
                .map_err(|e| match Self::err(e) {
                    $crate::StoreError::Conflict(_) => {
                        $crate::StoreError::Conflict("that identity already belongs to an account".to_owned())
                    }
                    $crate::StoreError::InvalidReference(_) => {
                        $crate::StoreError::InvalidReference(format!("unknown user {user_id}"))
                    }
                    other => other,
                })?;
                Ok(())
            }

            async fn record_identity_sign_in(
                &self,
                issuer: &str,
                subject: &str,
                email: &str,
                display_name: Option<&str>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<kbsync_core::User> {
                let mut tx = self.pool.begin().await.map_err(Self::err)?;
                let user_id: String = sqlx::query_scalar(
                    "UPDATE user_identities SET last_sign_in_at = $3 \
                     WHERE issuer = $1 AND subject = $2 RETURNING user_id",
                )
                .bind(issuer)
                .bind(subject)
                .bind($crate::convert::ms(now))
                .fetch_optional(&mut *tx)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?;
                let row = sqlx::query_as::<_, $crate::sql::users::UserRow>(concat!(
                    "UPDATE users SET email = $2, email_lower = $3, display_name = $4 WHERE id = $1 RETURNING ",
                    $crate::sql::users::user_cols!()
                ))
                .bind(&user_id)
                .bind(email)
                .bind($crate::convert::email_key(email))
                .bind(display_name)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| match Self::err(e) {
                    $crate::StoreError::Conflict(_) => $crate::StoreError::Conflict(format!(
                        "another account already has the email {email}"
                    )),
                    other => other,
                })?;
                tx.commit().await.map_err(Self::err)?;
                row.into_user()
            }

            async fn create_sign_in_flow(&self, flow: $crate::SignInFlowRecord) -> $crate::Result<()> {
                use $crate::convert::ms;
                sqlx::query(
                    "INSERT INTO sign_in_flows (state_hash, binding_hash, next_path, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&flow.state_hash)
                .bind(&flow.binding_hash)
                .bind(&flow.next_path)
                .bind(ms(flow.created_at))
                .bind(ms(flow.expires_at))
                .execute(&self.pool)
                .await
                .map_err(|e| match Self::err(e) {
                    $crate::StoreError::Conflict(_) => $crate::StoreError::Conflict("sign-in state".to_owned()),
                    other => other,
                })?;
                Ok(())
            }

            async fn take_sign_in_flow(
                &self,
                state_hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<$crate::SignInFlowRecord> {
                let row: Option<(String, String, String, i64, i64)> = sqlx::query_as(
                    "DELETE FROM sign_in_flows WHERE state_hash = $1 \
                     RETURNING state_hash, binding_hash, next_path, created_at, expires_at",
                )
                .bind(state_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?;
                let (state_hash, binding_hash, next_path, created_at, expires_at) =
                    row.ok_or($crate::StoreError::NotFound)?;
                if expires_at <= $crate::convert::ms(now) {
                    return Err($crate::StoreError::NotFound);
                }
                Ok($crate::SignInFlowRecord {
                    state_hash,
                    binding_hash,
                    next_path,
                    created_at: $crate::convert::from_ms(created_at)?,
                    expires_at: $crate::convert::from_ms(expires_at)?,
                })
            }

            async fn delete_expired_sign_in_flows(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<u64> {
                let done = sqlx::query("DELETE FROM sign_in_flows WHERE expires_at <= $1")
                    .bind($crate::convert::ms(now))
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                Ok(done.rows_affected())
            }

            // --- sessions ------------------------------------------------------------------

            async fn create_session(
                &self,
                token_hash: &str,
                user_id: kbsync_core::UserId,
                created_at: chrono::DateTime<chrono::Utc>,
                expires_at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                use $crate::convert::ms;
                sqlx::query(
                    "INSERT INTO sessions (token_hash, user_id, created_at, expires_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(token_hash)
                .bind(user_id.to_string())
                .bind(ms(created_at))
                .bind(ms(expires_at))
                .execute(&self.pool)
                .await
                .map_err(|e| match Self::err(e) {
                    $crate::StoreError::InvalidReference(_) => {
                        $crate::StoreError::InvalidReference(format!("unknown user {user_id}"))
                    }
                    $crate::StoreError::Conflict(_) => {
                        $crate::StoreError::Conflict("session token".to_owned())
                    }
                    other => other,
                })?;
                Ok(())
            }

            async fn user_for_session(
                &self,
                token_hash: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<kbsync_core::User> {
                sqlx::query_as::<_, $crate::sql::users::UserRow>(
                    "SELECT u.id, u.email, u.role, u.display_name, u.disabled_at, u.kind, u.created_at FROM sessions s \
                     JOIN users u ON u.id = s.user_id \
                     WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL",
                )
                .bind(token_hash)
                .bind($crate::convert::ms(now))
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?
                .into_user()
            }

            async fn delete_session(&self, token_hash: &str) -> $crate::Result<()> {
                sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
                    .bind(token_hash)
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                Ok(())
            }

            async fn purge_expired_sessions(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<u64> {
                let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
                    .bind($crate::convert::ms(now))
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                Ok(done.rows_affected())
            }

            // --- login throttling ----------------------------------------------------------

            async fn login_failures(&self, email: &str) -> $crate::Result<$crate::LoginFailures> {
                let row: Option<(i64, i64)> =
                    sqlx::query_as("SELECT count, last_failure_at FROM login_failures WHERE email = $1")
                        .bind($crate::convert::email_key(email))
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(Self::err)?;
                match row {
                    None => Ok($crate::LoginFailures::default()),
                    Some((count, last)) => Ok($crate::LoginFailures {
                        count: u32::try_from(count).unwrap_or(u32::MAX),
                        last_failure_at: Some($crate::convert::from_ms(last)?),
                    }),
                }
            }

            async fn begin_login_attempt(
                &self,
                email: &str,
                now: chrono::DateTime<chrono::Utc>,
                backoff: &$crate::LoginBackoff,
            ) -> $crate::Result<$crate::LoginAttempt> {
                use $crate::convert::{email_key, from_ms, ms};
                let key = email_key(email);
                let free = i64::from(backoff.free_attempts);
                let first = backoff.first_delay.num_milliseconds().max(0);
                let max = backoff.max_delay.num_milliseconds().max(0);
                // The delay owed after the first failure (non-zero only without free attempts).
                let delay_after_one = match backoff.free_attempts {
                    0 => first.saturating_mul(2).min(max),
                    1 => first.min(max),
                    _ => 0,
                };
                // One statement decides and counts: the update happens only when the account
                // is not waiting out a delay (or its failures are forgotten), so racing attempts
                // each get their own count and those past the free ones find the delay running.
                // The delay doubles from `first` at the free-th failure up to `max`.
                let allowed: Option<i64> = sqlx::query_scalar(
                    "INSERT INTO login_failures (email, count, last_failure_at, delay_ms, locked_until) \
                     VALUES ($1, 1, $2, $3, $2 + $3) \
                     ON CONFLICT (email) DO UPDATE SET \
                     count = CASE WHEN login_failures.last_failure_at < $7 THEN 1 \
                       ELSE login_failures.count + 1 END, \
                     delay_ms = CASE WHEN login_failures.last_failure_at < $7 THEN $3 \
                       WHEN login_failures.count + 1 < $4 THEN 0 \
                       WHEN login_failures.delay_ms = 0 THEN $5 \
                       WHEN login_failures.delay_ms * 2 > $6 THEN $6 \
                       ELSE login_failures.delay_ms * 2 END, \
                     locked_until = $2 + CASE WHEN login_failures.last_failure_at < $7 THEN $3 \
                       WHEN login_failures.count + 1 < $4 THEN 0 \
                       WHEN login_failures.delay_ms = 0 THEN $5 \
                       WHEN login_failures.delay_ms * 2 > $6 THEN $6 \
                       ELSE login_failures.delay_ms * 2 END, \
                     last_failure_at = $2 \
                     WHERE login_failures.locked_until <= $2 OR login_failures.last_failure_at < $7 \
                     RETURNING count",
                )
                .bind(&key)
                .bind(ms(now))
                .bind(delay_after_one)
                .bind(free)
                .bind(first.min(max))
                .bind(max)
                .bind(ms(backoff.forget_before))
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?;
                if let Some(count) = allowed {
                    return Ok($crate::LoginAttempt::Allowed {
                        failures: u32::try_from(count).unwrap_or(u32::MAX),
                    });
                }
                let until: Option<i64> =
                    sqlx::query_scalar("SELECT locked_until FROM login_failures WHERE email = $1")
                        .bind(&key)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(Self::err)?;
                // Cleared in between (a success): the caller may simply try again.
                let until = match until {
                    Some(until) => from_ms(until)?,
                    None => now,
                };
                Ok($crate::LoginAttempt::Throttled { until })
            }

            async fn clear_login_failures(&self, email: &str) -> $crate::Result<()> {
                sqlx::query("DELETE FROM login_failures WHERE email = $1")
                    .bind($crate::convert::email_key(email))
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                Ok(())
            }

            async fn begin_address_attempt(
                &self,
                address: &str,
                now: chrono::DateTime<chrono::Utc>,
                limit: &$crate::AddressLimit,
            ) -> $crate::Result<$crate::LoginAttempt> {
                use $crate::convert::{from_ms, ms};
                let window = limit.window.num_milliseconds().max(1);
                let (count, window_end): (i64, i64) = sqlx::query_as(
                    "INSERT INTO login_address_failures (address, count, window_end) VALUES ($1, 1, $2 + $3) \
                     ON CONFLICT (address) DO UPDATE SET \
                     count = CASE WHEN login_address_failures.window_end <= $2 THEN 1 \
                       ELSE login_address_failures.count + 1 END, \
                     window_end = CASE WHEN login_address_failures.window_end <= $2 THEN $2 + $3 \
                       ELSE login_address_failures.window_end END \
                     RETURNING count, window_end",
                )
                .bind(address)
                .bind(ms(now))
                .bind(window)
                .fetch_one(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(if count <= i64::from(limit.max_failures) {
                    $crate::LoginAttempt::Allowed {
                        failures: u32::try_from(count).unwrap_or(u32::MAX),
                    }
                } else {
                    $crate::LoginAttempt::Throttled {
                        until: from_ms(window_end)?,
                    }
                })
            }

            async fn give_back_address_attempt(&self, address: &str) -> $crate::Result<()> {
                sqlx::query(
                    "UPDATE login_address_failures SET count = count - 1 WHERE address = $1 AND count > 0",
                )
                .bind(address)
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(())
            }

            async fn purge_login_failures(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                forget_before: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<u64> {
                use $crate::convert::ms;
                let accounts = sqlx::query("DELETE FROM login_failures WHERE last_failure_at < $1")
                    .bind(ms(forget_before))
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                let addresses = sqlx::query("DELETE FROM login_address_failures WHERE window_end <= $1")
                    .bind(ms(now))
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                Ok(accounts.rows_affected() + addresses.rows_affected())
            }
        }
    };
}

pub(crate) use impl_user_store;

pub(crate) use user_cols;
