//! The SQL of [`RunStore`](crate::RunStore): sync runs and their failed files, the same text on both
//! databases.

use crate::convert::{from_micros, from_ms, parse_enum, parse_uuid, to_u64};
use crate::{Result, StoreError};

/// The columns of a [`SyncRunRow`], as a literal for `concat!`.
macro_rules! sync_run_columns {
    () => {
        "id, kb_id, run_trigger, started_at, finished_at, status, processed, failed, deleted, skipped, \
         total_found, phase_enumerate_us, phase_plan_us, phase_download_us, phase_extract_us, \
         phase_index_us, phase_permissions_us, wall_us, quarantined"
    };
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SyncRunRow {
    pub id: String,
    pub kb_id: String,
    pub run_trigger: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    pub status: String,
    pub processed: i64,
    pub failed: i64,
    pub deleted: i64,
    pub skipped: i64,
    pub total_found: i64,
    pub phase_enumerate_us: Option<i64>,
    pub phase_plan_us: Option<i64>,
    pub phase_download_us: Option<i64>,
    pub phase_extract_us: Option<i64>,
    pub phase_index_us: Option<i64>,
    pub phase_permissions_us: Option<i64>,
    pub wall_us: Option<i64>,
    pub quarantined: i64,
}

impl SyncRunRow {
    pub(crate) fn into_run(self, failures: Vec<kbsync_core::SyncFailure>) -> Result<kbsync_core::SyncRun> {
        let trigger = match self.run_trigger.as_str() {
            "manual" => kbsync_core::SyncTrigger::Manual,
            "scheduled" => kbsync_core::SyncTrigger::Scheduled,
            "webhook" => kbsync_core::SyncTrigger::Webhook,
            other => return Err(StoreError::Corrupt(format!("unknown sync trigger {other:?}"))),
        };
        Ok(kbsync_core::SyncRun {
            id: parse_uuid(&self.id)?,
            kb_id: parse_uuid(&self.kb_id)?,
            trigger,
            started_at: from_ms(self.started_at)?,
            finished_at: self.finished_at.map(from_ms).transpose()?,
            outcome: kbsync_core::SyncRunOutcome {
                status: parse_enum(&self.status)?,
                processed: to_u64(self.processed)?,
                failed: to_u64(self.failed)?,
                deleted: to_u64(self.deleted)?,
                skipped: to_u64(self.skipped)?,
                quarantined: to_u64(self.quarantined)?,
                total_found: to_u64(self.total_found)?,
                failures,
                phases: self.phases()?,
            },
        })
    }

    /// The run's phase times: all of them or none (see migration 0017).
    fn phases(&self) -> Result<Option<kbsync_core::SyncPhaseTimes>> {
        let columns = [
            self.phase_enumerate_us,
            self.phase_plan_us,
            self.phase_download_us,
            self.phase_extract_us,
            self.phase_index_us,
            self.phase_permissions_us,
            self.wall_us,
        ];
        if columns.iter().all(Option::is_none) {
            return Ok(None);
        }
        let [
            Some(enumerate),
            Some(plan),
            Some(download),
            Some(extract),
            Some(index),
            Some(permissions),
            Some(wall),
        ] = columns
        else {
            return Err(StoreError::Corrupt(format!(
                "sync run {} has only some of its phase times",
                self.id
            )));
        };
        Ok(Some(kbsync_core::SyncPhaseTimes {
            enumerate: from_micros(enumerate)?,
            plan: from_micros(plan)?,
            download: from_micros(download)?,
            extract: from_micros(extract)?,
            index: from_micros(index)?,
            permissions: from_micros(permissions)?,
            wall: from_micros(wall)?,
        }))
    }
}

/// [`RunStore::sync_activity`](crate::RunStore::sync_activity): `$1` since, `$2` the period, `$3`
/// until (milliseconds), `$4`..`$7` the failure statuses. Sums are cast back to `BIGINT`
/// (PostgreSQL sums `BIGINT`s as `NUMERIC`); a lag is never negative (a run may start before it
/// was due, when it was started by hand or the schedule moved).
pub(crate) const SYNC_ACTIVITY: &str = "\
    SELECT bucket, COUNT(*) AS runs, \
      CAST(SUM(CASE WHEN status IN ($4, $5, $6, $7) THEN 1 ELSE 0 END) AS BIGINT) AS failed_runs, \
      CAST(SUM(processed) AS BIGINT) AS processed, \
      CAST(SUM(failed) AS BIGINT) AS failed_files, \
      CAST(SUM(deleted) AS BIGINT) AS deleted, \
      COUNT(lag) AS lagged_runs, \
      CAST(COALESCE(SUM(lag), 0) AS BIGINT) AS lag_total, \
      CAST(COALESCE(MAX(lag), 0) AS BIGINT) AS lag_max \
    FROM (SELECT (started_at - CAST($1 AS BIGINT)) / CAST($2 AS BIGINT) AS bucket, status, processed, \
            failed, deleted, \
            CASE WHEN due_at IS NULL THEN NULL WHEN started_at > due_at THEN started_at - due_at ELSE 0 END AS lag \
          FROM sync_runs WHERE started_at >= CAST($1 AS BIGINT) AND started_at < CAST($3 AS BIGINT)) r \
    GROUP BY bucket ORDER BY bucket";

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RunActivityRow {
    /// The period's number from `since`.
    pub bucket: i64,
    pub runs: i64,
    pub failed_runs: i64,
    pub processed: i64,
    pub failed_files: i64,
    pub deleted: i64,
    pub lagged_runs: i64,
    pub lag_total: i64,
    pub lag_max: i64,
}

impl RunActivityRow {
    pub(crate) fn into_activity(
        self,
        since: chrono::DateTime<chrono::Utc>,
        period: chrono::TimeDelta,
    ) -> Result<crate::RunActivity> {
        let period_start = i32::try_from(self.bucket)
            .ok()
            .and_then(|index| period.checked_mul(index))
            .and_then(|offset| since.checked_add_signed(offset))
            .ok_or_else(|| StoreError::Corrupt(format!("activity period {} out of range", self.bucket)))?;
        Ok(crate::RunActivity {
            period_start,
            runs: to_u64(self.runs)?,
            failed_runs: to_u64(self.failed_runs)?,
            processed: to_u64(self.processed)?,
            failed_files: to_u64(self.failed_files)?,
            deleted: to_u64(self.deleted)?,
            lagged_runs: to_u64(self.lagged_runs)?,
            lag_total: chrono::TimeDelta::milliseconds(self.lag_total),
            lag_max: chrono::TimeDelta::milliseconds(self.lag_max),
        })
    }
}

#[derive(Debug, sqlx::FromRow)]
pub(crate) struct SyncFailureRow {
    pub run_id: String,
    pub item_id: String,
    pub name: String,
    pub reason: String,
}

/// Appends `$failures` (a slice of `SyncFailure`) to run `$run` (its id as a string) inside the
/// write transaction `$tx`, numbered after the run's last recorded failure. The caller must hold
/// the run's row lock (it has updated the `sync_runs` row in `$tx`), so that concurrent appends
/// to one run never pick the same ordinal. Expands to statements of the enclosing `RunStore` method.
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

/// Writes `impl RunStore for $ty`. `$ty` provides what `sql/mod.rs` lists.
macro_rules! impl_run_store {
    ($ty:ty) => {
        #[async_trait::async_trait]
        impl $crate::RunStore for $ty {
            async fn create_sync_run(
                &self,
                id: uuid::Uuid,
                kb_id: kbsync_core::KbId,
                trigger: kbsync_core::SyncTrigger,
                due_at: Option<chrono::DateTime<chrono::Utc>>,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO sync_runs (id, kb_id, run_trigger, started_at, status, due_at) \
                     VALUES ($1, $2, $3, $4, 'syncing', $5)",
                )
                .bind(id.to_string())
                .bind(kb_id.to_string())
                .bind(trigger.as_str())
                .bind($crate::convert::ms(now))
                .bind(due_at.map($crate::convert::ms))
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
                outcome: &kbsync_core::SyncRunOutcome,
                now: chrono::DateTime<chrono::Utc>,
            ) -> $crate::Result<()> {
                use $crate::convert::*;
                let run = id.to_string();
                let phase = |f: fn(&kbsync_core::SyncPhaseTimes) -> std::time::Duration| {
                    outcome.phases.as_ref().map(|p| micros(f(p)))
                };
                let mut tx = self.begin_write().await?;
                let done = sqlx::query(
                    "UPDATE sync_runs SET finished_at = $2, status = $3, processed = $4, failed = $5, \
                     deleted = $6, skipped = $7, total_found = $8, phase_enumerate_us = $9, \
                     phase_plan_us = $10, phase_download_us = $11, phase_extract_us = $12, \
                     phase_index_us = $13, phase_permissions_us = $14, wall_us = $15, quarantined = $16 \
                     WHERE id = $1",
                )
                .bind(&run)
                .bind(ms(now))
                .bind(outcome.status.as_str())
                .bind(to_i64(outcome.processed))
                .bind(to_i64(outcome.failed))
                .bind(to_i64(outcome.deleted))
                .bind(to_i64(outcome.skipped))
                .bind(to_i64(outcome.total_found))
                .bind(phase(|p| p.enumerate))
                .bind(phase(|p| p.plan))
                .bind(phase(|p| p.download))
                .bind(phase(|p| p.extract))
                .bind(phase(|p| p.index))
                .bind(phase(|p| p.permissions))
                .bind(phase(|p| p.wall))
                .bind(to_i64(outcome.quarantined))
                .execute(&mut *tx)
                .await
                .map_err(Self::err)?;
                if done.rows_affected() == 0 {
                    return Err($crate::StoreError::NotFound);
                }
                // The UPDATE above holds the run's row lock: failures recorded during the run
                // stay, and these follow them.
                $crate::sql::runs::append_sync_failures!(tx, run, &outcome.failures);
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            async fn list_sync_runs(
                &self,
                kb_id: kbsync_core::KbId,
                limit: u32,
            ) -> $crate::Result<Vec<kbsync_core::SyncRun>> {
                use $crate::sql::runs::{SyncFailureRow, SyncRunRow};
                let rows = sqlx::query_as::<_, SyncRunRow>(concat!(
                    "SELECT ",
                    $crate::sql::runs::sync_run_columns!(),
                    " FROM sync_runs WHERE kb_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2"
                ))
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
                            .map(|f| kbsync_core::SyncFailure {
                                item_id: f.item_id.clone(),
                                name: f.name.clone(),
                                reason: f.reason.clone(),
                            })
                            .collect();
                        row.into_run(mine)
                    })
                    .collect()
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
                .bind($crate::convert::ms(now))
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(done.rows_affected())
            }

            async fn record_sync_failures(
                &self,
                run_id: uuid::Uuid,
                failures: &[kbsync_core::SyncFailure],
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
                $crate::sql::runs::append_sync_failures!(tx, run, failures);
                tx.commit().await.map_err(Self::err)?;
                Ok(())
            }

            async fn list_sync_failures(
                &self,
                run_id: uuid::Uuid,
                skip: u64,
            ) -> $crate::Result<Vec<kbsync_core::SyncFailure>> {
                // LIMIT before OFFSET: SQLite has no OFFSET without LIMIT.
                let rows: Vec<(String, String, String)> = sqlx::query_as(
                    "SELECT item_id, name, reason FROM sync_failures WHERE run_id = $1 \
                     ORDER BY ordinal LIMIT $2 OFFSET $3",
                )
                .bind(run_id.to_string())
                .bind(i64::MAX)
                .bind($crate::convert::to_i64(skip))
                .fetch_all(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(rows
                    .into_iter()
                    .map(|(item_id, name, reason)| kbsync_core::SyncFailure { item_id, name, reason })
                    .collect())
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
                .bind($crate::convert::ms(finished_before))
                .bind(i64::from(keep_per_kb))
                .execute(&self.pool)
                .await
                .map_err(Self::err)?;
                Ok(done.rows_affected())
            }

            async fn sync_activity(
                &self,
                since: chrono::DateTime<chrono::Utc>,
                until: chrono::DateTime<chrono::Utc>,
                period: chrono::TimeDelta,
            ) -> $crate::Result<Vec<$crate::RunActivity>> {
                use $crate::sql::runs::RunActivityRow;
                let period_ms = period.num_milliseconds();
                if period_ms <= 0 || until <= since {
                    return Ok(Vec::new());
                }
                let [f1, f2, f3, f4] = kbsync_core::SyncStatus::FAILURES.map(|s| s.as_str());
                let rows = sqlx::query_as::<_, RunActivityRow>($crate::sql::runs::SYNC_ACTIVITY)
                    .bind($crate::convert::ms(since))
                    .bind(period_ms)
                    .bind($crate::convert::ms(until))
                    .bind(f1)
                    .bind(f2)
                    .bind(f3)
                    .bind(f4)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(Self::err)?;
                $crate::convert::collect(rows, |row| row.into_activity(since, period))
            }
        }
    };
}

pub(crate) use impl_run_store;

pub(crate) use sync_run_columns;

pub(crate) use append_sync_failures;
