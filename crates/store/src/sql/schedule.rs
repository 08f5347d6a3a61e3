//! The SQL of [`ScheduleStore`](crate::ScheduleStore): claiming due knowledge bases, sync leases,
//! schedule and sync state. The claim differs only in the lock clause it appends: each database
//! builds its `CLAIM_DUE_SYNCS` with [`claim_due_syncs_sql!`].

use chrono::{DateTime, Utc};

use crate::Result;
use crate::convert::{from_ms, ms, parse_enum, parse_uuid, to_u32, to_u64};

/// The scheduling, lease and progress columns of a knowledge base (migration 0004).
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SyncStateRow {
    pub id: String,
    pub sync_status: String,
    pub sync_run_id: Option<String>,
    pub sync_current: i64,
    pub sync_total: i64,
    pub sync_file: Option<String>,
    pub sync_error: Option<String>,
    pub last_sync_at: Option<i64>,
    pub next_sync_at: Option<i64>,
    pub sync_interval_minutes: Option<i32>,
    pub sync_failures: i32,
    pub sync_lease_owner: Option<String>,
    pub sync_lease_expires_at: Option<i64>,
    pub sync_cancel_requested: bool,
}

impl SyncStateRow {
    /// `now` decides whether the lease is live (a run is going).
    pub(crate) fn into_state(self, now: DateTime<Utc>) -> Result<kbsync_core::SyncState> {
        let running = self.sync_lease_owner.is_some()
            && self.sync_lease_expires_at.is_some_and(|until| until > ms(now));
        Ok(kbsync_core::SyncState {
            kb_id: parse_uuid(&self.id)?,
            status: parse_enum(&self.sync_status)?,
            progress: kbsync_core::SyncProgress {
                run_id: self.sync_run_id.as_deref().map(parse_uuid).transpose()?,
                current: to_u64(self.sync_current)?,
                total: to_u64(self.sync_total)?,
                file: self.sync_file,
            },
            last_error: self.sync_error,
            last_sync_at: self.last_sync_at.map(from_ms).transpose()?,
            next_sync_at: self.next_sync_at.map(from_ms).transpose()?,
            interval_minutes: self.sync_interval_minutes.map(to_u32).transpose()?,
            consecutive_failures: to_u32(self.sync_failures)?,
            running,
            // A flag left behind by a run that died is stale: it only means something while a
            // run holds a live lease (taking the lease clears it).
            cancel_requested: running && self.sync_cancel_requested,
        })
    }
}

/// The statement behind `claim_due_syncs`; `$lock` is what the backend appends to the picking
/// subquery (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: nothing, its writers are serialised).
/// Binds: owner, now, lease_until, limit. Returns each claimed row's type with it, so that the
/// caller needs no further read to choose its datasource.
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
            ") RETURNING id, kb_type, next_sync_at, sync_requested_at"
        )
    };
}

/// Writes `impl ScheduleStore for $ty`. `$ty` provides what `sql/mod.rs` lists.
macro_rules! impl_schedule_store {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::ScheduleStore for $ty {
            async fn claim_due_syncs(
                &self,
                owner: &str,
                now: chrono::DateTime<chrono::Utc>,
                lease_until: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::Result<Vec<$crate::ClaimedSync>> {
                use $crate::convert::*;
                if limit == 0 {
                    return Ok(Vec::new());
                }
                // One statement: the subquery picks the due rows in claim order (walking the
                // `knowledge_bases_due` index) and the UPDATE takes their leases. SQLite runs it
                // under its one write lock; PostgreSQL locks the picked rows and skips rows another
                // claimer has locked, and re-checks a row another claimer changed meanwhile, so no
                // row is claimed twice.
                let rows: Vec<(String, String, Option<i64>, Option<i64>)> = sqlx::query_as(Self::CLAIM_DUE_SYNCS)
                .bind(owner)
                .bind(ms(now))
                .bind(ms(lease_until))
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                let mut claimed = rows
                    .into_iter()
                    .map(|(id, kb_type, due, requested)| {
                        Ok($crate::ClaimedSync {
                            kb_id: parse_uuid(&id)?,
                            kb_type: parse_enum(&kb_type)?,
                            due_at: due.map(from_ms).transpose()?,
                            requested_at: requested.map(from_ms).transpose()?,
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
                use $crate::convert::ms;
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
                .bind($crate::convert::ms(lease_until))
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
                use $crate::convert::*;
                // $7: when the run began (NULL: nothing ran); $8: now. A notification that came
                // after the run began is still pending: due again now, unless backing off.
                let done = sqlx::query(
                    "UPDATE knowledge_bases SET sync_lease_owner = NULL, sync_lease_expires_at = NULL, \
                     sync_cancel_requested = FALSE, \
                     next_sync_at = CASE WHEN $4 = 0 AND sync_requested_at IS NOT NULL \
                     AND sync_requested_at > COALESCE(CAST($7 AS BIGINT), CAST(-1 AS BIGINT)) \
                     AND CAST($8 AS BIGINT) < CAST($3 AS BIGINT) THEN CAST($8 AS BIGINT) \
                     ELSE CAST($3 AS BIGINT) END, \
                     sync_requested_at = CASE WHEN sync_requested_at > COALESCE(CAST($7 AS BIGINT), CAST(-1 AS BIGINT)) \
                     THEN sync_requested_at ELSE NULL END, \
                     sync_failures = $4, last_sync_at = COALESCE($5, last_sync_at), sync_error = $6 \
                     WHERE id = $1 AND sync_lease_owner = $2",
                )
                .bind(kb_id.to_string())
                .bind(owner)
                .bind(ms(release.next_sync_at))
                .bind(to_i32(release.consecutive_failures))
                .bind(release.last_sync_at.map(ms))
                .bind(&release.last_error)
                .bind(release.run_started_at.map(ms))
                .bind(ms(release.released_at))
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
                .bind($crate::convert::ms(now))
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                if done.rows_affected() == 1 {
                    return Ok(true);
                }
                self.kb_exists(&kb).await?;
                Ok(false)
            }

            async fn request_drive_syncs(
                &self,
                datasource: &str,
                drive_id: &str,
                now: chrono::DateTime<chrono::Utc>,
                run_at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<Vec<kbsync_core::KbId>> {
                use $crate::convert::{ms, parse_uuid};
                // A never-synced knowledge base (next_sync_at NULL) is already due at once.
                let ids: Vec<String> = sqlx::query_scalar(
                    "UPDATE knowledge_bases SET \
                     sync_requested_at = CASE WHEN sync_requested_at IS NULL OR sync_requested_at < $3 \
                     THEN $3 ELSE sync_requested_at END, \
                     next_sync_at = CASE WHEN sync_failures = 0 AND next_sync_at > $4 THEN $4 \
                     ELSE next_sync_at END \
                     WHERE id IN (SELECT kb_id FROM sources WHERE datasource = $1 AND drive_id = $2) \
                     RETURNING id",
                )
                .bind(datasource)
                .bind(drive_id)
                .bind(ms(now))
                .bind(ms(run_at))
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                let mut kbs = ids.iter().map(|id| parse_uuid(id)).collect::<$crate::Result<Vec<_>>>()?;
                kbs.sort();
                Ok(kbs)
            }

            async fn schedule_sync(
                &self,
                kb_id: kbsync_core::KbId,
                next_sync_at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                let done = sqlx::query("UPDATE knowledge_bases SET next_sync_at = $2 WHERE id = $1")
                    .bind(kb_id.to_string())
                    .bind($crate::convert::ms(next_sync_at))
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
                    .bind(minutes.map($crate::convert::to_i32))
                    .execute(&self.pool)
                    .await
                    .map_err(Self::err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                Ok(())
            }

            // --- sync state ----------------------------------------------------------------

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

            async fn set_sync_progress(
                &self,
                kb_id: kbsync_core::KbId,
                progress: &kbsync_core::SyncProgress,
            ) -> $crate::Result<()> {
                use $crate::convert::to_i64;
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
            ) -> $crate::Result<kbsync_core::SyncState> {
                sqlx::query_as::<_, $crate::sql::schedule::SyncStateRow>(
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
        }
    };
}

pub(crate) use impl_schedule_store;

pub(crate) use claim_due_syncs_sql;
