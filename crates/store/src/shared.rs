//! The part of [`Store`](crate::Store) whose SQL text is the same on SQLite and PostgreSQL.
//!
//! `impl_store!(Type)` writes the whole `impl Store for Type`. The type provides, as inherent
//! items: `BACKEND`, `CLAIM_DUE_SYNCS` (from `claim_due_syncs_sql!`), `fn err(sqlx::Error) ->
//! StoreError`, `begin_write()` (a transaction that may write), `insert_chunks(conn, document_id,
//! kb_id, chunks)`, `complete_document_impl(id, chunks, now)` (which may use the generated
//! `write_completed_document`), `run_migrations()`, `ping_db()` and `search_impl(query)`; and the
//! module provides the type alias `DbConnection` (the backend's connection type).

macro_rules! user_cols {
    () => {
        "id, email, role, created_at"
    };
}

macro_rules! kb_cols {
    () => {
        "id, name, description, owner_id, kb_type, sync_status, created_at, updated_at"
    };
}

macro_rules! doc_cols {
    () => {
        "id, kb_id, name, path, mime, size, content_hash, source_item_id, web_url, status, error, \
         created_at, updated_at"
    };
}

macro_rules! source_cols {
    () => {
        "id, kb_id, provider, kind, drive_id, item_id, name, path, cursor, state_files, state_pending, state_settings, \
         revoked_at, created_at"
    };
}

macro_rules! connection_cols {
    () => {
        "kb_id, provider, refresh_token_ciphertext, refresh_token_key_id, access_token_ciphertext, \
         access_token_key_id, access_expires_at, tenant, stored_at, last_refreshed_at, needs_reauth, \
         refresh_lease_owner, refresh_lease_until"
    };
}

/// The statement behind `claim_due_syncs`; `$lock` is what the backend appends to the picking
/// subquery (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: nothing, its writers are serialised).
/// Binds: owner, now, lease_until, limit.
///
/// `COALESCE(next_sync_at, -1)` is "never synced: due at once, and first" written as the
/// expression of the `knowledge_bases_due` index (migration 0004), so the due rows are one range
/// of that index, read in claim order.
macro_rules! claim_due_syncs_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE knowledge_bases SET sync_lease_owner = $1, sync_lease_expires_at = $3, \
             sync_cancel_requested = FALSE \
             WHERE id IN (SELECT k.id FROM knowledge_bases k \
             WHERE k.kb_type <> 'local' \
             AND COALESCE(k.next_sync_at, -1) <= $2 \
             AND (k.sync_lease_owner IS NULL OR k.sync_lease_expires_at IS NULL \
             OR k.sync_lease_expires_at <= $2) \
             AND EXISTS (SELECT 1 FROM sources s WHERE s.kb_id = k.id) \
             AND EXISTS (SELECT 1 FROM connections c WHERE c.kb_id = k.id AND c.needs_reauth = FALSE) \
             ORDER BY COALESCE(k.next_sync_at, -1), k.id LIMIT $4",
            $lock,
            ") RETURNING id, next_sync_at"
        )
    };
}

/// Appends `$failures` (a slice of `SyncFailure`) to run `$run` (its id as a string) inside the
/// write transaction `$tx`, numbered after the run's last recorded failure. The caller must hold
/// the run's row lock (it has updated the `sync_runs` row in `$tx`), so that concurrent appends
/// to one run never pick the same ordinal. Expands to statements of the enclosing `Store` method.
macro_rules! append_sync_failures {
    ($tx:ident, $run:ident, $failures:expr) => {
        if !$failures.is_empty() {
            let next: i64 = sqlx::query_scalar(
                "SELECT COALESCE(MAX(ordinal), -1) + 1 FROM sync_failures WHERE run_id = $1",
            )
            .bind(&$run)
            .fetch_one(&mut *$tx)
            .await
            .map_err(Self::err)?;
            for (ordinal, f) in (next..).zip($failures.iter()) {
                sqlx::query(
                    "INSERT INTO sync_failures (run_id, ordinal, item_id, name, reason) \
                     VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&$run)
                .bind(ordinal)
                .bind(&f.item_id)
                .bind(&f.name)
                .bind(&f.reason)
                .execute(&mut *$tx)
                .await
                .map_err(Self::err)?;
            }
        }
    };
}

macro_rules! impl_store {
    ($ty:ty) => {
        impl $ty {
            /// The writes of `complete_document` inside an open write transaction, which the
            /// caller commits: marks the document processed and replaces its chunks. `NotFound`,
            /// having written nothing, when the document is gone.
            async fn write_completed_document(
                conn: &mut DbConnection,
                doc_id: &str,
                chunks: &[String],
                now_ms: i64,
            ) -> $crate::Result<()> {
                let kb_id: Option<String> = sqlx::query_scalar(
                    "UPDATE documents SET status = 'processed', error = NULL, updated_at = $2 \
                     WHERE id = $1 RETURNING kb_id",
                )
                .bind(doc_id)
                .bind(now_ms)
                .fetch_optional(&mut *conn)
                .await
                .map_err(Self::err)?;
                let kb_id = kb_id.ok_or($crate::StoreError::NotFound)?;
                sqlx::query("DELETE FROM chunks WHERE document_id = $1")
                    .bind(doc_id)
                    .execute(&mut *conn)
                    .await
                    .map_err(Self::err)?;
                Self::insert_chunks(conn, doc_id, &kb_id, chunks).await
            }

            /// Recomputes the knowledge base's `sync` grants from the recorded grants of its
            /// sources that are not marked revoked (`kb_grants` holds one `sync` row per user:
            /// what access checks read). Inside the caller's write transaction.
            async fn rebuild_sync_grants(conn: &mut DbConnection, kb: &str) -> $crate::Result<()> {
                sqlx::query("DELETE FROM kb_grants WHERE kb_id = $1 AND origin = 'sync'")
                    .bind(kb)
                    .execute(&mut *conn)
                    .await
                    .map_err(Self::err)?;
                sqlx::query(
                    "INSERT INTO kb_grants (kb_id, user_id, permission, origin) \
                     SELECT DISTINCT s.kb_id, g.user_id, 'read', 'sync' FROM sync_grant_sources g \
                     JOIN sources s ON s.id = g.source_id \
                     WHERE s.kb_id = $1 AND s.revoked_at IS NULL",
                )
                .bind(kb)
                .execute(&mut *conn)
                .await
                .map_err(Self::err)?;
                Ok(())
            }

            /// Withdraws every sync grant of the knowledge base (and the record of where they came
            /// from) and makes its next run read the sharing again. Inside the caller's write
            /// transaction.
            async fn withdraw_sync_grants(conn: &mut DbConnection, kb: &str) -> $crate::Result<()> {
                sqlx::query(
                    "DELETE FROM sync_grant_sources WHERE source_id IN \
                     (SELECT id FROM sources WHERE kb_id = $1)",
                )
                .bind(kb)
                .execute(&mut *conn)
                .await
                .map_err(Self::err)?;
                sqlx::query("DELETE FROM kb_grants WHERE kb_id = $1 AND origin = 'sync'")
                    .bind(kb)
                    .execute(&mut *conn)
                    .await
                    .map_err(Self::err)?;
                sqlx::query("UPDATE knowledge_bases SET sharing_read_at = NULL WHERE id = $1")
                    .bind(kb)
                    .execute(&mut *conn)
                    .await
                    .map_err(Self::err)?;
                Ok(())
            }

            /// `NotFound` unless the knowledge base exists.
            async fn kb_exists(&self, kb_id: &str) -> $crate::Result<()> {
                sqlx::query("SELECT 1 FROM knowledge_bases WHERE id = $1")
                    .bind(kb_id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(Self::err)?
                    .map(|_| ())
                    .ok_or($crate::StoreError::NotFound)
            }
        }

        #[async_trait::async_trait]
        impl $crate::Store for $ty {
            fn backend(&self) -> $crate::Backend {
                Self::BACKEND
            }

            async fn migrate(&self) -> $crate::Result<()> {
                self.run_migrations().await
            }

            async fn ping(&self) -> $crate::Result<()> {
                self.ping_db().await
            }

            // --- users ---------------------------------------------------------------------

            async fn create_user(
                &self,
                id: kbsync_core::UserId,
                new: $crate::NewUser,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<kbsync_core::User> {
                use $crate::common::*;
                let created_at = truncate_ms(now)?;
                sqlx::query(
                    "INSERT INTO users (id, email, email_lower, password_hash, role, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(id.to_string())
                .bind(&new.email)
                .bind(email_key(&new.email))
                .bind(&new.password_hash)
                .bind(new.role.as_str())
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
                self.forget_sharing_reads(None).await?;
                Ok(kbsync_core::User {
                    id,
                    email: new.email,
                    role: new.role,
                    created_at,
                })
            }

            async fn count_users(&self) -> $crate::Result<u64> {
                let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(Self::err)?;
                $crate::common::to_u64(n)
            }

            async fn get_user(&self, id: kbsync_core::UserId) -> $crate::Result<kbsync_core::User> {
                sqlx::query_as::<_, $crate::common::UserRow>(concat!(
                    "SELECT ",
                    $crate::shared::user_cols!(),
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
                let row = sqlx::query_as::<_, $crate::common::CredentialsRow>(concat!(
                    "SELECT ",
                    $crate::shared::user_cols!(),
                    ", password_hash FROM users WHERE email_lower = $1"
                ))
                .bind($crate::common::email_key(email))
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?;
                let user = $crate::common::UserRow {
                    id: row.id,
                    email: row.email,
                    role: row.role,
                    created_at: row.created_at,
                }
                .into_user()?;
                Ok($crate::UserCredentials {
                    user,
                    password_hash: row.password_hash,
                })
            }

            // --- sessions ------------------------------------------------------------------

            async fn create_session(
                &self,
                token_hash: &str,
                user_id: kbsync_core::UserId,
                created_at: chrono::DateTime<chrono::Utc>,
                expires_at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                use $crate::common::ms;
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
                sqlx::query_as::<_, $crate::common::UserRow>(
                    "SELECT u.id, u.email, u.role, u.created_at FROM sessions s \
                     JOIN users u ON u.id = s.user_id \
                     WHERE s.token_hash = $1 AND s.expires_at > $2",
                )
                .bind(token_hash)
                .bind($crate::common::ms(now))
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

            // --- login throttling ----------------------------------------------------------

            async fn login_failures(&self, email: &str) -> $crate::Result<$crate::LoginFailures> {
                let row: Option<(i64, i64)> =
                    sqlx::query_as("SELECT count, last_failure_at FROM login_failures WHERE email = $1")
                        .bind($crate::common::email_key(email))
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(Self::err)?;
                match row {
                    None => Ok($crate::LoginFailures::default()),
                    Some((count, last)) => Ok($crate::LoginFailures {
                        count: u32::try_from(count).unwrap_or(u32::MAX),
                        last_failure_at: Some($crate::common::from_ms(last)?),
                    }),
                }
            }

            async fn begin_login_attempt(
                &self,
                email: &str,
                now: chrono::DateTime<chrono::Utc>,
                backoff: &$crate::LoginBackoff,
            ) -> $crate::Result<$crate::LoginAttempt> {
                use $crate::common::{email_key, from_ms, ms};
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
                    .bind($crate::common::email_key(email))
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
                use $crate::common::{from_ms, ms};
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

            // --- housekeeping --------------------------------------------------------------

            async fn purge_expired_sessions(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<u64> {
                let done = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
                    .bind($crate::common::ms(now))
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                Ok(done.rows_affected())
            }

            async fn purge_login_failures(
                &self,
                now: chrono::DateTime<chrono::Utc>,
                forget_before: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<u64> {
                use $crate::common::ms;
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

            async fn purge_sync_runs(
                &self,
                finished_before: chrono::DateTime<chrono::Utc>,
                keep_per_kb: u32,
            ) -> $crate::Result<u64> {
                // Failed files go with their run (ON DELETE CASCADE).
                let done = sqlx::query(
                    "DELETE FROM sync_runs WHERE id IN (SELECT ranked.id FROM \
                     (SELECT id, finished_at, ROW_NUMBER() OVER \
                     (PARTITION BY kb_id ORDER BY started_at DESC, id DESC) AS recency FROM sync_runs) ranked \
                     WHERE ranked.recency > $2 AND ranked.finished_at IS NOT NULL AND ranked.finished_at < $1)",
                )
                .bind($crate::common::ms(finished_before))
                .bind(i64::from(keep_per_kb))
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(done.rows_affected())
            }

            // --- knowledge bases -----------------------------------------------------------

            async fn create_kb(
                &self,
                id: kbsync_core::KbId,
                new: $crate::NewKnowledgeBase,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<kbsync_core::KnowledgeBase> {
                use $crate::common::*;
                let now = truncate_ms(now)?;
                sqlx::query(
                    "INSERT INTO knowledge_bases \
                     (id, name, description, owner_id, kb_type, sync_status, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, 'idle', $6, $6)",
                )
                .bind(id.to_string())
                .bind(&new.name)
                .bind(&new.description)
                .bind(new.owner_id.to_string())
                .bind(new.kb_type.as_str())
                .bind(ms(now))
                .execute(&self.pool)
                .await
                .map_err(|e| match Self::err(e) {
                    $crate::StoreError::InvalidReference(_) => {
                        $crate::StoreError::InvalidReference(format!("unknown owner {}", new.owner_id))
                    }
                    $crate::StoreError::Conflict(_) => {
                        $crate::StoreError::Conflict(format!("knowledge base {id}"))
                    }
                    other => other,
                })?;
                Ok(kbsync_core::KnowledgeBase {
                    id,
                    name: new.name,
                    description: new.description,
                    owner_id: new.owner_id,
                    kb_type: new.kb_type,
                    sync_status: kbsync_core::SyncStatus::Idle,
                    created_at: now,
                    updated_at: now,
                })
            }

            async fn get_kb(&self, id: kbsync_core::KbId) -> $crate::Result<kbsync_core::KnowledgeBase> {
                sqlx::query_as::<_, $crate::common::KbRow>(concat!(
                    "SELECT ",
                    $crate::shared::kb_cols!(),
                    " FROM knowledge_bases WHERE id = $1"
                ))
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?
                .into_kb()
            }

            async fn list_readable_kbs(
                &self,
                reader: $crate::Reader,
                page: $crate::Page,
            ) -> $crate::Result<$crate::PageOf<kbsync_core::KnowledgeBase>> {
                use $crate::common::*;
                let limit = i64::from(page.limit);
                let offset = to_i64(page.offset);
                let (rows, total): (Vec<KbRow>, i64) = match reader {
                    $crate::Reader::Admin => {
                        let rows = sqlx::query_as::<_, KbRow>(concat!(
                            "SELECT ",
                            $crate::shared::kb_cols!(),
                            " FROM knowledge_bases ORDER BY created_at DESC, id DESC \
                             LIMIT $1 OFFSET $2"
                        ))
                        .bind(limit)
                        .bind(offset)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(Self::err)?;
                        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM knowledge_bases")
                            .fetch_one(&self.pool)
                            .await
                            .map_err(Self::err)?;
                        (rows, total)
                    }
                    $crate::Reader::User(user_id) => {
                        let uid = user_id.to_string();
                        let rows = sqlx::query_as::<_, KbRow>(concat!(
                            "SELECT ",
                            $crate::shared::kb_cols!(),
                            " FROM knowledge_bases WHERE owner_id = $1 \
                             OR id IN (SELECT kb_id FROM kb_grants WHERE user_id = $1) \
                             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
                        ))
                        .bind(&uid)
                        .bind(limit)
                        .bind(offset)
                        .fetch_all(&self.pool)
                        .await
                        .map_err(Self::err)?;
                        let total: i64 = sqlx::query_scalar(
                            "SELECT COUNT(*) FROM knowledge_bases WHERE owner_id = $1 \
                             OR id IN (SELECT kb_id FROM kb_grants WHERE user_id = $1)",
                        )
                        .bind(&uid)
                        .fetch_one(&self.pool)
                        .await
                        .map_err(Self::err)?;
                        (rows, total)
                    }
                };
                Ok($crate::PageOf {
                    items: collect(rows, KbRow::into_kb)?,
                    total: to_u64(total)?,
                })
            }

            async fn update_kb(
                &self,
                id: kbsync_core::KbId,
                patch: $crate::KbPatch,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<kbsync_core::KnowledgeBase> {
                sqlx::query_as::<_, $crate::common::KbRow>(concat!(
                    "UPDATE knowledge_bases SET name = COALESCE($2, name), \
                     description = COALESCE($3, description), updated_at = $4 \
                     WHERE id = $1 RETURNING ",
                    $crate::shared::kb_cols!()
                ))
                .bind(id.to_string())
                .bind(patch.name)
                .bind(patch.description)
                .bind($crate::common::ms(now))
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?
                .into_kb()
            }

            async fn delete_kb(&self, id: kbsync_core::KbId) -> $crate::Result<Vec<String>> {
                let kb_id = id.to_string();
                let mut tx = self.begin_write().await?;
                let mut hashes: Vec<String> = sqlx::query_scalar(
                    "SELECT DISTINCT d.content_hash FROM documents d WHERE d.kb_id = $1 \
                     AND NOT EXISTS (SELECT 1 FROM documents o \
                     WHERE o.content_hash = d.content_hash AND o.kb_id <> $1)",
                )
                .bind(&kb_id)
                .fetch_all(&mut *tx)
                .await
                .map_err(Self::err)?;
                let deleted = sqlx::query("DELETE FROM knowledge_bases WHERE id = $1")
                    .bind(&kb_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                if deleted.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                tx.commit().await.map_err(Self::err)?;
                hashes.sort();
                Ok(hashes)
            }

            // --- access grants -------------------------------------------------------------

            async fn strongest_grant(
                &self,
                kb_id: kbsync_core::KbId,
                user_id: kbsync_core::UserId,
            ) -> $crate::Result<Option<kbsync_core::Permission>> {
                let best: Option<i64> = sqlx::query_scalar(
                    "SELECT CAST(MAX(CASE WHEN permission = 'write' THEN 2 ELSE 1 END) AS BIGINT) \
                     FROM kb_grants WHERE kb_id = $1 AND user_id = $2",
                )
                .bind(kb_id.to_string())
                .bind(user_id.to_string())
                .fetch_one(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(match best {
                    None => None,
                    Some(2) => Some(kbsync_core::Permission::Write),
                    Some(_) => Some(kbsync_core::Permission::Read),
                })
            }

            async fn list_grants(
                &self,
                kb_id: kbsync_core::KbId,
            ) -> $crate::Result<Vec<kbsync_core::AccessGrant>> {
                let rows = sqlx::query_as::<_, $crate::common::GrantRow>(
                    "SELECT kb_id, user_id, permission, origin FROM kb_grants WHERE kb_id = $1 \
                     ORDER BY origin, user_id",
                )
                .bind(kb_id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                $crate::common::collect(rows, $crate::common::GrantRow::into_grant)
            }

            async fn set_manual_grants(
                &self,
                kb_id: kbsync_core::KbId,
                read: &[kbsync_core::UserId],
                write: &[kbsync_core::UserId],
            ) -> $crate::Result<()> {
                let mut wanted: std::collections::BTreeMap<kbsync_core::UserId, kbsync_core::Permission> =
                    std::collections::BTreeMap::new();
                for u in read {
                    wanted.insert(*u, kbsync_core::Permission::Read);
                }
                for u in write {
                    wanted.insert(*u, kbsync_core::Permission::Write);
                }
                let kb = kb_id.to_string();
                let mut tx = self.begin_write().await?;
                let exists = sqlx::query("SELECT 1 FROM knowledge_bases WHERE id = $1")
                    .bind(&kb)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                if exists.is_none() {
                    return Err($crate::StoreError::NotFound);
                }
                for user_id in wanted.keys() {
                    let known = sqlx::query("SELECT 1 FROM users WHERE id = $1")
                        .bind(user_id.to_string())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                    if known.is_none() {
                        return Err($crate::StoreError::InvalidReference(format!(
                            "unknown user {user_id}"
                        )));
                    }
                }
                sqlx::query("DELETE FROM kb_grants WHERE kb_id = $1 AND origin = 'manual'")
                    .bind(&kb)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                for (user_id, permission) in &wanted {
                    sqlx::query(
                        "INSERT INTO kb_grants (kb_id, user_id, permission, origin) \
                         VALUES ($1, $2, $3, 'manual')",
                    )
                    .bind(&kb)
                    .bind(user_id.to_string())
                    .bind(permission.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                }
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            // --- documents -----------------------------------------------------------------

            async fn create_document(
                &self,
                id: kbsync_core::DocumentId,
                new: $crate::NewDocument,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<kbsync_core::Document> {
                use $crate::common::*;
                let now = truncate_ms(now)?;
                sqlx::query(
                    "INSERT INTO documents (id, kb_id, name, path, mime, size, content_hash, \
                     source_item_id, web_url, status, error, created_at, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', NULL, $10, $10)",
                )
                .bind(id.to_string())
                .bind(new.kb_id.to_string())
                .bind(&new.name)
                .bind(&new.path)
                .bind(&new.mime)
                .bind(new.size)
                .bind(&new.content_hash)
                .bind(&new.source_item_id)
                .bind(&new.web_url)
                .bind(ms(now))
                .execute(&self.pool)
                .await
                .map_err(|e| match Self::err(e) {
                    $crate::StoreError::InvalidReference(_) => {
                        $crate::StoreError::InvalidReference(format!("unknown knowledge base {}", new.kb_id))
                    }
                    $crate::StoreError::Conflict(_) => $crate::StoreError::Conflict(format!("document {id}")),
                    other => other,
                })?;
                Ok(kbsync_core::Document {
                    id,
                    kb_id: new.kb_id,
                    name: new.name,
                    path: new.path,
                    mime: new.mime,
                    size: new.size,
                    content_hash: new.content_hash,
                    source_item_id: new.source_item_id,
                    web_url: new.web_url,
                    status: kbsync_core::DocumentStatus::Pending,
                    error: None,
                    created_at: now,
                    updated_at: now,
                })
            }

            async fn get_document(
                &self,
                kb_id: kbsync_core::KbId,
                id: kbsync_core::DocumentId,
            ) -> $crate::Result<kbsync_core::Document> {
                sqlx::query_as::<_, $crate::common::DocRow>(concat!(
                    "SELECT ",
                    $crate::shared::doc_cols!(),
                    " FROM documents WHERE kb_id = $1 AND id = $2"
                ))
                .bind(kb_id.to_string())
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?
                .into_document()
            }

            async fn list_documents(
                &self,
                kb_id: kbsync_core::KbId,
                page: $crate::Page,
            ) -> $crate::Result<$crate::PageOf<kbsync_core::Document>> {
                use $crate::common::*;
                let kb = kb_id.to_string();
                let rows = sqlx::query_as::<_, DocRow>(concat!(
                    "SELECT ",
                    $crate::shared::doc_cols!(),
                    " FROM documents WHERE kb_id = $1 ORDER BY path, id LIMIT $2 OFFSET $3"
                ))
                .bind(&kb)
                .bind(i64::from(page.limit))
                .bind(to_i64(page.offset))
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM documents WHERE kb_id = $1")
                    .bind(&kb)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(Self::err)?;
                Ok($crate::PageOf {
                    items: collect(rows, DocRow::into_document)?,
                    total: to_u64(total)?,
                })
            }

            async fn complete_document(
                &self,
                id: kbsync_core::DocumentId,
                chunks: &[String],
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                self.complete_document_impl(id, chunks, now).await
            }

            async fn fail_document(
                &self,
                id: kbsync_core::DocumentId,
                error: &str,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                let doc_id = id.to_string();
                let mut tx = self.begin_write().await?;
                let updated = sqlx::query(
                    "UPDATE documents SET status = 'failed', error = $2, updated_at = $3 \
                     WHERE id = $1",
                )
                .bind(&doc_id)
                .bind(error)
                .bind($crate::common::ms(now))
                .execute(&mut *tx)
                .await
                .map_err(Self::err)?;
                if updated.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                sqlx::query("DELETE FROM chunks WHERE document_id = $1")
                    .bind(&doc_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            async fn delete_document(
                &self,
                kb_id: kbsync_core::KbId,
                id: kbsync_core::DocumentId,
            ) -> $crate::Result<Option<String>> {
                let mut tx = self.begin_write().await?;
                let hash: Option<String> = sqlx::query_scalar(
                    "DELETE FROM documents WHERE kb_id = $1 AND id = $2 RETURNING content_hash",
                )
                .bind(kb_id.to_string())
                .bind(id.to_string())
                .fetch_optional(&mut *tx)
                .await
                .map_err(Self::err)?;
                let hash = hash.ok_or($crate::StoreError::NotFound)?;
                let still_used = sqlx::query("SELECT 1 FROM documents WHERE content_hash = $1 LIMIT 1")
                    .bind(&hash)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(Self::err)?
                    .is_some();
                tx.commit().await.map_err(Self::err)?;
                Ok(if still_used { None } else { Some(hash) })
            }

            async fn pending_documents(&self, limit: u32) -> $crate::Result<Vec<kbsync_core::Document>> {
                let rows = sqlx::query_as::<_, $crate::common::DocRow>(concat!(
                    "SELECT ",
                    $crate::shared::doc_cols!(),
                    " FROM documents WHERE status = 'pending' ORDER BY created_at, id LIMIT $1"
                ))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                $crate::common::collect(rows, $crate::common::DocRow::into_document)
            }

            // --- search --------------------------------------------------------------------

            async fn search(
                &self,
                query: $crate::SearchQuery<'_>,
            ) -> $crate::Result<Vec<kbsync_core::SearchHit>> {
                self.search_impl(query).await
            }

            // --- OAuth: pending authorizations ---------------------------------------------

            async fn create_oauth_state(&self, state: $crate::NewOAuthState) -> $crate::Result<()> {
                use $crate::common::ms;
                sqlx::query(
                    "INSERT INTO oauth_states (state_hash, kb_id, user_id, provider, \
                     code_verifier_ciphertext, code_verifier_key_id, binding_hash, created_at, \
                     expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&state.state_hash)
                .bind(state.kb_id.to_string())
                .bind(state.user_id.to_string())
                .bind(state.provider.as_str())
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
                let row = sqlx::query_as::<_, $crate::common::OAuthStateRow>(
                    "DELETE FROM oauth_states WHERE state_hash = $1 RETURNING kb_id, user_id, \
                     provider, code_verifier_ciphertext, code_verifier_key_id, binding_hash, \
                     created_at, expires_at",
                )
                .bind(state_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?;
                if row.expires_at <= $crate::common::ms(now) {
                    return Err($crate::StoreError::NotFound);
                }
                row.into_state()
            }

            async fn delete_expired_oauth_states(
                &self,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<u64> {
                let done = sqlx::query("DELETE FROM oauth_states WHERE expires_at <= $1")
                    .bind($crate::common::ms(now))
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                Ok(done.rows_affected())
            }

            // --- OAuth: connections --------------------------------------------------------

            async fn get_connection(
                &self,
                kb_id: kbsync_core::KbId,
            ) -> $crate::Result<$crate::Connection> {
                sqlx::query_as::<_, $crate::common::ConnectionRow>(concat!(
                    "SELECT ",
                    $crate::shared::connection_cols!(),
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
            ) -> $crate::Result<$crate::Connection> {
                use $crate::common::ms;
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
                let row = sqlx::query_as::<_, $crate::common::ConnectionRow>(concat!(
                    "INSERT INTO connections (kb_id, provider, refresh_token_ciphertext, \
                     refresh_token_key_id, access_token_ciphertext, access_token_key_id, \
                     access_expires_at, tenant, stored_at, last_refreshed_at, needs_reauth, \
                     refresh_lease_owner, refresh_lease_until) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULL, FALSE, NULL, NULL) \
                     ON CONFLICT (kb_id) DO UPDATE SET provider = excluded.provider, \
                     refresh_token_ciphertext = excluded.refresh_token_ciphertext, \
                     refresh_token_key_id = excluded.refresh_token_key_id, \
                     access_token_ciphertext = excluded.access_token_ciphertext, \
                     access_token_key_id = excluded.access_token_key_id, \
                     access_expires_at = excluded.access_expires_at, tenant = excluded.tenant, \
                     stored_at = excluded.stored_at, last_refreshed_at = NULL, needs_reauth = FALSE, \
                     needs_reauth_since = NULL, refresh_lease_owner = NULL, refresh_lease_until = NULL \
                     RETURNING ",
                    $crate::shared::connection_cols!()
                ))
                .bind(&kb)
                .bind(new.provider.as_str())
                .bind(&new.refresh_token.ciphertext)
                .bind(&new.refresh_token.key_id)
                .bind(access_ciphertext)
                .bind(access_key_id)
                .bind(access_expires_at)
                .bind(&new.tenant)
                .bind(ms(now))
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
                // Disconnected: the sharing it read no longer speaks for the drive.
                Self::withdraw_sync_grants(&mut tx, &kb).await?;
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
                use $crate::common::ms;
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
                use $crate::common::ms;
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
                .bind($crate::common::ms(now))
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

            async fn withdraw_lapsed_sync_grants(
                &self,
                needs_reauth_since: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<Vec<kbsync_core::KbId>> {
                const LAPSED: &str = "SELECT c.kb_id FROM connections c WHERE c.needs_reauth = TRUE \
                     AND c.needs_reauth_since <= $1 AND EXISTS (SELECT 1 FROM kb_grants g \
                     WHERE g.kb_id = c.kb_id AND g.origin = 'sync') ORDER BY c.kb_id";
                let since = $crate::common::ms(needs_reauth_since);
                // Called on every scheduler tick: a read first, so the usual "nothing lapsed"
                // takes no write lock.
                let any: Option<String> = sqlx::query_scalar(LAPSED)
                    .bind(since)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(Self::err)?;
                if any.is_none() {
                    return Ok(Vec::new());
                }
                let mut tx = self.begin_write().await?;
                let kbs: Vec<String> = sqlx::query_scalar(LAPSED)
                    .bind(since)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                for kb in &kbs {
                    Self::withdraw_sync_grants(&mut tx, kb).await?;
                }
                tx.commit().await.map_err(Self::err)?;
                kbs.iter().map(|kb| $crate::common::parse_uuid(kb)).collect()
            }

            // --- sources and sync runs -----------------------------------------------------

            async fn mark_source_revoked(
                &self,
                source_id: uuid::Uuid,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                let source = source_id.to_string();
                let mut tx = self.begin_write().await?;
                let kb: Option<String> = sqlx::query_scalar(
                    "UPDATE sources SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1 RETURNING kb_id",
                )
                .bind(&source)
                .bind($crate::common::ms(now))
                .fetch_optional(&mut *tx)
                .await
                .map_err(Self::err)?;
                let kb = kb.ok_or($crate::StoreError::NotFound)?;
                sqlx::query("DELETE FROM sync_grant_sources WHERE source_id = $1")
                    .bind(&source)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                Self::rebuild_sync_grants(&mut tx, &kb).await?;
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            async fn clear_source_revoked(&self, source_id: uuid::Uuid) -> $crate::Result<()> {
                let mut tx = self.begin_write().await?;
                let kb: Option<String> =
                    sqlx::query_scalar("UPDATE sources SET revoked_at = NULL WHERE id = $1 RETURNING kb_id")
                        .bind(source_id.to_string())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                let kb = kb.ok_or($crate::StoreError::NotFound)?;
                // Its sharing grants again: read it on the next permission sync.
                sqlx::query("UPDATE knowledge_bases SET sharing_read_at = NULL WHERE id = $1")
                    .bind(&kb)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            async fn add_source(
                &self,
                id: uuid::Uuid,
                new: $crate::NewSource,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<$crate::Source> {
                let kb = new.kb_id.to_string();
                let inserted = sqlx::query(
                    "INSERT INTO sources (id, kb_id, provider, kind, drive_id, item_id, name, path, \
                     cursor, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, NULL, $9) \
                     ON CONFLICT (kb_id, drive_id, item_id) DO NOTHING",
                )
                .bind(id.to_string())
                .bind(&kb)
                .bind(new.provider.as_str())
                .bind(new.kind.as_str())
                .bind(&new.drive_id)
                .bind(&new.item_id)
                .bind(&new.name)
                .bind(&new.path)
                .bind($crate::common::ms(now))
                .execute(&self.pool)
                .await
                .map_err(|e| match Self::err(e) {
                    $crate::StoreError::InvalidReference(_) => {
                        $crate::StoreError::InvalidReference(format!("unknown knowledge base {}", new.kb_id))
                    }
                    other => other,
                })?;
                if inserted.rows_affected() > 0 {
                    // The sync grants are the union of the folder sources' sharing: read it again.
                    self.forget_sharing_reads(Some(new.kb_id)).await?;
                }
                sqlx::query_as::<_, $crate::common::SourceRow>(concat!(
                    "SELECT ",
                    $crate::shared::source_cols!(),
                    " FROM sources WHERE kb_id = $1 AND drive_id = $2 AND item_id = $3"
                ))
                .bind(&kb)
                .bind(&new.drive_id)
                .bind(&new.item_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?
                .into_source()
            }

            async fn list_sources(&self, kb_id: kbsync_core::KbId) -> $crate::Result<Vec<$crate::Source>> {
                let rows = sqlx::query_as::<_, $crate::common::SourceRow>(concat!(
                    "SELECT ",
                    $crate::shared::source_cols!(),
                    " FROM sources WHERE kb_id = $1 ORDER BY created_at, id"
                ))
                .bind(kb_id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                $crate::common::collect(rows, $crate::common::SourceRow::into_source)
            }

            async fn set_source_cursor(
                &self,
                source_id: uuid::Uuid,
                cursor: Option<&str>,
                state: Option<$crate::SavedState<'_>>,
            ) -> $crate::Result<()> {
                let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                let id = source_id.to_string();
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE sources SET cursor = $2, state_files = $3, state_pending = $4, state_settings = $5 \
                     WHERE id = $1",
                )
                .bind(&id)
                .bind(cursor)
                .bind(state.map(|s| count(s.files)))
                .bind(state.map(|s| count(s.pending)))
                .bind(state.map(|s| s.settings))
                .execute(&mut *tx)
                .await
                .map_err(Self::err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                match state {
                    Some(state) => sqlx::query(
                        "INSERT INTO source_states (source_id, state) VALUES ($1, $2) \
                         ON CONFLICT (source_id) DO UPDATE SET state = excluded.state",
                    )
                    .bind(&id)
                    .bind(state.json)
                    .execute(&mut *tx)
                    .await,
                    None => sqlx::query("DELETE FROM source_states WHERE source_id = $1")
                        .bind(&id)
                        .execute(&mut *tx)
                        .await,
                }
                .map_err(Self::err)?;
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            async fn advance_source_cursor(&self, source_id: uuid::Uuid, cursor: &str) -> $crate::Result<()> {
                let done = sqlx::query("UPDATE sources SET cursor = $2 WHERE id = $1 AND cursor IS NOT NULL")
                    .bind(source_id.to_string())
                    .bind(cursor)
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                Ok(())
            }

            async fn source_state(&self, source_id: uuid::Uuid) -> $crate::Result<Option<String>> {
                let row: Option<(Option<String>,)> = sqlx::query_as(
                    "SELECT st.state FROM sources s LEFT JOIN source_states st ON st.source_id = s.id \
                     WHERE s.id = $1",
                )
                .bind(source_id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?;
                row.map(|(state,)| state).ok_or($crate::StoreError::NotFound)
            }

            async fn forget_sharing_reads(&self, kb_id: Option<kbsync_core::KbId>) -> $crate::Result<()> {
                match kb_id {
                    Some(kb_id) => sqlx::query("UPDATE knowledge_bases SET sharing_read_at = NULL WHERE id = $1")
                        .bind(kb_id.to_string())
                        .execute(&self.pool)
                        .await,
                    None => sqlx::query(
                        "UPDATE knowledge_bases SET sharing_read_at = NULL WHERE sharing_read_at IS NOT NULL",
                    )
                    .execute(&self.pool)
                    .await,
                }
                .map_err(Self::err)?;
                Ok(())
            }

            async fn sharing_read_at(
                &self,
                kb_id: kbsync_core::KbId,
            ) -> $crate::Result<Option<chrono::DateTime<chrono::Utc>>> {
                let row: Option<(Option<i64>,)> =
                    sqlx::query_as("SELECT sharing_read_at FROM knowledge_bases WHERE id = $1")
                        .bind(kb_id.to_string())
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(Self::err)?;
                match row {
                    None => Err($crate::StoreError::NotFound),
                    Some((None,)) => Ok(None),
                    Some((Some(at),)) => $crate::common::from_ms(at).map(Some),
                }
            }

            async fn set_sync_status(
                &self,
                kb_id: kbsync_core::KbId,
                status: kbsync_core::SyncStatus,
            ) -> $crate::Result<()> {
                let done = sqlx::query("UPDATE knowledge_bases SET sync_status = $2 WHERE id = $1")
                    .bind(kb_id.to_string())
                    .bind(status.as_str())
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                Ok(())
            }

            async fn source_documents(&self, source_id: uuid::Uuid) -> $crate::Result<Vec<kbsync_core::Document>> {
                let rows = sqlx::query_as::<_, $crate::common::DocRow>(concat!(
                    "SELECT ",
                    $crate::shared::doc_cols!(),
                    " FROM documents WHERE source_id = $1 ORDER BY path, id"
                ))
                .bind(source_id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                $crate::common::collect(rows, $crate::common::DocRow::into_document)
            }

            async fn document_by_source_item(
                &self,
                kb_id: kbsync_core::KbId,
                source_item_id: &str,
            ) -> $crate::Result<Option<kbsync_core::Document>> {
                sqlx::query_as::<_, $crate::common::DocRow>(concat!(
                    "SELECT ",
                    $crate::shared::doc_cols!(),
                    " FROM documents WHERE kb_id = $1 AND source_item_id = $2"
                ))
                .bind(kb_id.to_string())
                .bind(source_item_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .map($crate::common::DocRow::into_document)
                .transpose()
            }

            async fn upsert_source_document(
                &self,
                id: kbsync_core::DocumentId,
                source_id: uuid::Uuid,
                new: $crate::NewDocument,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<(kbsync_core::Document, Option<String>)> {
                use $crate::common::*;
                let Some(item_id) = new.source_item_id.clone() else {
                    return Err($crate::StoreError::InvalidReference(
                        "a synced document needs a source item id".to_owned(),
                    ));
                };
                let now = truncate_ms(now)?;
                let kb = new.kb_id.to_string();
                let mut tx = self.begin_write().await?;
                let old_hash: Option<String> = sqlx::query_scalar(
                    "SELECT content_hash FROM documents WHERE kb_id = $1 AND source_item_id = $2",
                )
                .bind(&kb)
                .bind(&item_id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Self::err)?;
                sqlx::query(
                    "INSERT INTO documents (id, kb_id, name, path, mime, size, content_hash, \
                     source_item_id, web_url, status, error, created_at, updated_at, source_id) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', NULL, $10, $10, $11) \
                     ON CONFLICT (kb_id, source_item_id) WHERE source_item_id IS NOT NULL DO UPDATE SET \
                     name = excluded.name, path = excluded.path, mime = excluded.mime, \
                     size = excluded.size, content_hash = excluded.content_hash, \
                     web_url = excluded.web_url, status = 'pending', error = NULL, \
                     updated_at = excluded.updated_at, source_id = excluded.source_id",
                )
                .bind(id.to_string())
                .bind(&kb)
                .bind(&new.name)
                .bind(&new.path)
                .bind(&new.mime)
                .bind(new.size)
                .bind(&new.content_hash)
                .bind(&item_id)
                .bind(&new.web_url)
                .bind(ms(now))
                .bind(source_id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(|e| match Self::err(e) {
                    $crate::StoreError::InvalidReference(_) => $crate::StoreError::InvalidReference(format!(
                        "unknown knowledge base {} or source {source_id}",
                        new.kb_id
                    )),
                    other => other,
                })?;
                let row = sqlx::query_as::<_, DocRow>(concat!(
                    "SELECT ",
                    $crate::shared::doc_cols!(),
                    " FROM documents WHERE kb_id = $1 AND source_item_id = $2"
                ))
                .bind(&kb)
                .bind(&item_id)
                .fetch_one(&mut *tx)
                .await
                .map_err(Self::err)?;
                sqlx::query("DELETE FROM chunks WHERE document_id = $1")
                    .bind(&row.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                let mut unreferenced = None;
                if let Some(old) = old_hash.filter(|h| *h != new.content_hash) {
                    let used = sqlx::query("SELECT 1 FROM documents WHERE content_hash = $1 LIMIT 1")
                        .bind(&old)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(Self::err)?
                        .is_some();
                    if !used {
                        unreferenced = Some(old);
                    }
                }
                tx.commit().await.map_err(Self::err)?;
                Ok((row.into_document()?, unreferenced))
            }

            async fn update_document_location(
                &self,
                kb_id: kbsync_core::KbId,
                id: kbsync_core::DocumentId,
                location: $crate::DocumentLocation,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                let done = sqlx::query(
                    "UPDATE documents SET name = $3, path = $4, web_url = $5, updated_at = $6 \
                     WHERE kb_id = $1 AND id = $2",
                )
                .bind(kb_id.to_string())
                .bind(id.to_string())
                .bind(&location.name)
                .bind(&location.path)
                .bind(&location.web_url)
                .bind($crate::common::ms(now))
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                Ok(())
            }

            async fn create_sync_run(
                &self,
                id: uuid::Uuid,
                kb_id: kbsync_core::KbId,
                trigger: $crate::SyncTrigger,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO sync_runs (id, kb_id, run_trigger, started_at, status) \
                     VALUES ($1, $2, $3, $4, 'syncing')",
                )
                .bind(id.to_string())
                .bind(kb_id.to_string())
                .bind(trigger.as_str())
                .bind($crate::common::ms(now))
                .execute(&self.pool)
                .await
                .map_err(|e| match Self::err(e) {
                    $crate::StoreError::InvalidReference(_) => {
                        $crate::StoreError::InvalidReference(format!("unknown knowledge base {kb_id}"))
                    }
                    other => other,
                })?;
                Ok(())
            }

            async fn finish_sync_run(
                &self,
                id: uuid::Uuid,
                outcome: &$crate::SyncRunOutcome,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                use $crate::common::*;
                let run = id.to_string();
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE sync_runs SET finished_at = $2, status = $3, processed = $4, failed = $5, \
                     deleted = $6, skipped = $7, total_found = $8 WHERE id = $1",
                )
                .bind(&run)
                .bind(ms(now))
                .bind(outcome.status.as_str())
                .bind(to_i64(outcome.processed))
                .bind(to_i64(outcome.failed))
                .bind(to_i64(outcome.deleted))
                .bind(to_i64(outcome.skipped))
                .bind(to_i64(outcome.total_found))
                .execute(&mut *tx)
                .await
                .map_err(Self::err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                // The UPDATE above holds the run's row lock: failures recorded during the run
                // stay, and these follow them.
                $crate::shared::append_sync_failures!(tx, run, &outcome.failures);
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            async fn list_sync_runs(
                &self,
                kb_id: kbsync_core::KbId,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::SyncRun>> {
                use $crate::common::*;
                let rows = sqlx::query_as::<_, SyncRunRow>(
                    "SELECT id, kb_id, run_trigger, started_at, finished_at, status, processed, failed, \
                     deleted, skipped, total_found FROM sync_runs WHERE kb_id = $1 \
                     ORDER BY started_at DESC, id DESC LIMIT $2",
                )
                .bind(kb_id.to_string())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                let failures = sqlx::query_as::<_, SyncFailureRow>(
                    "SELECT f.run_id, f.item_id, f.name, f.reason FROM sync_failures f \
                     WHERE f.run_id IN (SELECT id FROM sync_runs WHERE kb_id = $1 \
                     ORDER BY started_at DESC, id DESC LIMIT $2) ORDER BY f.run_id, f.ordinal",
                )
                .bind(kb_id.to_string())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                rows.into_iter()
                    .map(|row| {
                        let mine = failures
                            .iter()
                            .filter(|f| f.run_id == row.id)
                            .map(|f| $crate::SyncFailure {
                                item_id: f.item_id.clone(),
                                name: f.name.clone(),
                                reason: f.reason.clone(),
                            })
                            .collect();
                        row.into_run(mine)
                    })
                    .collect()
            }

            // --- scheduling, leases and progress -------------------------------------------

            async fn claim_due_syncs(
                &self,
                owner: &str,
                now: chrono::DateTime<chrono::Utc>,
                lease_until: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::ClaimedSync>> {
                use $crate::common::*;
                if limit == 0 {
                    return Ok(Vec::new());
                }
                // One statement: the subquery picks the due rows in claim order (walking the
                // `knowledge_bases_due` index) and the UPDATE takes their leases. SQLite runs it
                // under its one write lock; PostgreSQL locks the picked rows and skips rows another
                // claimer has locked, and re-checks a row another claimer changed meanwhile, so no
                // row is claimed twice.
                let rows: Vec<(String, Option<i64>)> = sqlx::query_as(Self::CLAIM_DUE_SYNCS)
                .bind(owner)
                .bind(ms(now))
                .bind(ms(lease_until))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                let mut claimed = rows
                    .into_iter()
                    .map(|(id, due)| {
                        Ok($crate::ClaimedSync {
                            kb_id: parse_uuid(&id)?,
                            due_at: due.map(from_ms).transpose()?,
                        })
                    })
                    .collect::<$crate::Result<Vec<_>>>()?;
                // RETURNING promises no order.
                claimed.sort_by(|a, b| (a.due_at, a.kb_id).cmp(&(b.due_at, b.kb_id)));
                Ok(claimed)
            }

            async fn try_claim_sync(
                &self,
                kb_id: kbsync_core::KbId,
                owner: &str,
                now: chrono::DateTime<chrono::Utc>,
                lease_until: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<bool> {
                use $crate::common::ms;
                let kb = kb_id.to_string();
                let taken = sqlx::query(
                    "UPDATE knowledge_bases SET sync_lease_owner = $2, sync_lease_expires_at = $4, \
                     sync_cancel_requested = FALSE \
                     WHERE id = $1 AND (sync_lease_owner IS NULL OR sync_lease_expires_at IS NULL \
                     OR sync_lease_expires_at <= $3)",
                )
                .bind(&kb)
                .bind(owner)
                .bind(ms(now))
                .bind(ms(lease_until))
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                if taken.rows_affected() == 1 {
                    return Ok(true);
                }
                self.kb_exists(&kb).await?;
                Ok(false)
            }

            async fn renew_sync_lease(
                &self,
                kb_id: kbsync_core::KbId,
                owner: &str,
                lease_until: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<$crate::LeaseRenewal> {
                let cancel: Option<bool> = sqlx::query_scalar(
                    "UPDATE knowledge_bases SET sync_lease_expires_at = $3 \
                     WHERE id = $1 AND sync_lease_owner = $2 RETURNING sync_cancel_requested",
                )
                .bind(kb_id.to_string())
                .bind(owner)
                .bind($crate::common::ms(lease_until))
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(match cancel {
                    None => $crate::LeaseRenewal::Lost,
                    Some(true) => $crate::LeaseRenewal::CancelRequested,
                    Some(false) => $crate::LeaseRenewal::Held,
                })
            }

            async fn release_sync(
                &self,
                kb_id: kbsync_core::KbId,
                owner: &str,
                release: &$crate::SyncRelease,
            ) -> $crate::Result<bool> {
                use $crate::common::*;
                let done = sqlx::query(
                    "UPDATE knowledge_bases SET sync_lease_owner = NULL, sync_lease_expires_at = NULL, \
                     sync_cancel_requested = FALSE, next_sync_at = $3, sync_failures = $4, \
                     last_sync_at = COALESCE($5, last_sync_at), sync_error = $6 \
                     WHERE id = $1 AND sync_lease_owner = $2",
                )
                .bind(kb_id.to_string())
                .bind(owner)
                .bind(ms(release.next_sync_at))
                .bind(to_i32(release.consecutive_failures))
                .bind(release.last_sync_at.map(ms))
                .bind(&release.last_error)
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(done.rows_affected() == 1)
            }

            async fn request_sync_cancel(
                &self,
                kb_id: kbsync_core::KbId,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<bool> {
                let kb = kb_id.to_string();
                let done = sqlx::query(
                    "UPDATE knowledge_bases SET sync_cancel_requested = TRUE \
                     WHERE id = $1 AND sync_lease_owner IS NOT NULL AND sync_lease_expires_at > $2",
                )
                .bind(&kb)
                .bind($crate::common::ms(now))
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                if done.rows_affected() == 1 {
                    return Ok(true);
                }
                self.kb_exists(&kb).await?;
                Ok(false)
            }

            async fn schedule_sync(
                &self,
                kb_id: kbsync_core::KbId,
                next_sync_at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                let done = sqlx::query("UPDATE knowledge_bases SET next_sync_at = $2 WHERE id = $1")
                    .bind(kb_id.to_string())
                    .bind($crate::common::ms(next_sync_at))
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                Ok(())
            }

            async fn set_sync_interval(
                &self,
                kb_id: kbsync_core::KbId,
                minutes: Option<u32>,
            ) -> $crate::Result<()> {
                let done = sqlx::query("UPDATE knowledge_bases SET sync_interval_minutes = $2 WHERE id = $1")
                    .bind(kb_id.to_string())
                    .bind(minutes.map($crate::common::to_i32))
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                Ok(())
            }

            async fn set_sync_progress(
                &self,
                kb_id: kbsync_core::KbId,
                progress: &$crate::SyncProgress,
            ) -> $crate::Result<()> {
                use $crate::common::to_i64;
                let done = sqlx::query(
                    "UPDATE knowledge_bases SET sync_run_id = $2, sync_current = $3, sync_total = $4, \
                     sync_file = $5 WHERE id = $1",
                )
                .bind(kb_id.to_string())
                .bind(progress.run_id.map(|r| r.to_string()))
                .bind(to_i64(progress.current))
                .bind(to_i64(progress.total))
                .bind(&progress.file)
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                Ok(())
            }

            async fn get_sync_state(
                &self,
                kb_id: kbsync_core::KbId,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<$crate::SyncState> {
                sqlx::query_as::<_, $crate::common::SyncStateRow>(
                    "SELECT id, sync_status, sync_run_id, sync_current, sync_total, sync_file, sync_error, \
                     last_sync_at, next_sync_at, sync_interval_minutes, sync_failures, sync_lease_owner, \
                     sync_lease_expires_at, sync_cancel_requested FROM knowledge_bases WHERE id = $1",
                )
                .bind(kb_id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(Self::err)?
                .ok_or($crate::StoreError::NotFound)?
                .into_state(now)
            }

            async fn close_interrupted_runs(
                &self,
                kb_id: kbsync_core::KbId,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<u64> {
                let done = sqlx::query(
                    "UPDATE sync_runs SET status = 'failed', finished_at = $2 \
                     WHERE kb_id = $1 AND status = 'syncing'",
                )
                .bind(kb_id.to_string())
                .bind($crate::common::ms(now))
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(done.rows_affected())
            }

            async fn record_sync_failures(
                &self,
                run_id: uuid::Uuid,
                failures: &[$crate::SyncFailure],
            ) -> $crate::Result<()> {
                if failures.is_empty() {
                    return Ok(());
                }
                let run = run_id.to_string();
                let mut tx = self.begin_write().await?;
                // A no-op write that takes the run's row lock (PostgreSQL) so that concurrent
                // appends to one run number their failures one after the other (SQLite's write
                // transaction is exclusive already), and tells whether the run exists.
                let locked = sqlx::query("UPDATE sync_runs SET status = status WHERE id = $1")
                    .bind(&run)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                if locked.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                $crate::shared::append_sync_failures!(tx, run, failures);
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            async fn list_sync_failures(
                &self,
                run_id: uuid::Uuid,
                skip: u64,
            ) -> $crate::Result<Vec<$crate::SyncFailure>> {
                // LIMIT before OFFSET: SQLite has no OFFSET without LIMIT.
                let rows: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT item_id, name, reason FROM sync_failures WHERE run_id = $1 \
                     ORDER BY ordinal LIMIT $2 OFFSET $3",
                )
                .bind(run_id.to_string())
                .bind(i64::MAX)
                .bind($crate::common::to_i64(skip))
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(rows
                    .into_iter()
                    .map(|(item_id, name, reason)| $crate::SyncFailure { item_id, name, reason })
                    .collect())
            }

            async fn delete_source(
                &self,
                kb_id: kbsync_core::KbId,
                source_id: uuid::Uuid,
            ) -> $crate::Result<Vec<String>> {
                let kb = kb_id.to_string();
                let source = source_id.to_string();
                let mut tx = self.begin_write().await?;
                let exists = sqlx::query("SELECT 1 FROM sources WHERE id = $1 AND kb_id = $2")
                    .bind(&source)
                    .bind(&kb)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                if exists.is_none() {
                    return Err($crate::StoreError::NotFound);
                }
                // The hashes of the source's documents that no other document uses (in any
                // knowledge base), taken inside the transaction that deletes them.
                let mut hashes: Vec<String> = sqlx::query_scalar(
                    "SELECT DISTINCT d.content_hash FROM documents d WHERE d.source_id = $1 \
                     AND NOT EXISTS (SELECT 1 FROM documents o WHERE o.content_hash = d.content_hash \
                     AND (o.source_id IS NULL OR o.source_id <> $1))",
                )
                .bind(&source)
                .fetch_all(&mut *tx)
                .await
                .map_err(Self::err)?;
                // The sync grants are the union of the folder sources' sharing: read it again.
                sqlx::query("UPDATE knowledge_bases SET sharing_read_at = NULL WHERE id = $1")
                    .bind(&kb)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                // Chunks go with their documents (ON DELETE CASCADE; on SQLite the FTS5 index
                // follows through the chunk triggers), exactly as in delete_document.
                sqlx::query("DELETE FROM documents WHERE source_id = $1")
                    .bind(&source)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                // Its recorded grants go with it (ON DELETE CASCADE): what only it granted is
                // withdrawn now, grants other sources also give stay until the sharing is read.
                sqlx::query("DELETE FROM sources WHERE id = $1")
                    .bind(&source)
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                Self::rebuild_sync_grants(&mut tx, &kb).await?;
                tx.commit().await.map_err(Self::err)?;
                hashes.sort();
                Ok(hashes)
            }

            async fn replace_sync_grants(
                &self,
                kb_id: kbsync_core::KbId,
                grants: &[$crate::SyncGrant],
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                let wanted: std::collections::BTreeSet<$crate::SyncGrant> = grants.iter().copied().collect();
                let sources: std::collections::BTreeSet<uuid::Uuid> = wanted.iter().map(|g| g.source_id).collect();
                let kb = kb_id.to_string();
                let mut tx = self.begin_write().await?;
                let exists = sqlx::query("UPDATE knowledge_bases SET sharing_read_at = $2 WHERE id = $1")
                    .bind(&kb)
                    .bind($crate::common::ms(now))
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::err)?;
                if exists.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                for source_id in &sources {
                    let ours = sqlx::query("SELECT 1 FROM sources WHERE id = $1 AND kb_id = $2")
                        .bind(source_id.to_string())
                        .bind(&kb)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(Self::err)?;
                    if ours.is_none() {
                        return Err($crate::StoreError::InvalidReference(format!(
                            "unknown source {source_id} of knowledge base {kb_id}"
                        )));
                    }
                }
                sqlx::query(
                    "DELETE FROM sync_grant_sources WHERE source_id IN \
                     (SELECT id FROM sources WHERE kb_id = $1)",
                )
                .bind(&kb)
                .execute(&mut *tx)
                .await
                .map_err(Self::err)?;
                for grant in &wanted {
                    sqlx::query("INSERT INTO sync_grant_sources (source_id, user_id) VALUES ($1, $2)")
                        .bind(grant.source_id.to_string())
                        .bind(grant.user_id.to_string())
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| match Self::err(e) {
                            $crate::StoreError::InvalidReference(_) => {
                                $crate::StoreError::InvalidReference(format!("unknown user {}", grant.user_id))
                            }
                            other => other,
                        })?;
                }
                Self::rebuild_sync_grants(&mut tx, &kb).await?;
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            async fn users_by_emails(&self, emails: &[String]) -> $crate::Result<Vec<kbsync_core::User>> {
                let keys: std::collections::BTreeSet<String> =
                    emails.iter().map(|e| $crate::common::email_key(e)).collect();
                let keys: Vec<String> = keys.into_iter().collect();
                let mut users = Vec::new();
                // Bounded batches keep every statement under the backends' bind-parameter limits.
                for batch in keys.chunks(500) {
                    let mut qb = sqlx::QueryBuilder::new(concat!(
                        "SELECT ",
                        $crate::shared::user_cols!(),
                        " FROM users WHERE email_lower IN ("
                    ));
                    let mut list = qb.separated(", ");
                    for key in batch {
                        list.push_bind(key.clone());
                    }
                    qb.push(")");
                    let rows: Vec<$crate::common::UserRow> = qb
                        .build_query_as()
                        .fetch_all(&self.pool)
                        .await
                        .map_err(Self::err)?;
                    for row in rows {
                        users.push(row.into_user()?);
                    }
                }
                users.sort_by(|a, b| a.email.to_lowercase().cmp(&b.email.to_lowercase()).then(a.id.cmp(&b.id)));
                Ok(users)
            }

            async fn all_user_ids(&self) -> $crate::Result<Vec<kbsync_core::UserId>> {
                let ids: Vec<String> = sqlx::query_scalar("SELECT id FROM users ORDER BY created_at, id")
                    .fetch_all(&self.pool)
                    .await
                    .map_err(Self::err)?;
                ids.iter().map(|id| $crate::common::parse_uuid(id)).collect()
            }
        }
    };
}

pub(crate) use {
    append_sync_failures, claim_due_syncs_sql, connection_cols, doc_cols, impl_store, kb_cols, source_cols,
    user_cols,
};
